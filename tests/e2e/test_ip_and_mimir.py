"""Issue 5: the external IP assigned and announced, mimir votes as code, halt awareness, one-shot node actions.

One node namespace, scenarios in order (each builds on the state the previous one left). Every transaction
is asserted on `mocknet.transactions`; every request the API server receives is recorded to prove that no
password or mnemonic travels in an argument list, a log, an event or the status.
"""

from __future__ import annotations

import json

import pytest
from kubernetes import client as k8s

from mayanode_operator.api import naming

from .conftest import condition, dump, eventually, mayanode_manifest, require

NS = "ipmimir-a"
FIRST_IP, SECOND_IP = "198.51.100.20", "198.51.100.21"


class RequestLog:
    """Every request the API server receives: method, path with query (exec argv travels there) and body."""

    def __init__(self) -> None:
        self.entries: list[str] = []

    async def __call__(self, request, call_next):
        body = await request.read() if request.can_read_body else b""
        self.entries.append(f"{request.method} {request.path_qs} {body.decode('utf-8', 'replace')}")
        return await call_next(request)

    def execs(self) -> list[str]:
        return [e for e in self.entries if "/exec" in e.split(" ", 2)[1]]


@pytest.fixture(scope="module")
def requests_seen(world):
    require(world, "kubelet", "tx", "hooks")
    log = RequestLog()
    world.sandbox.api.add_request_hook(log)
    yield log
    world.sandbox.api.remove_request_hook(log)


@pytest.fixture(scope="module")
def node(world, operator, kube, requests_seen):
    seeded = world.seed_node(NS, ip_address="")
    world.call(world.kubelet.set_lb_address(NS, naming.DEFAULT_GATEWAY_SERVICE))     # no address yet
    kube.apply(mayanode_manifest(seeded, externalIP={"announce": True}))
    return seeded


def txs(world, subcommand: str | None = None) -> list[list[str]]:
    return [list(t.argv) for t in world.mocknet.transactions
            if t.namespace == NS and (subcommand is None or t.argv[0] == subcommand)]


def status_of(kube) -> dict:
    return kube.mayanode(NS, NS).get("status") or {}


def cond(kube, type_: str) -> dict:
    return condition(kube.mayanode(NS, NS), type_)


def external_ip_configmaps(kube) -> dict[str, str]:
    return {name: (kube.core.read_namespaced_config_map(name, NS).data or {}).get("externalIP", "")
            for name in naming.EXTERNAL_IP_CONFIGMAPS}


def pod_env(world, deployment: str) -> str | None:
    pods = [rt for rt in world.kubelet.pods(NS) if rt.name.startswith(deployment + "-") and not rt.terminating]
    for rt in pods:
        container = rt.containers.get(deployment)
        if container is not None and container.state == "running":
            return container.env.get("EXTERNAL_IP")
    return None


def resync(kube) -> None:
    """A spec change forces a reconcile pass; wait until the operator has seen it."""
    body = kube.mayanode(NS, NS)
    interval = body["spec"]["observe"]["intervalSeconds"]
    updated = kube.patch_spec(naming.MAYANODE_PLURAL, NS, NS, {"observe": {"intervalSeconds": 11 - interval}})
    generation = updated["metadata"]["generation"]
    eventually(lambda: status_of(kube).get("observedGeneration") == generation, timeout=20)


def test_waits_for_the_load_balancer(node, kube, world, operator):
    cond_ = eventually(lambda: (c := cond(kube, "ExternalIPAssigned")) and c["status"] == "False" and c, timeout=30,
                       message=lambda: operator.log_text()[-4000:] + dump(status_of(kube)))
    assert cond_["reason"] == "WaitingForLoadBalancer", cond_
    assert txs(world, "set-ip-address") == []


def test_ingress_ip_is_written_announced_once_and_registered(node, kube, world, operator):
    world.call(world.kubelet.set_lb_address(NS, naming.DEFAULT_GATEWAY_SERVICE, ip=FIRST_IP))

    def announced():
        body = kube.mayanode(NS, NS)
        c = condition(body, "ExternalIPAssigned")
        assert c.get("status") == "True" and c["reason"] == "Announced", dump(body.get("status"))
        return body

    body = eventually(announced, timeout=40, message=lambda: operator.log_text()[-3000:])
    assert external_ip_configmaps(kube) == {name: FIRST_IP for name in naming.EXTERNAL_IP_CONFIGMAPS}
    assert txs(world, "set-ip-address") == [["set-ip-address", FIRST_IP]]
    assert world.mocknet.node(node.node_address).ip_address == FIRST_IP
    ip = body["status"]["externalIP"]
    assert ip["address"] == FIRST_IP and ip["announcedAddress"] == FIRST_IP and "pending" not in ip
    assert body["status"]["node"]["registeredIP"] == FIRST_IP
    # The pods were restarted to read the new address (they started with an empty one).
    eventually(lambda: pod_env(world, "mayanode") == FIRST_IP and pod_env(world, "bifrost") == FIRST_IP, timeout=30)
    reasons = [e["reason"] for e in kube.events(NS, NS)]
    assert {"ExternalIPWritten", "IPAnnounced", "PodsRestarted"} <= set(reasons)


