"""A small async Kubernetes REST client (aiohttp) for the sandbox's controllers.

Plain HTTP, no auth: enough for the simulated kubelet to act like a controller against the
emulated API server (or, later, a real one behind ``kubectl proxy``). ``Informer`` does
list + watch with ``resourceVersion`` resume and re-lists on ``410 Gone``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    namespaced: bool = True
    kind: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


NAMESPACES = Resource("", "v1", "namespaces", False, "Namespace")
PODS = Resource("", "v1", "pods", True, "Pod")
SERVICES = Resource("", "v1", "services", True, "Service")
SECRETS = Resource("", "v1", "secrets", True, "Secret")
CONFIGMAPS = Resource("", "v1", "configmaps", True, "ConfigMap")
PVCS = Resource("", "v1", "persistentvolumeclaims", True, "PersistentVolumeClaim")
EVENTS = Resource("", "v1", "events", True, "Event")
DEPLOYMENTS = Resource("apps", "v1", "deployments", True, "Deployment")
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", False, "CustomResourceDefinition")
VOLUMESNAPSHOTS = Resource("snapshot.storage.k8s.io", "v1", "volumesnapshots", True, "VolumeSnapshot")


class ApiError(Exception):
    def __init__(self, status: int, body: Any, method: str = "", path: str = "") -> None:
        self.status = status
        self.body = body if isinstance(body, dict) else {"message": str(body)}
        self.reason = self.body.get("reason", "")
        self.message = self.body.get("message", "")
        super().__init__(f"{method} {path}: {status} {self.reason}: {self.message}")


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): re-list."""


