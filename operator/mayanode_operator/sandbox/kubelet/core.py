"""SimulatedKubelet: deployment controller, node, LoadBalancer controller and exec target.

It talks to the API server over HTTP only (``sandbox.kubeclient``), like a real controller, and
keeps the container side (volumes, processes) in memory. ReplicaSets are not simulated: a
Deployment owns its pods directly (the ``pod-template-hash`` label still tells generations apart).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import hashlib
import ipaddress
import logging
import posixpath
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable

from mayanode_operator.sandbox import identity as ident
from mayanode_operator.sandbox import kubeclient as kc

from . import commands, planning, podenv, processes
from .volumes import ContainerFS, Mount, VolumeTree

log = logging.getLogger(__name__)

NODE_NAME = "sandbox-node"
HOST_IP = "10.0.0.10"
HELPER_LABEL = "maya.nodeops.io/helper"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ImageBehaviour:
    ready: bool = True
    crash: bool = False
    ready_delay: float | None = None


class ExecUnavailable(Exception):
    """The exec target cannot run the command (pod not running, container not started)."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


@dataclass
class ContainerRuntime:
    name: str
    spec: dict
    fs: ContainerFS | None = None
    env: dict[str, str] = field(default_factory=dict, repr=False)
    state: str = "waiting"  # waiting | running
    reason: str = "ContainerCreating"
    message: str = ""
    started_at: str | None = None
    ready: bool = False
    ready_at: float | None = None  # loop time; None = never (while running)
    restart_count: int = 0
    next_restart: float | None = None
    last_terminated: dict | None = None
    process: str | None = None  # "mayanode" | "bifrost"
    instance_id: str | None = None
    node_address: str | None = None
    image_info: processes.ImageInfo | None = None
    container_id: str = ""

    @property
    def image(self) -> str:
        return self.spec.get("image", "")


@dataclass
class PodRuntime:
    uid: str
    namespace: str
    name: str
    pod: dict
    containers: dict[str, ContainerRuntime] = field(default_factory=dict)
    pod_ip: str = ""
    start_time: str | None = None
    scheduled: bool = False
    unschedulable: str = ""
    initialized: bool = False
    task: asyncio.Task | None = None
    terminating: bool = False
    volumes: dict[str, VolumeTree] = field(default_factory=dict)
    transitions: dict[str, tuple[str, str]] = field(default_factory=dict)
    last_status: dict | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    node: str = ""                  # the node it is bound to
    attached: bool = False          # its ReadWriteOnce volumes are attached to its node

    @property
    def helper(self) -> bool:
        meta = self.pod.get("metadata", {})
        if (meta.get("labels") or {}).get(HELPER_LABEL):
            return True
        return not any(ref.get("controller") for ref in meta.get("ownerReferences") or [])


def _claims_of(pod: dict) -> set[str]:
    """The PersistentVolumeClaims a pod mounts."""
    return {str(claim) for vol in (pod.get("spec") or {}).get("volumes") or []
            if (claim := (vol.get("persistentVolumeClaim") or {}).get("claimName"))}


