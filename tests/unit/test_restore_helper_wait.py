"""A restore's helper pods: one that never runs makes the step's error say why (the scheduler's message, the
container's waiting reason, the newest Warning event about it), and is deleted; one left starting by a killed pass is
waited for, not doubled; each goes where the component's pod holds the volume, and may go where the component may.
Backups and restores start and place their helpers alike (`volumes.launch_helper`, `volumes.helper_placement`)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from kubernetes.client.exceptions import ApiException

from mayanode_operator.adapters import volumes
from mayanode_operator.adapters.volumes import VolumeError, newest_warning
from mayanode_operator.plan.backup_items import VolumeTarget
from mayanode_operator.reconcile import noderestore

UNSCHEDULABLE = ("0/3 nodes are available: 3 node(s) had volume node affinity conflict. preemption: 0/3 nodes are "
                 "available: 3 Preemption is not helpful for scheduling.")


class FakeCore:
    """The pods API as a helper sees it: a pod created is named `name`, and every pod reads with `status`."""

    def __init__(self, status: dict, name: str = "restore-mayanode-x") -> None:
        self.status, self.name, self.deleted, self.created = status, name, [], []

    def create_namespaced_pod(self, namespace, body, **_):
        self.created.append(body)
        return SimpleNamespace(data=json.dumps({"metadata": {"name": self.name}}).encode())

    def read_namespaced_pod(self, name, namespace, **_):
        return SimpleNamespace(data=json.dumps({"metadata": {"name": name}, "status": self.status}).encode())

    def delete_namespaced_pod(self, name, namespace, **_):
        self.deleted.append(name)


class FakeKube:
    """`pods`: this restore's helpers; `node_pods`: the component's own pods; `template`: its pod template's spec."""

    def __init__(self, status: dict, events: list | Exception = (), pods: list | None = None,
                 node_pods: list | None = None, template: dict | None = None) -> None:
        self.core = FakeCore(status)
        self.events = events
        self.event_reads: list[tuple[str, str]] = []
        self.pods, self.node_pods, self.template = pods or [], node_pods or [], template or {}

    async def get_deployment(self, namespace, name):
        return {"spec": {"replicas": len(self.node_pods), "selector": {"matchLabels": {"app": name}},
                         "template": {"spec": self.template}}}

    async def list_pods(self, namespace, labels):
        if "app" in labels:
            return list(self.node_pods)
        return [pod for pod in self.pods if pod["metadata"]["name"] not in self.core.deleted]

    async def pod_warning_events(self, namespace, pod_name):
        self.event_reads.append((namespace, pod_name))
        if isinstance(self.events, Exception):
            raise self.events
        return list(self.events)


def ctx(status: dict, events: list | Exception = (), pods: list | None = None, **kube):
    runtime = SimpleNamespace(kube=FakeKube(status, events, pods, **kube),
                              config=SimpleNamespace(helper_image="busybox:1.36"))
    return SimpleNamespace(runtime=runtime, name="restore", node_name="node-b", namespace="node-b",
                           owner_reference=None)


TARGET = VolumeTarget("mayanode", "mayanode", "mayanode", "mayanode", "/root/.mayanode", ".mayanode")


def node_pod(node: str | None, *, deleting: bool = False) -> dict:
    return {"metadata": {"name": "mayanode-1", **({"deletionTimestamp": "2026-11-21T10:00:09Z"} if deleting else {})},
            "spec": {"nodeName": node} if node else {}}


