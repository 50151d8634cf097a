"""The operator watches only the pods and Deployments its workload selector picks (node-launcher's by default):
a pod that is none of a node's is not seen, and does not make the node's passes read its workloads again."""

from __future__ import annotations

from collections import Counter

import pytest

from mayanode_operator.sandbox.apiserver import request_info

from .conftest import condition, eventually, mayanode_manifest, require

NS = "watch-a"


class OperatorReads:
    """The operator's reads in one namespace, by (verb, resource)."""

    def __init__(self) -> None:
        self.seen: Counter = Counter()

    async def __call__(self, request, call_next):
        info = request_info(request)
        if info.namespace == NS and info.verb in ("get", "list") and \
                (request.headers.get("User-Agent") or "").startswith("mayanode-operator/"):
            self.seen[(info.verb, info.resource)] += 1
        return await call_next(request)

    def passes_without_reading_workloads(self, passes: int, timeout: float) -> None:
        """`passes` passes go by (a pass starts with a GET of the MayaNode) without a read of the workloads."""
        self.seen.clear()
        eventually(lambda: self.seen[("get", "mayanodes")] >= passes, timeout=timeout)
        assert self.seen[("get", "deployments")] == 0 and self.seen[("list", "pods")] == 0, self.seen


@pytest.fixture(scope="module")
def reads(world, operator, kube):
    require(world, "kubelet", "hooks")
    seeded = world.seed_node(NS)
    kube.apply(mayanode_manifest(seeded))
    eventually(lambda: condition(kube.mayanode(NS, NS), "Ready").get("status") == "True", timeout=30)
    log = OperatorReads()
    world.sandbox.api.add_request_hook(log)
    yield log
    world.sandbox.api.remove_request_hook(log)


def pod(name: str, labels: dict) -> dict:
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}}


def test_a_pod_the_selector_does_not_pick_goes_unseen(world, kube, reads):
    reads.passes_without_reading_workloads(1, timeout=15)          # idle: the workloads are kept
    kube.core.create_namespaced_pod(NS, pod("sidecar-job", {"app.kubernetes.io/name": "backup-cron"}))
    eventually(lambda: kube.core.read_namespaced_pod("sidecar-job", NS).status.phase == "Running", timeout=15)
    reads.passes_without_reading_workloads(2, timeout=20)


def test_a_pod_the_selector_picks_is_seen_and_the_workloads_read_again(world, kube, reads):
    reads.seen.clear()
    kube.core.create_namespaced_pod(NS, pod("stray-mayanode", {"app.kubernetes.io/name": "mayanode"}))
    eventually(lambda: reads.seen[("get", "deployments")] >= 1, timeout=15)