def test_a_resync_sends_nothing_when_nothing_changed(node, kube, world):
    eventually(lambda: cond(kube, "Ready").get("status") == "True", timeout=30)
    before = len(world.mocknet.transactions)
    restarts = [j for j in world.kubelet.journal if j[1] == "pod-created" and j[2] == NS]
    resync(kube)
    resync(kube)
    assert len(world.mocknet.transactions) == before
    assert [j for j in world.kubelet.journal if j[1] == "pod-created" and j[2] == NS] == restarts


def test_a_new_load_balancer_ip_is_announced_again(node, kube, world, operator):
    world.call(world.kubelet.set_lb_address(NS, naming.DEFAULT_GATEWAY_SERVICE, ip=SECOND_IP))

    def moved():
        body = kube.mayanode(NS, NS)
        c = condition(body, "ExternalIPAssigned")
        assert c.get("status") == "True" and body["status"]["externalIP"]["address"] == SECOND_IP, \
            dump(body.get("status"))
        assert body["status"]["node"]["registeredIP"] == SECOND_IP
        return body

    eventually(moved, timeout=40, message=lambda: operator.log_text()[-3000:])
    assert txs(world, "set-ip-address") == [["set-ip-address", FIRST_IP], ["set-ip-address", SECOND_IP]]
    assert world.mocknet.node(node.node_address).ip_address == SECOND_IP
    assert set(external_ip_configmaps(kube).values()) == {SECOND_IP}
    eventually(lambda: pod_env(world, "mayanode") == SECOND_IP, timeout=30)
    assert any(e["reason"] == "ExternalIPChanged" and SECOND_IP in e["message"] for e in kube.events(NS, NS))


def _votes_in_effect(kube) -> dict:
    return (status_of(kube).get("mimir") or {}).get("inEffect") or {}


def _applied(kube, expected: dict) -> bool:
    c = cond(kube, "MimirVotesApplied")
    return c.get("status") == "True" and _votes_in_effect(kube) == expected


def test_mimir_votes_converge_with_the_minimum_of_transactions(node, kube, world, operator):
    kube.patch_spec(naming.MAYANODE_PLURAL, NS, NS, {"mimir": {
        "votes": {"MAXSYNTHPERPOOLDEPTH": 3500, "minimumBondInCacao": 100000, "FullImpLossProtectionBlocks": 0},
        "withdrawRemoved": True}})
    expected = {"FULLIMPLOSSPROTECTIONBLOCKS": 0, "MAXSYNTHPERPOOLDEPTH": 3500, "MINIMUMBONDINCACAO": 100000}
    eventually(lambda: _applied(kube, expected), timeout=30, message=lambda: dump(status_of(kube).get("mimir")))
    assert sorted(txs(world, "mimir")) == [["mimir", k, str(v)] for k, v in sorted(expected.items())]

    # One value changed and one key removed: exactly one vote and one withdrawal.
    kube.patch_spec(naming.MAYANODE_PLURAL, NS, NS, {"mimir": {"votes": {
        "MAXSYNTHPERPOOLDEPTH": 4000, "minimumBondInCacao": 100000, "FullImpLossProtectionBlocks": None}}})
    expected = {"MAXSYNTHPERPOOLDEPTH": 4000, "MINIMUMBONDINCACAO": 100000}
    eventually(lambda: _applied(kube, expected), timeout=30, message=lambda: dump(status_of(kube).get("mimir")))
    assert txs(world, "mimir")[3:] in ([["mimir", "FULLIMPLOSSPROTECTIONBLOCKS", "-1"],
                                        ["mimir", "MAXSYNTHPERPOOLDEPTH", "4000"]],
                                       [["mimir", "MAXSYNTHPERPOOLDEPTH", "4000"],
                                        ["mimir", "FULLIMPLOSSPROTECTIONBLOCKS", "-1"]])
    assert sorted(status_of(kube)["mimir"]["managedKeys"]) == ["MAXSYNTHPERPOOLDEPTH", "MINIMUMBONDINCACAO"]
    reasons = [e["reason"] for e in kube.events(NS, NS)]
    assert reasons.count("MimirVoteSent") == 4 and reasons.count("VoteWithdrawn") == 1
    resync(kube)
    assert len(txs(world, "mimir")) == 5


