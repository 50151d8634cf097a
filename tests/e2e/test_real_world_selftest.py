"""The `--kube-config` tier's world, checked against an API server that is not the sandbox's own.

An EmulatedApiServer stands in for a real cluster here: first a bare control plane (no node:
the simulated kubelet joins as the node), then a cluster with a Ready node run by a separate
kubelet (stand-in images, key files written through a helper pod and websocket exec, the
ProcessBridge telling the mocknet).
"""

from __future__ import annotations

import pytest

from mayanode_operator.sandbox.apiserver import EmulatedApiServer
from mayanode_operator.sandbox.harness import LoopThread, eventually
from mayanode_operator.sandbox.kubelet import SimulatedKubelet

from .real_world import BARE_CONTROL_PLANE, WITH_NODES, RealClusterWorld


@pytest.fixture
def api(tmp_path):
    loop = LoopThread("fake-real-cluster").start()
    server = EmulatedApiServer()
    loop.call(server.start())
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    yield loop, server, kubeconfig
    loop.call(server.stop())
    loop.stop()


def test_bare_control_plane(api, tmp_path):
    _, _, kubeconfig = api
    world = RealClusterWorld(kubeconfig, tmp_path)
    world.start()
    try:
        assert world.capabilities == BARE_CONTROL_PLANE
        node = world.seed_node("real-bare")
        eventually(lambda: world.mocknet.serving_process("real-bare"), timeout=20)
        assert world.mocknet.node(node.node_address).status == "Active"
    finally:
        world.stop()


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
    world = RealClusterWorld(kubeconfig, tmp_path)
    world.start()
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
    finally:
        world.stop()
        loop.call(cluster_node.stop())
