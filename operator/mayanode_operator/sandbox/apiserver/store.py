"""In-memory object storage with real API semantics, one resourceVersion counter and watch fan-out.

`Store` is what the HTTP handlers call and what tests may call directly (`server.store`):

    store.create("pods", {...}, namespace="default")          # -> stored object (a copy)
    store.get("deployments.apps", "mayanode", "node-a")
    store.list("mayanodes.maya.nodeops.io", namespace=None, label_selector="a=b")   # -> XList dict
    store.patch("pods", "p", {"metadata": {"labels": {"x": "y"}}}, "default")    # merge patch by default
    store.patch(..., patch_type="json" | "strategic" | "apply", subresource="status")
    store.replace("configmaps", "c", obj, "default")
    store.delete("pods", "p", "default", grace_period_seconds=0)
    store.watch("pods", "default", resource_version="123")    # -> Watch (async iteration)

Resources are named by plural, `plural.group`, `plural.group/version`, Kind or short name.
Every method is thread-safe; watches deliver on the event loop they were opened from.
Errors are raised as `ApiError` (a real `Status` via `.status()`).
"""

from __future__ import annotations

import asyncio
import copy
import random
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

import yaml

from . import admission
from .errors import (ApiError, FieldError, GoLiteral, already_exists, bad_request, conflict, forbidden,
                     forbidden_error, gone, invalid, invalid_error, not_found, qualified, required)
from .patches import MERGE_KEYS, apply_merge, json_patch, merge_patch, strategic_merge_patch
from .resources import Registry, ResourceType
from .selectors import field_matcher, label_matcher, label_selector_string, lookup
from .validation import validate_crd, validate_custom_object

HISTORY_SIZE = 10_000
CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
RETURNS_DELETED_OBJECT = ("Pod", "PersistentVolumeClaim", "Service", "ServiceAccount")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
ObjectKey = tuple[str, str]        # (namespace, name); namespace "" for cluster-scoped objects


