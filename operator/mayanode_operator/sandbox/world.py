"""Sandbox: the emulated API server, the mocknet and the simulated kubelet, wired together.

    async with Sandbox.start(block_interval=0.2) as sb:
        node = await sb.seed_node("node-a", version="1.111.0", status="Active")
        await sb.wait_ready("node-a")
        sb.kubeconfig_path; sb.api; sb.mocknet; sb.kubelet; sb.client

``SandboxThread`` runs the same world on an event loop in a daemon thread, for synchronous tests
and for running the operator as a subprocess against ``kubeconfig_path``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Coroutine, Iterable, TypeVar

from mayanode_operator.api import naming
from mayanode_operator.sandbox import identity as ident
from mayanode_operator.sandbox import kubeclient as kc
from mayanode_operator.sandbox.kubelet import SimulatedKubelet
from mayanode_operator.sandbox.seed import nodelauncher as nl

T = TypeVar("T")

SNAPSHOT_GROUP = "snapshot.storage.k8s.io"


def volume_snapshot_crd() -> dict:
    """A minimal ``snapshot.storage.k8s.io/v1`` VolumeSnapshot CRD (what the external-snapshotter ships, trimmed)."""
    schema = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "required": ["source"],
                "properties": {
                    "source": {
                        "type": "object",
                        "properties": {
                            "persistentVolumeClaimName": {"type": "string"},
                            "volumeSnapshotContentName": {"type": "string"},
                        },
                    },
                    "volumeSnapshotClassName": {"type": "string"},
                },
            },
            "status": {
                "type": "object",
                "properties": {
                    "boundVolumeSnapshotContentName": {"type": "string"},
                    "creationTime": {"type": "string", "format": "date-time"},
                    "readyToUse": {"type": "boolean"},
                    "restoreSize": {"type": "string"},
                    "error": {"type": "object", "properties": {
                        "message": {"type": "string"}, "time": {"type": "string", "format": "date-time"}}},
                },
            },
        },
        "required": ["spec"],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"volumesnapshots.{SNAPSHOT_GROUP}"},
        "spec": {
            "group": SNAPSHOT_GROUP,
            "names": {"kind": "VolumeSnapshot", "listKind": "VolumeSnapshotList", "plural": "volumesnapshots",
                      "singular": "volumesnapshot", "shortNames": ["vs"]},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": schema},
                "additionalPrinterColumns": [
                    {"name": "ReadyToUse", "type": "boolean", "jsonPath": ".status.readyToUse"},
                    {"name": "SourcePVC", "type": "string", "jsonPath": ".spec.source.persistentVolumeClaimName"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }],
        },
    }


@dataclass(frozen=True)
class SeededNode:
    """What ``seed_node`` made: safe to log (the identity's secrets are excluded from repr)."""

    namespace: str
    facts: ident.PublicFacts
    node_address: str
    rest_url: str
    rpc_url: str
    version: str
    network: str
    chain_id: str
    identity: ident.NodeIdentity = field(repr=False)

    @property
    def password(self) -> str:
        return self.identity.password


class Sandbox:
    """A running sandbox world. Create with ``Sandbox.start(...)`` (async context manager) or
    ``await Sandbox.create(...)`` + ``await sb.close()``."""

    def __init__(self, api: Any, mocknet: Any, kubelet: SimulatedKubelet, client: kc.KubeClient,
                 kubeconfig_path: Path, workdir: Path, own_workdir: bool) -> None:
        self.api = api
        self.mocknet = mocknet
        self.kubelet = kubelet
        self.client = client
        self.kubeconfig_path = kubeconfig_path
        self.workdir = workdir
        self._own_workdir = own_workdir
        self.nodes: dict[str, SeededNode] = {}

    @property
    def url(self) -> str:
        return self.api.url

    # ---- lifecycle -------------------------------------------------------------------------
    @classmethod
    async def create(
        cls,
        block_interval: float = 0.2,
        *,
        chain_id: str = "mayachain-mocknet",
        network: str = "mocknet",
        workdir: str | Path | None = None,
        install_crds: bool = True,
        kubelet_options: dict[str, Any] | None = None,
        mocknet_options: dict[str, Any] | None = None,
    ) -> "Sandbox":
        from mayanode_operator.sandbox.apiserver import EmulatedApiServer
        from mayanode_operator.sandbox.mocknet import Mocknet

        own = workdir is None
        path = Path(tempfile.mkdtemp(prefix="mayanode-sandbox-")) if own else Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        api = EmulatedApiServer()
        mocknet = Mocknet(block_interval=block_interval, chain_id=chain_id, network=network,
                          **(mocknet_options or {}))
        kubelet: SimulatedKubelet | None = None
        client: kc.KubeClient | None = None
        try:
            await api.start()
            await mocknet.start()
            client = kc.KubeClient(api.url)
            if install_crds:
                await cls._install_crds(client)
            kubelet = SimulatedKubelet(api.url, mocknet, **(kubelet_options or {}))
            api.set_exec_handler(kubelet)
            await kubelet.start()
            kubeconfig = Path(api.write_kubeconfig(path / "kubeconfig"))
        except BaseException:
            if kubelet is not None:
                await kubelet.stop()
            if client is not None:
                await client.close()
            with contextlib.suppress(Exception):
                await mocknet.stop()
            with contextlib.suppress(Exception):
                await api.stop()
            if own:
                shutil.rmtree(path, ignore_errors=True)
            raise
        return cls(api, mocknet, kubelet, client, kubeconfig, path, own)

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, block_interval: float = 0.2, **kwargs: Any) -> AsyncIterator["Sandbox"]:
        sb = await cls.create(block_interval, **kwargs)
        try:
            yield sb
        finally:
            await sb.close()

    async def close(self) -> None:
        await self.kubelet.stop()
        await self.client.close()
        with contextlib.suppress(Exception):
            await self.mocknet.stop()
        with contextlib.suppress(Exception):
            await self.api.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @staticmethod
    async def _install_crds(client: kc.KubeClient) -> None:
        from mayanode_operator.api.crdgen import all_crds

        crds = [copy.deepcopy(c) for c in all_crds()]
        # The API server may serve VolumeSnapshot itself; install the CRD only when it does not.
        try:
            await client.request("GET", f"/apis/{SNAPSHOT_GROUP}/v1")
            served = True
        except kc.ApiError:
            served = False
        if not served:
            crds.append(volume_snapshot_crd())
        for crd in crds:
            try:
                await client.create(kc.CRDS, crd)
            except kc.ApiError as exc:
                if exc.status != 409:
                    raise
        # Established: the group/version answers discovery.
        groups = {(c["spec"]["group"], v["name"]) for c in crds for v in c["spec"]["versions"] if v.get("served")}
        deadline = time.monotonic() + 10
        for group, version in groups:
            while True:
                try:
                    await client.request("GET", f"/apis/{group}/{version}")
                    break
                except kc.ApiError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)

    # ---- seeding ---------------------------------------------------------------------------
    async def seed_node(
        self,
        namespace: str,
        *,
        identity: ident.NodeIdentity | None = None,
        version: str = "1.111.0",
        network: str | None = None,
        status: str = "Active",
        bond: int | None = None,
        with_keys: bool = True,
        ip_address: str = "",
        register: bool = True,
        replicas: int = 1,
    ) -> SeededNode:
        """Create what node-launcher's ``mayanode-stack`` chart (plus the hand-made Secrets) creates
        in ``namespace``, fill the PVCs with the node's files and register the node account."""
        net = network or self.mocknet.network
        chain_id = self.mocknet.chain_id
        who = identity or ident.NodeIdentity.from_seed(namespace, network=net)
        spec = nl.StackSpec(namespace=namespace, version=version, network=net, chain_id=chain_id)
        objects = nl.stack_objects(spec, mnemonic=who.mnemonic, password=who.password)

        # Volumes first, so the pods find their files when they start.
        if with_keys:
            vaults = [v for v in self.mocknet.current_vaults() if ident.is_vault_member(who, v)]
            self._write_home(self.kubelet.volume(namespace, naming.DEFAULT_MAYANODE_PVC),
                             naming.DEFAULT_MAYANODE_SUBPATH,
                             ident.mayanode_home_entries(who, chain_id=chain_id))
            self._write_home(self.kubelet.volume(namespace, naming.DEFAULT_BIFROST_PVC),
                             naming.DEFAULT_BIFROST_SUBPATH, ident.bifrost_home_entries(who, vaults))
        if register:
            from mayanode_operator.sandbox.mocknet import node_account_for

            kwargs: dict[str, Any] = {"status": status, "version": version, "ip_address": ip_address}
            if bond is not None:
                kwargs["bond"] = bond
            self.mocknet.add_node(node_account_for(who, **kwargs))

        for obj in objects:
            if obj["kind"] == "Deployment":
                obj["spec"]["replicas"] = replicas
            res = _resource_for(obj)
            try:
                await self.client.create(res, obj)
            except kc.ApiError as exc:
                if not (exc.status == 409 and obj["kind"] == "Namespace"):
                    raise
            if obj["kind"] == "PersistentVolumeClaim":
                storage = obj["spec"]["resources"]["requests"]["storage"]
                await self.client.patch(kc.PVCS, obj["metadata"]["name"], {"status": {
                    "phase": "Bound", "accessModes": obj["spec"]["accessModes"], "capacity": {"storage": storage}}},
                    namespace, subresource="status")
        node = SeededNode(
            namespace=namespace, facts=ident.public_facts(who), node_address=who.node_address,
            rest_url=f"{self.mocknet.url}/ns/{namespace}", rpc_url=f"{self.mocknet.url}/ns/{namespace}/rpc",
            version=version, network=net, chain_id=chain_id, identity=who,
        )
        self.nodes[namespace] = node
        return node

    @staticmethod
    def _write_home(tree, sub: str, entries: Iterable[ident.HomeEntry]) -> None:
        tree.mkdir(sub, 0o700)
        for entry in entries:
            path = f"{sub}/{entry.path.rstrip('/')}"
            if entry.is_dir:
                tree.mkdir(path, entry.mode, entry.uid, entry.gid)
                tree.set_meta(path, mode=entry.mode)
            else:
                tree.write(path, entry.content, entry.mode, entry.uid, entry.gid)

    # ---- waiting ---------------------------------------------------------------------------
    async def wait_for(self, predicate: Callable[[], Awaitable[Any] | Any], timeout: float = 10.0,
                       interval: float = 0.05, message: str = "condition") -> Any:
        """Poll ``predicate`` until it returns something truthy; returns that value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
                value = await value
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {message}")
            await asyncio.sleep(interval)

    async def wait_ready(self, namespace: str, deployments: Iterable[str] = ("mayanode", "bifrost", "gateway"),
                         timeout: float = 10.0) -> None:
        """Each Deployment's status shows all replicas of the current template ready, and (when the
        namespace has a mayanode Deployment) its process runs in the mocknet."""
        names = list(deployments)

        async def ready() -> bool:
            for name in names:
                dep = await self.client.get(kc.DEPLOYMENTS, name, namespace)
                if dep is None:
                    return False
                want = dep["spec"].get("replicas", 1)
                st = dep.get("status") or {}
                if st.get("observedGeneration") != dep["metadata"].get("generation"):
                    return False
                if (st.get("readyReplicas", 0), st.get("updatedReplicas", 0), st.get("replicas", 0)) != \
                        (want, want, want):
                    return False
            if "mayanode" in names and not self.mocknet.running_processes(namespace):
                return False
            return True

        await self.wait_for(ready, timeout, message=f"{namespace} deployments {names} ready")

    async def pods(self, namespace: str, label_selector: str | None = None) -> list[dict]:
        return (await self.client.list(kc.PODS, namespace, label_selector=label_selector)).get("items") or []


def _resource_for(obj: dict) -> kc.Resource:
    return {
        "Namespace": kc.NAMESPACES, "Secret": kc.SECRETS, "ConfigMap": kc.CONFIGMAPS,
        "PersistentVolumeClaim": kc.PVCS, "Service": kc.SERVICES, "Deployment": kc.DEPLOYMENTS,
        "Pod": kc.PODS,
    }[obj["kind"]]


class SandboxThread:
    """The sandbox on its own event loop in a daemon thread.

        with SandboxThread(block_interval=0.2) as st:
            node = st.call(st.sandbox.seed_node("node-a"))
            subprocess.run(["kubectl", "--kubeconfig", st.kubeconfig_path, "get", "pods", "-A"])
    """

    def __init__(self, block_interval: float = 0.2, **kwargs: Any) -> None:
        self._args = (block_interval, kwargs)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sandbox: Sandbox | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    @property
    def kubeconfig_path(self) -> Path:
        assert self.sandbox is not None
        return self.sandbox.kubeconfig_path

    def start(self, timeout: float = 30.0) -> "SandboxThread":
        self._thread = threading.Thread(target=self._main, name="sandbox", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("sandbox did not start")
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        block_interval, kwargs = self._args
        self._stop = asyncio.Event()
        try:
            self.sandbox = await Sandbox.create(block_interval, **kwargs)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.sandbox.close()

    def call(self, coro: Coroutine[Any, Any, T] | Callable[[], T], timeout: float = 30.0) -> T:
        """Run a coroutine (or a plain callable) on the sandbox's loop and return its result."""
        assert self.loop is not None
        if not asyncio.iscoroutine(coro):
            fn = coro

            async def wrapper() -> T:
                return fn()

            coro = wrapper()
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        if self.loop is None or self._thread is None:
            return
        if self._stop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> "SandboxThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
