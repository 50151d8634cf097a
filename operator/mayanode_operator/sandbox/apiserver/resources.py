"""The kinds this API server serves: built-ins and CRD-defined ones, and their discovery documents."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from .validation import crd_schema

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ScaleSpec:
    spec_replicas_path: str = ".spec.replicas"
    status_replicas_path: str = ".status.replicas"
    label_selector_path: str | None = ".status.selector"


@dataclass
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False                       # has a /status subresource
    scale: ScaleSpec | None = None             # has a /scale subresource
    generation: bool = False                   # maintains metadata.generation
    field_selectors: tuple[str, ...] = ()      # beyond metadata.name / metadata.namespace
    extra_subresources: tuple[str, ...] = ()   # listed in discovery only (pods/exec, pods/log)
    crd: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.singular:
            self.singular = self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        """Storage key: objects are stored once per group+plural, whatever version they are served in."""
        return self.group, self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def is_custom(self) -> bool:
        return self.crd is not None

    @property
    def group_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def selectable_fields(self) -> tuple[str, ...]:
        return ("metadata.name", "metadata.namespace") + self.field_selectors

    def schema(self) -> dict[str, Any] | None:
        return crd_schema(self.crd, self.api_version) if self.crd else None

    def printer_columns(self) -> list[dict[str, Any]]:
        if not self.crd:
            return []
        for v in self.crd["spec"]["versions"]:
            if v["name"] == self.version:
                return list(v.get("additionalPrinterColumns") or [])
        return []


def _builtin(group: str, version: str, kind: str, plural: str, namespaced: bool = True, **kw: Any) -> ResourceType:
    return ResourceType(group=group, version=version, kind=kind, plural=plural, namespaced=namespaced, **kw)


def builtin_resources() -> list[ResourceType]:
    return [
        _builtin("", "v1", "Namespace", "namespaces", False, short_names=("ns",), status=True,
                 field_selectors=("status.phase",)),
        _builtin("", "v1", "Pod", "pods", short_names=("po",), categories=("all",), status=True,
                 field_selectors=("spec.nodeName", "status.phase", "spec.restartPolicy", "spec.schedulerName",
                                  "spec.serviceAccountName", "status.podIP", "status.nominatedNodeName"),
                 extra_subresources=("exec", "log")),
        _builtin("", "v1", "Service", "services", short_names=("svc",), categories=("all",), status=True),
        _builtin("", "v1", "ConfigMap", "configmaps", short_names=("cm",)),
        _builtin("", "v1", "Secret", "secrets", field_selectors=("type",)),
        _builtin("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short_names=("pvc",), status=True),
        _builtin("", "v1", "Event", "events", short_names=("ev",),
                 field_selectors=("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                                  "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                                  "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type")),
        _builtin("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",)),
        _builtin("", "v1", "Node", "nodes", False, short_names=("no",), status=True,
                 field_selectors=("spec.unschedulable",)),
        _builtin("", "v1", "PersistentVolume", "persistentvolumes", False, short_names=("pv",), status=True),
        _builtin("apps", "v1", "Deployment", "deployments", short_names=("deploy",), categories=("all",),
                 status=True, scale=ScaleSpec(), generation=True),
        _builtin("apps", "v1", "ReplicaSet", "replicasets", short_names=("rs",), categories=("all",),
                 status=True, scale=ScaleSpec(), generation=True),
        _builtin("apps", "v1", "StatefulSet", "statefulsets", short_names=("sts",), categories=("all",),
                 status=True, scale=ScaleSpec(), generation=True),
        _builtin("coordination.k8s.io", "v1", "Lease", "leases"),
        _builtin("events.k8s.io", "v1", "Event", "events", short_names=("ev",)),
        _builtin("snapshot.storage.k8s.io", "v1", "VolumeSnapshot", "volumesnapshots", short_names=("vs",),
                 status=True, generation=True),
        _builtin("rbac.authorization.k8s.io", "v1", "Role", "roles"),
        _builtin("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
        _builtin("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
        _builtin("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
        _builtin("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False,
                 short_names=("crd", "crds"), categories=("api-extensions",), status=True, generation=True),
    ]


def version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version ordering: GA > beta > alpha, higher numbers first (as a sort key)."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not match:
        return (3, 0, 0)
    major, stage, minor = match.groups()
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -int(major), -int(minor or 0))


class Registry:
    """Resource types by (group, version, plural); CRDs add and remove theirs at run time."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self.revision = 0            # bumps whenever the set of served types changes (openapi hashes)
        for rt in builtin_resources():
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def all(self) -> list[ResourceType]:
        with self._lock:
            return list(self._types.values())

    def for_key(self, key: tuple[str, str]) -> ResourceType | None:
        """A served type for a storage key, preferring the preferred version."""
        candidates = [rt for rt in self.all() if rt.key == key]
        return min(candidates, key=lambda rt: version_priority(rt.version)) if candidates else None

    def resolve(self, name: str) -> ResourceType:
        """Find a type by `plural`, `plural.group`, `plural.group/version`, `Kind`, `Kind.group` or short name."""
        version = None
        if "/" in name:
            name, version = name.split("/", 1)
        base, _, group = name.partition(".")
        matches = []
        for rt in self.all():
            if version and rt.version != version:
                continue
            if group and rt.group != group:
                continue
            if base in (rt.plural, rt.singular, rt.kind) or base in rt.short_names:
                matches.append(rt)
        if not matches:
            raise KeyError(f"no resource type {name!r}")
        if not group:
            core = [rt for rt in matches if rt.group == ""]
            matches = core or matches
        return min(matches, key=lambda rt: version_priority(rt.version))

    def register_crd(self, crd: dict[str, Any]) -> None:
        spec = crd["spec"]
        names = spec["names"]
        with self._lock:
            self._drop_group_plural(spec["group"], names["plural"])
            for version in spec.get("versions") or []:
                if not version.get("served", True):
                    continue
                subresources = version.get("subresources") or {}
                scale = None
                if "scale" in subresources:
                    s = subresources["scale"] or {}
                    scale = ScaleSpec(s.get("specReplicasPath", ".spec.replicas"),
                                      s.get("statusReplicasPath", ".status.replicas"),
                                      s.get("labelSelectorPath"))
                selectable = tuple(f.get("jsonPath", "").lstrip(".") for f in version.get("selectableFields") or [])
                rt = ResourceType(
                    group=spec["group"], version=version["name"], kind=names["kind"], plural=names["plural"],
                    namespaced=spec.get("scope") == "Namespaced", singular=names.get("singular", ""),
                    short_names=tuple(names.get("shortNames") or ()), categories=tuple(names.get("categories") or ()),
                    status="status" in subresources, scale=scale, generation=True, field_selectors=selectable,
                    crd=crd)
                self._types[(rt.group, rt.version, rt.plural)] = rt
            self.revision += 1

    def unregister_crd(self, crd: dict[str, Any]) -> None:
        with self._lock:
            self._drop_group_plural(crd["spec"]["group"], crd["spec"]["names"]["plural"])
            self.revision += 1

    def _drop_group_plural(self, group: str, plural: str) -> None:
        for k in [k for k, rt in self._types.items() if rt.group == group and rt.plural == plural and rt.crd]:
            del self._types[k]

    # ------------------------------------------------------------------------------------ discovery

    def group_versions(self) -> dict[str, list[str]]:
        """Group → served versions, preferred first (core group excluded)."""
        groups: dict[str, set[str]] = {}
        for rt in self.all():
            if rt.group:
                groups.setdefault(rt.group, set()).add(rt.version)
        return {g: sorted(vs, key=version_priority) for g, vs in sorted(groups.items())}

    def api_group(self, group: str) -> dict[str, Any] | None:
        versions = self.group_versions().get(group)
        if not versions:
            return None
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def api_group_list(self) -> dict[str, Any]:
        groups = [self.api_group(g) for g in self.group_versions()]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        types = sorted((rt for rt in self.all() if rt.group == group and rt.version == version),
                       key=lambda rt: rt.plural)
        if not types:
            return None
        resources: list[dict[str, Any]] = []
        for rt in types:
            entry: dict[str, Any] = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                                     "kind": rt.kind, "verbs": list(ALL_VERBS)}
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            if rt.kind == "Namespace":
                entry["verbs"] = ["create", "delete", "get", "list", "patch", "update", "watch"]
            resources.append(entry)
            if rt.status:
                resources.append({"name": f"{rt.plural}/status", "singularName": "", "namespaced": rt.namespaced,
                                  "kind": rt.kind, "verbs": ["get", "patch", "update"]})
            if rt.scale:
                resources.append({"name": f"{rt.plural}/scale", "singularName": "", "namespaced": rt.namespaced,
                                  "group": "autoscaling", "version": "v1", "kind": "Scale",
                                  "verbs": ["get", "patch", "update"]})
            for sub in rt.extra_subresources:
                kind = "PodExecOptions" if sub == "exec" else "Pod"
                verbs = ["create", "get"] if sub == "exec" else ["get"]
                resources.append({"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced,
                                  "kind": kind, "verbs": verbs})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": resources}
