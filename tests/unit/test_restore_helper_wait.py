"""A restore's helper pod that never runs: the step's error says why (the scheduler's message, the container's waiting
reason, the newest Warning event about it), and the pod is deleted; backups and restores start their helpers alike
(`volumes.launch_helper`)."""

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
    def __init__(self, status: dict, events: list | Exception = (), pods: list | None = None) -> None:
        self.core = FakeCore(status)
        self.events = events
        self.event_reads: list[tuple[str, str]] = []
        self.pods = pods or []

    async def list_pods(self, namespace, labels):
        return [pod for pod in self.pods if pod["metadata"]["name"] not in self.core.deleted]

    async def pod_warning_events(self, namespace, pod_name):
        self.event_reads.append((namespace, pod_name))
        if isinstance(self.events, Exception):
            raise self.events
        return list(self.events)


def ctx(status: dict, events: list | Exception = (), pods: list | None = None):
    runtime = SimpleNamespace(kube=FakeKube(status, events, pods), config=SimpleNamespace(helper_image="busybox:1.36"))
    return SimpleNamespace(runtime=runtime, name="restore", node_name="node-b", namespace="node-b",
                           owner_reference=None)


TARGET = VolumeTarget("mayanode", "mayanode", "mayanode", "mayanode", "/root/.mayanode", ".mayanode")


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


RUNNING = {"phase": "Running", "containerStatuses": [{"name": "helper", "state": {"running": {"startedAt": "2026-11-21T10:00:03Z"}}}]}


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


async def test_a_leftover_helper_on_another_node_than_asked_is_replaced():
    """The old node's helper must run where its pod mounts the volume: one started elsewhere never attaches."""
    pods = [leftover("restore-mayanode-a", "2026-11-21T10:00:01Z", RUNNING, node="worker-2")]
    restore = ctx(RUNNING, pods=pods)
    assert await noderestore.helper(restore, "node-b", TARGET, timeout=5, node_name="worker-1") == "restore-mayanode-x"
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
    """A Deployment whose pods are listed in turn from `listings` (the last one stays)."""

    def __init__(self, *listings: list) -> None:
        self.listings = list(listings)

    async def get_deployment(self, namespace, name):
        return {"spec": {"selector": {"matchLabels": {"app": name}}}}

    async def list_pods(self, namespace, labels):
        return self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]


def node_pod(node: str | None, *, deleting: bool = False) -> dict:
    return {"metadata": {"name": "mayanode-1", **({"deletionTimestamp": "2026-11-21T10:00:09Z"} if deleting else {})},
            "spec": {"nodeName": node} if node else {}}


async def test_a_helper_is_placed_where_the_nodes_pod_is_once_it_is_scheduled(monkeypatch):
    """A pod of the node just created (scaled up a moment ago) gets the volume on whatever node it lands: the helper's
    placement waits for it rather than let the scheduler put the helper elsewhere."""
    monkeypatch.setattr(volumes, "SCHEDULE_POLL_SECONDS", 0)
    kube = DeploymentKube([node_pod(None)], [node_pod(None)], [node_pod("worker-2")])
    restore = SimpleNamespace(runtime=SimpleNamespace(kube=kube))
    assert await noderestore.deployment_node(restore, "node-b", "mayanode") == "worker-2"


@pytest.mark.parametrize("pods", [[], [node_pod("worker-2", deleting=True)]])
async def test_no_pod_of_the_node_leaves_the_helper_to_the_scheduler(pods):
    restore = SimpleNamespace(runtime=SimpleNamespace(kube=DeploymentKube(pods)))
    assert await noderestore.deployment_node(restore, "node-b", "mayanode") is None


async def test_a_pod_never_scheduled_leaves_the_helper_to_the_scheduler_after_the_wait(monkeypatch):
    monkeypatch.setattr(volumes, "SCHEDULE_WAIT_SECONDS", 0.05)
    monkeypatch.setattr(volumes, "SCHEDULE_POLL_SECONDS", 0.01)
    restore = SimpleNamespace(runtime=SimpleNamespace(kube=DeploymentKube([node_pod(None)])))
    assert await noderestore.deployment_node(restore, "node-b", "mayanode") is None
