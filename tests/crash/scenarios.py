"""Crash-sweep scenarios: each is the user's story as `Step`s and a convergence check.

To sweep another scenario, add a `Scenario` here (or in your own test module) and call
`sweep(world, scenario, points=…)` as `test_crash_resume.py` does.
"""

from __future__ import annotations

from typing import Any

from mayanode_operator.api import naming
from mayanode_operator.sandbox.crashsweep import Scenario, Step, SweepRun


def mayanode_body(run: SweepRun, namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    """A MayaNode for the node seeded in `namespace`, its API on the mocknet."""
    ns = namespace or run.namespace
    node = run.data["nodes"][ns]
    return {
        "apiVersion": naming.API_VERSION, "kind": "MayaNode",
        "metadata": {"name": ns, "namespace": ns},
        "spec": {"network": node.network, "nodeAddress": node.node_address, "version": node.version,
                 "api": {"rest": node.rest_url, "rpc": node.rpc_url, "timeoutSeconds": 2},
                 "observe": {"intervalSeconds": 5}, **spec},
    }


def ready(run: SweepRun, name: str | None = None) -> bool:
    body = run.get("MayaNode", name) or {}
    status = body.get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    assert conditions.get("Ready", {}).get("status") == "True", status
    assert status.get("observedGeneration") == body["metadata"]["generation"], status
    return True


def observed_fully(run: SweepRun) -> bool:
    """Ready, and every part of the observation the reference run shows is there."""
    ready(run)
    status = run.get("MayaNode")["status"]
    node = run.data["nodes"][run.namespace]
    assert status["phase"] == "Running" and status["node"]["address"] == node.node_address, status
    assert status["node"]["validatorConsPubKey"] == node.facts.consensus_pubkey_bech32, status
    assert status["workloads"]["mayanode"]["readyReplicas"] == 1, status
    assert status["externalIP"]["address"] == "203.0.113.7", status
    for type_ in ("Synced", "NodeAPIReachable", "NodeRegistered", "WorkloadsReady"):
        assert any(c["type"] == type_ and c["status"] == "True" for c in status["conditions"]), (type_, status)
    return True


def halted(run: SweepRun, expected: str) -> bool:
    cond = run.condition("NetworkHalted")
    assert cond.get("status") == expected, cond
    return True


def set_halt(run: SweepRun, value: int) -> None:
    run.mocknet.set_mimir("HALTBTCCHAIN", value)


# The observation story of tests/e2e/test_observe.py: apply, Ready, a halt comes and goes.
OBSERVE = Scenario(
    name="observe",
    setup=lambda run: run.seed_node(ip_address="203.0.113.7"),
    steps=[
        Step(lambda run: run.apply(mayanode_body(run)), until=observed_fully),
        Step(lambda run: set_halt(run, 1), until=lambda run: halted(run, "True")),
        Step(lambda run: set_halt(run, 0), until=lambda run: halted(run, "False")),
    ],
    converged=observed_fully,
)

# The same, then the node API goes down and comes back, and the spec changes (bench/ or by hand: slower).
OBSERVE_FULL = Scenario(
    name="observefull",
    setup=OBSERVE.setup,
    steps=[
        *OBSERVE.steps,
        Step(lambda run: run.mocknet.fail(run.namespace, "down"),
             until=lambda run: run.condition("NodeAPIReachable").get("status") == "False"),
        Step(lambda run: run.mocknet.fail(run.namespace, None), until=observed_fully),
        Step(lambda run: run.patch_spec("MayaNode", {"observe": {"intervalSeconds": 6}}), until=ready),
    ],
    converged=observed_fully,
)


ANNOUNCED_IP = "198.51.100.20"
MIMIR_VOTES = {"MAXSYNTHPERPOOLDEPTH": 3500, "MINIMUMBONDINCACAO": 100000}


def seed_with_load_balancer(run: SweepRun) -> None:
    run.seed_node(ip_address="")
    run.call(run.sandbox.kubelet.set_lb_address(run.namespace, naming.DEFAULT_GATEWAY_SERVICE, ip=ANNOUNCED_IP))


def _expected_txs() -> list[list[str]]:
    return sorted([["set-ip-address", ANNOUNCED_IP]] + [["mimir", k, str(v)] for k, v in MIMIR_VOTES.items()])


def _accepted_txs(run: SweepRun) -> list[list[str]]:
    return sorted(list(t.argv) for t in run.mocknet.transactions if t.namespace == run.namespace and t.result.ok)


def _recorded_pending(run: SweepRun) -> list[list[str]]:
    """Transactions the status records as sent and not yet seen on chain."""
    status = (run.get("MayaNode") or {}).get("status") or {}
    pending = []
    ip_pending = (status.get("externalIP") or {}).get("pending") or {}
    if ip_pending.get("address"):
        pending.append(["set-ip-address", ip_pending["address"]])
    pending += [["mimir", p["key"], str(p["value"])] for p in (status.get("mimir") or {}).get("pending") or ()]
    return pending


def ip_and_votes_done(run: SweepRun) -> bool:
    """Every transaction is on chain, or recorded as sent and waiting: the operator died between recording a
    transaction and sending it, so it is sent again only after PENDING_TIMEOUT (5 minutes, at most once)."""
    ready(run)
    accepted, pending = _accepted_txs(run), _recorded_pending(run)
    missing = [tx for tx in _expected_txs() if tx not in accepted]
    assert missing == [tx for tx in missing if tx in pending], (accepted, pending)
    if missing:
        return True
    status = run.get("MayaNode")["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions.get("ExternalIPAssigned", {}).get("reason") == "Announced", status
    assert conditions.get("MimirVotesApplied", {}).get("status") == "True", status
    assert (status.get("mimir") or {}).get("inEffect") == MIMIR_VOTES, status
    assert run.mocknet.node(run.data["nodes"][run.namespace].node_address).ip_address == ANNOUNCED_IP
    return True


def each_transaction_once(run: SweepRun):
    """No transaction accepted twice, none that was not asked for."""
    accepted = _accepted_txs(run)
    if len(accepted) != len({tuple(tx) for tx in accepted}) or not set(map(tuple, accepted)) <= set(
            map(tuple, _expected_txs())):
        yield f"accepted transactions {accepted}; expected each of {_expected_txs()} at most once"


def waiting_for_resend(run: SweepRun) -> str:
    missing = [tx for tx in _expected_txs() if tx not in _accepted_txs(run)]
    return f"recorded as sent, never sent, resent after the pending timeout: {missing}" if missing else ""


# Issue 5: the load balancer's address written and announced, mimir votes sent (transactions through exec).
IP_AND_MIMIR = Scenario(
    name="ipmimir",
    setup=seed_with_load_balancer,
    steps=[Step(lambda run: run.apply(mayanode_body(run, externalIP={"announce": True},
                                                    mimir={"votes": dict(MIMIR_VOTES)})),
                until=ip_and_votes_done, timeout=60)],
    converged=ip_and_votes_done,
    invariants=[each_transaction_once],
    note=waiting_for_resend,
)


BACKUP_NAME = "sweep-backup"


def seed_with_backup_identity(run: SweepRun) -> None:
    """A node, and the age identity the backups are verified with, in a Secret of the node's namespace."""
    from mayanode_operator.backup.crypto import generate_identity

    run.seed_node(ip_address="203.0.113.7")
    identity, recipient = generate_identity()
    run.data["backup_recipient"] = recipient
    run.call(run.sandbox.client.request("POST", f"/api/v1/namespaces/{run.namespace}/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "backup-age-identity"},
        "stringData": {naming.DEFAULT_AGE_IDENTITY_KEY: identity}}))


def backup_policy(run: SweepRun) -> dict[str, Any]:
    return {"location": {"secret": {}, "encryption": {"recipients": [run.data["backup_recipient"]],
                                                      "identitySecret": {"name": "backup-age-identity"}}}}


def backup_body(run: SweepRun) -> dict[str, Any]:
    return {"apiVersion": naming.API_VERSION, "kind": "NodeBackup",
            "metadata": {"name": BACKUP_NAME, "namespace": run.namespace},
            "spec": {"nodeRef": {"name": run.namespace}, "reason": "Manual"}}


def backup_verified(run: SweepRun) -> bool:
    """The backup is Completed with every identity item, and Verified against the chain."""
    body = run.get("NodeBackup", BACKUP_NAME) or {}
    status = body.get("status") or {}
    assert status.get("phase") == "Completed", status
    names = {item.get("path") for item in status.get("items") or []}
    assert {"config/priv_validator_key.json", "data/priv_validator_state.json"} <= names, names
    assert run.condition("Verified", kind="NodeBackup", name=BACKUP_NAME).get("status") == "True", status
    return True


# Issue 3: a node with a backup policy, then a NodeBackup to Completed and Verified (exec tar streams, a Secret store).
BACKUP = Scenario(
    name="backup",
    setup=seed_with_backup_identity,
    steps=[
        Step(lambda run: run.apply(mayanode_body(run, backup=backup_policy(run))), until=ready),
        Step(lambda run: run.apply(backup_body(run)), until=backup_verified, timeout=60),
    ],
    converged=backup_verified,
)