def now_rfc3339(offset_seconds: float = 0) -> str:
    moment = datetime.now(timezone.utc) + timedelta(seconds=offset_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WatchEvent:
    resource_version: int
    type: str                      # ADDED | MODIFIED | DELETED
    key: tuple[str, str]           # storage key (group, plural)
    object: dict[str, Any]
    old: dict[str, Any] | None


@dataclass
class Watch:
    """A watch subscription. `await watch.next(timeout)` → {"type", "object"} or None on timeout."""

    key: tuple[str, str]
    namespace: str | None
    predicate: Callable[[dict[str, Any]], bool]
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    closed: bool = False
    initial: int = 0               # synthetic ADDED events queued at start
    _store: "Store | None" = None

    def translate(self, event: WatchEvent) -> dict[str, Any] | None:
        obj, old = event.object, event.old
        if self.namespace and obj["metadata"].get("namespace") != self.namespace:
            return None
        now = self.predicate(obj)
        if event.type == "MODIFIED":
            before = old is not None and self.predicate(old)
            if now and before:
                return {"type": "MODIFIED", "object": obj}
            if now:
                return {"type": "ADDED", "object": obj}
            if before:
                return {"type": "DELETED", "object": obj}
            return None
        return {"type": event.type, "object": obj} if now else None

    def deliver(self, item: dict[str, Any] | None) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.queue.put_nowait(item)
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    async def next(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next event; None when `timeout` passes first. Raises EOFError once the watch is closed."""
        if self.closed and self.queue.empty():
            raise EOFError
        try:
            item = await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return None
        if item is None:
            self.closed = True
            raise EOFError
        return item

    def close(self) -> None:
        if self._store is not None:
            self._store._unsubscribe(self)
        if not self.closed:
            self.closed = True
            self.deliver(None)

    def __aiter__(self) -> "Watch":
        return self

    async def __anext__(self) -> dict[str, Any]:
        while True:
            try:
                item = await self.next(None)
            except EOFError:
                raise StopAsyncIteration from None
            if item is not None:
                return item


class Store:
    def __init__(self, registry: Registry | None = None, history_size: int = HISTORY_SIZE) -> None:
        self.registry = registry or Registry()
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str], dict[ObjectKey, dict[str, Any]]] = {}
        self._uids: dict[str, tuple[tuple[str, str], ObjectKey]] = {}
        self._rv = 1000
        self._history: deque[WatchEvent] = deque(maxlen=history_size)
        self._watches: list[Watch] = []
        self._ips = admission.ClusterIPAllocator()
        self.loop: asyncio.AbstractEventLoop | None = None     # set by the server; used for deferred GC
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create("namespaces", {"metadata": {"name": ns}})

    # ------------------------------------------------------------------------------------ helpers

    def resource(self, resource: str | ResourceType) -> ResourceType:
        if isinstance(resource, ResourceType):
            return resource
        try:
            return self.registry.resolve(resource)
        except KeyError:
            raise ApiError(404, "NotFound", f'the server could not find the requested resource ({resource})') from None

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def _bucket(self, rt: ResourceType) -> dict[ObjectKey, dict[str, Any]]:
        return self._objects.setdefault(rt.key, {})

    def _okey(self, rt: ResourceType, namespace: str | None, name: str) -> ObjectKey:
        return ((namespace or "") if rt.namespaced else "", name)

    def _require_namespace(self, rt: ResourceType, namespace: str | None) -> str:
        if rt.namespaced and not namespace:
            raise bad_request("the server could not find the requested resource: a namespace is required")
        return namespace or ""

    def _out(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        result = copy.deepcopy(obj)
        result["apiVersion"] = rt.api_version
        result["kind"] = rt.kind
        return result

    def _emit(self, rt: ResourceType, event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        event = WatchEvent(int(obj["metadata"]["resourceVersion"]), event_type, rt.key, obj, old)
        self._history.append(event)
        for watch in list(self._watches):
            if watch.key == rt.key:
                item = watch.translate(event)
                if item is not None:
                    watch.deliver(item)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _store(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        meta = obj["metadata"]
        meta["resourceVersion"] = self._next_rv()
        okey = (meta.get("namespace", ""), meta["name"])
        self._bucket(rt)[okey] = obj
        self._uids[meta["uid"]] = (rt.key, okey)
        self._emit(rt, "MODIFIED" if old is not None else "ADDED", obj, old)
        return obj

    def _remove(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        okey = (meta.get("namespace", ""), meta["name"])
        self._bucket(rt).pop(okey, None)
        self._uids.pop(meta["uid"], None)
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = self._next_rv()
        self._emit(rt, "DELETED", final, obj)
        self._after_removal(rt, final)
        return final

    # ------------------------------------------------------------------------------------ reads

    def get(self, resource: str | ResourceType, name: str, namespace: str | None = None, *,
            subresource: str | None = None) -> dict[str, Any]:
        rt = self.resource(resource)
        with self._lock:
            obj = self._bucket(rt).get(self._okey(rt, namespace, name))
            if obj is None:
                raise not_found(rt, name)
            if subresource == "scale":
                return self._scale_of(rt, obj)
            return self._out(rt, obj)

    def exists(self, resource: str | ResourceType, name: str, namespace: str | None = None) -> bool:
        rt = self.resource(resource)
        with self._lock:
            return self._okey(rt, namespace, name) in self._bucket(rt)

    def _matcher(self, rt: ResourceType, label_selector: str | None,
                 field_selector: str | None) -> Callable[[dict[str, Any]], bool]:
        labels = label_matcher(label_selector)
        fields = field_matcher(field_selector, rt.selectable_fields, rt.kind, rt.version)
        return lambda obj: labels(obj) and fields(obj)

    def list(self, resource: str | ResourceType, namespace: str | None = None, *,
             label_selector: str | None = None, field_selector: str | None = None) -> dict[str, Any]:
        """A `KindList` (items sorted by namespace and name, as etcd returns them)."""
        rt = self.resource(resource)
        matches = self._matcher(rt, label_selector, field_selector)
        with self._lock:
            items = [obj for (ns, _), obj in sorted(self._bucket(rt).items())
                     if (not namespace or not rt.namespaced or ns == namespace) and matches(obj)]
            rv = str(self._rv)
            out = []
            for obj in items:
                item = copy.deepcopy(obj)
                if rt.is_custom:
                    item["apiVersion"], item["kind"] = rt.api_version, rt.kind
                else:
                    item.pop("apiVersion", None)
                    item.pop("kind", None)
                out.append(item)
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": {"resourceVersion": rv},
                "items": out}

    def items(self, resource: str | ResourceType, namespace: str | None = None) -> list[dict[str, Any]]:
        """Plain list of objects (copies, with apiVersion and kind), for tests."""
        rt = self.resource(resource)
        return [self._out(rt, o) for o in self.list(rt, namespace)["items"]]

    # ------------------------------------------------------------------------------------ watch

    def watch(self, resource: str | ResourceType, namespace: str | None = None, *,
              label_selector: str | None = None, field_selector: str | None = None,
              resource_version: str | None = None, send_initial_events: bool | None = None) -> Watch:
        """Subscribe; initial events are queued first. Raises `ApiError` 410 when the version is too old."""
        rt = self.resource(resource)
        matches = self._matcher(rt, label_selector, field_selector)
        loop = asyncio.get_running_loop()
        with self._lock:
            watch = Watch(rt.key, namespace if rt.namespaced else None, matches, loop, _store=self)
            since = _parse_rv(resource_version)
            if since == 0 or send_initial_events:
                for (ns, _), obj in sorted(self._bucket(rt).items()):
                    if (not watch.namespace or ns == watch.namespace) and matches(obj):
                        watch.queue.put_nowait({"type": "ADDED", "object": obj})
                        watch.initial += 1
            else:
                oldest = self._history[0].resource_version if self._history else self._rv + 1
                if since < self._rv and oldest > since + 1:
                    raise gone(f"too old resource version: {since} ({oldest - 1})")
                for event in self._history:
                    if event.resource_version > since and event.key == rt.key:
                        item = watch.translate(event)
                        if item is not None:
                            watch.queue.put_nowait(item)
            self._watches.append(watch)
            return watch

    def _unsubscribe(self, watch: Watch) -> None:
        with self._lock:
            if watch in self._watches:
                self._watches.remove(watch)

    def close_watches(self) -> None:
        with self._lock:
            watches, self._watches = self._watches, []
        for watch in watches:
            watch.closed = True
            watch.deliver(None)

    # ------------------------------------------------------------------------------------ create

    def create(self, resource: str | ResourceType, obj: dict[str, Any], namespace: str | None = None, *,
               field_validation: str = "Ignore", dry_run: bool = False,
               warnings: list[str] | None = None) -> dict[str, Any]:
        rt = self.resource(resource)
        if not isinstance(obj, dict):
            raise bad_request("the body of the request was not a JSON object")
        with self._lock:
            obj = copy.deepcopy(obj)
            self._check_kind(rt, obj)
            meta = obj.get("metadata")
            if not isinstance(meta, dict):
                meta = obj["metadata"] = {}
            if rt.namespaced:
                namespace = namespace or meta.get("namespace") or ""
                if not namespace:
                    raise bad_request("the server could not find the requested resource: a namespace is required")
                if meta.get("namespace") and meta["namespace"] != namespace:
                    raise bad_request("the namespace of the provided object does not match the namespace sent on "
                                      "the request")
                meta["namespace"] = namespace
            else:
                meta.pop("namespace", None)
            if not meta.get("name"):
                if meta.get("generateName"):
                    meta["name"] = self._generate_name(rt, namespace, meta["generateName"])
                else:
                    raise invalid_error(rt.kind, rt.group, "", [required("metadata.name",
                                                                         "name or generateName is required")])
            name = meta["name"]
            if rt.namespaced:
                ns_obj = self._bucket(self.resource("namespaces")).get(("", namespace))
                if ns_obj is None:
                    raise not_found(self.resource("namespaces"), namespace)
                if ns_obj["metadata"].get("deletionTimestamp"):
                    raise forbidden_error(rt, name, f"unable to create new content in namespace {namespace} "
                                                    f"because it is being terminated")
            if self._okey(rt, namespace, name) in self._bucket(rt):
                raise already_exists(rt, name)
            for key in ("resourceVersion", "uid", "creationTimestamp", "deletionTimestamp",
                        "deletionGracePeriodSeconds", "managedFields", "selfLink", "generation"):
                meta.pop(key, None)
            obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
            errors = admission.validate_metadata(rt.kind, meta)
            if rt.status:
                status = admission.initial_status(rt.kind, rt.group)
                if status is None:
                    obj.pop("status", None)
                else:
                    obj["status"] = status
            if rt.is_custom:
                obj = self._validate_custom(rt, obj, None, field_validation, errors, warnings)
            elif rt.kind == "CustomResourceDefinition":
                errors += self._prepare_crd(obj)
            else:
                errors += admission.prepare_create(rt.kind, rt.group, obj, self._ips)
            if errors:
                raise invalid_error(rt.kind, rt.group, name, errors)
            meta = obj["metadata"]
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if rt.generation:
                meta["generation"] = 1
            if dry_run:
                meta["resourceVersion"] = ""
                return self._out(rt, obj)
            self._store(rt, obj, None)
            if rt.kind == "CustomResourceDefinition":
                self.registry.register_crd(obj)
            self._collect_if_orphan(rt, obj)
            return self._out(rt, obj)

    def _check_kind(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        kind = obj.get("kind")
        if kind and kind != rt.kind:
            raise bad_request(f"the object provided is unrecognized (kind {kind!r} does not match the resource "
                              f"{qualified(rt)!r}, kind {rt.kind!r})")

    def _generate_name(self, rt: ResourceType, namespace: str | None, prefix: str) -> str:
        for _ in range(100):
            name = prefix + "".join(random.choice(_NAME_CHARS) for _ in range(5))
            if self._okey(rt, namespace, name) not in self._bucket(rt):
                return name
        raise ApiError(409, "AlreadyExists", "could not generate a unique name")

    def _validate_custom(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None,
                         field_validation: str, errors: list[FieldError], warnings: list[str] | None,
                         subresource: str | None = None, apply: bool = False) -> dict[str, Any]:
        obj["apiVersion"] = rt.api_version
        result = validate_custom_object(rt.crd, obj, old, strict=False, subresource=subresource)
        if result.unknown_fields:
            mode = (field_validation or "Warn").capitalize()
            if mode == "Strict":
                if apply:
                    meta = obj.get("metadata") or {}
                    where = f"{meta.get('namespace', '')}/{meta.get('name', '')}".lstrip("/")
                    raise bad_request(f"failed to create typed patch object ({where}; {rt.api_version}, Kind="
                                      f"{rt.kind}): " + ", ".join(f".{p}: field not declared in schema"
                                                                  for p in result.unknown_fields))
                raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: strict '
                                  f"decoding error: " + ", ".join(f'unknown field "{p}"' for p in result.unknown_fields))
            if mode == "Warn" and warnings is not None:
                warnings.extend(f'unknown field "{p}"' for p in result.unknown_fields)
        errors.extend(result.errors)
        return result.object

    # ------------------------------------------------------------------------------------ update

    def replace(self, resource: str | ResourceType, name: str, obj: dict[str, Any], namespace: str | None = None,
                *, subresource: str | None = None, field_validation: str = "Ignore", dry_run: bool = False,
                warnings: list[str] | None = None) -> dict[str, Any]:
        """PUT: optimistic concurrency on metadata.resourceVersion (required for custom resources)."""
        rt = self.resource(resource)
        if not isinstance(obj, dict):
            raise bad_request("the body of the request was not a JSON object")
        with self._lock:
            current = self._bucket(rt).get(self._okey(rt, namespace, name))
            if current is None:
                raise not_found(rt, name)
            body_meta = obj.get("metadata") or {}
            if body_meta.get("name") and body_meta["name"] != name:
                raise bad_request(f"the name of the object ({body_meta['name']}) does not match the name on the URL "
                                  f"({name})")
            if subresource == "scale":
                return self._update_scale(rt, current, obj, dry_run)
            rv = body_meta.get("resourceVersion")
            if not rv and rt.is_custom:
                raise invalid_error(rt.kind, rt.group, name, [invalid("metadata.resourceVersion", GoLiteral("0x0"),
                                                                      "must be specified for an update")])
            if rv and rv != current["metadata"]["resourceVersion"]:
                raise conflict(rt, name)
            return self._update(rt, current, copy.deepcopy(obj), subresource, field_validation, dry_run, warnings)

    def patch(self, resource: str | ResourceType, name: str, patch: Any, namespace: str | None = None, *,
              patch_type: str = "merge", subresource: str | None = None, field_manager: str | None = None,
              force: bool = False, field_validation: str = "Ignore", dry_run: bool = False,
              warnings: list[str] | None = None) -> dict[str, Any]:
        """PATCH with patch_type "merge", "json", "strategic" or "apply" (server-side apply, create if absent)."""
        rt = self.resource(resource)
        if patch_type == "strategic" and rt.is_custom:
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                           "accepted media types include: application/json-patch+json, "
                           "application/merge-patch+json, application/apply-patch+yaml")
        if isinstance(patch, (bytes, str)):
            patch = _decode_patch_body(patch, patch_type)
        with self._lock:
            current = self._bucket(rt).get(self._okey(rt, namespace, name))
            if patch_type == "apply":
                if not field_manager:
                    raise invalid_error("PatchOptions", "meta.k8s.io", "", [required(
                        "fieldManager", "is required for apply patch")])
                if not isinstance(patch, dict):
                    raise bad_request("error decoding YAML: the apply patch must be an object")
                meta = patch.get("metadata") or {}
                if meta.get("name") and meta["name"] != name:
                    raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL "
                                      f"({name})")
                if not patch.get("apiVersion") or not patch.get("kind"):
                    raise bad_request("invalid object type: /, Kind=")
                if current is None:
                    if subresource:
                        raise not_found(rt, name)
                    body = copy.deepcopy(patch)
                    body.setdefault("metadata", {})["name"] = name
                    if rt.is_custom and (field_validation or "Strict").capitalize() == "Strict":
                        self._validate_custom(rt, copy.deepcopy(body), None, "Strict", [], warnings, apply=True)
                    return self.create(rt, body, namespace, field_validation=field_validation, dry_run=dry_run,
                                       warnings=warnings)
            if current is None:
                raise not_found(rt, name)
            if subresource == "scale":
                scale = self._scale_of(rt, current)
                return self._update_scale(rt, current, _apply_patch(scale, patch, patch_type, None), dry_run)
            base = copy.deepcopy(current)
            base["apiVersion"], base["kind"] = rt.api_version, rt.kind
            keys = self._list_map_keys(rt) if patch_type == "apply" else None
            updated = _apply_patch(base, patch, patch_type, keys)
            if not isinstance(updated, dict):
                raise bad_request("the patched object is not a JSON object")
            meta = updated.get("metadata") or {}
            if meta.get("name") != name:
                raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                                  f"({name})")
            rv = meta.get("resourceVersion")
            if rv and rv != current["metadata"]["resourceVersion"]:
                raise conflict(rt, name)
            if patch_type == "apply" and rt.is_custom and (field_validation or "Strict").capitalize() == "Strict":
                self._validate_custom(rt, copy.deepcopy(updated), current, "Strict", [], warnings, apply=True)
            return self._update(rt, current, updated, subresource, field_validation, dry_run, warnings)

    def _list_map_keys(self, rt: ResourceType) -> dict[str, str]:
        return {} if rt.is_custom else dict(MERGE_KEYS)

    def _update(self, rt: ResourceType, current: dict[str, Any], new: dict[str, Any], subresource: str | None,
                field_validation: str, dry_run: bool, warnings: list[str] | None) -> dict[str, Any]:
        name = current["metadata"]["name"]
        self._check_kind(rt, new)
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(current)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        elif subresource:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = new["metadata"] = {}
        old_meta = current["metadata"]
        for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                    "deletionGracePeriodSeconds", "generation"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta.pop("managedFields", None)
        meta.pop("selfLink", None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if rt.status and subresource != "status":
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
        errors: list[FieldError] = []
        if subresource != "status":
            errors += admission.validate_metadata(rt.kind, meta)
        if old_meta.get("deletionTimestamp"):
            added = [f for f in meta.get("finalizers") or [] if f not in (old_meta.get("finalizers") or [])]
            if added:
                errors.append(forbidden("metadata.finalizers", "no new finalizers can be added if the object is "
                                        f"being deleted, found new finalizers []string{{{', '.join(repr(a).replace(chr(39), chr(34)) for a in added)}}}"))
        if rt.is_custom:
            new = self._validate_custom(rt, new, current, field_validation, errors, warnings, subresource)
        elif rt.kind == "CustomResourceDefinition":
            if subresource != "status":
                errors += self._prepare_crd(new, current)
        elif subresource != "status":
            errors += admission.prepare_update(rt.kind, rt.group, new, current)
        if errors:
            raise invalid_error(rt.kind, rt.group, name, errors)
        if rt.generation and _spec_changed(rt, current, new):
            new["metadata"]["generation"] = int(old_meta.get("generation", 1)) + 1
        if _same_object(current, new):
            return self._out(rt, current)
        if dry_run:
            return self._out(rt, new)
        if self._removable(rt, new):
            return self._out(rt, self._remove(rt, new))
        self._store(rt, new, current)
        if rt.kind == "CustomResourceDefinition":
            self.registry.register_crd(new)
        return self._out(rt, new)

    # ------------------------------------------------------------------------------------ scale

    def _scale_of(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        if not rt.scale:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        meta = obj["metadata"]
        spec_replicas = lookup(obj, rt.scale.spec_replicas_path.lstrip("."))
        status: dict[str, Any] = {"replicas": lookup(obj, rt.scale.status_replicas_path.lstrip(".")) or 0}
        if rt.is_custom:
            if rt.scale.label_selector_path:
                selector = lookup(obj, rt.scale.label_selector_path.lstrip("."))
                if selector:
                    status["selector"] = selector
        else:
            selector = label_selector_string((obj.get("spec") or {}).get("selector"))
            if selector:
                status["selector"] = selector
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                             if k in meta},
                "spec": {"replicas": spec_replicas or 0} if spec_replicas is not None or not rt.is_custom else {},
                "status": status}

    def _update_scale(self, rt: ResourceType, current: dict[str, Any], scale: dict[str, Any],
                      dry_run: bool) -> dict[str, Any]:
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise conflict(rt, current["metadata"]["name"])
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise invalid_error("Scale", "autoscaling", current["metadata"]["name"],
                                [invalid("spec.replicas", replicas, "must be greater than or equal to 0")])
        new = copy.deepcopy(current)
        target = new
        parts = rt.scale.spec_replicas_path.lstrip(".").split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = replicas
        updated = self._update(rt, current, new, None, "Ignore", dry_run, None)
        stored = self._bucket(rt).get((updated["metadata"].get("namespace", ""), updated["metadata"]["name"]))
        return self._scale_of(rt, stored or updated)

    # ------------------------------------------------------------------------------------ pods

    def bind(self, name: str, namespace: str, node_name: str) -> dict[str, Any]:
        """`pods/binding`: assign a pod to a node (what the scheduler does)."""
        rt = self.resource("pods")
        with self._lock:
            current = self._bucket(rt).get((namespace, name))
            if current is None:
                raise not_found(rt, name)
            if (current.get("spec") or {}).get("nodeName"):
                raise conflict(rt, name, f"pod {name} is already assigned to node "
                                         f"\"{current['spec']['nodeName']}\"")
            new = copy.deepcopy(current)
            new["spec"]["nodeName"] = node_name
            conditions = [c for c in (new.get("status") or {}).get("conditions") or [] if c.get("type") != "PodScheduled"]
            conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                               "lastTransitionTime": now_rfc3339()})
            new.setdefault("status", {})["conditions"] = conditions
            self._store(rt, new, current)
            return self._out(rt, new)

    # ------------------------------------------------------------------------------------ delete

    def delete(self, resource: str | ResourceType, name: str, namespace: str | None = None, *,
               grace_period_seconds: int | None = None, propagation_policy: str | None = None,
               preconditions: dict[str, Any] | None = None, dry_run: bool = False) -> dict[str, Any]:
        """Returns the object if it is still there (finalizers, graceful pod deletion), else a Success Status
        (custom resources, pods, services, PVCs and service accounts: the deleted object)."""
        rt = self.resource(resource)
        with self._lock:
            current = self._bucket(rt).get(self._okey(rt, namespace, name))
            if current is None:
                raise not_found(rt, name)
            meta = current["metadata"]
            preconditions = preconditions or {}
            if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
                raise conflict(rt, name, f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                                         f"UID in object meta: {meta['uid']}")
            if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != meta["resourceVersion"]:
                raise conflict(rt, name, f"Precondition failed: ResourceVersion in precondition: "
                                         f"{preconditions['resourceVersion']}, ResourceVersion in object meta: "
                                         f"{meta['resourceVersion']}")
            if dry_run:
                return self._out(rt, current)
            policy = propagation_policy or "Background"
            if policy == "Foreground":
                self._collect_dependents(meta["uid"], "Background")
                current = self._bucket(rt).get(self._okey(rt, namespace, name)) or current
            elif policy == "Orphan":
                self._collect_dependents(meta["uid"], "Orphan")
            grace = self._grace_period(rt, current, grace_period_seconds)
            if meta.get("deletionTimestamp"):
                # Already terminating: only a shorter grace period for a pod changes anything.
                if grace is not None and rt.kind == "Pod" and grace < (meta.get("deletionGracePeriodSeconds") or 0):
                    new = copy.deepcopy(current)
                    new["metadata"]["deletionGracePeriodSeconds"] = grace
                    if grace == 0 and not new["metadata"].get("finalizers"):
                        return self._deleted_result(rt, self._remove(rt, new))
                    new["metadata"]["deletionTimestamp"] = now_rfc3339(grace)
                    self._store(rt, new, current)
                    return self._out(rt, new)
                return self._out(rt, current)
            needs_wait = bool(meta.get("finalizers")) or bool(grace) or rt.kind == "Namespace" \
                or rt.kind == "CustomResourceDefinition"
            if not needs_wait:
                return self._deleted_result(rt, self._remove(rt, current))
            new = copy.deepcopy(current)
            new["metadata"]["deletionTimestamp"] = now_rfc3339(grace or 0)
            new["metadata"]["deletionGracePeriodSeconds"] = grace or 0
            if new["metadata"].get("generation"):
                new["metadata"]["generation"] += 1
            if rt.kind == "Namespace":
                new.setdefault("status", {})["phase"] = "Terminating"
            if rt.kind == "CustomResourceDefinition":
                _set_condition(new, "Terminating", "True", "InstanceDeletionInProgress",
                               "CustomResource deletion is in progress")
            self._store(rt, new, current)
            if rt.kind == "Namespace":
                self._empty_namespace(name)
            elif rt.kind == "CustomResourceDefinition":
                self._cleanup_crd(new)
            remaining = self._bucket(rt).get(self._okey(rt, namespace, name))
            if remaining is None:
                return self._deleted_result(rt, new)
            return self._out(rt, remaining)

    def _deleted_result(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        # Like the real registries: these kinds answer DELETE with the object, the others with a Status.
        if rt.is_custom or (not rt.group and rt.kind in RETURNS_DELETED_OBJECT):
            return self._out(rt, obj)
        details: dict[str, Any] = {"name": obj["metadata"]["name"], "kind": rt.plural, "uid": obj["metadata"]["uid"]}
        if rt.group:
            details["group"] = rt.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def _grace_period(self, rt: ResourceType, obj: dict[str, Any], requested: int | None) -> int | None:
        if rt.kind != "Pod" or rt.group:
            return None
        spec = obj.get("spec") or {}
        if not spec.get("nodeName"):
            return 0                               # never scheduled: nothing to stop
        if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            return max(0, int(requested))
        return int(spec.get("terminationGracePeriodSeconds", 30))

    def _removable(self, rt: ResourceType, obj: dict[str, Any]) -> bool:
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp") or meta.get("finalizers") or meta.get("deletionGracePeriodSeconds"):
            return False
        if rt.kind == "Namespace" and not rt.group:
            return not self._namespace_has_content(meta["name"])
        return True

    def delete_collection(self, resource: str | ResourceType, namespace: str | None = None, *,
                          label_selector: str | None = None, field_selector: str | None = None,
                          grace_period_seconds: int | None = None, propagation_policy: str | None = None,
                          dry_run: bool = False) -> dict[str, Any]:
        rt = self.resource(resource)
        with self._lock:
            listed = self.list(rt, namespace, label_selector=label_selector, field_selector=field_selector)
            for item in listed["items"]:
                meta = item["metadata"]
                if dry_run:
                    continue
                try:
                    self.delete(rt, meta["name"], meta.get("namespace"), grace_period_seconds=grace_period_seconds,
                                propagation_policy=propagation_policy)
                except ApiError as exc:
                    if exc.code != 404:
                        raise
            return listed

    # ------------------------------------------------------------------------------------ controllers

    def _after_removal(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self._collect_dependents(meta["uid"], "Background")
        if rt.kind == "CustomResourceDefinition":
            self.registry.unregister_crd(obj)
            gone_key = (obj["spec"]["group"], obj["spec"]["names"]["plural"])
            for watch in [w for w in self._watches if w.key == gone_key]:
                watch.close()
            self._objects.pop((obj["spec"]["group"], obj["spec"]["names"]["plural"]), None)
        if rt.namespaced and meta.get("namespace"):
            self._maybe_finish_namespace(meta["namespace"])
        if rt.is_custom:
            crd = self._bucket(self.resource("customresourcedefinitions")).get(("", f"{rt.plural}.{rt.group}"))
            if crd is not None and crd["metadata"].get("deletionTimestamp"):
                self._maybe_finish_crd(crd)

    def _dependents(self, owner_uid: str) -> Iterable[tuple[ResourceType, dict[str, Any]]]:
        for key, bucket in list(self._objects.items()):
            rt = self.registry.for_key(key)
            if rt is None:
                continue
            for obj in list(bucket.values()):
                if any(ref.get("uid") == owner_uid for ref in obj["metadata"].get("ownerReferences") or []):
                    yield rt, obj

    def _collect_dependents(self, owner_uid: str, policy: str) -> None:
        """Garbage collector: dependents whose owners are all gone are deleted; `Orphan` strips references."""
        for rt, obj in list(self._dependents(owner_uid)):
            meta = obj["metadata"]
            if (meta.get("namespace", ""), meta["name"]) not in self._bucket(rt):
                continue
            refs = meta.get("ownerReferences") or []
            others = [r for r in refs if r.get("uid") != owner_uid and r.get("uid") in self._uids]
            if policy == "Orphan" or others:
                new = copy.deepcopy(obj)
                new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != owner_uid]
                if not new["metadata"]["ownerReferences"]:
                    del new["metadata"]["ownerReferences"]
                self._store(rt, new, obj)
            elif not meta.get("deletionTimestamp"):
                try:
                    self.delete(rt, meta["name"], meta.get("namespace"), propagation_policy="Background")
                except ApiError:
                    pass

    def _collect_if_orphan(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        refs = obj["metadata"].get("ownerReferences") or []
        if refs and not any(r.get("uid") in self._uids for r in refs):
            meta = obj["metadata"]

            def collect() -> None:
                try:
                    current = self._bucket(rt).get((meta.get("namespace", ""), meta["name"]))
                    if current is not None and current["metadata"]["uid"] == meta["uid"]:
                        self.delete(rt, meta["name"], meta.get("namespace"))
                except ApiError:
                    pass

            if self.loop is not None and not self.loop.is_closed():
                self.loop.call_soon_threadsafe(collect)

    def _namespace_has_content(self, namespace: str) -> bool:
        for key, bucket in self._objects.items():
            rt = self.registry.for_key(key)
            if rt is None or not rt.namespaced:
                continue
            if any(ns == namespace for ns, _ in bucket):
                return True
        return False

    def _empty_namespace(self, namespace: str) -> None:
        for key in list(self._objects):
            rt = self.registry.for_key(key)
            if rt is None or not rt.namespaced:
                continue
            for (ns, name), obj in list(self._bucket(rt).items()):
                if ns == namespace and not obj["metadata"].get("deletionTimestamp"):
                    try:
                        self.delete(rt, name, ns)
                    except ApiError:
                        pass
        self._maybe_finish_namespace(namespace)

    def _maybe_finish_namespace(self, namespace: str) -> None:
        rt = self.resource("namespaces")
        ns_obj = self._bucket(rt).get(("", namespace))
        if ns_obj is None or not ns_obj["metadata"].get("deletionTimestamp"):
            return
        if self._removable(rt, ns_obj):
            final = copy.deepcopy(ns_obj)
            final.setdefault("spec", {})["finalizers"] = []
            self._remove(rt, final)

    def _cleanup_crd(self, crd: dict[str, Any]) -> None:
        rt = self.registry.for_key((crd["spec"]["group"], crd["spec"]["names"]["plural"]))
        if rt is not None:
            for (ns, name), obj in list(self._bucket(rt).items()):
                if not obj["metadata"].get("deletionTimestamp"):
                    try:
                        self.delete(rt, name, ns or None)
                    except ApiError:
                        pass
        current = self._bucket(self.resource("customresourcedefinitions")).get(("", crd["metadata"]["name"]))
        if current is not None:
            self._maybe_finish_crd(current)

    def _maybe_finish_crd(self, crd: dict[str, Any]) -> None:
        key = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        if self._objects.get(key):
            return
        finalizers = crd["metadata"].get("finalizers") or []
        if CRD_CLEANUP_FINALIZER in finalizers:
            rt = self.resource("customresourcedefinitions")
            new = copy.deepcopy(crd)
            new["metadata"]["finalizers"] = [f for f in finalizers if f != CRD_CLEANUP_FINALIZER]
            if not new["metadata"]["finalizers"]:
                del new["metadata"]["finalizers"]
            if self._removable(rt, new):
                self._remove(rt, new)
            else:
                self._store(rt, new, crd)

    # ------------------------------------------------------------------------------------ CRDs

    def _prepare_crd(self, crd: dict[str, Any], old: dict[str, Any] | None = None) -> list[FieldError]:
        spec = crd.setdefault("spec", {})
        names = spec.setdefault("names", {})
        if names.get("kind"):
            names.setdefault("singular", names["kind"].lower())
            names.setdefault("listKind", names["kind"] + "List")
        spec.setdefault("conversion", {"strategy": "None"})
        for version in spec.get("versions") or []:
            version.setdefault("served", True)
        errors = validate_crd(crd)
        if old is not None:
            for key in ("group", "scope"):
                if spec.get(key) != old["spec"].get(key):
                    errors.append(invalid(f"spec.{key}", spec.get(key), "field is immutable"))
            if names.get("plural") != old["spec"]["names"].get("plural"):
                errors.append(invalid("status.storedVersions", names.get("plural"), "must not change"))
        if errors:
            return errors
        if old is None:
            finalizers = crd["metadata"].setdefault("finalizers", [])
            if CRD_CLEANUP_FINALIZER not in finalizers:
                finalizers.append(CRD_CLEANUP_FINALIZER)
            crd["status"] = {}
        else:
            crd["status"] = copy.deepcopy(old.get("status") or {})
        status = crd["status"]
        status["acceptedNames"] = {k: v for k, v in names.items() if k in ("plural", "singular", "shortNames",
                                                                          "kind", "listKind", "categories")}
        stored = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
        status["storedVersions"] = sorted(set((status.get("storedVersions") or []) + stored))
        if old is None:
            _set_condition(crd, "NamesAccepted", "True", "NoConflicts", "no conflicts found")
            _set_condition(crd, "Established", "True", "InitialNamesAccepted", "the initial names have been accepted")
        return []


def _set_condition(obj: dict[str, Any], type_: str, status: str, reason: str, message: str) -> None:
    conditions = obj.setdefault("status", {}).setdefault("conditions", [])
    for condition in conditions:
        if condition["type"] == type_:
            if condition["status"] != status:
                condition["lastTransitionTime"] = now_rfc3339()
            condition.update(status=status, reason=reason, message=message)
            return
    conditions.append({"type": type_, "status": status, "lastTransitionTime": now_rfc3339(),
                       "reason": reason, "message": message})


def _parse_rv(value: str | None) -> int:
    if value in (None, "", "0"):
        return 0
    try:
        return int(value)
    except ValueError:
        raise bad_request(f'invalid resource version "{value}"') from None


def _spec_changed(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Generation moves when anything but metadata (and status, for kinds with a status subresource) changes."""
    ignored = {"metadata", "apiVersion", "kind"} | ({"status"} if rt.status else set())
    strip = lambda o: {k: v for k, v in o.items() if k not in ignored}   # noqa: E731
    return strip(old) != strip(new)


def _same_object(old: dict[str, Any], new: dict[str, Any]) -> bool:
    def normal(o: dict[str, Any]) -> dict[str, Any]:
        o = dict(o)
        meta = dict(o.get("metadata") or {})
        meta.pop("resourceVersion", None)
        meta.pop("managedFields", None)
        for key in ("labels", "annotations", "finalizers", "ownerReferences"):
            if not meta.get(key):
                meta.pop(key, None)
        o["metadata"] = meta
        return o
    return normal(old) == normal(new)


def _decode_patch_body(body: bytes | str, patch_type: str) -> Any:
    import json
    text = body.decode() if isinstance(body, bytes) else body
    try:
        if patch_type == "apply":
            return yaml.safe_load(text)
        return json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"error decoding patch: {exc}") from None


def _apply_patch(base: dict[str, Any], patch: Any, patch_type: str, keys: dict[str, str] | None) -> Any:
    if patch_type == "merge":
        if not isinstance(patch, dict):
            raise bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
        return merge_patch(base, patch)
    if patch_type == "json":
        return json_patch(base, patch)
    if patch_type == "strategic":
        if not isinstance(patch, dict):
            raise bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
        return strategic_merge_patch(base, patch)
    if patch_type == "apply":
        return apply_merge(base, patch, keys)
    raise ApiError(415, "UnsupportedMediaType", f"unknown patch type {patch_type}")
