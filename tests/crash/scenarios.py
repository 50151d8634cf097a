"""Crash-sweep scenarios: each is the user's story as `Step`s and a convergence check.

To sweep another scenario, add a `Scenario` here (or in your own test module) and call
`sweep(world, scenario, points=…)` as `test_crash_resume.py` does.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

from mayanode_operator.api import naming
from mayanode_operator.plan.upgrade_rollout import SET_VERSION_SENDING, parse_time
from mayanode_operator.sandbox import kubeclient as kc
from mayanode_operator.sandbox.crashsweep import Scenario, Step, SweepRun
from mayanode_operator.sandbox.harness import OperatorProcess, eventually


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
    """Transactions the status records as sent and not yet seen on chain, recorded at least
    UNCONFIRMED_SETTLE_SECONDS ago: a running operator sends within moments of the record (also when the record's
    own answer was lost), so a younger record may still be sent."""
    status = (run.get("MayaNode") or {}).get("status") or {}
    pending = []
    ip_pending = (status.get("externalIP") or {}).get("pending") or {}
    if ip_pending.get("address") and _settled(ip_pending.get("sentAt")):
        pending.append(["set-ip-address", ip_pending["address"]])
    pending += [["mimir", p["key"], str(p["value"])] for p in (status.get("mimir") or {}).get("pending") or ()
                if _settled(p.get("sentAt"))]
    return pending


def _settled(sent_at: str | None) -> bool:
    sent = parse_time(sent_at)
    return sent is not None and (datetime.now(timezone.utc) - sent).total_seconds() >= UNCONFIRMED_SETTLE_SECONDS


def ip_and_votes_done(run: SweepRun, *, operator_died: bool = True) -> bool:
    """Every transaction is on chain, or (`operator_died`) recorded as sent and waiting: the operator died between
    recording a transaction and sending it, so it is sent again only after PENDING_TIMEOUT (5 minutes, at most
    once). An operator that did not die sends every one (it knows what it did not send)."""
    ready(run)
    accepted, pending = _accepted_txs(run), _recorded_pending(run) if operator_died else []
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


def ip_and_votes_all_sent(run: SweepRun) -> bool:
    return ip_and_votes_done(run, operator_died=False)


# The same, with an operator that is never killed (faults only): every transaction must reach the chain.
IP_AND_MIMIR_ALL_SENT = dataclasses.replace(
    IP_AND_MIMIR, steps=[dataclasses.replace(IP_AND_MIMIR.steps[0], until=ip_and_votes_all_sent)],
    converged=ip_and_votes_all_sent)


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


# ------------------------------------------------------------------------------------------- restore

RESTORE_NAME = "sweep-restore"
# The node's identity files on its PVCs (claim → path prefixes), as tests/e2e/test_restore.py compares them.
IDENTITY_PATHS = {
    naming.DEFAULT_MAYANODE_PVC: (".mayanode/MAYAChain-ED25519", ".mayanode/config/node_key.json",
                                  ".mayanode/config/priv_validator_key.json", ".mayanode/keyring-file/"),
    naming.DEFAULT_BIFROST_PVC: ("mayanode/localstate-", "mayanode/MAYAChain-ED25519", "mayanode/keyring-file/"),
}
SECRET_KEYS = ((naming.DEFAULT_MNEMONIC_SECRET, "mnemonic"), ("mayanode-password", "password"))


def identity_files(run: SweepRun) -> dict[str, tuple[bytes, int, int, int]]:
    """The node's identity files on its PVCs: "claim:path" → (content, mode, uid, gid)."""
    out = {}
    for claim, prefixes in IDENTITY_PATHS.items():
        tree = run.sandbox.kubelet.volume(run.namespace, claim)
        for path, entry in tree.walk():
            if entry.is_file and path.startswith(prefixes) and ".replaced-" not in path:
                out[f"{claim}:{path}"] = (tree.read(path), entry.mode & 0o7777, entry.uid, entry.gid)
    return out


def secret_values(run: SweepRun) -> dict[str, str]:
    out = {}
    for name, key in SECRET_KEYS:
        secret = run.call(run.sandbox.client.get(kc.SECRETS, name, run.namespace)) or {}
        out[f"{name}/{key}"] = (secret.get("data") or {}).get(key, "")
    return out


def _scale(run: SweepRun, replicas: int) -> None:
    for deployment in ("mayanode", "bifrost"):
        run.call(run.sandbox.client.patch(kc.DEPLOYMENTS, deployment, {"spec": {"replicas": replicas}},
                                          run.namespace))


