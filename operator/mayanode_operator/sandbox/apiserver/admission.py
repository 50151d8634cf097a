"""Per-kind defaulting and validation of built-in objects (the parts of kube-apiserver's strategies used here)."""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import json
import re
from typing import Any

from .errors import FieldError, forbidden, invalid, required, too_long
from .selectors import selector_from_label_selector

DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
MAX_SECRET_BYTES = 1024 * 1024

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                 "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
             "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
             "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
               "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
               "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")


def validate_name(kind: str, name: str) -> list[FieldError]:
    if kind in ("Namespace",):
        if len(name) > 63 or not DNS1123_LABEL.fullmatch(name):
            return [invalid("metadata.name", name, LABEL_MSG)]
    elif kind == "Service":
        if len(name) > 63 or not DNS1035_LABEL.fullmatch(name):
            return [invalid("metadata.name", name, DNS1035_MSG)]
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.fullmatch(name):
        return [invalid("metadata.name", name, SUBDOMAIN_MSG)]
    return []


def validate_metadata(kind: str, meta: dict[str, Any]) -> list[FieldError]:
    errors = validate_name(kind, meta.get("name", ""))
    for key, value in (meta.get("labels") or {}).items():
        name = key.rsplit("/", 1)[-1]
        if not _QUALIFIED_NAME.fullmatch(name) or len(name) > 63:
            errors.append(invalid("metadata.labels", key,
                                  "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                                  "start and end with an alphanumeric character"))
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            errors.append(invalid("metadata.labels", value,
                                  "a valid label must be an empty string or consist of alphanumeric characters, "
                                  "'-', '_' or '.', and must start and end with an alphanumeric character"))
    annotations = meta.get("annotations") or {}
    if any(not isinstance(v, str) for v in annotations.values()):
        errors.append(invalid("metadata.annotations", annotations, "annotation values must be strings"))
    elif sum(len(k) + len(v) for k, v in annotations.items()) > 256 * 1024:
        errors.append(too_long("metadata.annotations", "must have at most 262144 bytes"))
    return errors


# ---------------------------------------------------------------------------------------------- per kind

def _pod_spec_defaults(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        image = container.get("image", "")
        tag = image.rsplit("/", 1)[-1]
        container.setdefault("imagePullPolicy", "Always" if (":" not in tag or tag.endswith(":latest")) and "@" not in tag
                             else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")


def _validate_pod_spec(spec: Any, path: str) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [required(path)]
    errors: list[FieldError] = []
    containers = spec.get("containers") or []
    if not containers:
        errors.append(required(f"{path}.containers"))
    names: set[str] = set()
    for i, c in enumerate(containers + (spec.get("initContainers") or [])):
        field = f"{path}.containers[{i}]"
        if not c.get("name"):
            errors.append(required(f"{field}.name"))
        elif c["name"] in names:
            errors.append(FieldError("Duplicate value", f"{field}.name", "", c["name"]))
        names.add(c.get("name", ""))
        if not c.get("image"):
            errors.append(required(f"{field}.image"))
    return errors


def _selector_matches_template(spec: dict[str, Any]) -> list[FieldError]:
    selector = spec.get("selector")
    if not selector:
        return [required("spec.selector")]
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector_from_label_selector(selector)({"metadata": {"labels": labels}}):
        return [invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")]
    return []


def _decode_secret_data(obj: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    data = obj.get("data") or {}
    total = 0
    for key, value in data.items():
        if not _CONFIG_KEY.fullmatch(key):
            errors.append(invalid(f"data[{key}]", key, "a valid config key must consist of alphanumeric "
                                  "characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', "
                                  "regex used for validation is '[-._a-zA-Z0-9]+')"))
            continue
        if not isinstance(value, str):
            errors.append(invalid(f"data[{key}]", value, "must be a base64-encoded string"))
            continue
        try:
            total += len(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            errors.append(invalid(f"data[{key}]", "<secret contents redacted>",
                                  "illegal base64 data at input byte 0"))
    if total > MAX_SECRET_BYTES:
        errors.append(too_long("data", f"must have at most {MAX_SECRET_BYTES} bytes"))
    return errors


def _merge_string_data(obj: dict[str, Any]) -> None:
    string_data = obj.pop("stringData", None)
    if string_data:
        data = dict(obj.get("data") or {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data


def _validate_configmap(obj: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    total = 0
    for field in ("data", "binaryData"):
        for key, value in (obj.get(field) or {}).items():
            if not _CONFIG_KEY.fullmatch(key):
                errors.append(invalid(f"{field}[{key}]", key, "a valid config key must consist of alphanumeric "
                                      "characters, '-', '_' or '.'"))
            if field == "data" and not isinstance(value, str):
                errors.append(invalid(f"data[{key}]", value, "must be a string"))
                continue
            total += len(key) + len(value if isinstance(value, str) else json.dumps(value))
    if total > MAX_SECRET_BYTES:
        errors.append(too_long("[]", f"must have at most {MAX_SECRET_BYTES} bytes"))
    return errors


class ClusterIPAllocator:
    def __init__(self) -> None:
        self._next = int(ipaddress.IPv4Address("10.96.0.10"))

    def allocate(self) -> str:
        self._next += 1
        return str(ipaddress.IPv4Address(self._next))


def prepare_create(kind: str, group: str, obj: dict[str, Any], ips: ClusterIPAllocator) -> list[FieldError]:
    """Default and validate a new built-in object in place; returns field errors."""
    meta = obj["metadata"]
    errors: list[FieldError] = []
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else None
    if kind == "Namespace" and not group:
        obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
        obj["status"] = {"phase": "Active"}
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    elif kind == "Pod" and not group:
        obj.setdefault("spec", {})
        _pod_spec_defaults(obj["spec"])
        errors += _validate_pod_spec(obj["spec"], "spec")
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif kind == "Secret" and not group:
        _merge_string_data(obj)
        obj.setdefault("type", "Opaque")
        errors += _decode_secret_data(obj)
    elif kind == "ConfigMap" and not group:
        errors += _validate_configmap(obj)
    elif kind == "Service" and not group:
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec.get("clusterIP") != "None":
            spec["clusterIP"] = spec.get("clusterIP") or ips.allocate()
            spec["clusterIPs"] = [spec["clusterIP"]]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for i, port in enumerate(spec.get("ports") or []):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
            if spec["type"] in ("NodePort", "LoadBalancer"):
                port.setdefault("nodePort", 30000 + (int(ipaddress.IPv4Address(spec.get("clusterIP", "0.0.0.0"))) + i) % 2767
                                if spec.get("clusterIP") not in (None, "None") else 30000 + i)
        if spec["type"] == "LoadBalancer":
            spec.setdefault("externalTrafficPolicy", "Cluster")
            spec.setdefault("allocateLoadBalancerNodePorts", True)
        obj["status"] = {"loadBalancer": {}}
    elif kind == "PersistentVolumeClaim" and not group:
        spec = obj.setdefault("spec", {})
        spec.setdefault("volumeMode", "Filesystem")
        if not spec.get("accessModes"):
            errors.append(required("spec.accessModes"))
        if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
            errors.append(required("spec.resources[storage]"))
        obj["status"] = {"phase": "Pending"}
    elif kind in ("Deployment", "ReplicaSet", "StatefulSet") and group == "apps":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        if kind == "Deployment":
            spec.setdefault("progressDeadlineSeconds", 600)
            strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
            if strategy.get("type", "RollingUpdate") == "RollingUpdate":
                strategy.setdefault("type", "RollingUpdate")
                strategy.setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})
        template = spec.setdefault("template", {})
        template.setdefault("metadata", {})
        template.setdefault("spec", {})
        _pod_spec_defaults(template["spec"])
        errors += _selector_matches_template(spec)
        errors += _validate_pod_spec(template["spec"], "spec.template.spec")
        if isinstance(spec.get("replicas"), int) and spec["replicas"] < 0:
            errors.append(invalid("spec.replicas", spec["replicas"], "must be greater than or equal to 0"))
        obj["status"] = {}
    elif kind == "VolumeSnapshot":
        obj.pop("status", None)
    return errors


_POD_MUTABLE = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")


def prepare_update(kind: str, group: str, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """Default and validate an update of a built-in object in place; returns field errors."""
    errors: list[FieldError] = []
    if group:
        if kind in ("Deployment", "ReplicaSet", "StatefulSet"):
            spec = new.get("spec") or {}
            template = spec.get("template") or {}
            _pod_spec_defaults(template.setdefault("spec", {}))
            errors += _selector_matches_template(spec)
            if spec.get("selector") != (old.get("spec") or {}).get("selector"):
                errors.append(invalid("spec.selector", spec.get("selector"), "field is immutable"))
        return errors
    if kind == "Secret":
        _merge_string_data(new)
        new.setdefault("type", old.get("type", "Opaque"))
        if new.get("type") != old.get("type"):
            errors.append(invalid("type", new.get("type"), "field is immutable"))
        if old.get("immutable") and (new.get("data") != old.get("data") or not new.get("immutable")):
            errors.append(forbidden("data", "field is immutable when `immutable` is set"))
        errors += _decode_secret_data(new)
    elif kind == "ConfigMap":
        if old.get("immutable") and (new.get("data") != old.get("data") or not new.get("immutable")):
            errors.append(forbidden("data", "field is immutable when `immutable` is set"))
        errors += _validate_configmap(new)
    elif kind == "Pod":
        new_spec = copy.deepcopy(new.get("spec") or {})
        _pod_spec_defaults(new_spec)
        new["spec"] = new_spec
        old_spec = old.get("spec") or {}

        def comparable(spec: dict[str, Any]) -> dict[str, Any]:
            spec = {k: v for k, v in spec.items() if k not in _POD_MUTABLE}
            for field in ("containers", "initContainers"):
                spec[field] = [{k: v for k, v in c.items() if k != "image"} for c in spec.get(field) or []]
            return spec

        if comparable(new_spec) != comparable(old_spec):
            errors.append(forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`,"
                                            "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                                            "`spec.tolerations` (only additions to existing tolerations),"
                                            "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it "
                                            "was previously negative)"))
    elif kind == "Service":
        spec = new.setdefault("spec", {})
        old_spec = old.get("spec") or {}
        for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "sessionAffinity",
                      "internalTrafficPolicy"):
            if field not in spec and field in old_spec:
                spec[field] = old_spec[field]
        if old_spec.get("clusterIP") and spec.get("clusterIP") != old_spec.get("clusterIP"):
            errors.append(invalid("spec.clusterIPs[0]", spec.get("clusterIP"), "may not change once set"))
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    elif kind == "PersistentVolumeClaim":
        old_spec = {k: v for k, v in (old.get("spec") or {}).items() if k != "resources"}
        new_spec = {k: v for k, v in (new.get("spec") or {}).items() if k != "resources"}
        new_spec.setdefault("volumeMode", "Filesystem")
        if old_spec.get("volumeName") and new_spec != old_spec:
            errors.append(forbidden("spec", "spec is immutable after creation except resources.requests and "
                                            "volumeAttributesClassName for bound claims"))
    return errors


def initial_status(kind: str, group: str) -> dict[str, Any] | None:
    """What a create leaves in `.status` for kinds with a status subresource (None: no status)."""
    if group == "" and kind == "Pod":
        return {"phase": "Pending", "qosClass": "BestEffort"}
    if group == "" and kind == "Namespace":
        return {"phase": "Active"}
    if group == "" and kind == "Service":
        return {"loadBalancer": {}}
    if group == "" and kind == "PersistentVolumeClaim":
        return {"phase": "Pending"}
    if group == "apps":
        return {}
    return None
