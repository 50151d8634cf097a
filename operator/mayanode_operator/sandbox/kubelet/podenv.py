"""Container environment resolution, as the kubelet does it when a container starts."""

from __future__ import annotations

import base64
import re
from typing import Callable

# (kind "Secret" | "ConfigMap", name) -> the object, or None when it does not exist
Lookup = Callable[[str, str], "dict | None"]

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_VAR_REF = re.compile(r"\$\$|\$\(([^)]*)\)")


class CreateContainerConfigError(Exception):
    """A container cannot start because its env refers to something missing (the pod waits, retried)."""


def referenced_objects(containers: list[dict]) -> set[tuple[str, str]]:
    refs: set[tuple[str, str]] = set()
    for c in containers:
        for src in c.get("envFrom") or []:
            if "secretRef" in src:
                refs.add(("Secret", src["secretRef"].get("name", "")))
            if "configMapRef" in src:
                refs.add(("ConfigMap", src["configMapRef"].get("name", "")))
        for var in c.get("env") or []:
            vf = var.get("valueFrom") or {}
            if "secretKeyRef" in vf:
                refs.add(("Secret", vf["secretKeyRef"].get("name", "")))
            if "configMapKeyRef" in vf:
                refs.add(("ConfigMap", vf["configMapKeyRef"].get("name", "")))
    return refs


def object_data(kind: str, obj: dict) -> dict[str, str]:
    """String values of a Secret (``data`` base64-decoded, ``stringData`` merged) or a ConfigMap."""
    out: dict[str, str] = {}
    if kind == "Secret":
        for k, v in (obj.get("data") or {}).items():
            out[k] = base64.b64decode(v).decode("utf-8", errors="replace")
        for k, v in (obj.get("stringData") or {}).items():
            out[k] = v
    else:
        out.update(obj.get("data") or {})
        for k, v in (obj.get("binaryData") or {}).items():
            out[k] = base64.b64decode(v).decode("utf-8", errors="replace")
    return out


def _expand(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR_REF.sub(sub, value)


def resolve_env(container: dict, namespace: str, lookup: Lookup, pod: dict | None = None) -> dict[str, str]:
    """The container's environment; raises ``CreateContainerConfigError`` with the kubelet's message."""
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
            if key not in src:
                continue
            ref = src[key]
            obj = lookup(kind, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise CreateContainerConfigError(f'{kind.lower()} "{ref.get("name", "")}" not found')
            for k, v in object_data(kind, obj).items():
                if _ENV_NAME.match(prefix + k):
                    env[prefix + k] = v
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = _expand(var.get("value", ""), env)
            continue
        vf = var["valueFrom"]
        for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
            if key not in vf:
                continue
            ref = vf[key]
            obj = lookup(kind, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    break
                raise CreateContainerConfigError(f'{kind.lower()} "{ref.get("name", "")}" not found')
            data = object_data(kind, obj)
            if ref.get("key") not in data:
                if ref.get("optional"):
                    break
                raise CreateContainerConfigError(
                    f"couldn't find key {ref.get('key')} in {kind} {namespace}/{ref.get('name', '')}")
            env[name] = data[ref["key"]]
            break
        else:
            if "fieldRef" in vf and pod is not None:
                env[name] = _field_ref(pod, vf["fieldRef"].get("fieldPath", ""))
    return env


def _field_ref(pod: dict, path: str) -> str:
    meta = pod.get("metadata", {})
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": pod.get("spec", {}).get("nodeName", ""),
        "spec.serviceAccountName": pod.get("spec", {}).get("serviceAccountName", "default"),
        "status.podIP": pod.get("status", {}).get("podIP", ""),
        "status.hostIP": pod.get("status", {}).get("hostIP", ""),
    }
    return str(simple.get(path, ""))