class KubeClient:
    def __init__(self, base_url: str, *, session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._own_session = session is None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=20),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            )
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, *, params: dict | None = None, body: Any = None,
                      content_type: str = "application/json", allow_404: bool = False) -> Any:
        data = json.dumps(body) if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        clean = {k: str(v) for k, v in (params or {}).items() if v is not None}
        async with self.session.request(method, self.base_url + path, params=clean, data=data,
                                        headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as resp:
            text = await resp.text()
            if resp.status == 404 and allow_404:
                return None
            if resp.status >= 400:
                try:
                    payload = json.loads(text)
                except ValueError:
                    payload = {"message": text}
                raise ApiError(resp.status, payload, method, path)
            return json.loads(text) if text else None

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> dict | None:
        """The object, or None when it does not exist."""
        return await self.request("GET", res.path(namespace, name), allow_404=True)

    async def list(self, res: Resource, namespace: str | None = None, *, label_selector: str | None = None,
                   field_selector: str | None = None) -> dict:
        return await self.request("GET", res.path(namespace), params={
            "labelSelector": label_selector, "fieldSelector": field_selector})

    async def create(self, res: Resource, body: dict, namespace: str | None = None) -> dict:
        body = dict(body)
        body.setdefault("apiVersion", res.api_version)
        body.setdefault("kind", res.kind)
        ns = namespace or (body.get("metadata") or {}).get("namespace")
        return await self.request("POST", res.path(ns), body=body)

    async def patch(self, res: Resource, name: str, patch: Any, namespace: str | None = None, *,
                    subresource: str | None = None, patch_type: str = "merge") -> dict:
        content_type = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
            "strategic": "application/strategic-merge-patch+json",
        }[patch_type]
        return await self.request("PATCH", res.path(namespace, name, subresource), body=patch,
                                  content_type=content_type)

    async def replace(self, res: Resource, name: str, body: dict, namespace: str | None = None, *,
                      subresource: str | None = None) -> dict:
        return await self.request("PUT", res.path(namespace, name, subresource), body=body)

    async def delete(self, res: Resource, name: str, namespace: str | None = None, *,
                     grace_period_seconds: int | None = None, propagation_policy: str | None = None,
                     uid: str | None = None) -> dict | None:
        """Delete; None when it was already gone."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        if uid:
            body["preconditions"] = {"uid": uid}
        return await self.request("DELETE", res.path(namespace, name), body=body, allow_404=True)

    async def watch(self, res: Resource, namespace: str | None = None, *, resource_version: str | None = None,
                    timeout_seconds: int = 60, label_selector: str | None = None,
                    bookmarks: bool = True) -> AsyncIterator[tuple[str, dict]]:
        """Yields (type, object) until the server ends the stream; raises WatchExpired on 410."""
        params = {
            "watch": "true", "resourceVersion": resource_version, "timeoutSeconds": timeout_seconds,
            "labelSelector": label_selector, "allowWatchBookmarks": "true" if bookmarks else None,
        }
        clean = {k: str(v) for k, v in params.items() if v is not None}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=timeout_seconds + 30)
        async with self.session.get(self.base_url + res.path(namespace), params=clean, timeout=timeout) as resp:
            if resp.status == 410:
                raise WatchExpired(await resp.text())
            if resp.status >= 400:
                text = await resp.text()
                try:
                    payload = json.loads(text)
                except ValueError:
                    payload = {"message": text}
                raise ApiError(resp.status, payload, "WATCH", res.path(namespace))
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    etype, obj = event.get("type"), event.get("object") or {}
                    if etype == "ERROR":
                        if obj.get("code") == 410:
                            raise WatchExpired(obj.get("message", ""))
                        raise ApiError(obj.get("code", 500), obj, "WATCH", res.path(namespace))
                    yield etype, obj


def obj_key(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


EventCallback = Callable[[str, dict], Awaitable[None] | None]


class Informer:
    """A list+watch cache of one resource; calls ``on_event(type, obj)`` for every change.

    After a re-list (410 Gone or a broken stream) it reports the differences as ADDED/MODIFIED/
    DELETED, so consumers see a consistent sequence."""

    def __init__(self, client: KubeClient, res: Resource, on_event: EventCallback, *,
                 namespace: str | None = None, retry_interval: float = 0.5) -> None:
        self.client = client
        self.res = res
        self.namespace = namespace
        self.on_event = on_event
        self.cache: dict[tuple[str, str], dict] = {}
        self.synced = asyncio.Event()
        self.retry_interval = retry_interval
        self._task: asyncio.Task | None = None
        self._rv: str | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"informer:{self.res.plural}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _emit(self, etype: str, obj: dict) -> None:
        try:
            result = self.on_event(etype, obj)
            if asyncio.iscoroutine(result):
                await result
        except Exception:  # a consumer bug must not kill the informer
            log.exception("informer %s: handler failed on %s %s", self.res.plural, etype, obj_key(obj))

    async def _relist(self) -> None:
        listing = await self.client.list(self.res, self.namespace)
        fresh = {obj_key(o): o for o in listing.get("items") or []}
        for key, obj in fresh.items():
            obj.setdefault("kind", self.res.kind)
            obj.setdefault("apiVersion", self.res.api_version)
            old = self.cache.get(key)
            self.cache[key] = obj
            if old is None:
                await self._emit("ADDED", obj)
            elif (old.get("metadata") or {}).get("resourceVersion") != (obj.get("metadata") or {}).get(
                    "resourceVersion"):
                await self._emit("MODIFIED", obj)
        for key in [k for k in self.cache if k not in fresh]:
            await self._emit("DELETED", self.cache.pop(key))
        self._rv = (listing.get("metadata") or {}).get("resourceVersion")
        self.synced.set()

    async def _run(self) -> None:
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                async for etype, obj in self.client.watch(self.res, self.namespace, resource_version=self._rv):
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        self._rv = rv
                    if etype == "BOOKMARK":
                        continue
                    key = obj_key(obj)
                    if etype == "DELETED":
                        self.cache.pop(key, None)
                    else:
                        self.cache[key] = obj
                    await self._emit(etype, obj)
            except asyncio.CancelledError:
                raise
            except WatchExpired:
                need_list = True
            except ApiError as exc:
                if exc.status == 404:  # e.g. a CRD not installed yet
                    need_list = True
                    await asyncio.sleep(self.retry_interval * 4)
                    continue
                log.debug("informer %s: %s", self.res.plural, exc)
                need_list = True
                await asyncio.sleep(self.retry_interval)
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, json.JSONDecodeError) as exc:
                log.debug("informer %s: connection: %s", self.res.plural, exc)
                need_list = True
                await asyncio.sleep(self.retry_interval)
