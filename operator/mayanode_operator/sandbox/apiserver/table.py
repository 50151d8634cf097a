"""Server-side printing (`meta.k8s.io/v1 Table`) for `kubectl get`, with CRD additionalPrinterColumns."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, Callable

from .resources import ResourceType

NAME_DESCRIPTION = ("Name must be unique within a namespace. Is required when creating resources, although some "
                    "resources may allow a client to request the generation of an appropriate name automatically. "
                    "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
                    "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
AGE_DESCRIPTION = ("CreationTimestamp is a timestamp representing the server time when this object was created. "
                   "It is not guaranteed to be set in happens-before order across separate operations. Clients may "
                   "not set this value. It is represented in RFC3339 form and is in UTC.")


# ---------------------------------------------------------------------------------------------- JSONPath

_SEGMENT = re.compile(r"""\.(?P<field>[A-Za-z0-9_\-$]+)|\[(?P<index>-?\d+|\*)\]|\[['"](?P<quoted>[^'"]+)['"]\]"""
                      r"""|\[\?\(@(?P<fpath>(?:\.[A-Za-z0-9_\-]+)+)\s*(?P<op>==|!=)\s*(?P<lit>"[^"]*"|'[^']*'|[^)\s]+)\)\]"""
                      r"""|\.\*""")


def jsonpath(obj: Any, path: str) -> list[Any]:
    """The subset of Kubernetes JSONPath used in printer columns: fields, indexes, `[*]`, `[?(@.a=="b")]`."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    values = [obj]
    pos = 0
    while pos < len(path):
        match = _SEGMENT.match(path, pos)
        if not match:
            return []
        pos = match.end()
        nxt: list[Any] = []
        for value in values:
            if match.group("field") is not None or match.group("quoted") is not None:
                key = match.group("field") if match.group("field") is not None else match.group("quoted")
                if isinstance(value, dict) and key in value:
                    nxt.append(value[key])
            elif match.group("index") is not None:
                if isinstance(value, list):
                    if match.group("index") == "*":
                        nxt.extend(value)
                    else:
                        i = int(match.group("index"))
                        if -len(value) <= i < len(value):
                            nxt.append(value[i])
            elif match.group("fpath") is not None:
                literal = match.group("lit")
                want: Any = literal[1:-1] if literal[0] in "'\"" else json.loads(literal) if literal not in ("true", "false") else literal == "true"
                items = value if isinstance(value, list) else [value]
                for item in items:
                    got = jsonpath(item, match.group("fpath"))
                    hit = bool(got) and got[0] == want
                    if hit == (match.group("op") == "=="):
                        nxt.append(item)
            else:                                   # ".*"
                if isinstance(value, dict):
                    nxt.extend(value.values())
                elif isinstance(value, list):
                    nxt.extend(value)
        values = nxt
    return values


# ---------------------------------------------------------------------------------------------- formatting

def human_duration(seconds: float) -> str:
    """apimachinery's `duration.HumanDuration`, as shown in the AGE column."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if rest == 0 else f"{hours // 24 // 365}y{rest}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        moment = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return "<invalid>"
    return human_duration((datetime.now(timezone.utc) - moment).total_seconds())


def _print_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _cell(column_type: str, value: Any) -> Any:
    if value is None:
        return None
    if column_type == "string":
        return _print_value(value)
    if column_type == "integer":
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if column_type == "number":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if column_type == "date":
        return age(value) if isinstance(value, str) else None
    return None


# ---------------------------------------------------------------------------------------------- built-ins

Column = tuple[str, str, str, int]           # name, type, format, priority


def _pod_row(pod: dict[str, Any]) -> list[Any]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for c in statuses:
        state = c.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated", {}).get("reason"):
            reason = state["terminated"]["reason"]
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return [pod["metadata"]["name"], f"{ready}/{len(spec.get('containers') or [])}", reason, restarts,
            age(pod["metadata"].get("creationTimestamp")), status.get("podIP") or "<none>",
            spec.get("nodeName") or "<none>", "<none>", "<none>"]


def _service_row(svc: dict[str, Any]) -> list[Any]:
    spec = svc.get("spec") or {}
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    external = ",".join(i.get("ip") or i.get("hostname", "") for i in ingress)
    if not external:
        external = "<pending>" if spec.get("type") == "LoadBalancer" else "<none>"
    ports = ",".join(f"{p.get('port')}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/{p.get('protocol', 'TCP')}"
                     for p in spec.get("ports") or []) or "<none>"
    return [svc["metadata"]["name"], spec.get("type", "ClusterIP"), spec.get("clusterIP") or "<none>", external, ports,
            age(svc["metadata"].get("creationTimestamp"))]


def _deployment_row(d: dict[str, Any]) -> list[Any]:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    return [d["metadata"]["name"], f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0),
            age(d["metadata"].get("creationTimestamp"))]