@pytest.mark.parametrize("status,why", [
    ({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": UNSCHEDULABLE}]}, UNSCHEDULABLE[:200]),
    ({"phase": "Pending", "containerStatuses": [{"name": "helper", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]},
     "ImagePullBackOff"),
])
async def test_a_helper_that_never_runs_says_why_and_is_deleted(status, why):
    restore = ctx(status)
    with pytest.raises(VolumeError) as raised:
        await noderestore.helper(restore, "node-b", TARGET, timeout=0)
    assert str(raised.value) == f"helper pod node-b/restore-mayanode-x on PVC mayanode did not run within 0s: {why}"
    assert restore.runtime.kube.core.deleted == ["restore-mayanode-x"]


CREATING = {"phase": "Pending", "containerStatuses": [{"name": "helper", "state": {"waiting": {"reason": "ContainerCreating"}}}]}
MULTI_ATTACH = {"type": "Warning", "reason": "FailedAttachVolume", "lastTimestamp": "2026-11-21T10:00:05Z",
                "message": 'Multi-Attach error for volume "pvc-1" Volume is already used by pod(s) mayanode-7d9f-abcde'}


async def test_a_helper_held_by_a_volume_attached_elsewhere_names_the_pod_that_holds_it():
    older = {"type": "Warning", "reason": "FailedScheduling", "lastTimestamp": "2026-11-21T10:00:00Z", "message": "x"}
    restore = ctx(CREATING, [MULTI_ATTACH, older])
    with pytest.raises(VolumeError) as raised:
        await noderestore.helper(restore, "node-b", TARGET, timeout=0)
    assert str(raised.value) == ("helper pod node-b/restore-mayanode-x on PVC mayanode did not run within 0s: ContainerCreating; "
                                 "FailedAttachVolume: Multi-Attach error for volume \"pvc-1\" Volume is already used "
                                 "by pod(s) mayanode-7d9f-abcde")
    assert restore.runtime.kube.event_reads == [("node-b", "restore-mayanode-x")]
    assert restore.runtime.kube.core.deleted == ["restore-mayanode-x"]


@pytest.mark.parametrize("failure", [ApiException(status=403, reason="Forbidden"), OSError("connection reset")])
async def test_events_that_cannot_be_read_leave_the_waiting_reason(failure):
    restore = ctx(CREATING, failure)
    with pytest.raises(VolumeError) as raised:
        await noderestore.helper(restore, "node-b", TARGET, timeout=0)
    assert str(raised.value).endswith("did not run within 0s: ContainerCreating")
    assert restore.runtime.kube.core.deleted == ["restore-mayanode-x"]


@pytest.mark.parametrize("events, expected", [
    ([], ""),
    ([{"type": "Normal", "reason": "Scheduled", "message": "assigned"}], ""),
    ([MULTI_ATTACH], MULTI_ATTACH["reason"] + ": " + MULTI_ATTACH["message"]),
    # the newest by series.lastObservedTime, lastTimestamp, eventTime or creationTimestamp, whichever it has
    ([{"type": "Warning", "reason": "Old", "lastTimestamp": "2026-11-21T10:00:00Z", "message": "a"},
      {"type": "Warning", "reason": "New", "eventTime": "2026-11-21T10:00:01.000000Z", "message": "b"}], "New: b"),
    ([{"type": "Warning", "reason": "Repeated", "lastTimestamp": "2026-11-21T09:00:00Z", "message": "a",
       "series": {"lastObservedTime": "2026-11-21T11:00:00.000000Z"}},
      {"type": "Warning", "reason": "Once", "lastTimestamp": "2026-11-21T10:00:00Z", "message": "b"}], "Repeated: a"),
    ([{"type": "Warning", "reason": "FailedMount", "message": "line one\n  line two"}], "FailedMount: line one line two"),
    ([{"type": "Warning", "reason": "Long", "message": "x" * 500}], ("Long: " + "x" * 500)[:300]),
])
def test_the_newest_warning_event(events, expected):
    assert newest_warning(events) == expected


async def test_a_helper_that_ends_before_it_runs_says_so_at_once_and_is_deleted():
    ended = {"phase": "Failed", "containerStatuses": [{"name": "helper", "state": {"terminated": {"exitCode": 1}}}]}
    restore = ctx(ended, [{"type": "Warning", "reason": "BackOff", "message": "back-off restarting failed container"}])
    with pytest.raises(VolumeError) as raised:
        await noderestore.helper(restore, "node-b", TARGET, timeout=3600)
    assert str(raised.value) == ("helper pod node-b/restore-mayanode-x on PVC mayanode ended (Failed) before it ran: "
                                 "BackOff: back-off restarting failed container")
    assert restore.runtime.kube.core.deleted == ["restore-mayanode-x"]


async def test_a_helper_whose_wait_is_cancelled_is_deleted():
    restore = ctx(CREATING)
    waiting = asyncio.ensure_future(noderestore.helper(restore, "node-b", TARGET, timeout=3600))
    await asyncio.sleep(0.2)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert restore.runtime.kube.core.deleted == ["restore-mayanode-x"]


async def test_a_helper_deleted_by_someone_else_before_it_ran_is_an_error():
    restore = ctx(CREATING)

    def gone(name, namespace, **_):
        raise ApiException(status=404, reason="Not Found")
    restore.runtime.kube.core.read_namespaced_pod = gone
    with pytest.raises(VolumeError, match=r"^helper pod node-b/restore-mayanode-x vanished before it ran$"):
        await noderestore.helper(restore, "node-b", TARGET, timeout=3600)


RUNNING = {"phase": "Running",
           "containerStatuses": [{"name": "helper", "state": {"running": {"startedAt": "2026-11-21T10:00:03Z"}}}]}


def leftover(name: str, created: str, status: dict, *, claim: str = "mayanode", node: str | None = "worker-1",
             deleting: bool = False) -> dict:
    """A helper pod of this restore left by an earlier pass (its operator killed while it waited for it)."""
    return {"metadata": {"name": name, "creationTimestamp": created,
                         **({"deletionTimestamp": "2026-11-21T10:00:09Z"} if deleting else {})},
            "spec": {"nodeName": node, "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]},
            "status": status}


async def test_a_helper_left_starting_by_a_restarted_operator_is_waited_for_not_doubled():
    """A second helper beside one still starting would wait for the volume the first one gets (a ReadWriteOnce
    volume attaches to one node at a time): the oldest is used, the other starting ones are deleted, and those that
    ended or are being deleted, or that are on another PVC, are left alone."""
    pods = [leftover("restore-mayanode-b", "2026-11-21T10:00:02Z", CREATING),
            leftover("restore-mayanode-a", "2026-11-21T10:00:01Z", CREATING),
            leftover("restore-mayanode-c", "2026-11-21T10:00:00Z", {"phase": "Failed"}),
            leftover("restore-mayanode-d", "2026-11-21T10:00:00Z", CREATING, deleting=True),
            leftover("restore-bifrost-e", "2026-11-21T10:00:00Z", CREATING, claim="bifrost")]
    restore = ctx(RUNNING, pods=pods)
    assert await noderestore.helper(restore, "node-b", TARGET, timeout=5) == "restore-mayanode-a"
    assert restore.runtime.kube.core.created == []
    assert restore.runtime.kube.core.deleted == ["restore-mayanode-b"]


async def test_a_running_helper_is_used_as_it_is():
    pods = [leftover("restore-mayanode-a", "2026-11-21T10:00:01Z", CREATING),
            leftover("restore-mayanode-b", "2026-11-21T10:00:02Z", RUNNING)]
    restore = ctx(CREATING, pods=pods)
    assert await noderestore.helper(restore, "node-b", TARGET, timeout=0) == "restore-mayanode-b"
    assert restore.runtime.kube.core.created == restore.runtime.kube.core.deleted == []


async def test_a_leftover_helper_on_another_node_than_the_components_pod_is_replaced():
    """A helper must run where a pod of the component holds the volume (the old node's in a hand-off): one started
    elsewhere never attaches."""
    pods = [leftover("restore-mayanode-a", "2026-11-21T10:00:01Z", RUNNING, node="worker-2")]
    restore = ctx(RUNNING, pods=pods, node_pods=[node_pod("worker-1")])
    assert await noderestore.helper(restore, "node-b", TARGET, timeout=5) == "restore-mayanode-x"
    assert restore.runtime.kube.core.deleted == ["restore-mayanode-a"]
    assert [body["spec"]["nodeName"] for body in restore.runtime.kube.core.created] == ["worker-1"]


async def test_a_leftover_helper_that_never_runs_is_deleted_and_the_error_says_why():
    pods = [leftover("restore-mayanode-a", "2026-11-21T10:00:01Z", CREATING)]
    restore = ctx(CREATING, [MULTI_ATTACH], pods=pods)
    with pytest.raises(VolumeError, match=r"^helper pod node-b/restore-mayanode-a on PVC mayanode did not run "
                                          r"within 0s: ContainerCreating; FailedAttachVolume: Multi-Attach"):
        await noderestore.helper(restore, "node-b", TARGET, timeout=0)
    assert restore.runtime.kube.core.created == []
    assert restore.runtime.kube.core.deleted == ["restore-mayanode-a"]


class DeploymentKube:
    """A Deployment of `replicas` whose pods are listed in turn from `listings` (the last one stays)."""

    def __init__(self, *listings: list, replicas: int = 1) -> None:
        self.listings, self.replicas = list(listings), replicas

    async def get_deployment(self, namespace, name):
        return {"spec": {"replicas": self.replicas, "selector": {"matchLabels": {"app": name}}}}

    async def list_pods(self, namespace, labels):
        return self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]


async def test_a_helper_is_placed_where_the_nodes_pod_is_once_it_is_scheduled(monkeypatch):
    """A pod of the node just created (scaled up a moment ago) gets the volume on whatever node it lands: the helper's
    placement waits for it rather than let the scheduler put the helper elsewhere."""
    monkeypatch.setattr(volumes, "SCHEDULE_POLL_SECONDS", 0)
    kube = DeploymentKube([], [node_pod(None)], [node_pod("worker-2")])       # not created yet, then not scheduled
    assert (await volumes.helper_placement(kube, "node-b", "mayanode")).node_name == "worker-2"


@pytest.mark.parametrize("pods", [[], [node_pod("worker-2", deleting=True)]])
async def test_a_node_scaled_to_0_leaves_the_helper_to_the_scheduler(pods):
    kube = DeploymentKube(pods, replicas=0)
    assert (await volumes.helper_placement(kube, "node-b", "mayanode")).node_name is None


async def test_a_pod_never_scheduled_leaves_the_helper_to_the_scheduler_after_the_wait(monkeypatch):
    monkeypatch.setattr(volumes, "SCHEDULE_WAIT_SECONDS", 0.05)
    monkeypatch.setattr(volumes, "SCHEDULE_POLL_SECONDS", 0.01)
    kube = DeploymentKube([node_pod(None)])
    assert (await volumes.helper_placement(kube, "node-b", "mayanode")).node_name is None


DEDICATED_POOL = {
    "nodeSelector": {"pool": "validators"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "validator", "effect": "NoSchedule"},
                    {"key": "dedicated", "operator": "Equal", "value": "validator", "effect": "NoExecute"}],
    "affinity": {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-1a"]}]}]}},
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "bifrost"}}, "topologyKey": "kubernetes.io/hostname"}]},
    },
}


