"""The `--kube-config` tier's world, checked against an API server that is not the sandbox's own.

An EmulatedApiServer stands in for a real cluster here: first a bare control plane (no node:
the simulated kubelet joins as the node), then a cluster with a Ready node run by a separate
kubelet (stand-in images, key files written through a helper pod and websocket exec, the
ProcessBridge telling the mocknet).

NodeRestore in this tier: a bare control plane whose API server cannot reach the simulated kubelet's pods has no
`exec`, and the restore scenarios skip naming it; one whose API server forwards exec to that kubelet (as
kube-apiserver forwards it to a node's kubelet) runs `test_restore.py`'s wipe-and-restore scenario unchanged; the
cluster with a Ready node wipes and restores a node through helper pods and exec only.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from mayanode_operator.api import naming
from mayanode_operator.sandbox.apiserver import EmulatedApiServer
from mayanode_operator.sandbox.harness import LoopThread, OperatorProcess, eventually
from mayanode_operator.sandbox.kubelet import SimulatedKubelet

from . import test_restore as restore_scenarios
from .conftest import Kube, condition, dump, mayanode_manifest
from .real_world import BARE_CONTROL_PLANE, WITH_NODES, RealClusterWorld
from .test_restore import (
    IDENTITY, IDENTITY_PATHS, PEER, create_secret, finished, location, nodebackup, noderestore, secret_values,
)


@pytest.fixture
def api(tmp_path):
    loop = LoopThread("fake-real-cluster").start()
    server = EmulatedApiServer()
    loop.call(server.start())
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    yield loop, server, kubeconfig
    loop.call(server.stop())
    loop.stop()


class ForwardedExec:
    """The API server's exec handed to the kubelet that runs the pod, on that kubelet's own event loop (as
    kube-apiserver hands it to the node's kubelet): stdin, stdout and stderr cross between the two loops."""

    def __init__(self, target: Callable[[], tuple[Any, asyncio.AbstractEventLoop]]) -> None:
        self._target = target

    async def __call__(self, request, stdin: asyncio.StreamReader, stdout, stderr) -> int:
        kubelet, there = self._target()
        here = asyncio.get_running_loop()

        async def new_reader() -> asyncio.StreamReader:
            return asyncio.StreamReader()
        reader = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(new_reader(), there))

        async def pump() -> None:
            while chunk := await stdin.read(64 * 1024):
                there.call_soon_threadsafe(reader.feed_data, chunk)
            there.call_soon_threadsafe(reader.feed_eof)

        def back(write):
            async def relay(data: bytes) -> None:
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(write(data), here))
            return relay

        pumping = asyncio.create_task(pump())
        try:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
                kubelet(request, reader, back(stdout), back(stderr)), there))
        finally:
            pumping.cancel()


BLOCK_INTERVAL = 0.2      # the restore's silence proof waits for blocks: a quick chain keeps these runs short


def start_operator(kubeconfig, tmp_path) -> OperatorProcess:
    return OperatorProcess(kubeconfig, tmp_path / "operator.log").start()


def test_bare_control_plane(api, tmp_path):
    _, _, kubeconfig = api
    world = RealClusterWorld(kubeconfig, tmp_path)
    world.start()
    try:
        assert world.capabilities == BARE_CONTROL_PLANE
        node = world.seed_node("real-bare")
        eventually(lambda: world.mocknet.serving_process("real-bare"), timeout=20)
        assert world.mocknet.node(node.node_address).status == "Active"
        # No exec (the API server cannot reach the pods): the restore scenarios skip and say why.
        for scenario in (restore_scenarios.test_wiped_node_is_restored_identically,
                         restore_scenarios.test_migration_refused_while_old_runs_then_succeeds,
                         restore_scenarios.test_hand_off):
            with pytest.raises(pytest.skip.Exception, match=r"cannot provide: exec \("):
                scenario(*(world if name == "world" else None for name in inspect.signature(scenario).parameters))
    finally:
        world.stop()


def test_bare_control_plane_with_exec_runs_the_restore_scenario(api, tmp_path):
    _, server, kubeconfig = api
    world = RealClusterWorld(kubeconfig, tmp_path, block_interval=BLOCK_INTERVAL)
    server.set_exec_handler(ForwardedExec(lambda: (world.kubelet, world.event_loop)))
    world.start()
    operator = start_operator(kubeconfig, tmp_path)
    try:
        assert world.capabilities == BARE_CONTROL_PLANE | {"exec"}
        kube = Kube(kubeconfig)
        peer = world.seed_node(PEER)
        kube.apply(mayanode_manifest(peer))
        restore_scenarios.test_wiped_node_is_restored_identically(world, operator, kube, peer)
    finally:
        operator.kill()
        world.stop()


def identity_files(world: RealClusterWorld, namespace: str) -> dict[str, tuple[bytes, int, int, int]]:
    """The node's identity files, read through a helper pod and exec: `claim:path` → (content, mode, uid, gid)."""
    out = {}
    for claim, prefixes in IDENTITY_PATHS.items():
        for path, entry in world.volume_files(namespace, claim).items():
            if any(path.startswith(p) for p in prefixes) and ".replaced-" not in path:
                out[f"{claim}:{path}"] = entry
    return out


