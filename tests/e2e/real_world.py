"""A real cluster as the world of the end-to-end scenarios (`pytest tests/e2e --kube-config PATH`).

The mocknet serves the node API on this machine; the operator runs here with the kubeconfig.
Clusters with Ready nodes run node-launcher's objects with a stand-in image and real volumes;
a bare control plane gets the simulated kubelet as its node. Seeded namespaces are deleted at
the end. What a world cannot do is listed in `capabilities`; scenarios needing more are skipped
with that reason.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from mayanode_operator.adapters.exec import KubernetesExec
from mayanode_operator.api.crdgen import all_crds
from mayanode_operator.sandbox import identity as ident
from mayanode_operator.sandbox import kubeclient as kc
from mayanode_operator.sandbox.harness import LoopThread
from mayanode_operator.sandbox.kubelet import SimulatedKubelet
from mayanode_operator.sandbox.mocknet import Mocknet, node_account_for
from mayanode_operator.sandbox.realcluster import (
    ProcessBridge, helper_pod, home_tar, kube_session_for, nodes_ready, standin_stack,
)
from mayanode_operator.sandbox.seed.nodelauncher import StackSpec, stack_objects
from mayanode_operator.sandbox.world import Sandbox, SeededNode

WITH_NODES = frozenset({"exec"})
BARE_CONTROL_PLANE = frozenset({"kubelet", "volumes", "images"})


class RealClusterWorld:
    def __init__(self, kubeconfig: Path, workdir: Path, block_interval: float = 0.5) -> None:
        self.kubeconfig_path = kubeconfig
        self._workdir = workdir
        self._block_interval = block_interval
        self._loop = LoopThread("real-world")
        self._namespaces: list[str] = []
        self._facts: dict[str, tuple[str, str, str]] = {}
        self.capabilities: frozenset[str] = frozenset()
        self.sandbox: Sandbox | None = None
        self.kubelet: SimulatedKubelet | None = None
        self._bridge: ProcessBridge | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._loop.start()
        self.mocknet = Mocknet(block_interval=self._block_interval)
        self._loop.call(self.mocknet.start())
        self.client = self._loop.call(self._make_client())
        api_client = k8s_config.new_client_from_config(config_file=str(self.kubeconfig_path))
        self._core = k8s.CoreV1Api(api_client)
        self._exec = KubernetesExec(api_client)
        self._loop.call(self._install_crds())
        has_nodes = nodes_ready(self._loop.call(self.client.request("GET", "/api/v1/nodes")))
        if has_nodes:
            self.capabilities = WITH_NODES
            self._bridge = ProcessBridge(self.client, self.mocknet, self._facts)
            self._loop.call(self._start_bridge())
        else:
            self.capabilities = BARE_CONTROL_PLANE
            self.kubelet = SimulatedKubelet(self.client.base_url, self.mocknet, client=self.client)
            self._loop.call(self.kubelet.start())
            self.sandbox = Sandbox(None, self.mocknet, self.kubelet, self.client, self.kubeconfig_path,
                                   self._workdir, own_workdir=False)

    def stop(self) -> None:
        for namespace in self._namespaces:
            try:
                self._core.delete_namespace(namespace)
            except k8s.exceptions.ApiException:
                pass
        if self._bridge:
            self._loop.call(self._bridge.stop())
        if self.kubelet:
            self._loop.call(self.kubelet.stop())
        self._loop.call(self.mocknet.stop())
        self._loop.call(self.client.session.close())     # the world made the session: it closes it
        self._loop.stop()

    async def _make_client(self) -> kc.KubeClient:
        url, session = kube_session_for(str(self.kubeconfig_path))
        return kc.KubeClient(url, session=session)

    async def _start_bridge(self) -> None:
        self._bridge.start()

    async def _install_crds(self) -> None:
        for crd in all_crds():
            name = crd["metadata"]["name"]
            current = await self.client.request("GET", kc.CRDS.path(name=name), allow_404=True)
            if current is None:
                await self.client.request("POST", kc.CRDS.path(), body=crd)
            else:
                crd = {**crd, "metadata": {**crd["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
                await self.client.request("PUT", kc.CRDS.path(name=name), body=crd)

    # -- scenario API -------------------------------------------------------------------------
    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        return self._loop.call(coro, timeout)

    def seed_node(self, namespace: str, wait_ready: bool = True, version: str = "1.111.0",
                  status: str = "Active", ip_address: str = "", **kwargs: Any) -> SeededNode:
        self._namespaces.append(namespace)
        if self.sandbox is not None:           # bare control plane: the simulated kubelet is the node
            node = self.call(self.sandbox.seed_node(namespace, version=version, status=status,
                                                    ip_address=ip_address, **kwargs))
            if wait_ready:
                self.call(self.sandbox.wait_ready(namespace, deployments=("mayanode", "bifrost")))
            return node
        who = ident.NodeIdentity.from_seed(namespace, network=self.mocknet.network)
        spec = StackSpec(namespace=namespace, version=version, network=self.mocknet.network,
                         chain_id=self.mocknet.chain_id)
        objects = standin_stack(stack_objects(spec, mnemonic=who.mnemonic, password=who.password))
        self.mocknet.add_node(node_account_for(who, status=status, version=version, ip_address=ip_address))
        self._facts[namespace] = (who.node_address, who.consensus_pubkey_base64, version)
        for obj in objects:
            if obj["kind"] != "Deployment":
                self.call(self._create(obj))
        self._write_homes(namespace, who)
        for obj in objects:
            if obj["kind"] == "Deployment":
                self.call(self._create(obj))
        if wait_ready:
            self._wait_ready(namespace)
        facts = ident.public_facts(who)
        return SeededNode(namespace=namespace, facts=facts, node_address=who.node_address,
                          rest_url=self.mocknet.rest_url(namespace), rpc_url=self.mocknet.rpc_url(namespace),
                          version=version, network=self.mocknet.network, chain_id=self.mocknet.chain_id, identity=who)

    async def _create(self, obj: dict[str, Any]) -> None:
        kind_to_res = {"Namespace": kc.NAMESPACES, "Secret": kc.SECRETS, "ConfigMap": kc.CONFIGMAPS,
                       "PersistentVolumeClaim": kc.PVCS, "Service": kc.SERVICES, "Deployment": kc.DEPLOYMENTS,
                       "Pod": kc.PODS}
        res = kind_to_res[obj["kind"]]
        try:
            await self.client.request("POST", res.path(obj["metadata"].get("namespace")), body=obj)
        except kc.ApiError as err:
            if err.status != 409:
                raise

    def _write_homes(self, namespace: str, who: ident.NodeIdentity) -> None:
        """node-launcher's recovery-pod procedure: a helper pod on both PVCs, tar in, delete the pod."""
        pod = helper_pod(namespace, "seed-keys", {"mayanode": "/mnt/mayanode", "bifrost": "/mnt/bifrost"})
        self.call(self._create(pod))
        deadline = time.monotonic() + 180
        while self._core.read_namespaced_pod("seed-keys", namespace).status.phase != "Running":
            if time.monotonic() > deadline:
                raise TimeoutError(f"helper pod seed-keys in {namespace} did not start")
            time.sleep(1)
        for claim, sub, entries in (
            ("mayanode", ".mayanode", ident.mayanode_home_entries(who, chain_id=self.mocknet.chain_id)),
            ("bifrost", "mayanode", ident.bifrost_home_entries(who, [])),
        ):
            result = self._exec._run(namespace, "seed-keys", "helper", ["tar", "xpf", "-", "-C", f"/mnt/{claim}"],
                                     home_tar(entries, sub), 120)
            if not result.ok:
                raise RuntimeError(f"writing the {claim} home failed: {result.stderr_text()}")
        self._core.delete_namespaced_pod("seed-keys", namespace, grace_period_seconds=0)

    def _wait_ready(self, namespace: str, timeout: float = 300) -> None:
        apps = k8s.AppsV1Api(k8s_config.new_client_from_config(config_file=str(self.kubeconfig_path)))
        deadline = time.monotonic() + timeout
        while True:
            ready = [apps.read_namespaced_deployment(name, namespace).status.ready_replicas or 0
                     for name in ("mayanode", "bifrost")]
            if all(r >= 1 for r in ready):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{namespace}: mayanode/bifrost not Ready within {timeout}s")
            time.sleep(1)
