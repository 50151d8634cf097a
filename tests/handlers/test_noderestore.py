"""NodeRestore reconcile, step by step, against the sandbox (real API semantics, exec into PVC trees, mocknet);
the replicas facet with a fake context. Failure paths the end-to-end scenarios do not reach."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from mayanode_operator.api import naming
from mayanode_operator.api.models import MayaNodeSpec
from mayanode_operator.observe.snapshot import MayaNodeObservation, NodeApiObservation, WorkloadObservation
from mayanode_operator.reconcile import facet_replicas
from mayanode_operator.reconcile.facets import NodeContext, failed_restore_holding
from mayanode_operator.reconcile.noderestore import reconcile_noderestore

from .backup_world import condition

NS, PEER = "hr-a", "hr-peer"


@pytest.fixture(scope="module")
def node(world):
    peer = world.seed(PEER)
    seeded = world.seed(NS)
    world.mayanode(seeded, backup={"afterChurn": False, "location": world.location()})
    world.nodebackup(NS, "full", NS)
    assert world.drive(NS, "full")["status"]["phase"] == "Completed"
    return seeded, peer


def restore(world, name: str, peer, **spec: Any) -> None:
    guard = {"silentBlocks": 3, "rpc": [peer.rpc_url], **spec.pop("guard", {})}
    world.create(naming.NODERESTORE_PLURAL, {
        "apiVersion": naming.API_VERSION, "kind": "NodeRestore", "metadata": {"name": name, "namespace": NS},
        "spec": {"backupRef": {"name": spec.pop("backup", "full")}, "nodeRef": {"name": NS}, "doubleSignGuard": guard,
                 **spec}})


def drive(world, name: str, *, until: str | None = None, max_passes: int = 200) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(max_passes):
        delay = world.call(reconcile_noderestore(world.runtime, NS, name))
        body = world.get(naming.NODERESTORE_PLURAL, NS, name) or {}
        status = body.get("status") or {}
        if delay is None or status.get("phase") in ("Completed", "Failed") or (until and status.get("step") == until):
            return body
        world.call(asyncio.sleep(min(delay, 0.3)))
    return body


def replicas(world, deployment: str) -> int:
    dep = world.call(world.runtime.kube.get_deployment(NS, deployment))
    return int(dep["spec"]["replicas"])


def test_missing_backup_fails_before_touching_anything(world, node):
    _, peer = node
    restore(world, "no-backup", peer, backup="nope")
    status = drive(world, "no-backup")["status"]
    assert status["phase"] == "Failed" and status["failedStep"] == "VerifyBackup" and not status["nodeLeftDown"]
    assert "BackupNotFound" in status["message"] and replicas(world, "mayanode") == 1
    assert condition(world.get(naming.NODERESTORE_PLURAL, NS, "no-backup"), "Verified")["status"] == "False"


def test_no_chain_source_is_refused_before_touching_anything(world, node):
    restore(world, "blind", node[1], guard={"rpc": ["http://127.0.0.1:9/rpc"]})
    status = drive(world, "blind")["status"]
    assert status["phase"] == "Failed" and "NoChainSource" in status["message"], status
    assert replicas(world, "mayanode") == 1


def test_guard_timeout_leaves_the_node_down_loudly_then_an_acknowledgement_resumes(world, node):
    seeded, peer = node
    # The key keeps "signing" on chain: a virtual twin of the node signs every block.
    account = world.sandbox.mocknet.node(seeded.node_address)
    world.call(asyncio.to_thread(lambda: setattr(account, "virtual", True)))
    try:
        restore(world, "stuck", peer, timeouts={"guardSeconds": 30})
        drive(world, "stuck", until="WaitKeySilent")
        world.runtime.now = lambda: datetime.now(timezone.utc) + timedelta(seconds=40)
        try:
            status = drive(world, "stuck")["status"]
        finally:
            world.runtime.now = world._now
    finally:
        world.call(asyncio.to_thread(lambda: setattr(account, "virtual", False)))
    assert status["phase"] == "Failed" and status["failedStep"] == "WaitKeySilent" and status["nodeLeftDown"]
    assert "GuardTimeout" in status["message"] and "oldNodeDestroyed" in status["nextAction"]
    assert replicas(world, "mayanode") == 0 and replicas(world, "bifrost") == 0
    events = world.events(NS, "stuck")
    assert any(e["type"] == "Warning" and "LEFT SCALED DOWN" in e["message"] for e in events)
    body = world.get(naming.NODERESTORE_PLURAL, NS, "stuck")
    assert condition(body, "ScaledDown")["reason"] == "NodeHeldDown"

    # The MayaNode says so and does not scale back up.
    from mayanode_operator.reconcile.mayanode import reconcile_mayanode
    world.call(reconcile_mayanode(world.runtime, NS, NS))
    mn = world.get(naming.MAYANODE_PLURAL, NS, NS)
    assert condition(mn, "Suspended")["reason"] == "RestoreFailed" and replicas(world, "mayanode") == 0

    world.patch_spec(naming.NODERESTORE_PLURAL, NS, "stuck", {"doubleSignGuard": {
        "silentBlocks": 3, "rpc": [peer.rpc_url],
        "oldNodeDestroyed": {"acknowledged": True, "reason": "the twin is gone", "acknowledgedBy": "ops"}}})
    status = drive(world, "stuck")["status"]
    assert status["phase"] == "Completed", status
    assert status["guard"]["method"] == "Acknowledged" and status["guard"]["acknowledgedBy"] == "ops"
    assert any(e["reason"] == "OldNodeAcknowledgedDestroyed" for e in world.events(NS, "stuck"))
    assert replicas(world, "mayanode") == 1


def test_crash_between_steps_resumes_without_repeating_once_only_steps(world, node):
    _, peer = node
    restore(world, "resume", peer)
    body = drive(world, "resume", until="WriteFiles")
    scaled_down = [s for s in body["status"]["steps"] if s["name"] == "ScaleDown"]
    assert scaled_down and scaled_down[0].get("completedAt")
    # A "new operator" (a fresh pass) continues from the recorded step.
    status = drive(world, "resume")["status"]
    assert status["phase"] == "Completed"
    assert [s for s in status["steps"] if s["name"] == "ScaleDown"] == scaled_down
    assert world.pods(NS, f"{naming.GROUP}/restore=resume") == []


# --------------------------------------------------------------------------------------------------
# The replicas facet with a fake context
# --------------------------------------------------------------------------------------------------
@dataclass
class FakeKube:
    scaled: list[tuple[str, str, int]] = field(default_factory=list)


class FakeWorkloads:
    def __init__(self, kube: Any) -> None:
        self.kube = kube

    async def scale(self, namespace: str, deployment: str, replicas: int) -> None:
        self.kube.scaled.append((namespace, deployment, replicas))


def context(*, suspend: bool, desired: int, previous: dict | None = None, restores=(), active=None) -> NodeContext:
    kube = FakeKube()
    runtime = type("R", (), {"kube": kube, "config": type("C", (), {"lock_namespace": "default"})()})()
    spec = MayaNodeSpec.model_validate({"network": "mocknet", "suspend": suspend})
    workload = WorkloadObservation(name="x", exists=True, desired_replicas=desired, ready_replicas=desired)
    return NodeContext(runtime=runtime, body={"metadata": {"generation": 1}}, spec=spec, namespace="ns", name="n",
                       now=datetime(2024, 6, 1, tzinfo=timezone.utc),
                       observed=MayaNodeObservation(mayanode=workload, bifrost=workload, api=NodeApiObservation()),
                       previous_status={"replicas": previous or {}}, status={}, active_restore=active,
                       failed_restore=failed_restore_holding("n", restores))


@pytest.fixture
def fake_workloads(monkeypatch):
    monkeypatch.setattr(facet_replicas, "Workloads", FakeWorkloads)


async def test_facet_suspends_and_resumes(fake_workloads):
    facet = facet_replicas.ReplicasFacet()
    ctx = context(suspend=True, desired=1)
    outcome = await facet.reconcile(ctx)
    assert ctx.runtime.kube.scaled == [("ns", "mayanode", 0), ("ns", "bifrost", 0)]
    assert outcome.status["replicas"]["suspended"] and outcome.conditions[0].reason == "Suspended"
    ctx = context(suspend=False, desired=0, previous=outcome.status["replicas"])
    outcome = await facet.reconcile(ctx)
    assert ctx.runtime.kube.scaled == [("ns", "mayanode", 1), ("ns", "bifrost", 1)]


async def test_facet_changes_nothing_while_a_restore_runs_or_after_it_failed(fake_workloads):
    facet = facet_replicas.ReplicasFacet()
    ctx = context(suspend=True, desired=1, active="r1")
    outcome = await facet.reconcile(ctx)
    assert ctx.runtime.kube.scaled == [] and outcome.conditions[0].reason == "RestoreInProgress"
    failed = {"metadata": {"name": "r2", "creationTimestamp": "2024"}, "spec": {"nodeRef": {"name": "n"}},
              "status": {"phase": "Failed", "nodeLeftDown": True, "nextAction": "scale by hand"}}
    ctx = context(suspend=False, desired=0, previous={"suspended": True, "reason": "Suspended"}, restores=[failed])
    outcome = await facet.reconcile(ctx)
    assert ctx.runtime.kube.scaled == [] and outcome.conditions[0].reason == "RestoreFailed"
    assert "scale by hand" in outcome.status["replicas"]["message"]


def test_announce_ip_is_sent_once_after_the_node_is_back(world, node):
    _, peer = node
    world.patch_spec(naming.MAYANODE_PLURAL, NS, NS, {"externalIP": {"source": "Static", "address": "203.0.113.50"}})
    try:
        restore(world, "announce", peer, announceIP=True)
        status = drive(world, "announce")["status"]
    finally:
        world.patch_spec(naming.MAYANODE_PLURAL, NS, NS, {"externalIP": None})
    assert status["phase"] == "Completed", status
    assert status["steps"][-1]["name"] == "AnnounceIP" and "203.0.113.50" in status["steps"][-1]["message"]
    sent = [t for t in world.sandbox.mocknet.transactions if t.namespace == NS and t.argv[:1] == ["set-ip-address"]]
    assert len(sent) == 1 and sent[0].argv[1] == "203.0.113.50"
    # Resumed after a crash with the step started: not sent again.
    assert drive(world, "announce")["status"]["phase"] == "Completed"
    assert len([t for t in world.sandbox.mocknet.transactions if t.namespace == NS
                and t.argv[:1] == ["set-ip-address"]]) == 1


def test_halts_come_from_a_node_that_sees_the_network_while_the_target_is_down(world, node):
    """The node being restored is often down: a signing halt seen by another MayaNode of the network holds the
    restore in Pending (nothing touched), and it goes ahead when the halt ends."""
    seeded, peer = node

    def conditions(reachable: bool) -> list[dict[str, Any]]:
        return [{"type": "NodeAPIReachable", "status": "True" if reachable else "False", "reason": "Test",
                 "message": "", "lastTransitionTime": "2024-06-01T00:00:00Z"}]

    halt = {"kind": "Signing", "key": "HALTSIGNINGBTC", "chain": "BTC"}
    kube = world.runtime.kube
    world.mayanode(peer)
    world.call(kube.patch_custom_status(naming.MAYANODE_PLURAL, PEER, PEER,
                                        {"conditions": conditions(True), "network": {"halts": [halt]}}))
    world.call(kube.patch_custom_status(naming.MAYANODE_PLURAL, NS, NS,
                                        {"conditions": conditions(False), "network": {"halts": []}}))
    try:
        restore(world, "halted", peer)
        for _ in range(3):
            world.call(reconcile_noderestore(world.runtime, NS, "halted"))
        status = world.get(naming.NODERESTORE_PLURAL, NS, "halted")["status"]
        assert status["phase"] == "Pending" and not status.get("steps"), status
        assert "HALTSIGNINGBTC" in status["message"] and f"MayaNode {PEER}/{PEER}" in status["message"], status
        assert any(e["reason"] == "WaitingForHalt" for e in world.events(NS, "halted"))
        assert replicas(world, "mayanode") == 1
        world.call(kube.patch_custom_status(naming.MAYANODE_PLURAL, PEER, PEER, {"network": {"halts": []}}))
        body = drive(world, "halted", until="AcquireKeyLock")
        assert body["status"]["phase"] != "Pending" and plan_step_done(body["status"], "VerifyBackup"), body["status"]
    finally:
        world.call(asyncio.to_thread(kube.custom.delete_namespaced_custom_object, naming.GROUP, naming.VERSION, NS,
                                     naming.NODERESTORE_PLURAL, "halted"))
        world.call(asyncio.to_thread(kube.custom.delete_namespaced_custom_object, naming.GROUP, naming.VERSION, PEER,
                                     naming.MAYANODE_PLURAL, PEER))


def plan_step_done(status: dict[str, Any], name: str) -> bool:
    return any(s["name"] == name and s.get("completedAt") for s in status.get("steps") or ())


def test_a_hand_off_whose_old_deployments_are_gone_proves_the_key_silent_on_chain(world, node):
    """Without its Deployments, pods the old node left running could not be found: the stop is not taken as proven
    and the chain must show the key silent, as for a migration from outside the cluster."""
    seeded, peer = node
    world.create(naming.MAYANODE_PLURAL, {
        "apiVersion": naming.API_VERSION, "kind": "MayaNode", "metadata": {"name": "ghost", "namespace": PEER},
        "spec": {"network": seeded.network, "nodeAddress": seeded.node_address,
                 "mayanode": {"deployment": "ghost-mayanode"}, "bifrost": {"deployment": "ghost-bifrost"},
                 "api": {"rest": peer.rest_url, "rpc": peer.rpc_url, "timeoutSeconds": 2}}})
    try:
        restore(world, "ghost-handoff", peer, guard={"oldNode": {"name": "ghost", "namespace": PEER}})
        status = drive(world, "ghost-handoff")["status"]
        assert status["phase"] == "Completed", status
        stop_old = next(s for s in status["steps"] if s["name"] == "StopOldNode")
        assert "do not exist" in stop_old["message"] and "silent on chain" in stop_old["message"], stop_old
        assert plan_step_done(status, "WaitKeySilent")
        assert status["guard"]["method"] == "HandOff"
        assert status["guard"]["silentToHeight"] - status["guard"]["silentFromHeight"] >= 3
        assert "OldNodeVolume" not in {i["source"] for i in status["signStateInputs"]}
        assert world.get(naming.MAYANODE_PLURAL, PEER, "ghost")["spec"]["suspend"] is True
        assert replicas(world, "mayanode") == 1
    finally:
        world.call(asyncio.to_thread(world.runtime.kube.custom.delete_namespaced_custom_object, naming.GROUP,
                                     naming.VERSION, PEER, naming.MAYANODE_PLURAL, "ghost"))


def test_a_hand_off_from_a_missing_or_unwatched_old_node_is_refused_before_touching_anything(world, node):
    _, peer = node
    restore(world, "no-old", peer, guard={"oldNode": {"name": "nobody", "namespace": PEER}})
    status = drive(world, "no-old")["status"]
    assert status["phase"] == "Failed" and status["failedStep"] == "VerifyBackup" and not status["nodeLeftDown"]
    assert "OldNodeNotFound" in status["message"] and replicas(world, "mayanode") == 1

    restore(world, "self-old", peer, guard={"oldNode": {"name": NS}})
    status = drive(world, "self-old")["status"]
    assert status["failedStep"] == "VerifyBackup" and "OldNodeIsTarget" in status["message"], status

    world.runtime.config.namespaces = [NS]
    try:
        restore(world, "unwatched-old", peer, guard={"oldNode": {"name": PEER, "namespace": PEER}})
        status = drive(world, "unwatched-old")["status"]
    finally:
        world.runtime.config.namespaces = []
    assert status["failedStep"] == "VerifyBackup" and "OldNodeNotWatched" in status["message"], status
    assert replicas(world, "mayanode") == 1


def test_a_refused_request_fails_the_restore_and_says_what_was_refused(world, node):
    """RBAC that refuses the operator something is not a transient error: the restore fails with the API server's
    message (after the scale-down the node is left down, loudly) instead of retrying forever."""
    from aiohttp import web

    from mayanode_operator.sandbox.apiserver.handlers import request_info

    _, peer = node

    async def forbid_helper_pods(request, call_next):
        info = request_info(request)
        if info.resource == "pods" and info.verb == "create" and info.namespace == NS:
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
                                      "reason": "Forbidden", "message": 'pods is forbidden: User '
                                      '"system:serviceaccount:ops:mayanode-operator" cannot create resource '
                                      f'"pods" in API group "" in the namespace "{NS}"'}, status=403)
        return await call_next(request)

    world.sandbox.api.add_request_hook(forbid_helper_pods)
    try:
        restore(world, "forbidden", peer)
        status = drive(world, "forbidden")["status"]
    finally:
        world.sandbox.api.remove_request_hook(forbid_helper_pods)
    assert status["phase"] == "Failed" and status["failedStep"] == "WriteFiles", status
    assert status["message"].startswith("Forbidden: 403 Forbidden: pods is forbidden"), status["message"]
    assert "cannot create resource" in status["message"] and "HTTP response headers" not in status["message"]
    assert status["nodeLeftDown"] and replicas(world, "mayanode") == 0
    # Granting the permission and changing the spec resumes it at the failed step.
    world.patch_spec(naming.NODERESTORE_PLURAL, NS, "forbidden", {"timeouts": {"readySeconds": 601}})
    status = drive(world, "forbidden")["status"]
    assert status["phase"] == "Completed", status
    assert replicas(world, "mayanode") == 1


# --------------------------------------------------------------------------------------------------
# The hand-off's downtime: what happens between the old node's last pod and the new node's scale-up
# --------------------------------------------------------------------------------------------------
@dataclass
class Seen:
    """One request the operator made (its user agent), as the API server saw it."""

    verb: str
    resource: str
    namespace: str
    name: str
    started: float
    ended: float
    node_pods: int | None = None         # a LIST of a namespace's pods: how many of a node's Deployments it returned

    def is_(self, verb: str, resource: str, namespace: str | None = None, name_prefix: str = "") -> bool:
        return (self.verb, self.resource) == (verb, resource) and namespace in (None, self.namespace) \
            and self.name.startswith(name_prefix)


def handoff_world(world, peer, suffix: str):
    """An old node running with the backed-up key and an empty node to take it over, in namespaces of their own."""
    old_ns, new_ns = f"hr-ho{suffix}-a", f"hr-ho{suffix}-b"
    old = world.seed(old_ns)
    world.mayanode(old, backup={"afterChurn": False, "location": world.location()})
    world.nodebackup(old_ns, "full", old_ns, restoreNamespaces=[new_ns])
    assert world.drive(old_ns, "full")["status"]["phase"] == "Completed"
    world.seed(new_ns, identity=old.identity, with_keys=False, register=False, replicas=0)
    world.create(naming.MAYANODE_PLURAL, {
        "apiVersion": naming.API_VERSION, "kind": "MayaNode", "metadata": {"name": "new", "namespace": new_ns},
        "spec": {"network": old.network, "nodeAddress": old.node_address,
                 "api": {"rest": f"{world.sandbox.mocknet.url}/ns/{new_ns}",
                         "rpc": f"{world.sandbox.mocknet.url}/ns/{new_ns}/rpc", "timeoutSeconds": 2}}})
    world.create(naming.NODERESTORE_PLURAL, {
        "apiVersion": naming.API_VERSION, "kind": "NodeRestore", "metadata": {"name": "move", "namespace": new_ns},
        "spec": {"backupRef": {"name": "full", "namespace": old_ns}, "nodeRef": {"name": "new"},
                 "doubleSignGuard": {"silentBlocks": 3, "rpc": [peer.rpc_url],
                                     "oldNode": {"name": old_ns, "namespace": old_ns}}}})
    return old, old_ns, new_ns


def drive_in(world, namespace: str, name: str, max_passes: int = 200) -> dict[str, Any]:
    status: dict[str, Any] = {}
    for _ in range(max_passes):
        delay = world.call(reconcile_noderestore(world.runtime, namespace, name))
        status = (world.get(naming.NODERESTORE_PLURAL, namespace, name) or {}).get("status") or {}
        if delay is None or status.get("phase") in ("Completed", "Failed"):
            return status
        world.call(asyncio.sleep(min(delay, 0.3)))
    return status


def record_requests(world, seen: list[Seen]):
    import json
    import time

    from mayanode_operator.sandbox.apiserver.handlers import request_info

    async def hook(request, call_next):
        info = request_info(request)
        started = time.monotonic()
        response = await call_next(request)
        # Execs (their websocket carries no user agent) go into this restore's helpers only.
        ours = request.headers.get("User-Agent", "").startswith("mayanode-operator/") or \
            (info.verb, info.subresource) == ("connect", "exec") and info.name.startswith("restore-")
        if not ours or info.verb == "watch":
            return response
        node_pods = None
        if (info.verb, info.resource) == ("list", "pods") and not request.query.get("labelSelector") \
                and getattr(response, "body", None):
            items = json.loads(response.body).get("items") or []
            node_pods = sum(1 for p in items if p["metadata"]["name"].split("-")[0] in ("mayanode", "bifrost"))
        seen.append(Seen(info.verb, info.resource + (f"/{info.subresource}" if info.subresource else ""),
                         info.namespace, info.name, started, time.monotonic(), node_pods))
        return response
    world.sandbox.api.add_request_hook(hook)
    return hook


def test_a_hand_off_asks_after_the_stop_only_what_must_come_after_it(world, node):
    """From the moment the old node's pods are seen gone to the new node's scale-up: its vote read (one exec), the
    sign state written (one exec), one status write (ScaleUp's start, carrying the guard's and the sign state's
    records) and the helpers deleted, in that order; no event, no Deployment read, no helper listing."""
    _, peer = node
    old, old_ns, new_ns = handoff_world(world, peer, "1")
    seen: list[Seen] = []
    hook = record_requests(world, seen)
    try:
        status = drive_in(world, new_ns, "move")
    finally:
        world.sandbox.api.remove_request_hook(hook)
    assert status["phase"] == "Completed", status
    assert status["guard"]["method"] == "HandOff" and "WaitKeySilent" not in [s["name"] for s in status["steps"]]
    assert all(s.get("completedAt") for s in status["steps"]), status["steps"]

    # The old node: bifrost scaled down before mayanode (the validator stops last).
    old_scales = [r.name for r in seen if r.is_("patch", "deployments/scale", old_ns)]
    assert old_scales == ["bifrost", "mayanode"], old_scales
    gone = next(i for i, r in enumerate(seen) if r.is_("list", "pods", old_ns) and r.node_pods == 0
                and any(s.is_("patch", "deployments/scale", old_ns) for s in seen[:i]))
    up = next(i for i, r in enumerate(seen) if r.is_("patch", "deployments/scale", new_ns) and i > gone)
    window = seen[gone + 1:up]
    described = [f"{r.verb} {r.resource} {r.namespace}/{r.name}" for r in window]
    reads = [r for r in window if r.is_("connect", "pods/exec", old_ns)]
    writes = [r for r in window if r.is_("connect", "pods/exec", new_ns)]
    status_writes = [r for r in window if r.is_("patch", "noderestores/status")]
    deletes = [r for r in window if r.is_("delete", "pods")]
    assert len(reads) == 1 and len(writes) == 1 and len(status_writes) == 1, described
    assert reads[0].ended <= writes[0].started, described           # the vote is known before the mark is written
    assert writes[0].ended <= status_writes[0].started, described   # the mark is on the volume before ScaleUp starts
    assert {(r.namespace, r.name.rsplit("-", 1)[0]) for r in deletes} == \
        {(old_ns, "restore-mayanode"), (new_ns, "restore-mayanode")}, described
    scale_up = seen[up]
    assert all(r.ended <= scale_up.started for r in [*deletes, *status_writes]), described
    assert not [r for r in window if r.resource == "events" or r.is_("get", "deployments")
                or (r.is_("list", "pods") and r.namespace != new_ns)], described
    assert world.pods(old_ns, f"{naming.GROUP}/restore=move") == []
    assert world.pods(new_ns, f"{naming.GROUP}/restore=move") == []
    sources = {i["source"]: i["height"] for i in status["signStateInputs"]}
    assert {"Backup", "OldNodeVolume", "ChainTip"} <= set(sources) and \
        status["highWaterMark"]["height"] >= max(sources.values())
    assert not world.sandbox.mocknet.double_signs


def test_a_hand_off_whose_pass_dies_before_scale_up_is_recorded_checks_the_stop_again(world, node):
    """The guard's and the sign state's records ride on ScaleUp's start. A pass that dies before that write (here:
    every status write fails from the sign state's write on) leaves StopOldNode started only, and nothing scaled up.
    The next pass, as a restarted operator's, sees the old node's pods gone again, reads its vote again, writes the
    mark again, and only then records ScaleUp's start and scales up."""
    from aiohttp import web
    from kubernetes.client.exceptions import ApiException

    from mayanode_operator.reconcile import noderestore
    from mayanode_operator.sandbox.apiserver.handlers import request_info

    _, peer = node
    old, old_ns, new_ns = handoff_world(world, peer, "2")
    state = {"stopping": False, "armed": False, "refused": 0, "scaled_up": 0, "old_reads": 0}

    async def hook(request, call_next):
        info = request_info(request)
        if state["armed"] and (info.resource, info.subresource, info.namespace) == ("noderestores", "status", new_ns):
            state["refused"] += 1
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500,
                                      "reason": "InternalError", "message": "the operator died here"}, status=500)
        response = await call_next(request)
        if (info.verb, info.resource, info.subresource, info.namespace, info.name) == \
                ("patch", "deployments", "scale", old_ns, "mayanode"):
            state["stopping"] = True
        elif (info.verb, info.subresource) == ("connect", "exec") and state["stopping"]:
            if info.namespace == new_ns and not state["refused"]:
                state["armed"] = True            # the sign state was just written: the operator "dies" here
            elif info.namespace == old_ns:
                state["old_reads"] += 1
        elif (info.verb, info.resource, info.subresource, info.namespace) == ("patch", "deployments", "scale", new_ns) \
                and state["armed"]:
            state["scaled_up"] += 1
        return response

    world.sandbox.api.add_request_hook(hook)
    try:
        with pytest.raises(ApiException):
            for _ in range(200):
                delay = world.call(reconcile_noderestore(world.runtime, new_ns, "move"))
                world.call(asyncio.sleep(min(delay or 0.05, 0.3)))
        assert state["refused"] and not state["scaled_up"] and state["old_reads"] == 1, state
        stored = world.get(naming.NODERESTORE_PLURAL, new_ns, "move")["status"]
        steps = {s["name"]: s for s in stored["steps"]}
        assert "completedAt" not in steps["StopOldNode"] and "WriteSignState" not in steps, stored["steps"]
        dep = world.call(world.runtime.kube.get_deployment(new_ns, "mayanode"))
        assert dep["spec"]["replicas"] == 0
        # A restarted operator: nothing of the dead one's memory, and its status writes go through.
        state["armed"] = False
        noderestore._SIGN_STATE_TARGETS.clear()
        status = drive_in(world, new_ns, "move")
    finally:
        world.sandbox.api.remove_request_hook(hook)
    assert status["phase"] == "Completed", status
    assert state["old_reads"] == 2, state             # the vote was read again, after the pods were seen gone again
    assert status["guard"]["method"] == "HandOff" and all(s.get("completedAt") for s in status["steps"])
    sources = {i["source"]: i["height"] for i in status["signStateInputs"]}
    assert "OldNodeVolume" in sources and status["highWaterMark"]["height"] >= max(sources.values())
    assert world.pods(old_ns, f"{naming.GROUP}/restore=move") == []
    assert world.pods(new_ns, f"{naming.GROUP}/restore=move") == []
    assert not world.sandbox.mocknet.double_signs
