"""Just enough OpenAPI for kubectl: v3 per group-version documents whose PATCH operations declare the
`fieldValidation` query parameter (so kubectl uses server-side validation) and CRD schemas for `kubectl explain`."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .resources import Registry, ResourceType

KUBE_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "emulated",
                "gitTreeState": "clean", "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.4",
                "compiler": "gc", "platform": "linux/amd64"}


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _schema_name(rt: ResourceType) -> str:
    group = ".".join(reversed(rt.group.split("."))) if rt.group else "io.k8s.api.core"
    return f"{group}.{rt.version}.{rt.kind}"


def _operation(rt: ResourceType, action: str) -> dict[str, Any]:
    params = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
              {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
              {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}}]
    op: dict[str, Any] = {
        "operationId": f"{action}{rt.kind}",
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{_schema_name(rt)}"}}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
    }
    return op


def _schema(rt: ResourceType) -> dict[str, Any]:
    base: dict[str, Any]
    if rt.crd is not None:
        base = json.loads(json.dumps(rt.schema() or {"type": "object"}))
    else:
        base = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    base.setdefault("description", f"{rt.kind} is a {'custom' if rt.crd else 'built-in'} resource.")
    props = base.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string", "description": "APIVersion defines the versioned schema of "
                                                                     "this representation of an object."})
    props.setdefault("kind", {"type": "string", "description": "Kind is a string value representing the REST "
                                                               "resource this object represents."})
    props["metadata"] = {"type": "object", "description": "Standard object's metadata."}
    base["x-kubernetes-group-version-kind"] = [{"group": rt.group, "version": rt.version, "kind": rt.kind}]
    return base


def group_version_document(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = [rt for rt in registry.all() if rt.group == group and rt.version == version]
    if not types:
        return None
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    prefix = "/" + _gv_path(group, version)
    for rt in types:
        collection = f"{prefix}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{prefix}/{rt.plural}"
        paths[collection] = {"get": _operation(rt, "list"), "post": _operation(rt, "post")}
        paths[collection + "/{name}"] = {"get": _operation(rt, "get"), "put": _operation(rt, "put"),
                                         "patch": _operation(rt, "patch"), "delete": _operation(rt, "delete")}
        schemas[_schema_name(rt)] = _schema(rt)
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": KUBE_VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": schemas}}


def v3_index(registry: Registry) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    pairs = {(rt.group, rt.version) for rt in registry.all()}
    for group, version in sorted(pairs):
        doc = group_version_document(registry, group, version)
        digest = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()
        path = _gv_path(group, version)
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}


def v2_document(registry: Registry) -> dict[str, Any]:
    definitions = {_schema_name(rt): _schema(rt) for rt in registry.all()}
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": KUBE_VERSION["gitVersion"]},
            "paths": {}, "definitions": definitions}
