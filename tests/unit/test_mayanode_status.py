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