def backed_up_and_wiped(run: SweepRun) -> None:
    """The world a restore starts from: a node that took part in a churn (so it holds a key share), backed up by
    an operator of its own (stopped before the scenario's operator starts: the sweep counts only the restore's
    writes), then its mayanode and bifrost scaled to 0 by hand, both PVCs wiped, the mnemonic and password
    blanked (not deleted: the mnemonic Secret is never absent), and the Deployments scaled back to 1."""
    seed_with_backup_identity(run)
    run.call(_churn(run.mocknet))
    setup_log = run.data["log_path"].with_name(f"{run.namespace}-setup.log")
    operator = OperatorProcess(run.sandbox.kubeconfig_path, setup_log, namespaces=tuple(run.namespaces), extra_env={
        "MAYANODE_OPERATOR_LOCK_NAMESPACE": run.namespace, "MAYANODE_OPERATOR_ROLLOUT_NAMESPACE": run.namespace})
    operator.start()
    try:
        run.apply(mayanode_body(run, backup={**backup_policy(run), "afterChurn": False}))
        run.apply(backup_body(run))
        eventually(lambda: backup_verified(run), timeout=90, interval=0.2,
                   message=lambda: f"setup: the backup to restore from\n{operator.log_text()[-2000:]}")
    finally:
        operator.stop()
    files = run.call(lambda: identity_files(run))
    assert any("localstate-" in path for path in files) and len(files) >= 6, sorted(files)
    run.data["identity_files"], run.data["secrets"] = files, secret_values(run)
    assert all(run.data["secrets"].values()), "the seeded Secrets hold values"
    _scale(run, 0)
    eventually(lambda: not run.mocknet.running_processes(run.namespace), timeout=20, interval=0.1,
               message="setup: the node's pods stopped")
    for claim in IDENTITY_PATHS:
        run.call(lambda claim=claim: run.sandbox.kubelet.volume(run.namespace, claim).wipe())
    for name, key in SECRET_KEYS:
        run.call(run.sandbox.client.patch(kc.SECRETS, name, {"data": {key: ""}}, run.namespace))
    _scale(run, 1)
    assert run.call(lambda: identity_files(run)) == {}


async def _churn(net: Any) -> None:
    net.churn()
    await net.settle()


def restore_body(run: SweepRun) -> dict[str, Any]:
    # Generous timeouts: the operator is dead for a while after each kill (or its calls fail), and that time counts.
    return {"apiVersion": naming.API_VERSION, "kind": "NodeRestore",
            "metadata": {"name": RESTORE_NAME, "namespace": run.namespace},
            "spec": {"backupRef": {"name": BACKUP_NAME}, "nodeRef": {"name": run.namespace},
                     "doubleSignGuard": {"silentBlocks": 3, "rpc": [run.mocknet.public_rpc_url]},
                     "timeouts": {"guardSeconds": 600, "readySeconds": 600, "scaleDownSeconds": 600}}}


def restored(run: SweepRun) -> bool:
    """The outcome only (the restore's steps may change): Completed, the identical files and Secrets, and the node
    back up, Ready, serving the same node address, no longer held down."""
    body = run.get("NodeRestore", RESTORE_NAME) or {}
    status = body.get("status") or {}
    assert status.get("phase") == "Completed", status
    assert run.call(lambda: identity_files(run)) == run.data["identity_files"], "restored files differ"
    assert secret_values(run) == run.data["secrets"], "restored Secrets differ"
    address = run.data["nodes"][run.namespace].node_address
    serving = run.mocknet.serving_process(run.namespace)
    assert serving is not None and serving.node_address == address, serving
    ready(run)
    node_status = run.get("MayaNode")["status"]
    assert (node_status.get("node") or {}).get("address") == address, node_status
    assert run.condition("Suspended").get("status") == "False", node_status
    for deployment in ("mayanode", "bifrost"):
        assert (run.deployment(deployment) or {}).get("spec", {}).get("replicas") == 1, deployment
    return True


# Issue 4: a backed-up node whose PVCs and Secrets were wiped; a NodeRestore brings back the identical files and
# Secrets (helper pods, exec tar streams, Secret updates in place, the key lock, the silence guard) and the node.
RESTORE = Scenario(
    name="restore",
    setup=backed_up_and_wiped,
    steps=[Step(lambda run: run.apply(restore_body(run)), until=restored, timeout=120)],
    converged=restored,
    converge_timeout=90,
)


# ------------------------------------------------------------------------------------------- upgrade

OLD_VERSION, NEW_VERSION = "1.111.0", "1.112.0"
UNCONFIRMED_SETTLE_SECONDS = 15.0


def _network_versions(run: SweepRun, version: str) -> None:
    """The rest of the network (virtual Active nodes, one of them on the old version) runs `version`, three to one
    against the world's own nodes: the nodes of earlier runs stay Active on the mocknet, some of them on the new
    version (a sweep's runs share a world), and must not decide the 2/3 adoption."""
    own = sum(1 for node in run.mocknet.active_nodes() if not node.virtual)
    run.mocknet.set_network_versions({OLD_VERSION: 1, version: 3 * own + 3})


def seed_for_upgrade(run: SweepRun) -> None:
    """An Active node on the old version; the rest of the network has not adopted the new one."""
    run.seed_node(version=OLD_VERSION, status="Active", ip_address="203.0.113.7")
    _network_versions(run, OLD_VERSION)


