"""A real cluster as the world of the end-to-end scenarios (`pytest tests/e2e --kube-config PATH`).

The mocknet serves the node API on this machine; the operator runs here with the kubeconfig.
Clusters with Ready nodes run node-launcher's objects with a stand-in image and real volumes;
a bare control plane gets the simulated kubelet as its node. Seeded namespaces are deleted at
the end. What a world cannot do is listed in `capabilities`; scenarios needing more are skipped
with that reason. On a bare control plane `exec` is probed: it is there only when the API server
can reach the pods the simulated kubelet runs (a real kube-apiserver cannot: no kubelet API).

`volume_files` and `wipe_volume` reach a node's PVCs the way a person would on any cluster with
exec: through a short-lived helper pod (on the node of the pod already using the claim).
"""

from __future__ import annotations

import io
import secrets
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from mayanode_operator.adapters.exec import ExecError, ExecResult, KubernetesExec
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
            if self._exec_reaches_pods():
                self.capabilities = BARE_CONTROL_PLANE | {"exec"}

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
    @property
    def event_loop(self):
        """The loop the world's servers (mocknet, simulated kubelet) run on."""
        return self._loop.loop

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        return self._loop.call(coro, timeout)

    def seed_node(self, namespace: str, wait_ready: bool = True, version: str = "1.111.0",
                  status: str = "Active", ip_address: str = "", **kwargs: Any) -> SeededNode:
        self._namespaces.append(namespace)
        if self.sandbox is not None:           # bare control plane: the simulated kubelet is the node
            node = self.call(self.sandbox.seed_node(namespace, version=version, status=status,
                                                    ip_address=ip_address, **kwargs))
            if wait_ready and kwargs.get("replicas", 1):
                self.call(self.sandbox.wait_ready(namespace, deployments=("mayanode", "bifrost")))
            return node
        if kwargs:                             # identity, with_keys, register, replicas…: the simulated kubelet's
            raise TypeError(f"seed_node on a cluster with nodes does not support {', '.join(sorted(kwargs))}: "
                            f"the scenario needs the 'kubelet' capability")
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
        self._wait_running(namespace, "seed-keys")
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
            time.sleep(0.2)

    # -- the node's volumes, through helper pods and exec (any cluster where `exec` works) --------------------
    def volume_files(self, namespace: str, claim: str) -> dict[str, tuple[bytes, int, int, int]]:
        """The regular files on PVC `claim`: path → (content, mode, uid, gid), read with `tar c` in a helper pod."""
        with self._volume_helper(namespace, claim) as (pod, root):
            result = self._run_checked(namespace, pod, ["tar", "-c", "-f", "-", "-C", root, "."])
        out: dict[str, tuple[bytes, int, int, int]] = {}
        with tarfile.open(fileobj=io.BytesIO(result.stdout), mode="r:") as tar:
            for member in tar:
                if member.isfile():
                    handle = tar.extractfile(member)
                    assert handle is not None
                    path = member.name[2:] if member.name.startswith("./") else member.name
                    out[path] = (handle.read(), member.mode & 0o7777, member.uid, member.gid)
        return out

    def wipe_volume(self, namespace: str, claim: str) -> None:
        """Everything on PVC `claim` removed (`rm -rf` of each top-level entry, in a helper pod)."""
        with self._volume_helper(namespace, claim) as (pod, root):
            listing = self._run_checked(namespace, pod, ["find", root, "-mindepth", "1", "-maxdepth", "1"])
            entries = [line for line in listing.stdout.decode().splitlines() if line]
            if entries:
                self._run_checked(namespace, pod, ["rm", "-rf", *entries])

    @contextmanager
    def _volume_helper(self, namespace: str, claim: str) -> Iterator[tuple[str, str]]:
        name, root = f"e2e-volume-{secrets.token_hex(3)}", f"/mnt/{claim}"
        pod = helper_pod(namespace, name, {claim: root})
        node = self._node_using(namespace, claim)
        if node:                              # a ReadWriteOnce claim in use: the helper must share its node
            pod["spec"]["nodeName"] = node
        self.call(self._create(pod))
        try:
            self._wait_running(namespace, name)
            yield name, root
        finally:
            self._core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)

    def _node_using(self, namespace: str, claim: str) -> str | None:
        for pod in self._core.list_namespaced_pod(namespace).items:
            if pod.metadata.deletion_timestamp or not pod.spec.node_name:
                continue
            if any(v.persistent_volume_claim and v.persistent_volume_claim.claim_name == claim
                   for v in pod.spec.volumes or []):
                return pod.spec.node_name
        return None

    def _wait_running(self, namespace: str, name: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while self._core.read_namespaced_pod(name, namespace).status.phase != "Running":
            if time.monotonic() > deadline:
                raise TimeoutError(f"helper pod {name} in {namespace} did not start")
            time.sleep(0.1)

    def _run_checked(self, namespace: str, pod: str, command: list[str]) -> ExecResult:
        result = self._exec._run(namespace, pod, "helper", command, None, 60)
        if not result.ok:
            raise RuntimeError(f"{command[0]} in {namespace}/{pod} failed: {result.stderr_text()}")
        return result

    def _exec_reaches_pods(self) -> bool:
        """Whether exec through the API server reaches a pod run by the simulated kubelet (probed once)."""
        namespace = f"e2e-exec-probe-{secrets.token_hex(3)}"
        self._namespaces.append(namespace)
        self.call(self._create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}))
        try:
            self.call(self._create(helper_pod(namespace, "probe", {})))
            self._wait_running(namespace, "probe", timeout=30)
            return self._exec._run(namespace, "probe", "helper", ["true"], None, 10).ok
        except (ExecError, TimeoutError, kc.ApiError, k8s.exceptions.ApiException):
            return False
        finally:
            try:
                self._core.delete_namespaced_pod("probe", namespace, grace_period_seconds=0)
            except k8s.exceptions.ApiException:
                pass
