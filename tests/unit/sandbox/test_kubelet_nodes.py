"""The simulated kubelet with several nodes: pods spread over them, and a ReadWriteOnce volume is attached to one
node at a time (a pod on another node waits in ContainerCreating with a Multi-Attach event, as on a real cluster)."""

from __future__ import annotations

import asyncio

import pytest

from mayanode_operator.sandbox import kubeclient as kc
from mayanode_operator.sandbox.world import Sandbox

FAST = {"ready_delay": 0.05, "stop_delay": 0.05, "lb_delay": 0.05, "crash_backoff": 0.1, "config_retry": 0.05}
NODES = ("node-a", "node-b")


@pytest.fixture
async def sb():
    async with Sandbox.start(block_interval=0.1, kubelet_options={**FAST, "node_names": NODES}) as sandbox:
        yield sandbox


def helper(ns: str, name: str, claim: str, node: str | None = None) -> dict:
    spec = {"containers": [{"name": "helper", "image": "busybox", "command": ["sleep", "3600"],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": ns, "labels": {"maya.nodeops.io/helper": "test"}}, "spec": spec}


async def live_pod(sb: Sandbox, ns: str, app: str) -> dict:
    (pod,) = [p for p in await sb.pods(ns, f"app.kubernetes.io/name={app}") if not p["metadata"].get("deletionTimestamp")]
    return pod


async def test_pods_spread_over_the_nodes(sb: Sandbox) -> None:
    await sb.seed_node("spread")
    await sb.wait_ready("spread")
    nodes = [p["spec"]["nodeName"] for p in await sb.pods("spread")]
    assert set(nodes) == set(NODES), nodes


async def test_a_read_write_once_volume_waits_for_the_pods_of_the_other_node(sb: Sandbox) -> None:
    await sb.seed_node("rwo")
    await sb.wait_ready("rwo")
    mayanode = await live_pod(sb, "rwo", "mayanode")
    here = mayanode["spec"]["nodeName"]
    elsewhere = next(node for node in NODES if node != here)
    claim = mayanode["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]

    await sb.client.create(kc.PODS, helper("rwo", "same-node", claim, here), "rwo")
    await sb.client.create(kc.PODS, helper("rwo", "other-node", claim, elsewhere), "rwo")

    async def phase(name: str) -> str:
        return ((await sb.client.get(kc.PODS, name, "rwo")) or {}).get("status", {}).get("phase", "")

    async def same_node_runs() -> bool:
        return await phase("same-node") == "Running"
    await sb.wait_for(same_node_runs, timeout=5, message="the helper on the volume's node runs")
    await asyncio.sleep(0.5)
    other = await sb.client.get(kc.PODS, "other-node", "rwo")
    assert other["status"]["phase"] == "Pending"
    assert other["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
    events = [e for e in (await sb.client.list(kc.EVENTS, "rwo"))["items"]
              if e["involvedObject"]["name"] == "other-node"]
    assert [e["reason"] for e in events] == ["FailedAttachVolume"]
    assert events[0]["message"].startswith(f'Multi-Attach error for volume "pvc-{claim}"')
    assert mayanode["metadata"]["name"] in events[0]["message"] and "same-node" in events[0]["message"]

    # Every user on the first node gone (the Deployment scaled to 0, the same-node helper deleted): it attaches.
    await sb.client.patch(kc.DEPLOYMENTS, "mayanode", {"spec": {"replicas": 0}}, "rwo")
    await sb.client.delete(kc.PODS, "same-node", "rwo", grace_period_seconds=0)

    async def other_node_runs() -> bool:
        return await phase("other-node") == "Running"
    await sb.wait_for(other_node_runs, timeout=10, message="the helper on the other node runs once the volume is free")

    # Now the volume is on the other node: the Deployment's new pod, wherever it lands, waits only if elsewhere.
    await sb.client.patch(kc.DEPLOYMENTS, "mayanode", {"spec": {"replicas": 1}}, "rwo")
    await asyncio.sleep(0.5)
    new = await live_pod(sb, "rwo", "mayanode")
    expected = "Running" if new["spec"]["nodeName"] == elsewhere else "Pending"
    assert new["status"]["phase"] == expected, new["status"]


async def test_a_read_write_many_volume_is_shared_across_nodes(sb: Sandbox) -> None:
    await sb.client.create(kc.NAMESPACES, {"metadata": {"name": "rwx"}})
    await sb.client.create(kc.PVCS, {"metadata": {"name": "shared", "namespace": "rwx"},
                                     "spec": {"accessModes": ["ReadWriteMany"],
                                              "resources": {"requests": {"storage": "1Gi"}}}}, "rwx")
    for node in NODES:
        await sb.client.create(kc.PODS, helper("rwx", f"on-{node}", "shared", node), "rwx")

    async def both_run() -> bool:
        pods = [await sb.client.get(kc.PODS, f"on-{node}", "rwx") for node in NODES]
        return all((p or {}).get("status", {}).get("phase") == "Running" for p in pods)
    await sb.wait_for(both_run, timeout=5, message="both helpers run")