def test_a_vote_changed_on_chain_by_hand_is_corrected(node, kube, world, operator):
    async def by_hand():
        return world.mocknet.submit_tx(NS, node.node_address, ["mimir", "MAXSYNTHPERPOOLDEPTH", "9999"])

    assert world.call(by_hand()).ok
    eventually(lambda: any(e["reason"] == "MimirVoteChanged" for e in kube.events(NS, NS)), timeout=30,
               message=lambda: dump(status_of(kube).get("mimir")))
    eventually(lambda: _applied(kube, {"MAXSYNTHPERPOOLDEPTH": 4000, "MINIMUMBONDINCACAO": 100000}), timeout=30)
    assert txs(world, "mimir")[5:] == [["mimir", "MAXSYNTHPERPOOLDEPTH", "9999"],      # the hand-made one
                                       ["mimir", "MAXSYNTHPERPOOLDEPTH", "4000"]]      # the correction


def test_votes_wait_while_a_halt_in_the_policy_is_in_effect(node, kube, world):
    kube.patch_spec(naming.MAYANODE_PLURAL, NS, NS, {"haltPolicy": {"mimirVotes": ["Trading"]}})
    world.mocknet.set_mimir("HALTTRADING", 1)
    try:
        eventually(lambda: any(h["kind"] == "Trading" for h in
                               (status_of(kube).get("network") or {}).get("halts") or []), timeout=20,
                   message=lambda: dump(status_of(kube)))
        kube.patch_spec(naming.MAYANODE_PLURAL, NS, NS, {"mimir": {"votes": {"minimumBondInCacao": 200000}}})
        waiting = eventually(lambda: (c := cond(kube, "MimirVotesApplied")) and c["reason"] == "WaitingForHalt"
                             and c, timeout=20)
        assert "HALTTRADING" in waiting["message"]
        assert len(txs(world, "mimir")) == 7
    finally:
        world.mocknet.set_mimir("HALTTRADING", 0)
    eventually(lambda: _applied(kube, {"MAXSYNTHPERPOOLDEPTH": 4000, "MINIMUMBONDINCACAO": 200000}), timeout=30)
    assert txs(world, "mimir")[7:] == [["mimir", "MINIMUMBONDINCACAO", "200000"]]


def _record(kube, id_: str) -> dict:
    return next((r for r in status_of(kube).get("nodeActions") or [] if r["id"] == id_), {})


def test_pause_chain_is_sent_once_and_never_repeated(node, kube, world, operator):
    kube.patch_spec(naming.MAYANODE_PLURAL, NS, NS, {"nodeActions": [
        {"id": "pause-1", "action": "PauseChain", "reason": "suspicious outbound"}]})
    eventually(lambda: _record(kube, "pause-1").get("state") == "Succeeded", timeout=30,
               message=lambda: dump(status_of(kube).get("nodeActions")))
    assert txs(world, "pause-chain") == [["pause-chain"]]
    eventually(lambda: any(h["kind"] == "NodePause" for h in (status_of(kube).get("network") or {}).get("halts")
                           or []), timeout=20)
    assert any(e["reason"] == "NodePaused" and "suspicious outbound" in e["message"] for e in kube.events(NS, NS))

    # A restarted operator and further passes never send it again.
    operator.stop()
    operator.start()
    resync(kube)
    assert txs(world, "pause-chain") == [["pause-chain"]]

    # A second pause in the same churn is refused before sending; a resume goes through.
    kube.patch_spec(naming.MAYANODE_PLURAL, NS, NS, {"nodeActions": [
        {"id": "pause-1", "action": "PauseChain"}, {"id": "pause-2", "action": "PauseChain"},
        {"id": "resume-1", "action": "ResumeChain"}]})
    eventually(lambda: _record(kube, "resume-1").get("state") == "Succeeded", timeout=30,
               message=lambda: dump(status_of(kube).get("nodeActions")))
    assert txs(world, "pause-chain") == [["pause-chain"]] and txs(world, "resume-chain") == [["resume-chain"]]


def test_no_secret_in_any_argument_list_log_event_or_status(node, kube, world, operator, requests_seen):
    secrets = [node.password, node.identity.mnemonic]
    execs = requests_seen.execs()
    assert any("set-ip-address" in e for e in execs) and any("mimir" in e for e in execs), execs[:3]
    for secret in secrets:
        assert all(secret not in entry for entry in requests_seen.entries)
        assert secret not in operator.log_text()
        assert secret not in json.dumps(kube.events(NS))
        assert secret not in json.dumps(kube.mayanode(NS, NS))


def test_an_unknown_service_is_reported(world, kube, operator):
    require(world, "kubelet")
    seeded = world.seed_node("ipmimir-b")
    kube.apply(mayanode_manifest(seeded, externalIP={"service": {"name": "no-such-gateway"}}))
    c = eventually(lambda: (x := condition(kube.mayanode("ipmimir-b", "ipmimir-b"), "ExternalIPAssigned"))
                   and x["status"] == "False" and x, timeout=30)
    assert c["reason"] == "ServiceNotFound" and "no-such-gateway" in c["message"]
    with pytest.raises(k8s.exceptions.ApiException):
        kube.core.read_namespaced_service("no-such-gateway", "ipmimir-b")
