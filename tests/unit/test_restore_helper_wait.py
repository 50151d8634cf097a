"""A restore's helper pod that never runs: the step's error says why (the scheduler's message, the container's waiting
reason), and the pod is deleted."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from mayanode_operator.adapters.volumes import VolumeError
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
    def __init__(self, status: dict) -> None:
        self.core = FakeCore(status)

    async def list_pods(self, namespace, labels):
        return []


def ctx(status: dict):
    runtime = SimpleNamespace(kube=FakeKube(status), config=SimpleNamespace(helper_image="busybox:1.36"))
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
    assert str(raised.value) == f"helper pod node-b/restore-mayanode-x on PVC mayanode did not run: {why}"
    assert restore.runtime.kube.core.deleted == ["restore-mayanode-x"]
