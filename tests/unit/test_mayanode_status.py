"""MayaNode status planner: (inputs, observation, previous) → status, patch, events."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from mayanode_operator.observe.snapshot import (
    ChainStatus, EndpointError, Jail, MayaNodeObservation, NetworkObservation, NodeAccount, NodeApiObservation,
    PodObservation, Vault, WorkloadObservation, version_from_image,
)
from mayanode_operator.plan.conditions import condition_status, find_condition
from mayanode_operator.plan.mayanode_status import StatusInputs, plan_mayanode_status

NOW = datetime(2026, 11, 21, 10, 0, 0, tzinfo=timezone.utc)
ADDRESS = "maya1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"
IMAGE = "registry.gitlab.com/mayachain/mayanode:mocknet-1.111.0"
INPUTS = StatusInputs(generation=3, node_address=ADDRESS, target_version="1.111.0", suspend=False,
                      rest_url="http://mayanode.node-a.svc:1317", height_refresh_seconds=60)


def workload(name, ready=1, desired=1, pods=None, exists=True):
    pods = pods if pods is not None else (PodObservation(f"{name}-1", "Running", ready > 0, 0),)
    return WorkloadObservation(name, exists, desired, ready, desired, IMAGE, tuple(pods))


ACCOUNT = NodeAccount(address=ADDRESS, status="Active", bond="100", slash_points=3, version="1.111.0",
                      ip_address="203.0.113.5", validator_cons_pub_key="mayacpub1abc")
HEALTHY = MayaNodeObservation(
    mayanode=workload("mayanode"),
    bifrost=workload("bifrost"),
    api=NodeApiObservation(
        network=NetworkObservation("1.110.0", "1.111.0", "1.111.0", (("HALTCHURNING", 0),), (), Vault("mayapub1v1", 500)),
        account=ACCOUNT,
        chain=ChainStatus(1000, False),
    ),
)
DOWN = EndpointError("version", "Unreachable", "http://x/mayachain/version: ClientConnectorError"), \
    EndpointError("status", "Unreachable", "http://x/status: ClientConnectorError")


def conds(plan):
    return {c["type"]: (c["status"], c["reason"]) for c in plan.status["conditions"]}


def test_healthy_node():
    plan = plan_mayanode_status(INPUTS, HEALTHY, {}, NOW)
    assert plan.status["phase"] == "Running"
    assert conds(plan) == {
        "Ready": ("True", "NodeReady"), "WorkloadsReady": ("True", "Ready"),
        "NodeAPIReachable": ("True", "Reachable"), "NodeRegistered": ("True", "NodeAccountFound"),
        "Synced": ("True", "InSync"), "NetworkHalted": ("False", "NoHalts"), "Jailed": ("False", "NotJailed"),
    }
    assert plan.status["node"]["status"] == "Active" and plan.status["node"]["slashPoints"] == 3
    assert plan.status["chain"]["height"] == 1000
    assert plan.status["network"]["nextVersion"] == "1.111.0" and plan.status["version"] == "1.111.0"
    assert plan.status["observedGeneration"] == 3
    assert plan.events == ()                       # first observation: nothing flipped


@pytest.mark.parametrize("change,condition,expected", [
    (dict(api=NodeApiObservation(errors=DOWN)), "NodeAPIReachable", ("False", "Unreachable")),
    (dict(api=NodeApiObservation(errors=DOWN)), "Ready", ("False", "NodeAPIUnreachable")),
    (dict(api=replace(HEALTHY.api, chain=ChainStatus(900, True))), "Synced", ("False", "CatchingUp")),
    (dict(api=replace(HEALTHY.api, chain=ChainStatus(900, True))), "Ready", ("False", "NotSynced")),
    (dict(mayanode=workload("mayanode", exists=False)), "WorkloadsReady", ("False", "DeploymentMissing")),
    (dict(bifrost=workload("bifrost", ready=0, pods=[PodObservation("b", "Running", False, 7, "CrashLoopBackOff")])),
     "WorkloadsReady", ("False", "NotReady")),
    (dict(mayanode=workload("mayanode", ready=0, desired=0, pods=[])), "WorkloadsReady", ("False", "ScaledDown")),
    (dict(api=replace(HEALTHY.api, account=None, errors=(EndpointError("node", "NotFound", "404"),))),
     "NodeRegistered", ("False", "NodeAccountNotFound")),
    (dict(api=replace(HEALTHY.api, network=replace(HEALTHY.api.network, mimir=(("HALTTRADING", 10),)))),
     "NetworkHalted", ("True", "HaltsInEffect")),
    (dict(api=replace(HEALTHY.api, errors=(EndpointError("mimir", "Timeout", "slow"),),
                      network=replace(HEALTHY.api.network, mimir=()))),
     "NetworkHalted", ("Unknown", "MimirUnavailable")),
    (dict(api=replace(HEALTHY.api, account=replace(ACCOUNT, jail=Jail(2000, "failed to perform keysign")))),
     "Jailed", ("True", "Jailed")),
    (dict(api=replace(HEALTHY.api, account=replace(ACCOUNT, jail=Jail(10, "old")))), "Jailed", ("False", "NotJailed")),
])
def test_condition_table(change, condition, expected):
    plan = plan_mayanode_status(INPUTS, replace(HEALTHY, **change), {}, NOW)
    assert conds(plan)[condition] == expected


def test_error_message_names_the_endpoint_and_hints_at_scale_down():
    observed = replace(HEALTHY, api=NodeApiObservation(errors=DOWN),
                       mayanode=workload("mayanode", ready=0, desired=0, pods=[]))
    message = find_condition(plan_mayanode_status(INPUTS, observed, {}, NOW).status["conditions"],
                             "NodeAPIReachable")["message"]
    assert "/mayachain/version" in message and "scaled down" in message


def test_no_node_address():
    plan = plan_mayanode_status(replace(INPUTS, node_address=None), replace(HEALTHY, api=replace(HEALTHY.api, account=None)), {}, NOW)
    assert conds(plan)["NodeRegistered"] == ("Unknown", "NodeAddressNotSet")
    assert plan.status["node"] is None
    assert condition_status(plan.status["conditions"], "Ready") == "True"


def test_suspended_phase():
    observed = replace(HEALTHY, mayanode=workload("mayanode", 0, 0, []), bifrost=workload("bifrost", 0, 0, []),
                       api=NodeApiObservation(errors=DOWN))
    plan = plan_mayanode_status(replace(INPUTS, suspend=True), observed, {}, NOW)
    assert plan.status["phase"] == "Suspended"
    assert conds(plan)["WorkloadsReady"] == ("False", "Suspended")


def test_second_identical_observation_writes_nothing():
    first = plan_mayanode_status(INPUTS, HEALTHY, {}, NOW)
    second = plan_mayanode_status(INPUTS, HEALTHY, first.status, NOW + timedelta(seconds=30))
    assert second.patch == {} and second.events == ()


def test_height_alone_is_rewritten_only_after_the_refresh_interval():
    first = plan_mayanode_status(INPUTS, HEALTHY, {}, NOW)
    moved = replace(HEALTHY, api=replace(HEALTHY.api, chain=ChainStatus(1006, False)))
    soon = plan_mayanode_status(INPUTS, moved, first.status, NOW + timedelta(seconds=30))
    assert soon.patch == {}
    later = plan_mayanode_status(INPUTS, moved, first.status, NOW + timedelta(seconds=61))
    assert later.patch["chain"]["height"] == 1006


def test_sync_flip_rewrites_height_at_once():
    first = plan_mayanode_status(INPUTS, HEALTHY, {}, NOW)
    behind = replace(HEALTHY, api=replace(HEALTHY.api, chain=ChainStatus(1001, True)))
    plan = plan_mayanode_status(INPUTS, behind, first.status, NOW + timedelta(seconds=5))
    assert plan.patch["chain"]["catchingUp"] is True
    assert ("Warning", "SyncLost") in [(e.type, e.reason) for e in plan.events]


def test_events_on_changes():
    first = plan_mayanode_status(INPUTS, HEALTHY, {}, NOW)
    changed = replace(HEALTHY, api=replace(
        HEALTHY.api,
        account=replace(ACCOUNT, status="Standby"),
        network=replace(HEALTHY.api.network, vault=Vault("mayapub1v2", 600), mimir=(("HALTBTCCHAIN", 590),)),
    ))
    second = plan_mayanode_status(INPUTS, changed, first.status, NOW + timedelta(seconds=30))
    reasons = [(e.type, e.reason) for e in second.events]
    assert ("Normal", "NodeStatusChanged") in reasons
    assert ("Normal", "ChurnDetected") in reasons
    assert ("Warning", "HaltStarted") in reasons
    third = plan_mayanode_status(INPUTS, HEALTHY, second.status, NOW + timedelta(seconds=60))
    assert ("Normal", "HaltEnded") in [(e.type, e.reason) for e in third.events]


def test_api_down_and_back_emits_warning_then_recovery():
    first = plan_mayanode_status(INPUTS, HEALTHY, {}, NOW)
    down = plan_mayanode_status(INPUTS, replace(HEALTHY, api=NodeApiObservation(errors=DOWN)), first.status, NOW)
    assert {"NodeAPIUnreachable", "NodeNotReady"} <= {e.reason for e in down.events}
    # what was known about the network is kept while the API is down
    assert down.status["network"]["nextVersion"] == "1.111.0"
    back = plan_mayanode_status(INPUTS, HEALTHY, down.status, NOW + timedelta(seconds=30))
    assert {"NodeAPIReachable", "NodeReady"} <= {e.reason for e in back.events}


@pytest.mark.parametrize("image,version", [
    ("registry.gitlab.com/mayachain/mayanode:mainnet-1.111.0", "1.111.0"),
    ("registry.gitlab.com/mayachain/mayanode:1.2.3", "1.2.3"),
    ("localhost:5000/mayanode:stagenet-1.2.3", "1.2.3"),
    ("localhost:5000/mayanode", None),
    ("mayanode:latest", None),
    (None, None),
])
def test_version_from_image(image, version):
    assert version_from_image(image) == version


def test_ip_column_shows_the_registered_address_when_ip_is_not_managed():
    plan = plan_mayanode_status(INPUTS, HEALTHY, {}, NOW)
    assert plan.status["externalIP"] == {"address": "203.0.113.5"}
    managed = plan_mayanode_status(replace(INPUTS, manages_external_ip=True), HEALTHY, {}, NOW)
    assert "externalIP" not in managed.status


from mayanode_operator.reconcile.facets import active_restore_for  # noqa: E402


def restore(name, node, phase=None, created="2026-11-21T10:00:00Z", deleting=False):
    meta = {"name": name, "creationTimestamp": created, **({"deletionTimestamp": created} if deleting else {})}
    return {"metadata": meta, "spec": {"nodeRef": {"name": node}}, "status": {"phase": phase} if phase else {}}


@pytest.mark.parametrize("restores,expected", [
    ([], None),
    ([restore("r1", "other", "Writing")], None),
    ([restore("r1", "node-a", "Completed"), restore("r2", "node-a", "Failed")], None),
    ([restore("r1", "node-a", "ScalingDown")], "r1"),
    ([restore("r1", "node-a")], "r1"),                                    # just created: it will act
    ([restore("r2", "node-a", "Writing", "2026-11-21T11:00:00Z"), restore("r1", "node-a", "Pending")], "r1"),
    ([restore("r1", "node-a", deleting=True)], None),                     # deleted before it started
])
def test_active_restore_locks_the_workloads(restores, expected):
    assert active_restore_for("node-a", restores) == expected


# ---- the network's height (spec.api.networkRpc) -----------------------------------------------------------
from mayanode_operator.metrics import node_samples  # noqa: E402
from mayanode_operator.plan.mayanode_status import network_height  # noqa: E402

CHAIN_ID = "mayachain-mainnet-v1"
OWN = ChainStatus(1000, False, chain_id=CHAIN_ID)


def peer(height, catching_up=False, chain_id=CHAIN_ID):
    return ChainStatus(height, catching_up, chain_id=chain_id)


@pytest.mark.parametrize("own,sources,expected", [
    (OWN, (), None),                                                        # none configured
    (OWN, (peer(1004),), 1004),
    (OWN, (peer(1004), peer(1006), peer(1005)), 1006),                      # the highest in-sync source
    (OWN, (peer(1004), peer(2000, catching_up=True)), 1004),               # a syncing source knows no head
    (OWN, (peer(2000, catching_up=True),), None),
    (OWN, (peer(1004), peer(9_000_000, chain_id="mayachain-stagenet-v2")), 1004),   # another network
    (OWN, (peer(1004, chain_id=""),), None),                               # cannot tell its chain
    (OWN, (peer(990),), 990),                                               # a source behind the node (lag 0)
    (ChainStatus(1000, False), (peer(1004),), 1004),                        # the node's chain id unknown
    (None, (peer(1004),), 1004),                                            # the node does not answer
])
def test_network_height_table(own, sources, expected):
    assert network_height(own, sources) == expected


def with_network(height=1000, *sources, catching_up=False):
    return replace(HEALTHY, api=replace(HEALTHY.api, chain=ChainStatus(height, catching_up, chain_id=CHAIN_ID),
                                        network_rpc=tuple(sources)))


def lag_samples(status):
    return {s.metric: s.value for s in node_samples(status)
            if s.metric in ("mayanode_node_height", "mayanode_node_network_height", "mayanode_node_height_lag_blocks")}


def test_network_height_is_in_status_and_feeds_the_lag_metric():
    plan = plan_mayanode_status(INPUTS, with_network(1000, peer(1007)), {}, NOW)
    assert plan.status["chain"] == {"height": 1000, "catchingUp": False, "networkHeight": 1007,
                                    "heightObservedAt": "2026-11-21T10:00:00Z"}
    assert lag_samples(plan.status) == {"mayanode_node_height": 1000.0, "mayanode_node_network_height": 1007.0,
                                        "mayanode_node_height_lag_blocks": 7.0}
    without = plan_mayanode_status(INPUTS, with_network(1000), {}, NOW)
    assert "networkHeight" not in without.status["chain"]
    assert lag_samples(without.status) == {"mayanode_node_height": 1000.0}      # no invented lag


@pytest.mark.parametrize("later,seconds,expected_chain", [
    # the network moves alone: nothing written before the refresh interval …
    (with_network(1000, peer(1012)), 30, None),
    # … the node and the network move: still nothing before the interval
    (with_network(1005, peer(1012)), 30, None),
    # the source stops answering between two refreshes: what is on record stays
    (with_network(1005), 30, None),
    # at the refresh both heights are rewritten together, from one observation
    (with_network(1005, peer(1012)), 61,
     {"height": 1005, "networkHeight": 1012, "heightObservedAt": "2026-11-21T10:01:01Z"}),
    # at the refresh a source that does not answer removes the network height (no stale lag)
    (with_network(1005), 61, {"height": 1005, "networkHeight": None, "heightObservedAt": "2026-11-21T10:01:01Z"}),
    # a sync flip rewrites at once, the network height with it
    (with_network(990, peer(1012), catching_up=True), 5,
     {"height": 990, "catchingUp": True, "networkHeight": 1012, "heightObservedAt": "2026-11-21T10:00:05Z"}),
])
def test_network_height_is_rewritten_only_with_the_height(later, seconds, expected_chain):
    first = plan_mayanode_status(INPUTS, with_network(1000, peer(1003)), {}, NOW)
    plan = plan_mayanode_status(INPUTS, later, first.status, NOW + timedelta(seconds=seconds))
    assert plan.patch.get("chain") == expected_chain


def test_a_spec_change_refreshes_the_heights_in_the_write_it_makes_anyway():
    first = plan_mayanode_status(INPUTS, with_network(1000), {}, NOW)          # networkRpc not configured yet
    configured = plan_mayanode_status(replace(INPUTS, generation=4), with_network(1002, peer(1004)), first.status,
                                      NOW + timedelta(seconds=10))
    assert configured.patch["observedGeneration"] == 4
    assert configured.patch["chain"] == {"height": 1002, "networkHeight": 1004,
                                         "heightObservedAt": "2026-11-21T10:00:10Z"}
    idle = plan_mayanode_status(replace(INPUTS, generation=4), with_network(1003, peer(1006)), configured.status,
                                NOW + timedelta(seconds=20))
    assert idle.patch == {}                                                      # and idle again afterwards


def test_network_height_is_kept_while_the_node_api_is_down():
    first = plan_mayanode_status(INPUTS, with_network(1000, peer(1003)), {}, NOW)
    down = replace(HEALTHY, api=NodeApiObservation(errors=DOWN, network_rpc=(peer(1100),)))
    plan = plan_mayanode_status(INPUTS, down, first.status, NOW + timedelta(seconds=90))
    assert plan.status["chain"] == first.status["chain"] and "chain" not in plan.patch


def synced(plan):
    return next(c for c in plan.status["conditions"] if c["type"] == "Synced")


REFUSED = EndpointError("networkRpc", "Unreachable", "http://10.0.0.9:27147/status: connection refused")


@pytest.mark.parametrize("sources,errors,expected", [
    ((peer(1004),), (), "the node is in sync with the chain"),                                   # all usable
    ((), (), "the node is in sync with the chain"),                                              # none configured
    ((peer(1004),), (REFUSED,), "the node is in sync with the chain; spec.api.networkRpc: 1 of 2 endpoints "
                                "unusable, the network's height is taken from the rest (http://10.0.0.9:27147/status: "
                                "connection refused)"),
    ((), (REFUSED,), "the node is in sync with the chain; spec.api.networkRpc: 1 of 1 endpoints unusable, the "
                     "network's height is unknown (http://10.0.0.9:27147/status: connection refused)"),
    ((peer(9_000_000, chain_id="mayachain-stagenet-v2"),), (), "the node is in sync with the chain; "
     "spec.api.networkRpc: 1 of 1 endpoints unusable, the network's height is unknown (an endpoint is on chain "
     "mayachain-stagenet-v2, not mayachain-mainnet-v1)"),
    ((peer(1004), peer(2000, catching_up=True)), (), "the node is in sync with the chain; spec.api.networkRpc: 1 of 2 "
     "endpoints unusable, the network's height is taken from the rest (an endpoint is catching up)"),
])
def test_unusable_network_rpc_endpoints_are_said_in_synced(sources, errors, expected):
    observed = replace(with_network(1000, *sources), api=replace(with_network(1000, *sources).api, errors=errors))
    condition = synced(plan_mayanode_status(INPUTS, observed, {}, NOW))
    assert condition["status"] == "True" and condition["message"] == expected


def test_the_network_rpc_note_does_not_change_with_the_heights():
    first = plan_mayanode_status(INPUTS, replace(with_network(1000, peer(1004)), api=replace(
        with_network(1000, peer(1004)).api, errors=(REFUSED,))), {}, NOW)
    later = replace(with_network(1001, peer(1005)), api=replace(with_network(1001, peer(1005)).api, errors=(REFUSED,)))
    assert plan_mayanode_status(INPUTS, later, first.status, NOW + timedelta(seconds=20)).patch == {}