BUILTIN_TABLES: dict[tuple[str, str], tuple[list[Column], Callable[[dict[str, Any]], list[Any]]]] = {
    ("", "pods"): ([("Name", "string", "name", 0), ("Ready", "string", "", 0), ("Status", "string", "", 0),
                    ("Restarts", "string", "", 0), ("Age", "string", "", 0), ("IP", "string", "", 1),
                    ("Node", "string", "", 1), ("Nominated Node", "string", "", 1), ("Readiness Gates", "string", "", 1)],
                   _pod_row),
    ("", "services"): ([("Name", "string", "name", 0), ("Type", "string", "", 0), ("Cluster-IP", "string", "", 0),
                        ("External-IP", "string", "", 0), ("Port(s)", "string", "", 0), ("Age", "string", "", 0)],
                       _service_row),
    ("apps", "deployments"): ([("Name", "string", "name", 0), ("Ready", "string", "", 0),
                               ("Up-to-date", "string", "", 0), ("Available", "string", "", 0),
                               ("Age", "string", "", 0)], _deployment_row),
    ("", "configmaps"): ([("Name", "string", "name", 0), ("Data", "string", "", 0), ("Age", "string", "", 0)],
                         lambda o: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                                    age(o["metadata"].get("creationTimestamp"))]),
    ("", "secrets"): ([("Name", "string", "name", 0), ("Type", "string", "", 0), ("Data", "string", "", 0),
                       ("Age", "string", "", 0)],
                      lambda o: [o["metadata"]["name"], o.get("type", "Opaque"), len(o.get("data") or {}),
                                 age(o["metadata"].get("creationTimestamp"))]),
    ("", "namespaces"): ([("Name", "string", "name", 0), ("Status", "string", "", 0), ("Age", "string", "", 0)],
                         lambda o: [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""),
                                    age(o["metadata"].get("creationTimestamp"))]),
    ("", "persistentvolumeclaims"): (
        [("Name", "string", "name", 0), ("Status", "string", "", 0), ("Volume", "string", "", 0),
         ("Capacity", "string", "", 0), ("Access Modes", "string", "", 0), ("StorageClass", "string", "", 0),
         ("Age", "string", "", 0)],
        lambda o: [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""),
                   (o.get("spec") or {}).get("volumeName", ""),
                   ((o.get("status") or {}).get("capacity") or {}).get("storage", ""),
                   ",".join({"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
                             "ReadWriteOncePod": "RWOP"}.get(m, m) for m in (o.get("status") or {}).get("accessModes") or []),
                   (o.get("spec") or {}).get("storageClassName") or "<unset>",
                   age(o["metadata"].get("creationTimestamp"))]),
    ("apiextensions.k8s.io", "customresourcedefinitions"): (
        [("Name", "string", "name", 0), ("Created At", "date", "", 0)],
        lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp")]),
    ("coordination.k8s.io", "leases"): (
        [("Name", "string", "name", 0), ("Holder", "string", "", 0), ("Age", "string", "", 0)],
        lambda o: [o["metadata"]["name"], (o.get("spec") or {}).get("holderIdentity", ""),
                   age(o["metadata"].get("creationTimestamp"))]),
}


def _definition(name: str, type_: str, fmt: str, priority: int, description: str = "") -> dict[str, Any]:
    return {"name": name, "type": type_, "format": fmt, "description": description or name, "priority": priority}


def build_table(rt: ResourceType, objects: list[dict[str, Any]], resource_version: str,
                include_object: str = "Metadata") -> dict[str, Any]:
    if rt.is_custom:
        columns = rt.printer_columns()
        definitions = [_definition("Name", "string", "name", 0, NAME_DESCRIPTION)]
        if columns:
            definitions += [_definition(c["name"], c.get("type", "string"), c.get("format", ""),
                                        int(c.get("priority", 0)), c.get("description", "")) for c in columns]
        else:
            definitions.append(_definition("Age", "date", "", 0, AGE_DESCRIPTION))

        def row(obj: dict[str, Any]) -> list[Any]:
            cells: list[Any] = [obj["metadata"]["name"]]
            if not columns:
                return cells + [age(obj["metadata"].get("creationTimestamp"))]
            for column in columns:
                found = jsonpath(obj, column["jsonPath"])
                cells.append(_cell(column.get("type", "string"), found[0]) if found else None)
            return cells
    elif rt.key in BUILTIN_TABLES:
        cols, printer = BUILTIN_TABLES[rt.key]
        definitions = [_definition(n, t, f, p, NAME_DESCRIPTION if f == "name" else "") for n, t, f, p in cols]

        def row(obj: dict[str, Any]) -> list[Any]:
            cells = printer(obj)
            if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
                cells[1] = obj["metadata"].get("creationTimestamp")
            return cells
    else:
        definitions = [_definition("Name", "string", "name", 0, NAME_DESCRIPTION),
                       _definition("Age", "string", "", 0, AGE_DESCRIPTION)]

        def row(obj: dict[str, Any]) -> list[Any]:
            return [obj["metadata"]["name"], age(obj["metadata"].get("creationTimestamp"))]

    rows = []
    for obj in objects:
        entry: dict[str, Any] = {"cells": row(obj)}
        if include_object == "Object":
            entry["object"] = obj
        elif include_object != "None":
            entry["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": obj["metadata"]}
        rows.append(entry)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": definitions, "rows": rows}


def wants_table(accept: str) -> bool:
    for part in accept.split(","):
        params = {p.split("=", 1)[0].strip(): p.split("=", 1)[1].strip() for p in part.split(";")[1:] if "=" in p}
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            return True
        if "json" in part.split(";")[0] and "as" not in params:
            return False
    return False