@pytest.mark.parametrize("pinned", [None, "worker-3"])
async def test_a_helper_may_go_where_the_component_may(pinned):
    """On a dedicated, tainted node pool: the component's node selector, node affinity and tolerations go with the
    helper (pinned to a node or not: a NoExecute taint evicts a pod that names its node but does not tolerate it).
    Pod affinity does not: the helper does not carry the component's labels, and the pod it names may be down."""
    restore = ctx(RUNNING, node_pods=[node_pod(pinned)] if pinned else [], template=DEDICATED_POOL)
    await noderestore.helper(restore, "node-b", TARGET, timeout=5)
    (body,) = restore.runtime.kube.core.created
    spec = body["spec"]
    assert spec.get("nodeName") == pinned
    assert spec["nodeSelector"] == DEDICATED_POOL["nodeSelector"]
    assert spec["tolerations"] == DEDICATED_POOL["tolerations"]
    assert spec["affinity"] == {"nodeAffinity": DEDICATED_POOL["affinity"]["nodeAffinity"]}


def test_a_template_without_constraints_adds_none():
    assert volumes.template_scheduling(None) == {}
    assert volumes.template_scheduling({"spec": {"template": {"spec": {"affinity": {"podAntiAffinity": {}}}}}}) == {}
    body = volumes.helper_pod_body("n", TARGET, image="busybox:1.36", labels={})
    assert not {"nodeName", "nodeSelector", "tolerations", "affinity"} & set(body["spec"])
