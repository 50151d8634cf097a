"""HTTP routes: discovery, OpenAPI, CRUD, watch streams, tables and exec, translated onto `Store`."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web

from . import openapi
from .errors import ApiError, bad_request, method_not_supported
from .exec import serve_exec
from .protobuf import decode_object
from .resources import ResourceType
from .table import build_table, wants_table

if TYPE_CHECKING:
    from .server import EmulatedApiServer

log = logging.getLogger(__name__)

PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


@dataclass
class RequestInfo:
    """What a request is about, parsed like kube-apiserver's RequestInfoFactory; hooks read it too."""

    verb: str                         # get list watch create update patch delete deletecollection connect | discovery
    path: str
    group: str = ""
    version: str = ""
    resource: str = ""
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    is_resource_request: bool = False

    @property
    def is_write(self) -> bool:
        return self.verb in ("create", "update", "patch", "delete", "deletecollection")


REQUEST_INFO = web.RequestKey("request_info", RequestInfo)


def request_info(request: web.Request) -> RequestInfo:
    """The parsed `RequestInfo` of a request (set before any request hook runs)."""
    return request[REQUEST_INFO]


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


def parse_request_info(request: web.Request) -> RequestInfo:
    path = request.path
    parts = [p for p in path.split("/") if p]
    info = RequestInfo(verb="discovery", path=path)
    if not parts or parts[0] not in ("api", "apis"):
        return info
    if parts[0] == "api":
        if len(parts) < 3:
            return info
        info.group, info.version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 4:
            return info
        info.group, info.version, rest = parts[1], parts[2], parts[3:]
    watch_path = False
    if rest and rest[0] == "watch":
        watch_path, rest = True, rest[1:]
    if len(rest) >= 2 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        info.namespace = rest[1]
        rest = rest[2:]
        if not rest:                                   # /api/v1/namespaces/{name}
            info.resource, info.name = "namespaces", info.namespace
            info.namespace = ""
            rest = []
    if rest:
        info.resource = rest[0]
        info.name = rest[1] if len(rest) > 1 else ""
        info.subresource = "/".join(rest[2:])
    info.is_resource_request = True
    method = request.method
    if watch_path or (method == "GET" and _truthy_watch(request.query.get("watch"))):
        info.verb = "watch"
    elif method == "GET":
        info.verb = "get" if info.name else "list"
    elif method == "POST":
        info.verb = "create" if not info.subresource or info.subresource == "binding" else "connect"
        if info.subresource in ("exec", "attach", "portforward"):
            info.verb = "connect"
    elif method == "PUT":
        info.verb = "update"
    elif method == "PATCH":
        info.verb = "patch"
    elif method == "DELETE":
        info.verb = "delete" if info.name else "deletecollection"
    else:
        info.verb = method.lower()
    if info.subresource in ("exec", "attach", "portforward") and method == "GET":
        info.verb = "connect"
    return info