def upgrade_spec() -> dict[str, Any]:
    # Adoption (Next) is the gate under test; the churn gate is off so that another scenario's churn in a shared
    # world (a retiring vault) cannot hold this Active node.
    return {"upgrade": {"healthTimeoutSeconds": 90, "gates": {"churn": {"avoidWhileActive": False}}}}


def _images(run: SweepRun) -> dict[str, str]:
    return {d: (run.deployment(d) or {})["spec"]["template"]["spec"]["containers"][0]["image"]
            for d in ("mayanode", "bifrost")}


def _set_versions(run: SweepRun, accepted: bool = True) -> list[Any]:
    return [t for t in run.mocknet.transactions if t.namespace == run.namespace and t.argv
            and t.argv[0] == "set-version" and (t.result.ok or not accepted)]


def waiting_for_adoption(run: SweepRun) -> bool:
    body = run.get("MayaNode") or {}
    cond = run.condition("UpgradeBlocked")
    assert cond.get("status") == "True" and cond.get("reason") == "WaitingForAdoption", body.get("status")
    assert all(image.endswith(f"-{OLD_VERSION}") for image in _images(run).values()), _images(run)
    return True


def adopt(run: SweepRun) -> None:
    assert all(image.endswith(f"-{OLD_VERSION}") for image in _images(run).values()), \
        f"an image changed before the network adopted the target: {_images(run)}"
    _network_versions(run, NEW_VERSION)


def _set_version_unconfirmed(run: SweepRun) -> bool:
    """set-version on record as being sent, its answer never recorded (the operator died between the two, or the
    checkpoint's own answer was lost) and none sent: it is sent again once SET_VERSION_CONFIRM_TIMEOUT (5 min)
    passed without the chain showing the version, as a pending IP announcement or mimir vote is. Only a record
    older than UNCONFIRMED_SETTLE_SECONDS counts: a running operator sends within moments of the record (and one
    that restarted looks at the chain again within seconds), so a younger one may still be answered."""
    current = (((run.get("MayaNode") or {}).get("status") or {}).get("upgrade") or {}).get("current") or {}
    recorded = parse_time(current.get("stepStartedAt"))
    return (current.get("step") == "SetVersion" and current.get("versionAnnounced") is True
            and current.get("message") == SET_VERSION_SENDING and not _set_versions(run, accepted=False)
            and recorded is not None
            and (datetime.now(timezone.utc) - recorded).total_seconds() >= UNCONFIRMED_SETTLE_SECONDS)


def upgraded(run: SweepRun) -> bool:
    """Succeeded: both images on the new version, the node Ready on it, set-version accepted exactly once (or on
    record as being sent and waiting for the chain: see `_set_version_unconfirmed`)."""
    body = run.get("MayaNode") or {}
    status = body.get("status") or {}
    assert all(image.endswith(f"-{NEW_VERSION}") for image in _images(run).values()), _images(run)
    assert status.get("version") == NEW_VERSION, status
    if _set_version_unconfirmed(run):
        ready(run)
        return True
    history = (status.get("upgrade") or {}).get("history") or []
    assert history and history[-1].get("result") == "Succeeded", status.get("upgrade")
    assert (history[-1].get("from"), history[-1].get("to")) == (OLD_VERSION, NEW_VERSION), history[-1]
    for type_ in ("UpgradeBlocked", "Degraded"):
        assert run.condition(type_).get("status") == "False", (type_, status)
    ready(run)
    assert len(_set_versions(run)) == 1, f"set-version accepted {len(_set_versions(run))} times"
    assert run.mocknet.node(run.data["nodes"][run.namespace].node_address).version == NEW_VERSION
    return True


def set_version_once(run: SweepRun):
    """The upgrade's one transaction is sent once: never again after it was accepted, and nothing else is sent."""
    sent = [t for t in run.mocknet.transactions if t.namespace == run.namespace]
    others = [t.argv for t in sent if not t.argv or t.argv[0] != "set-version"]
    if others:
        yield f"transactions other than set-version were sent: {others}"
    if len(_set_versions(run)) > 1:
        yield f"set-version accepted {len(_set_versions(run))} times"


# Issue 6: a MayaNode moves to the next version only once the network adopted it; mayanode, then bifrost, each
# health-checked; then set-version once.
UPGRADE = Scenario(
    name="upgrade",
    setup=seed_for_upgrade,
    steps=[
        Step(lambda run: run.apply(mayanode_body(run, version=NEW_VERSION, **upgrade_spec())),
             until=waiting_for_adoption),
        Step(adopt, until=upgraded, timeout=90),
    ],
    converged=upgraded,
    invariants=[set_version_once],
    note=lambda run: "set-version on record as being sent, never sent: sent again after the confirmation window"
    if _set_version_unconfirmed(run) else "",
)
