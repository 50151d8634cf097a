"""A restore's helper pod that never runs: the step's error says why (the scheduler's message, the container's waiting
reason, the newest Warning event about it), and the pod is deleted; backups and restores start their helpers alike
(`volumes.launch_helper`)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from kubernetes.client.exceptions import ApiException

from mayanode_operator.adapters.volumes import VolumeError, newest_warning
from mayanode_operator.plan.backup_items import VolumeTarget
from mayanode_operator.reconcile import noderestore

UNSCHEDULABLE = ("0/3 nodes are available: 3 node(s) had volume node affinity conflict. preemption: 0/3 nodes are "
                 "available: 3 Preemption is not helpful for scheduling.")


class FakeCore:
    def __init__(self, status: dict) -> None:
        self.status, self.deleted = status, []

    def create_namespaced_pod(self, namespace, body, **_):
        return SimpleNamespace(data=json.dumps({"metadata": {"name": "restore-mayanode-x"}}).encode())

    def read_namespaced_pod(self, name, namespace, **_):
        return SimpleNamespace(data=json.dumps({"metadata": {"name": name}, "status": self.status}).encode())

    def delete_namespaced_pod(self, name, namespace, **_):
        self.deleted.append(name)


class FakeKube:
    def __init__(self, status: dict, events: list | Exception = ()) -> None:
        self.core = FakeCore(status)
        self.events = events
        self.event_reads: list[tuple[str, str]] = []

    async def list_pods(self, namespace, labels):
        return []

    async def pod_warning_events(self, namespace, pod_name):
        self.event_reads.append((namespace, pod_name))
        if isinstance(self.events, Exception):
            raise self.events
        return list(self.events)


def ctx(status: dict, events: list | Exception = ()):
    runtime = SimpleNamespace(kube=FakeKube(status, events), config=SimpleNamespace(helper_image="busybox:1.36"))
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