class _KeyedRunner:
    """Runs ``fn(key)`` serially per key; kicks during a run cause one more run."""

    def __init__(self, fn: Callable[[Any], Awaitable[None]], name: str) -> None:
        self.fn, self.name = fn, name
        self.dirty: set = set()
        self.running: dict[Any, asyncio.Task] = {}

    def kick(self, key: Any) -> None:
        if key in self.running:
            self.dirty.add(key)
            return
        self.running[key] = asyncio.create_task(self._loop(key), name=f"{self.name}:{key}")

    async def _loop(self, key: Any) -> None:
        delay = 0.05
        try:
            while True:
                self.dirty.discard(key)
                try:
                    await self.fn(key)
                    delay = 0.05
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("%s %s: %s; retrying", self.name, key, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    self.dirty.add(key)
                if key not in self.dirty:
                    break
        finally:
            self.running.pop(key, None)

    async def stop(self) -> None:
        tasks = list(self.running.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t


class SimulatedKubelet:
    """Virtual nodes (one unless ``node_names`` names more) plus the controllers a sandbox needs.

    ``mocknet`` receives process lifecycle calls; ``namespaces`` restricts the controllers. With several nodes, a
    pod without ``spec.nodeName`` goes to the node running the fewest pods, and a ReadWriteOnce volume is attached
    to one node at a time, as the attach/detach controller does: a pod on another node stays ContainerCreating
    (event ``FailedAttachVolume``, "Multi-Attach error") until every pod using the volume on its node is gone."""

    def __init__(
        self,
        api_url: str,
        mocknet: Any = None,
        *,
        namespaces: Iterable[str] | None = None,
        node_name: str = NODE_NAME,
        node_names: Iterable[str] | None = None,
        start_delay: float = 0.02,
        ready_delay: float = 0.2,
        stop_delay: float = 0.1,
        crash_backoff: float = 0.3,
        config_retry: float = 0.25,
        lb_delay: float = 0.1,
        lb_pool: str = "203.0.113.0/24",
        resync_interval: float = 5.0,
        client: kc.KubeClient | None = None,
    ) -> None:
        self.api_url = api_url
        self.mocknet = mocknet
        self.namespaces = set(namespaces) if namespaces is not None else None
        self.node_names = tuple(node_names) if node_names else (node_name,)
        self.node_name = self.node_names[0]
        self.start_delay = start_delay
        self.ready_delay = ready_delay
        self.stop_delay = stop_delay
        self.crash_backoff = crash_backoff
        self.config_retry = config_retry
        self.lb_delay = lb_delay
        self.resync_interval = resync_interval
        self.client = client or kc.KubeClient(api_url)   # an authenticated client on a real API server
        self.journal: list[tuple[float, str, str, str]] = []  # (time, event, namespace, name)
        self._behaviours: dict[str, ImageBehaviour] = {}
        self._volumes: dict[tuple[str, str], VolumeTree] = {}
        self._snapshots: dict[tuple[str, str], VolumeTree] = {}
        self._runtimes: dict[str, PodRuntime] = {}
        self._lb_pool = [str(ip) for ip in ipaddress.ip_network(lb_pool).hosts()][9:]
        self._lb_assigned: dict[tuple[str, str], str] = {}
        self._lb_overrides: dict[tuple[str, str], dict | None] = {}
        self._lb_tasks: dict[tuple[str, str], asyncio.Task] = {}
        self._ip_counter = 1
        self._tasks: set[asyncio.Task] = set()
        self._informers: list[kc.Informer] = []
        self._deployments = _KeyedRunner(self._reconcile_deployment, "deployment")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._churn_registered = False
        self.started = False

    # ---- public API ------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        specs = [
            (kc.DEPLOYMENTS, self._on_deployment),
            (kc.PODS, self._on_pod),
            (kc.SERVICES, self._on_service),
            (kc.PVCS, self._on_pvc),
            (kc.VOLUMESNAPSHOTS, self._on_snapshot),
        ]
        for res, handler in specs:
            informer = kc.Informer(self.client, res, handler)
            self._informers.append(informer)
            informer.start()
        await asyncio.wait_for(
            asyncio.gather(*(i.synced.wait() for i in self._informers[:4])), timeout=10)
        self._spawn(self._resync_loop(), "kubelet-resync")
        if self.mocknet is not None and hasattr(self.mocknet, "on_churn") and not self._churn_registered:
            self.mocknet.on_churn(self._on_churn)
            self._churn_registered = True
        self.started = True

    async def stop(self) -> None:
        self.started = False
        for informer in self._informers:
            await informer.stop()
        self._informers.clear()
        await self._deployments.stop()
        for rt in list(self._runtimes.values()):
            if rt.task is not None:
                rt.task.cancel()
        for task in [*self._tasks, *self._lb_tasks.values(),
                     *(rt.task for rt in self._runtimes.values() if rt.task)]:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        # Processes end with the node.
        for rt in list(self._runtimes.values()):
            self._stop_processes(rt)
        self._runtimes.clear()
        await self.client.close()

    def set_image_behaviour(self, image_substring: str, ready: bool = True, crash: bool = False,
                            ready_delay: float | None = None) -> None:
        """Containers whose image contains ``image_substring`` crash-loop (``crash``), never turn
        Ready (``ready=False``) or turn Ready after ``ready_delay``. Applies at the next container start."""
        self._behaviours[image_substring] = ImageBehaviour(ready, crash, ready_delay)

    def clear_image_behaviours(self) -> None:
        self._behaviours.clear()

    def volume(self, namespace: str, claim: str) -> VolumeTree:
        """The contents of PVC ``claim`` (created empty on first use)."""
        key = (namespace, claim)
        tree = self._volumes.get(key)
        if tree is None:
            tree = self._volumes.setdefault(key, VolumeTree(f"{namespace}/{claim}"))
        return tree

    def snapshot(self, namespace: str, name: str) -> VolumeTree | None:
        return self._snapshots.get((namespace, name))

    async def set_lb_address(self, namespace: str, name: str, ip: str | None = None,
                             hostname: str | None = None) -> None:
        """Pin the LoadBalancer address of a Service (``ip`` and/or ``hostname``); both None = pending."""
        key = (namespace, name)
        self._lb_overrides[key] = self._ingress(ip, hostname)
        task = self._lb_tasks.pop(key, None)
        if task is not None:
            task.cancel()
        await self._write_lb_status(namespace, name, self._lb_overrides[key])

    def pods(self, namespace: str | None = None) -> list[PodRuntime]:
        return [rt for rt in self._runtimes.values() if namespace is None or rt.namespace == namespace]

    def runtime(self, namespace: str, name: str) -> PodRuntime | None:
        for rt in self._runtimes.values():
            if rt.namespace == namespace and rt.name == name:
                return rt
        return None

    # ---- helpers -------------------------------------------------------------------------
    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _watched(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    def _record(self, event: str, namespace: str, name: str) -> None:
        self.journal.append((time.monotonic(), event, namespace, name))

    def _behaviour(self, image: str) -> ImageBehaviour:
        matches = [(len(k), b) for k, b in self._behaviours.items() if k in image]
        return max(matches, key=lambda m: m[0])[1] if matches else ImageBehaviour()

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync_interval)
            for informer in self._informers:
                if informer.res is kc.DEPLOYMENTS:
                    for key in list(informer.cache):
                        if self._watched(key[0]):
                            self._deployments.kick(key)

    # =========================================================================================
    # Deployment controller

    def _on_deployment(self, etype: str, obj: dict) -> None:
        key = kc.obj_key(obj)
        if self._watched(key[0]):
            self._deployments.kick(key)

    async def _reconcile_deployment(self, key: tuple[str, str]) -> None:
        namespace, name = key
        dep = await self.client.get(kc.DEPLOYMENTS, name, namespace)
        if dep is None:
            return
        meta = dep["metadata"]
        listing = await self.client.list(kc.PODS, namespace)
        owned = [p for p in listing.get("items") or []
                 if any(r.get("uid") == meta["uid"] and r.get("controller")
                        for r in p["metadata"].get("ownerReferences") or [])]
        current_hash = planning.template_hash(dep["spec"].get("template") or {})
        views = [self._pod_view(p) for p in owned]
        if not meta.get("deletionTimestamp") and not dep["spec"].get("paused"):
            plan = planning.plan_pods(dep, current_hash, views)
            for pod_name in plan.delete:
                await self.client.delete(kc.PODS, pod_name, namespace)
                self._record("pod-delete-requested", namespace, pod_name)
            for _ in range(plan.create):
                created = await self.client.create(kc.PODS, self._pod_from_template(dep, current_hash), namespace)
                self._record("pod-created", namespace, created["metadata"]["name"])
            if plan.delete or plan.create:
                listing = await self.client.list(kc.PODS, namespace)
                owned = [p for p in listing.get("items") or []
                         if any(r.get("uid") == meta["uid"] for r in p["metadata"].get("ownerReferences") or [])]
                views = [self._pod_view(p) for p in owned]
        status = planning.deployment_status(dep, current_hash, views, now_iso())
        old = dep.get("status") or {}
        if _strip_times(status) != _strip_times(old):
            patch = dict(status)
            for k in old:
                if k not in patch:
                    patch[k] = None
            await self.client.patch(kc.DEPLOYMENTS, name, {"status": patch}, namespace, subresource="status")

    @staticmethod
    def _pod_view(pod: dict) -> planning.OwnedPod:
        meta = pod["metadata"]
        conds = {c.get("type"): c.get("status") for c in (pod.get("status") or {}).get("conditions") or []}
        return planning.OwnedPod(
            name=meta["name"],
            template_hash=(meta.get("labels") or {}).get(planning.HASH_LABEL, ""),
            terminating=bool(meta.get("deletionTimestamp")),
            ready=conds.get("Ready") == "True",
            created=meta.get("creationTimestamp", ""),
        )

    @staticmethod
    def _pod_from_template(dep: dict, current_hash: str) -> dict:
        template = copy.deepcopy(dep["spec"].get("template") or {})
        tmeta = template.get("metadata") or {}
        labels = dict(tmeta.get("labels") or {})
        labels[planning.HASH_LABEL] = current_hash
        meta: dict[str, Any] = {
            "generateName": f"{dep['metadata']['name']}-{current_hash}-",
            "namespace": dep["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"],
                "uid": dep["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True,
            }],
        }
        if tmeta.get("annotations"):
            meta["annotations"] = dict(tmeta["annotations"])
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template.get("spec") or {}}

    # =========================================================================================
    # Node: pods

    async def _on_pod(self, etype: str, pod: dict) -> None:
        meta = pod.get("metadata") or {}
        namespace = meta.get("namespace", "")
        if not self._watched(namespace):
            return
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") == "Deployment" and ref.get("controller"):
                self._deployments.kick((namespace, ref.get("name")))
        uid = meta.get("uid", "")
        node = (pod.get("spec") or {}).get("nodeName")
        if node and node not in self.node_names:
            return
        rt = self._runtimes.get(uid)
        if etype == "DELETED":
            if rt is not None:
                await self._forget(rt)
            return
        if rt is None:
            if meta.get("deletionTimestamp"):
                if node in self.node_names:
                    self._spawn(self._finish_delete(namespace, meta["name"], uid), f"delete:{meta['name']}")
                return
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                return
            rt = PodRuntime(uid=uid, namespace=namespace, name=meta["name"], pod=pod)
            self._runtimes[uid] = rt
            rt.task = asyncio.create_task(self._pod_lifecycle(rt), name=f"pod:{namespace}/{rt.name}")
            return
        rt.pod = pod
        if meta.get("deletionTimestamp") and not rt.terminating:
            rt.terminating = True
            self._spawn(self._terminate(rt), f"terminate:{rt.name}")

    def _place(self, rt: PodRuntime) -> str:
        """The node running the fewest pods (the first of them on a tie), as a spreading scheduler would choose; the
        volumes' attachments are not considered (a real scheduler does not either)."""
        load = {node: 0 for node in self.node_names}
        for other in self._runtimes.values():
            if other is not rt and other.node in load:
                load[other.node] += 1
        return min(self.node_names, key=lambda node: (load[node], self.node_names.index(node)))

    async def _bind(self, rt: PodRuntime) -> None:
        pinned = (rt.pod.get("spec") or {}).get("nodeName")
        if pinned:
            rt.node = pinned
            return
        rt.node = self._place(rt)
        binding = {
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": rt.name, "namespace": rt.namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": rt.node},
        }
        try:
            await self.client.request("POST", kc.PODS.path(rt.namespace, rt.name, "binding"), body=binding)
        except kc.ApiError as exc:
            if exc.status != 409:  # 409: already assigned
                raise

    async def _read_write_once_claims(self, rt: PodRuntime) -> list[str]:
        claims = []
        for claim in sorted(_claims_of(rt.pod)):
            pvc = await self.client.get(kc.PVCS, claim, rt.namespace)
            modes = ((pvc or {}).get("spec") or {}).get("accessModes") or ["ReadWriteOnce"]
            if "ReadWriteOnce" in modes:
                claims.append(claim)
        return claims

    def _attach(self, rt: PodRuntime, claims: list[str]) -> tuple[str, list[str]] | None:
        """Attach the pod's ReadWriteOnce volumes to its node, or (claim, pods on another node using it)."""
        for claim in claims:
            users = sorted(other.name for other in self._runtimes.values()
                           if other is not rt and other.attached and other.namespace == rt.namespace
                           and other.node != rt.node and claim in _claims_of(other.pod))
            if users:
                return claim, users
        rt.attached = True
        return None

    async def _wait_for_attach(self, rt: PodRuntime) -> None:
        claims = await self._read_write_once_claims(rt) if len(self.node_names) > 1 else []
        said = False
        while (conflict := self._attach(rt, claims)) is not None:
            claim, users = conflict
            if not said:
                said = True
                self._record("multi-attach", rt.namespace, rt.name)
                await self._event(rt, "Warning", "FailedAttachVolume",
                                  f'Multi-Attach error for volume "pvc-{claim}" Volume is already used by pod(s) '
                                  f"{', '.join(users)}")
            for c in rt.containers.values():
                c.state, c.reason, c.message = "waiting", "ContainerCreating", ""
            await self._publish(rt)
            await asyncio.sleep(self.config_retry)

    async def _event(self, rt: PodRuntime, type_: str, reason: str, message: str) -> None:
        stamp = now_iso()
        with contextlib.suppress(kc.ApiError):
            await self.client.create(kc.EVENTS, {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": f"{rt.name}.{uuid.uuid4().hex[:16]}", "namespace": rt.namespace},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": rt.name, "namespace": rt.namespace,
                                   "uid": rt.uid},
                "reason": reason, "message": message, "type": type_, "count": 1,
                "source": {"component": "attachdetach-controller"},
                "firstTimestamp": stamp, "lastTimestamp": stamp,
            }, rt.namespace)

    async def _pod_lifecycle(self, rt: PodRuntime) -> None:
        try:
            spec = rt.pod.get("spec") or {}
            for c in spec.get("containers") or []:
                rt.containers[c["name"]] = ContainerRuntime(c["name"], c)
            # Scheduling: every PVC must exist.
            while True:
                missing = await self._missing_pvcs(rt)
                if not missing:
                    rt.unschedulable = ""
                    break
                rt.unschedulable = (f'0/1 nodes are available: persistentvolumeclaim "{missing}" not found. '
                                    "preemption: 0/1 nodes are available: 1 Preemption is not helpful for "
                                    "scheduling.")
                await self._publish(rt)
                await asyncio.sleep(self.config_retry)
            await self._bind(rt)
            rt.scheduled = True
            rt.start_time = now_iso()
            rt.pod_ip = self._next_pod_ip()
            await self._publish(rt)
            await self._wait_for_attach(rt)
            await asyncio.sleep(self.start_delay)
            rt.initialized = True  # init containers are treated as done
            # Env is resolved when the containers are created; a missing ref keeps them waiting.
            while True:
                try:
                    envs = await self._resolve_envs(rt)
                    break
                except podenv.CreateContainerConfigError as exc:
                    for c in rt.containers.values():
                        c.state, c.reason, c.message = "waiting", "CreateContainerConfigError", str(exc)
                    await self._publish(rt)
                    await asyncio.sleep(self.config_retry)
            await self._build_volumes(rt)
            for name, c in rt.containers.items():
                c.env = envs[name]
                c.fs = self._container_fs(rt, c.spec)
            loop = asyncio.get_running_loop()
            for c in rt.containers.values():
                self._start_container(rt, c, loop.time())
            self._record("pod-running", rt.namespace, rt.name)
            await self._publish(rt)
            while True:
                now = loop.time()
                wake = None
                changed = False
                for c in rt.containers.values():
                    if c.state == "running" and not c.ready and c.ready_at is not None:
                        if now >= c.ready_at:
                            c.ready = True
                            changed = True
                        else:
                            wake = c.ready_at if wake is None else min(wake, c.ready_at)
                    if c.state == "waiting" and c.next_restart is not None:
                        if now >= c.next_restart:
                            c.next_restart = None
                            self._start_container(rt, c, now)
                            changed = True
                            if c.state == "running" and c.ready_at is not None:
                                wake = c.ready_at if wake is None else min(wake, c.ready_at)
                        else:
                            wake = c.next_restart if wake is None else min(wake, c.next_restart)
                        if c.next_restart is not None:
                            wake = c.next_restart if wake is None else min(wake, c.next_restart)
                if changed:
                    await self._publish(rt)
                rt.wake.clear()
                timeout = None if wake is None else max(0.0, wake - loop.time())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(rt.wake.wait(), timeout)
        except asyncio.CancelledError:
            raise
        except kc.ApiError as exc:
            if exc.status != 404:  # the pod vanished under us: nothing to do
                log.warning("pod %s/%s lifecycle: %s", rt.namespace, rt.name, exc)
        except Exception:
            log.exception("pod %s/%s lifecycle failed", rt.namespace, rt.name)

    def _next_pod_ip(self) -> str:
        self._ip_counter = self._ip_counter % 250 + 1
        return f"10.244.0.{self._ip_counter + 1}"

    async def _missing_pvcs(self, rt: PodRuntime) -> str | None:
        for claim in sorted(_claims_of(rt.pod)):
            if await self.client.get(kc.PVCS, claim, rt.namespace) is None:
                return claim
        return None

    async def _resolve_envs(self, rt: PodRuntime) -> dict[str, dict[str, str]]:
        containers = [c.spec for c in rt.containers.values()]
        fetched: dict[tuple[str, str], dict | None] = {}
        for kind, name in podenv.referenced_objects(containers):
            res = kc.SECRETS if kind == "Secret" else kc.CONFIGMAPS
            fetched[(kind, name)] = await self.client.get(res, name, rt.namespace)

        def lookup(kind: str, name: str) -> dict | None:
            return fetched.get((kind, name))

        return {c["name"]: podenv.resolve_env(c, rt.namespace, lookup, rt.pod) for c in containers}

    async def _build_volumes(self, rt: PodRuntime) -> None:
        for vol in (rt.pod.get("spec") or {}).get("volumes") or []:
            name = vol.get("name", "")
            if "persistentVolumeClaim" in vol:
                rt.volumes[name] = self.volume(rt.namespace, vol["persistentVolumeClaim"]["claimName"])
            elif "secret" in vol or "configMap" in vol:
                kind = "Secret" if "secret" in vol else "ConfigMap"
                src = vol.get("secret") or vol.get("configMap") or {}
                ref = src.get("secretName") or src.get("name", "")
                obj = await self.client.get(kc.SECRETS if kind == "Secret" else kc.CONFIGMAPS, ref, rt.namespace)
                tree = VolumeTree(f"{kind.lower()}:{ref}")
                data = podenv.object_data(kind, obj) if obj else {}
                mode = src.get("defaultMode", 0o644)
                items = src.get("items")
                pairs = [(i["key"], i.get("path", i["key"]), i.get("mode", mode)) for i in items] if items else \
                    [(k, k, mode) for k in data]
                for key, path, m in pairs:
                    if key in data:
                        tree.write(path, data[key].encode(), m)
                rt.volumes[name] = tree
            else:  # emptyDir and anything else: a fresh per-pod tree
                rt.volumes[name] = VolumeTree(f"{rt.name}:{name}", root_mode=0o777)

    def _container_fs(self, rt: PodRuntime, spec: dict) -> ContainerFS:
        mounts = []
        for vm in spec.get("volumeMounts") or []:
            tree = rt.volumes.get(vm.get("name", ""))
            if tree is None:
                continue
            mounts.append(Mount("/" + posixpath.normpath(vm["mountPath"]).strip("/") if vm["mountPath"] != "/"
                                else "/", tree, (vm.get("subPath") or "").strip("/"), bool(vm.get("readOnly"))))
        return ContainerFS(mounts, cwd=spec.get("workingDir") or "/")

    def _crash(self, c: ContainerRuntime, now: float, message: str, exit_code: int = 1) -> None:
        c.restart_count += 1
        finished = now_iso()
        c.last_terminated = {"terminated": {
            "exitCode": exit_code, "reason": "Error", "startedAt": finished, "finishedAt": finished,
            "containerID": self._container_id(c), **({"message": message} if message else {}),
        }}
        c.state, c.reason, c.ready, c.ready_at = "waiting", "CrashLoopBackOff", False, None
        backoff = min(10 * 2 ** (c.restart_count - 1), 300)
        c.message = f"back-off {backoff}s restarting failed container={c.name} pod={{pod}}"
        c.next_restart = now + self.crash_backoff

    def _container_id(self, c: ContainerRuntime) -> str:
        digest = hashlib.sha256(f"{id(c)}/{c.name}/{c.restart_count}".encode()).hexdigest()
        return f"containerd://{digest}"

    def _start_container(self, rt: PodRuntime, c: ContainerRuntime, now: float) -> None:
        behaviour = self._behaviour(c.image)
        if behaviour.crash:
            self._crash(c, now, "")
            return
        kind = processes.process_kind(c.spec)
        c.process = kind
        c.image_info = processes.parse_image(c.image)
        instance_id = f"{rt.namespace}/{rt.name}/{c.name}/{rt.uid[:8]}/{c.restart_count}"
        if kind is not None and self.mocknet is not None:
            network = c.image_info.network if c.image_info else "mocknet"
            address = processes.node_address(c.env, network)
            try:
                if address is None:
                    raise processes.StartFailure("Error: SIGNER_SEED_PHRASE is not set")
                if kind == "mayanode":
                    files = processes.read_validator_files(c.fs)
                    version = c.image_info.version if c.image_info else ""
                    supported = getattr(self.mocknet, "is_supported_binary", None)
                    if supported is not None and not supported(version):
                        raise processes.StartFailure(
                            f"panic: Unsupported Version: {version} is older than the network's version")
                    self.mocknet.process_started(
                        rt.namespace, instance_id, node_address=address, cons_pubkey_b64=files.cons_pubkey_b64,
                        version=c.image_info.version if c.image_info else "", signed_state_height=files.signed_height)
                else:
                    self.mocknet.bifrost_started(rt.namespace, instance_id, address)
            except processes.StartFailure as exc:
                self._crash(c, now, str(exc))
                return
            except Exception as exc:  # the simulated binary refused to run (e.g. unsupported version)
                self._crash(c, now, f"panic: {exc}")
                return
            c.instance_id = instance_id
            c.node_address = address
            self._record(f"{kind}-started", rt.namespace, rt.name)
        c.container_id = self._container_id(c)
        c.state, c.reason, c.message = "running", "", ""
        c.started_at = now_iso()
        c.next_restart = None
        if not behaviour.ready:
            c.ready, c.ready_at = False, None
        else:
            delay = behaviour.ready_delay
            if delay is None:
                delay = self.ready_delay if c.spec.get("readinessProbe") else 0.0
            c.ready, c.ready_at = delay <= 0, now + delay
        rt.wake.set()

    def _stop_processes(self, rt: PodRuntime) -> None:
        for c in rt.containers.values():
            if c.instance_id is None or self.mocknet is None:
                continue
            instance_id, c.instance_id = c.instance_id, None
            try:
                if c.process == "mayanode":
                    height = self.mocknet.process_stopped(instance_id)
                    if height is not None and c.fs is not None:
                        processes.write_signed_height(c.fs, int(height))
                elif c.process == "bifrost":
                    self.mocknet.bifrost_stopped(instance_id)
            except Exception:
                log.exception("stopping %s in %s/%s", c.process, rt.namespace, rt.name)
            self._record(f"{c.process}-stopped", rt.namespace, rt.name)
            c.state, c.ready = "waiting", False

    async def _terminate(self, rt: PodRuntime) -> None:
        if rt.task is not None:
            rt.task.cancel()
            with contextlib.suppress(BaseException):
                await rt.task
        self._stop_processes(rt)
        if not rt.helper:
            await asyncio.sleep(self.stop_delay)
        await self._finish_delete(rt.namespace, rt.name, rt.uid)

    async def _finish_delete(self, namespace: str, name: str, uid: str) -> None:
        for attempt in range(20):
            try:
                await self.client.delete(kc.PODS, name, namespace, grace_period_seconds=0, uid=uid)
                break
            except kc.ApiError as exc:
                if exc.status == 409:  # uid precondition: a new pod with the same name
                    break
                await asyncio.sleep(0.05 * (attempt + 1))
            except Exception:
                await asyncio.sleep(0.05 * (attempt + 1))
        self._record("pod-deleted", namespace, name)

    async def _forget(self, rt: PodRuntime) -> None:
        self._runtimes.pop(rt.uid, None)
        if rt.task is not None and not rt.terminating:
            rt.task.cancel()
            with contextlib.suppress(BaseException):
                await rt.task
        self._stop_processes(rt)

    # ---- pod status ------------------------------------------------------------------------
    def _condition(self, rt: PodRuntime, ctype: str, status: str, reason: str = "", message: str = "") -> dict:
        prev = rt.transitions.get(ctype)
        if prev is None or prev[0] != status:
            rt.transitions[ctype] = (status, now_iso())
        cond = {"type": ctype, "status": status, "lastProbeTime": None,
                "lastTransitionTime": rt.transitions[ctype][1]}
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        return cond

    def _pod_status(self, rt: PodRuntime) -> dict:
        if not rt.scheduled:
            return {"phase": "Pending", "qosClass": "BestEffort", "conditions": [
                self._condition(rt, "PodScheduled", "False", "Unschedulable", rt.unschedulable)]}
        statuses = []
        for c in rt.containers.values():
            cs: dict[str, Any] = {
                "name": c.name, "image": c.image,
                "imageID": f"{c.image.split('@')[0]}@sha256:{hashlib.sha256(c.image.encode()).hexdigest()}"
                if c.started_at else "",
                "ready": c.ready, "started": c.state == "running", "restartCount": c.restart_count,
                "lastState": c.last_terminated or {},
            }
            if c.container_id:
                cs["containerID"] = c.container_id
            if c.state == "running":
                cs["state"] = {"running": {"startedAt": c.started_at}}
            else:
                waiting = {"reason": c.reason}
                if c.message:
                    waiting["message"] = c.message.replace("{pod}", f"{rt.name}_{rt.namespace}({rt.uid})")
                cs["state"] = {"waiting": waiting}
            statuses.append(cs)
        running = any(c.state == "running" or c.restart_count for c in rt.containers.values())
        all_ready = bool(rt.containers) and all(c.ready for c in rt.containers.values())
        not_ready = [c.name for c in rt.containers.values() if not c.ready]
        msg = f"containers with unready status: [{' '.join(not_ready)}]" if not_ready else ""
        conditions = [
            self._condition(rt, "PodReadyToStartContainers", "True" if rt.initialized else "False"),
            self._condition(rt, "Initialized", "True" if rt.initialized else "False"),
            self._condition(rt, "Ready", "True" if all_ready else "False",
                            "" if all_ready else "ContainersNotReady", msg),
            self._condition(rt, "ContainersReady", "True" if all_ready else "False",
                            "" if all_ready else "ContainersNotReady", msg),
            self._condition(rt, "PodScheduled", "True"),
        ]
        status: dict[str, Any] = {
            "phase": "Running" if running else "Pending",
            "conditions": conditions,
            "hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}],
            "podIP": rt.pod_ip, "podIPs": [{"ip": rt.pod_ip}],
            "startTime": rt.start_time,
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        }
        init = (rt.pod.get("spec") or {}).get("initContainers") or []
        if init:
            status["initContainerStatuses"] = [{
                "name": ic["name"], "image": ic.get("image", ""), "imageID": "", "ready": True, "started": False,
                "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                             "startedAt": rt.start_time,
                                                             "finishedAt": rt.start_time}},
            } for ic in init]
        return status

    async def _publish(self, rt: PodRuntime) -> None:
        status = self._pod_status(rt)
        if status == rt.last_status or rt.terminating:
            return
        patch = dict(status)
        for k in rt.last_status or {}:
            if k not in patch:
                patch[k] = None
        await self.client.patch(kc.PODS, rt.name, {"status": patch}, rt.namespace, subresource="status")
        rt.last_status = status

    # =========================================================================================
    # Churn: key shares into running bifrosts

    async def _on_churn(self, vault: Any) -> None:
        for rt in list(self._runtimes.values()):
            for c in rt.containers.values():
                if c.process != "bifrost" or c.instance_id is None or c.fs is None:
                    continue
                network = c.image_info.network if c.image_info else "mocknet"
                who = processes.signer_identity(c.env, network)
                if who is None or not ident.is_vault_member(who, vault):
                    continue
                name, content = ident.key_share_file(who, vault)
                path = f"{processes.HOME}/{name}"
                try:
                    c.fs.write(path, content, 0o600)
                    self._record("key-share-written", rt.namespace, rt.name)
                except Exception:
                    log.exception("writing key share into %s/%s", rt.namespace, rt.name)

    # =========================================================================================
    # LoadBalancer controller

    @staticmethod
    def _ingress(ip: str | None, hostname: str | None) -> dict | None:
        if ip is None and hostname is None:
            return None
        entry: dict[str, Any] = {}
        if ip:
            entry["ip"] = ip
            entry["ipMode"] = "VIP"
        if hostname:
            entry["hostname"] = hostname
        return entry

    def _on_service(self, etype: str, svc: dict) -> None:
        key = kc.obj_key(svc)
        if not self._watched(key[0]):
            return
        if etype == "DELETED":
            self._lb_assigned.pop(key, None)
            self._lb_overrides.pop(key, None)
            task = self._lb_tasks.pop(key, None)
            if task:
                task.cancel()
            return
        is_lb = (svc.get("spec") or {}).get("type") == "LoadBalancer"
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if not is_lb:
            if ingress:
                self._spawn(self._write_lb_status(key[0], key[1], None), f"lb-clear:{key}")
            return
        if key in self._lb_overrides:
            want = self._lb_overrides[key]
            if (ingress[:1] if want else ingress) != ([want] if want else []):
                self._spawn(self._write_lb_status(key[0], key[1], want), f"lb-pin:{key}")
            return
        if ingress or key in self._lb_tasks:
            return
        self._lb_tasks[key] = self._spawn(self._assign_lb(key), f"lb-assign:{key}")

    async def _assign_lb(self, key: tuple[str, str]) -> None:
        try:
            await asyncio.sleep(self.lb_delay)
            ip = self._lb_assigned.get(key)
            if ip is None:
                used = set(self._lb_assigned.values())
                ip = next(a for a in self._lb_pool if a not in used)
                self._lb_assigned[key] = ip
            await self._write_lb_status(key[0], key[1], self._ingress(ip, None))
        finally:
            self._lb_tasks.pop(key, None)

    async def _write_lb_status(self, namespace: str, name: str, entry: dict | None) -> None:
        # A merge patch: `{}` would leave an earlier ingress in place, so a pending address clears it explicitly.
        body = {"status": {"loadBalancer": {"ingress": [entry] if entry else None}}}
        try:
            await self.client.patch(kc.SERVICES, name, body, namespace, subresource="status")
        except kc.ApiError as exc:
            if exc.status != 404:
                raise

    # =========================================================================================
    # PVCs (a dynamic provisioner) and VolumeSnapshots (a CSI snapshotter)

    def _on_pvc(self, etype: str, pvc: dict) -> None:
        key = kc.obj_key(pvc)
        if not self._watched(key[0]):
            return
        if etype == "DELETED":
            self._volumes.pop(key, None)
            return
        if pvc["metadata"].get("deletionTimestamp"):
            return
        if (pvc.get("status") or {}).get("phase") != "Bound":
            self._spawn(self._bind_pvc(pvc), f"pvc-bind:{key}")

    async def _bind_pvc(self, pvc: dict) -> None:
        namespace, name = kc.obj_key(pvc)
        spec = pvc.get("spec") or {}
        source = spec.get("dataSource") or spec.get("dataSourceRef") or {}
        if source.get("kind") == "VolumeSnapshot" and (namespace, name) not in self._volumes:
            snap = self._snapshots.get((namespace, source.get("name", "")))
            if snap is None:
                return  # real provisioners wait; a later event retries
            self.volume(namespace, name).copy_from(snap)
        else:
            self.volume(namespace, name)
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        status = {"phase": "Bound", "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                  "capacity": {"storage": storage}}
        with contextlib.suppress(kc.ApiError):
            await self.client.patch(kc.PVCS, name, {"status": status}, namespace, subresource="status")

    def _on_snapshot(self, etype: str, snap: dict) -> None:
        key = kc.obj_key(snap)
        if not self._watched(key[0]):
            return
        if etype == "DELETED":
            self._snapshots.pop(key, None)
            return
        if (snap.get("status") or {}).get("readyToUse") or key in self._snapshots:
            return
        claim = ((snap.get("spec") or {}).get("source") or {}).get("persistentVolumeClaimName")
        if not claim:
            return
        self._spawn(self._take_snapshot(snap, claim), f"snapshot:{key}")

    async def _take_snapshot(self, snap: dict, claim: str) -> None:
        namespace, name = kc.obj_key(snap)
        pvc = await self.client.get(kc.PVCS, claim, namespace)
        if pvc is None:
            status: dict[str, Any] = {"readyToUse": False, "error": {
                "message": f'failed to get input parameters to create snapshot {name}: '
                           f'"failed to retrieve PVC {claim} from the lister: '
                           f'\\"persistentvolumeclaim \\\\\\"{claim}\\\\\\" not found\\""',
                "time": now_iso()}}
        else:
            tree = VolumeTree(f"snapshot:{namespace}/{name}")
            tree.copy_from(self.volume(namespace, claim))
            self._snapshots[(namespace, name)] = tree
            size = ((pvc.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", "1Gi")
            status = {"readyToUse": True, "creationTime": now_iso(), "restoreSize": size,
                      "boundVolumeSnapshotContentName": f"snapcontent-{snap['metadata'].get('uid', '')}"}
        with contextlib.suppress(kc.ApiError):
            await self.client.patch(kc.VOLUMESNAPSHOTS, name, {"status": status}, namespace, subresource="status")
        # PVCs waiting for this snapshot can now be provisioned.
        for informer in self._informers:
            if informer.res is kc.PVCS:
                for (ns, _), pvc_obj in list(informer.cache.items()):
                    src = (pvc_obj.get("spec") or {}).get("dataSource") or {}
                    if ns == namespace and src.get("name") == name and \
                            (pvc_obj.get("status") or {}).get("phase") != "Bound":
                        self._spawn(self._bind_pvc(pvc_obj), "pvc-bind-from-snapshot")

    # =========================================================================================
    # Exec

    async def __call__(self, request: Any, stdin: asyncio.StreamReader,
                       stdout: Callable[[bytes], Awaitable[None]],
                       stderr: Callable[[bytes], Awaitable[None]]) -> int:
        rt = self.runtime(request.namespace, request.pod)
        if rt is None or rt.terminating:
            raise ExecUnavailable(400, "BadRequest",
                                  f"pod {request.pod} is not running on the sandbox node")
        container_name = request.container or next(iter(rt.containers), "")
        c = rt.containers.get(container_name)
        if c is None:
            raise ExecUnavailable(400, "BadRequest",
                                  f"container {container_name} is not valid for pod {request.pod}")
        if c.state != "running" or c.fs is None:
            raise ExecUnavailable(400, "BadRequest",
                                  f'unable to upgrade connection: container not found ("{container_name}")')
        has_mayanode = processes.process_kind(c.spec) == "mayanode"
        ctx = commands.ExecContext(
            fs=c.fs, stdin=stdin, stdout=stdout, stderr=stderr, env=c.env, has_mayanode=has_mayanode,
            mayanode_version=c.image_info.version if c.image_info else "",
            node_address=processes.node_address(c.env, c.image_info.network if c.image_info else "mocknet") or "",
            chain_id=getattr(self.mocknet, "chain_id", "") if self.mocknet is not None else "",
        )
        if has_mayanode and self.mocknet is not None:
            ctx.submit_tx = self._tx_submitter(rt.namespace, ctx.node_address)
        return await commands.run_command(list(request.command), ctx)

    def _tx_submitter(self, namespace: str, address: str) -> commands.TxSubmitter:
        async def submit(argv: list[str]) -> commands.TxOutcome:
            result = self.mocknet.submit_tx(namespace, address, argv)
            if asyncio.iscoroutine(result):
                result = await result
            return commands.TxOutcome(
                code=int(getattr(result, "code", 0) or 0),
                txhash=str(getattr(result, "txhash", "") or ""),
                raw_log=str(getattr(result, "raw_log", "") or ""),
                height=int(getattr(result, "height", 0) or 0),
                codespace=str(getattr(result, "codespace", "") or ""),
            )
        return submit


def _strip_times(status: dict) -> dict:
    out = dict(status)
    out["conditions"] = [
        {k: v for k, v in c.items() if k not in ("lastUpdateTime", "lastTransitionTime")}
        for c in status.get("conditions") or []
    ]
    return out