def _truthy_watch(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def _json(body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    headers = {}
    if warnings:
        headers["Warning"] = ", ".join('299 - ' + json.dumps(w) for w in warnings)
    return web.Response(text=json.dumps(body), status=status, content_type="application/json", headers=headers)


def error_response(error: ApiError) -> web.Response:
    return _json(error.status(), error.code)


class Handlers:
    def __init__(self, server: "EmulatedApiServer") -> None:
        self.server = server

    @property
    def store(self):                       # noqa: ANN201
        return self.server.store

    @property
    def registry(self):                    # noqa: ANN201
        return self.server.store.registry

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        info = request[REQUEST_INFO]
        try:
            if not info.is_resource_request:
                return await self.discovery(request, info)
            return await self.resource_request(request, info)
        except ApiError as exc:
            return error_response(exc)
        except (web.HTTPException, ConnectionError):
            raise                                      # a client gone mid-request (killed) is no server error
        except Exception as exc:                       # noqa: BLE001 - a bug must still answer a Status
            log.exception("internal error serving %s %s", request.method, request.path_qs)
            return error_response(ApiError(500, "InternalError", f"Internal error occurred: {exc}"))

    # ------------------------------------------------------------------------------------ discovery

    async def discovery(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if request.method != "GET":
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if parts == ["version"]:
            return _json(openapi.KUBE_VERSION)
        if parts in (["healthz"], ["livez"], ["readyz"]):
            return web.Response(text="ok", content_type="text/plain")
        if parts == ["api"]:
            host = request.host
            return _json({"kind": "APIVersions", "versions": ["v1"],
                          "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})
        if parts == ["api", "v1"]:
            return _json(self.registry.resource_list("", "v1"))
        if parts == ["apis"]:
            return _json(self.registry.api_group_list())
        if len(parts) == 2 and parts[0] == "apis":
            group = self.registry.api_group(parts[1])
            if group is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return _json({"kind": "APIGroup", "apiVersion": "v1", **group})
        if len(parts) == 3 and parts[0] == "apis":
            listed = self.registry.resource_list(parts[1], parts[2])
            if listed is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return _json(listed)
        if parts == ["openapi", "v2"]:
            return _json(openapi.v2_document(self.registry))
        if parts == ["openapi", "v3"]:
            return _json(openapi.v3_index(self.registry))
        if len(parts) >= 4 and parts[:2] == ["openapi", "v3"]:
            if parts[2] == "api" and len(parts) == 4:
                doc = openapi.group_version_document(self.registry, "", parts[3])
            elif parts[2] == "apis" and len(parts) == 5:
                doc = openapi.group_version_document(self.registry, parts[3], parts[4])
            else:
                doc = None
            if doc is not None:
                return _json(doc)
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    # ------------------------------------------------------------------------------------ resources

    def _resource(self, info: RequestInfo) -> ResourceType:
        rt = self.registry.get(info.group, info.version, info.resource)
        if rt is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if info.namespace and not rt.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return rt

    async def resource_request(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        rt = self._resource(info)
        q = request.query
        ns = info.namespace or None
        dry_run = q.get("dryRun") == "All"
        field_validation = q.get("fieldValidation") or "Warn"
        warnings: list[str] = []
        verb = info.verb

        if info.subresource in ("exec", "attach", "portforward", "log", "binding", "eviction"):
            return await self.pod_subresource(request, info, rt)
        if info.subresource and not (info.subresource == "status" and rt.status) \
                and not (info.subresource == "scale" and rt.scale) \
                and not (info.subresource == "finalize" and rt.kind == "Namespace"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        subresource = info.subresource or None
        if subresource == "finalize":
            subresource = None

        if verb == "watch":
            return await self.watch(request, info, rt)
        if verb == "list":
            listed = self.store.list(rt, ns, label_selector=q.get("labelSelector"),
                                     field_selector=q.get("fieldSelector"))
            if wants_table(request.headers.get("Accept", "")):
                objects = [self._with_type(rt, o) for o in listed["items"]]
                return _json(build_table(rt, objects, listed["metadata"]["resourceVersion"],
                                         q.get("includeObject", "Metadata")))
            return _json(listed)
        if verb == "get":
            obj = self.store.get(rt, info.name, ns, subresource=subresource)
            if wants_table(request.headers.get("Accept", "")) and subresource is None:
                return _json(build_table(rt, [obj], obj["metadata"]["resourceVersion"],
                                         q.get("includeObject", "Metadata")))
            return _json(obj)
        if verb == "create":
            if info.name:
                raise method_not_supported(rt, "create")
            body = await self._body(request)
            created = self.store.create(rt, body, ns, field_validation=field_validation, dry_run=dry_run,
                                        warnings=warnings)
            return _json(created, 201, warnings)
        if verb == "update":
            if not info.name:
                raise method_not_supported(rt, "update")
            body = await self._body(request)
            updated = self.store.replace(rt, info.name, body, ns, subresource=subresource,
                                         field_validation=field_validation, dry_run=dry_run, warnings=warnings)
            return _json(updated, 200, warnings)
        if verb == "patch":
            if not info.name:
                raise method_not_supported(rt, "patch")
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            patch_type = PATCH_TYPES.get(content_type)
            if patch_type is None:
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                               "accepted media types include: application/json-patch+json, "
                               "application/merge-patch+json, application/apply-patch+yaml"
                               + ("" if rt.is_custom else ", application/strategic-merge-patch+json"))
            raw = await request.read()
            existed = patch_type == "apply" and self.store.exists(rt, info.name, ns)
            if patch_type == "apply":
                field_validation = q.get("fieldValidation") or "Strict"
            patched = self.store.patch(rt, info.name, raw, ns, patch_type=patch_type, subresource=subresource,
                                       field_manager=q.get("fieldManager"), force=_truthy(q.get("force")),
                                       field_validation=field_validation, dry_run=dry_run, warnings=warnings)
            status = 201 if patch_type == "apply" and not existed else 200
            return _json(patched, status, warnings)
        if verb in ("delete", "deletecollection"):
            options = await self._delete_options(request)
            grace = q.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
            policy = q.get("propagationPolicy", options.get("propagationPolicy"))
            if policy is None and (_truthy(q.get("orphanDependents")) or options.get("orphanDependents")):
                policy = "Orphan"
            dry_run = dry_run or "All" in (options.get("dryRun") or [])
            grace_int = int(grace) if grace not in (None, "") else None
            if verb == "delete":
                result = self.store.delete(rt, info.name, ns, grace_period_seconds=grace_int,
                                           propagation_policy=policy, preconditions=options.get("preconditions"),
                                           dry_run=dry_run)
                return _json(result)
            listed = self.store.delete_collection(rt, ns, label_selector=q.get("labelSelector"),
                                                  field_selector=q.get("fieldSelector"),
                                                  grace_period_seconds=grace_int, propagation_policy=policy,
                                                  dry_run=dry_run)
            return _json(listed)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _with_type(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        return {**obj, "apiVersion": rt.api_version, "kind": rt.kind}

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if "protobuf" in content_type:
            return decode_object(raw)
        try:
            if "yaml" in content_type:
                return yaml.safe_load(raw)
            return json.loads(raw or b"null")
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"the body of the request could not be decoded: {exc}") from None

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            options = json.loads(raw)
        except ValueError:
            raise bad_request("the DeleteOptions body could not be decoded") from None
        return options if isinstance(options, dict) else {}

    # ------------------------------------------------------------------------------------ pods

    async def pod_subresource(self, request: web.Request, info: RequestInfo, rt: ResourceType) -> web.StreamResponse:
        if rt.kind != "Pod" or rt.group or not info.name:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        pod = self.store.get(rt, info.name, info.namespace)
        if info.subresource == "exec":
            return await serve_exec(request, pod, self.server.exec_handler)
        if info.subresource == "binding" and request.method == "POST":
            body = await self._body(request)
            node = ((body or {}).get("target") or {}).get("name")
            if not node:
                raise bad_request("target.name is required for a binding")
            self.store.bind(info.name, info.namespace, node)
            return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}, 201)
        raise ApiError(404, "NotFound", f"the server could not find the requested resource "
                                        f"(pods/{info.subresource} is not emulated)")

    # ------------------------------------------------------------------------------------ watch

    async def watch(self, request: web.Request, info: RequestInfo, rt: ResourceType) -> web.StreamResponse:
        q = request.query
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
        bookmarks = _truthy(q.get("allowWatchBookmarks"))
        send_initial = _truthy(q.get("sendInitialEvents"))
        as_table = wants_table(request.headers.get("Accept", ""))
        selector_args = dict(label_selector=q.get("labelSelector"), field_selector=q.get("fieldSelector"))
        if info.name:
            selector_args["field_selector"] = ",".join(
                f for f in (selector_args["field_selector"], f"metadata.name={info.name}") if f)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                          "Cache-Control": "no-cache, private"})
        response.enable_chunked_encoding()
        try:
            watch = self.store.watch(rt, info.namespace or None, resource_version=q.get("resourceVersion"),
                                     send_initial_events=send_initial, **selector_args)
        except ApiError as exc:
            if exc.code != 410:
                raise
            await response.prepare(request)
            await self._write(response, {"type": "ERROR", "object": exc.status()})
            await response.write_eof()
            return response
        await response.prepare(request)
        deadline = time.monotonic() + timeout if timeout else None
        interval = self.server.bookmark_interval
        initial_pending = watch.initial if send_initial else 0
        try:
            if send_initial and initial_pending == 0:
                await self._write(response, self._bookmark(rt, initial_end=True))
            while True:
                wait = None
                if deadline is not None:
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        break
                if bookmarks:
                    wait = interval if wait is None else min(wait, interval)
                try:
                    event = await watch.next(wait)
                except EOFError:
                    break
                if event is None:
                    if bookmarks and (deadline is None or time.monotonic() < deadline):
                        await self._write(response, self._bookmark(rt))
                    continue
                obj = self._with_type(rt, event["object"])
                if as_table:
                    obj = build_table(rt, [obj], obj["metadata"]["resourceVersion"], q.get("includeObject", "Metadata"))
                await self._write(response, {"type": event["type"], "object": obj})
                if initial_pending:
                    initial_pending -= 1
                    if initial_pending == 0:
                        await self._write(response, self._bookmark(rt, initial_end=True))
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            watch.close()
        return response

    def _bookmark(self, rt: ResourceType, initial_end: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": self.store.resource_version}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}}

    async def _write(self, response: web.StreamResponse, event: dict[str, Any]) -> None:
        await response.write(json.dumps(event).encode() + b"\n")