def wipe_and_restore_through_exec(world: RealClusterWorld, kube: Kube, operator: OperatorProcess, node, peer) -> None:
    """test_restore's wipe-and-restore with nothing but the Kubernetes API: the volumes are read and wiped
    through helper pods and exec, as on any cluster."""
    ns = node.namespace
    create_secret(kube, ns, "age-identity", {"identity": IDENTITY})
    kube.apply(mayanode_manifest(node, backup={"afterChurn": False, "location": location()}))
    kube.apply(nodebackup(ns, "full", ns))
    body = finished(kube, naming.NODEBACKUP_PLURAL, ns, "full", operator)
    assert body["status"]["phase"] == "Completed", dump(body["status"])
    before_secrets = secret_values(kube, ns)
    for deployment in ("mayanode", "bifrost"):
        kube.apps.patch_namespaced_deployment_scale(deployment, ns, {"spec": {"replicas": 0}})
    eventually(lambda: not world.mocknet.running_processes(ns), timeout=30)
    before_files = identity_files(world, ns)
    assert "mayanode:.mayanode/config/priv_validator_key.json" in before_files and len(before_secrets) == 2
    for claim in ("mayanode", "bifrost"):
        world.wipe_volume(ns, claim)
    kube.core.delete_namespaced_secret("mayanode-mnemonic", ns)
    kube.core.patch_namespaced_secret("mayanode-password", ns, {"data": {"password": ""}})
    for deployment in ("mayanode", "bifrost"):
        kube.apps.patch_namespaced_deployment_scale(deployment, ns, {"spec": {"replicas": 1}})
    assert identity_files(world, ns) == {}

    kube.apply(noderestore(ns, "back", ns, "full", guard={"rpc": [peer.rpc_url]}))
    body = finished(kube, naming.NODERESTORE_PLURAL, ns, "back", operator)
    status = body["status"]
    assert status["phase"] == "Completed", dump(status)
    assert [s["name"] for s in status["steps"]] == [
        "VerifyBackup", "AcquireKeyLock", "ScaleDown", "WriteFiles", "SwapSecrets", "WaitKeySilent",
        "WriteSignState", "RemoveHelpers", "ScaleUp", "WaitReady"]
    assert status["guard"]["method"] == "Silent" and condition(body, "Completed")["status"] == "True"
    assert identity_files(world, ns) == before_files
    assert secret_values(kube, ns) == before_secrets
    eventually(lambda: (p := world.mocknet.serving_process(ns)) and p.node_address == node.node_address, timeout=30)
    leases = kube.kubectl("get", "lease", "-A", "-o", "jsonpath={.items[*].spec.holderIdentity}").stdout.split()
    assert f"{ns}/{ns}" in leases, leases
    assert not world.mocknet.double_signs


def test_cluster_with_a_ready_node(api, tmp_path):
    loop, server, kubeconfig = api
    # The cluster's own node: a kubelet that knows nothing of the mocknet, like a real one.
    cluster_node = SimulatedKubelet(server.url, None, node_name="worker-1")
    server.set_exec_handler(cluster_node)
    loop.call(cluster_node.start())
    loop.call(cluster_node.client.request("POST", "/api/v1/nodes", body={
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"}}))
    loop.call(cluster_node.client.request(    # status is the node's own to write, through /status
        "PATCH", "/api/v1/nodes/worker-1/status", content_type="application/merge-patch+json",
        body={"status": {"conditions": [{"type": "Ready", "status": "True"}]}}))
    world = RealClusterWorld(kubeconfig, tmp_path, block_interval=BLOCK_INTERVAL)
    world.start()
    operator = start_operator(kubeconfig, tmp_path)
    try:
        assert world.capabilities == WITH_NODES
        node = world.seed_node("real-nodes")
        process = eventually(lambda: world.mocknet.serving_process("real-nodes"), timeout=30)
        assert process.node_address == node.node_address
        key = cluster_node.volume("real-nodes", "mayanode").read(".mayanode/config/priv_validator_key.json")
        assert node.facts.consensus_pubkey_base64.encode() in key
        pods = loop.call(cluster_node.client.request("GET", "/api/v1/namespaces/real-nodes/pods"))
        images = {c["image"] for p in pods["items"] for c in p["spec"]["containers"]}
        assert images == {"busybox:1.36"}
        # NodeRestore: test_restore's scenarios need the simulated kubelet's volumes and skip saying so ...
        with pytest.raises(pytest.skip.Exception, match=r"cannot provide: kubelet, volumes \("):
            restore_scenarios.test_wiped_node_is_restored_identically(world, None, None, None)
        # ... and the same wipe-and-restore runs through the Kubernetes API alone.
        kube = Kube(kubeconfig)
        peer = world.seed_node("real-peer")
        kube.apply(mayanode_manifest(peer))
        wipe_and_restore_through_exec(world, kube, operator, node, peer)
        key = cluster_node.volume("real-nodes", "mayanode").read(".mayanode/config/priv_validator_key.json")
        assert node.facts.consensus_pubkey_base64.encode() in key
    finally:
        operator.kill()
        world.stop()
        loop.call(cluster_node.stop())
