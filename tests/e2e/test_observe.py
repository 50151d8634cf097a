"""Issue: a MayaNode applied to a node-launcher namespace is observed and reported in status."""

from __future__ import annotations

import pytest

from .conftest import condition, dump, eventually, mayanode_manifest

NS = "observe-a"


@pytest.fixture(scope="module")
def node(world, operator, kube):
    seeded = world.seed_node(NS, ip_address="203.0.113.7")
    kube.apply(mayanode_manifest(seeded))
    return seeded


def test_status_shows_node_chain_and_network(node, kube, operator):
    def observed():
        body = kube.mayanode(NS, NS)
        assert condition(body, "Ready").get("status") == "True", dump(body.get("status"))
        return body

    body = eventually(observed, timeout=30, message=lambda: operator.log_text()[-3000:])
    status = body["status"]
    assert status["phase"] == "Running"
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert status["node"]["address"] == node.node_address
    assert status["node"]["status"] == "Active"
    assert status["node"]["validatorConsPubKey"] == node.facts.consensus_pubkey_bech32
    assert status["chain"]["height"] > 0 and status["chain"]["catchingUp"] is False
    assert status["network"]["nextVersion"] == "1.111.0"
    assert status["version"] == "1.111.0"
    assert status["workloads"]["mayanode"]["readyReplicas"] == 1
    assert status["externalIP"]["address"] == "203.0.113.7"
    for type_ in ("Synced", "NodeAPIReachable", "NodeRegistered", "WorkloadsReady"):
        assert condition(body, type_)["status"] == "True", type_
    assert condition(body, "NetworkHalted")["status"] == "False"


def test_kubectl_get_shows_the_printer_columns(node, kube):
    def columns():
        out = kube.kubectl("get", "mn", "-n", NS).stdout
        header, row = out.splitlines()[:2]
        assert header.split() == ["NAME", "VERSION", "TARGET", "NODE-STATUS", "HEIGHT", "SYNCED", "IP", "READY", "AGE"]
        return dict(zip(header.split(), row.split()))

    row = eventually(columns, timeout=20)
    assert row["VERSION"] == "1.111.0" and row["TARGET"] == "1.111.0" and row["NODE-STATUS"] == "Active"
    assert int(row["HEIGHT"]) > 0 and row["SYNCED"] == "True" and row["IP"] == "203.0.113.7" and row["READY"] == "True"


def test_a_halt_on_the_network_becomes_a_condition_and_an_event(node, kube, world):
    world.mocknet.set_mimir("HALTBTCCHAIN", 1)
    try:
        def halted():
            cond = condition(kube.mayanode(NS, NS), "NetworkHalted")
            assert cond.get("status") == "True" and "BTC" in cond["message"], cond
            return cond
        eventually(halted, timeout=20)
        # events follow the status patch that flips the condition
        eventually(lambda: any(e["reason"] == "HaltStarted" for e in kube.events(NS, NS)), timeout=10)
    finally:
        world.mocknet.set_mimir("HALTBTCCHAIN", 0)
    eventually(lambda: condition(kube.mayanode(NS, NS), "NetworkHalted").get("status") == "False", timeout=20)
    eventually(lambda: any(e["reason"] == "HaltEnded" for e in kube.events(NS, NS)), timeout=10)


def test_node_api_down_is_a_condition_and_recovery_clears_it(node, kube, world, operator):
    world.mocknet.fail(NS, "down")
    try:
        def down():
            body = kube.mayanode(NS, NS)
            cond = condition(body, "NodeAPIReachable")
            assert cond.get("status") == "False", cond
            assert condition(body, "Ready")["reason"] == "NodeAPIUnreachable"
            return cond
        cond = eventually(down, timeout=20)
        assert "/mayachain/version" in cond["message"]
    finally:
        world.mocknet.fail(NS, None)
    eventually(lambda: condition(kube.mayanode(NS, NS), "Ready").get("status") == "True", timeout=20)
    eventually(lambda: {"NodeAPIUnreachable", "NodeAPIReachable"} <= {e["reason"] for e in kube.events(NS, NS)},
               timeout=10)
    assert operator.running


def test_garbage_from_the_node_api_is_a_clear_condition(node, kube, world, operator):
    world.mocknet.fail(NS, "garbage")
    try:
        cond = eventually(lambda: (c := condition(kube.mayanode(NS, NS), "NodeAPIReachable"))
                          and c["status"] == "False" and c, timeout=20)
        assert cond["reason"] == "InvalidResponse"
    finally:
        world.mocknet.fail(NS, None)
    eventually(lambda: condition(kube.mayanode(NS, NS), "Ready").get("status") == "True", timeout=20)
    assert operator.running


def test_wrong_node_address_is_reported(world, kube, operator):
    seeded = world.seed_node("observe-b")
    other = world.call(_address_of_unknown_node())
    kube.apply(mayanode_manifest(seeded, nodeAddress=other))
    cond = eventually(lambda: (c := condition(kube.mayanode("observe-b", "observe-b"), "NodeRegistered"))
                      and c["status"] == "False" and c, timeout=30)
    assert cond["reason"] == "NodeAccountNotFound" and other in cond["message"]


async def _address_of_unknown_node() -> str:
    from mayanode_operator.sandbox.identity import NodeIdentity

    return NodeIdentity.from_seed("nobody-runs-this", network="mocknet").node_address
