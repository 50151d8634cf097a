"""RBAC is sufficient (every API call in the operator's code is granted) and minimal (every grant has a reason).

Sufficient: the Kubernetes client calls in the package are found by name and mapped to (group,
resource, verb), and so are the raw REST calls of the adapter (an HTTP method and an API path, e.g.
`_rest("PATCH", "/api/v1/namespaces/{namespace}/configmaps/{name}", …)`); the chart's rules must grant
each one, in both scopes. Code run by a person with
their own kubeconfig (the CLI, the demo) and the test sandbox are left out.
Minimal: docs/rbac.md has one row per (group, resource, verb) the chart grants, with its reason,
and no grant without a row.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from .conftest import NAMESPACE
from .test_chart import MODES, NAMESPACED, RELEASE, grants, kinds
from .tools import REPO

pytestmark = pytest.mark.timeout(900)

PACKAGE = REPO / "operator" / "mayanode_operator"
NOT_THE_OPERATOR = ("sandbox", "demo")       # and cli*.py / cli/: run by a person with their own credentials
OUR_GROUP = "maya.nodeops.io"
# What kopf itself does with the operator's credentials: list and watch the three kinds, pods and Deployments
# (main.py), post events.
KOPF_NEEDS = {(group, plural, verb) for group, plural in [(OUR_GROUP, "mayanodes"), (OUR_GROUP, "nodebackups"),
                                                          (OUR_GROUP, "noderestores"), ("", "pods"),
                                                          ("apps", "deployments")]
              for verb in ("list", "watch")} | {("", "events", "create")}

CALL = re.compile(r"\b(get|read|list|create|replace|patch|delete|delete_collection|connect_get|connect_post)"
                  r"_namespaced_([a-z_]+?)\b")
CLUSTER_CALL = re.compile(r"\b(read|list|create|replace|patch|delete)_([a-z_]+?)_for_all_namespaces\b")
VERBS = {"get": ["get"], "read": ["get"], "list": ["list"], "create": ["create"], "replace": ["update"],
         "patch": ["patch"], "delete": ["delete"], "delete_collection": ["deletecollection"],
         # exec over a websocket is a GET: authorized as `get`, and as `create` since Kubernetes 1.31
         "connect_get": ["create", "get"], "connect_post": ["create"]}
RESOURCES = {
    "secret": ("", "secrets"), "pod": ("", "pods"), "pod_exec": ("", "pods/exec"), "pod_log": ("", "pods/log"),
    "config_map": ("", "configmaps"), "service": ("", "services"), "event": ("", "events"),
    "persistent_volume_claim": ("", "persistentvolumeclaims"),
    "deployment": ("apps", "deployments"), "deployment_scale": ("apps", "deployments/scale"),
    "deployment_status": ("apps", "deployments/status"),
    "lease": ("coordination.k8s.io", "leases"),
}


def operator_sources() -> list[Path]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if parts[0] in NOT_THE_OPERATOR or parts[0].startswith("cli"):
            continue
        out.append(path)
    return out


GROUP_CONSTANT = re.compile(r'^GROUP(?:, VERSION)?(?:, PLURAL)? = "([^"]+)"(?:, "[^"]+")?(?:, "([^"]+)")?', re.M)


def custom_target(text: str) -> str:
    """The custom resource a file's custom-object calls address: `group/plural` from its GROUP and PLURAL
    constants (e.g. the VolumeSnapshot adapter), else `maya.nodeops.io/*` (the plural is a parameter)."""
    match = GROUP_CONSTANT.search(text)
    if match and match.group(2):
        return f"{match.group(1)}/{match.group(2)}"
    return f"{OUR_GROUP}/*"


# Raw REST calls: `_rest("METHOD", <path>, …)` and `_get_or_none(<path>, …)` (a GET), where <path> is a string
# literal, a module constant, or a constant + a literal (`CUSTOM_OBJECT + "/status"`).
PATH_EXPR = r'(?:"[^"]*"|[A-Z_]+)(?:\s*\+\s*(?:"[^"]*"|[A-Z_]+))*'
REST_CALL = re.compile(r'\b_(?:rest\(\s*"(GET|POST|PUT|PATCH|DELETE)"|get_or_none\()\s*,?\s*(' + PATH_EXPR + ')')
STRING_CONSTANT = re.compile(r'^([A-Z_]+) = (' + PATH_EXPR + r')\s*$', re.M)
API_PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)/namespaces/\{namespace\}/(?P<resource>[^/]+)"
                      r"(?P<name>/\{name\})?(?:/(?P<sub>[a-z]+))?$")
CUSTOM_GROUPS = {OUR_GROUP, "{group}", "snapshot.storage.k8s.io"}


def _resolve(expr: str, constants: dict[str, str]) -> str:
    parts = [part.strip() for part in expr.split("+")]
    return "".join(part.strip('"') if part.startswith('"') else constants.get(part, "?" + part) for part in parts)


def rest_calls(text: str) -> list[tuple[str, str, int, str]]:
    """(suffix, verb, offset, call) of a file's raw REST calls. Our kinds (a `{plural}` path) give the
    `custom_object[_sub]@group/plural` suffix of the client calls; other kinds `rest:group/resource[/sub]`."""
    constants: dict[str, str] = {}
    for match in STRING_CONSTANT.finditer(text):
        constants[match.group(1)] = _resolve(match.group(2), constants)
    out = []
    for match in REST_CALL.finditer(text):
        method, path = match.group(1) or "GET", _resolve(match.group(2), constants)
        parsed = API_PATH.match(path)
        assert parsed, f"an API call to a path this test cannot read: {path} ({match.group(0)})"
        named = bool(parsed.group("name"))
        verb = {"GET": "get" if named else "list", "POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if named else "deletecollection"}[method]
        group, resource, sub = parsed.group("group") or "", parsed.group("resource"), parsed.group("sub")
        if group in CUSTOM_GROUPS:
            target = f"{OUR_GROUP}/*" if resource == "{plural}" else f"{group}/{resource}"
            suffix = "custom_object" + (f"_{sub}" if sub else "") + f"@{target}"
        else:
            suffix = f"rest:{group}/{resource}" + (f"/{sub}" if sub else "")
        out.append((suffix, verb, match.start(), match.group(0)))
    return out


def resource_of(suffix: str) -> tuple[str, str] | None:
    """(group, resource) of a non-custom call's suffix; None when this test does not know it."""
    if suffix.startswith("rest:"):
        group, _, resource = suffix.removeprefix("rest:").partition("/")
        return group, resource
    return RESOURCES.get(suffix)


def api_calls() -> dict[tuple[str, str, str], list[str]]:
    """(client suffix, verb, reach) → where. For custom objects the suffix is `custom_object[_sub]@group/plural`."""
    found: dict[tuple[str, str, str], list[str]] = {}
    for path in operator_sources():
        text = path.read_text()

        def where(offset: int, call: str) -> str:
            return f"{path.relative_to(REPO)}:{text.count(chr(10), 0, offset) + 1} {call}"
        for pattern in (CALL, CLUSTER_CALL):
            for match in pattern.finditer(text):
                prefix, suffix = match.group(1), match.group(2)
                if suffix.startswith("custom_object"):
                    suffix = f"{suffix}@{custom_target(text)}"
                for verb in VERBS[prefix]:
                    found.setdefault((suffix, verb, "cluster" if pattern is CLUSTER_CALL else "ns"), []).append(
                        where(match.start(), match.group(0)))
        for suffix, verb, offset, call in rest_calls(text):
            found.setdefault((suffix, verb, "ns"), []).append(where(offset, call))
    return found


def custom_resources(suffix: str, rules: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The (group, resource) pairs a custom-object call may address, as far as the rules name them."""
    call, _, target = suffix.partition("@")
    sub = call.removeprefix("custom_object").lstrip("_")
    group, plural = target.split("/", 1)
    out = []
    for rule in rules:
        if group not in rule["apiGroups"]:
            continue
        for resource in rule["resources"]:
            base, _, resource_sub = resource.partition("/")
            if resource_sub == sub and (plural == "*" or base == plural):
                out.append((group, resource))
    return out


def operator_rules(docs: list[dict[str, Any]], scope: str) -> list[dict[str, Any]]:
    if scope == "cluster":
        return [rule for role in kinds(docs, "ClusterRole") for rule in role["rules"]]
    (role,) = [r for r in kinds(docs, "Role")
               if r["metadata"]["name"] == f"{RELEASE}-mayanode-operator" and r["metadata"]["namespace"] == "mayanode"]
    return role["rules"]


def test_the_scan_finds_the_known_calls():
    calls = api_calls()
    assert ("secret", "get", "ns") in calls
    assert ("custom_object_status@maya.nodeops.io/*", "patch", "ns") in calls
    assert ("deployment_scale", "patch", "ns") in calls
    assert ("pod_exec", "create", "ns") in calls


@pytest.mark.parametrize("scope, values", [("cluster", {}), ("namespaced", NAMESPACED)])
def test_every_api_call_is_granted(render, scope, values):
    rules = operator_rules(render(values), scope)
    missing = []
    for (suffix, verb, reach), where in sorted(api_calls().items()):
        if reach == "cluster" and scope == "namespaced":
            missing.append(f"{suffix} {verb} across all namespaces cannot work in namespaced scope: {where[0]}")
            continue
        if suffix.startswith("custom_object"):
            if not any(grants(rules, group, resource, verb) for group, resource in custom_resources(suffix, rules)):
                missing.append(f"{verb} {suffix.partition('@')[2]} is not granted; used at {where[0]}")
            continue
        if resource_of(suffix) is None:
            missing.append(f"unknown client call {where[0]}: add its resource to RESOURCES in this test, "
                           f"a rule to charts/mayanode-operator/templates/_helpers.tpl and a row to docs/rbac.md")
            continue
        group, resource = resource_of(suffix)
        if not grants(rules, group, resource, verb):
            missing.append(f"{verb} {group or 'core'}/{resource} is not granted; used at {where[0]}")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("scope, values", [("cluster", {}), ("namespaced", NAMESPACED)])
def test_every_grant_is_used(render, scope, values):
    """Minimal: each verb the operator's rules grant is used by the code or by kopf."""
    rules = operator_rules(render(values), scope)
    used = set(KOPF_NEEDS)
    for (suffix, verb, _), _where in api_calls().items():
        if suffix.startswith("custom_object"):
            used |= {(group, resource, verb) for group, resource in custom_resources(suffix, rules)}
        elif resource_of(suffix) is not None:
            used.add((*resource_of(suffix), verb))
    framework = {"customresourcedefinitions", "namespaces", "kopfpeerings", "clusterkopfpeerings"}
    unused = sorted((group, resource, verb) for rule in rules for group in rule["apiGroups"]
                    for resource in rule["resources"] for verb in rule["verbs"]
                    if (group, resource, verb) not in used and resource not in framework)
    assert not unused, f"granted but never used (remove them, or name the code that needs them): {unused}"


def test_the_operators_own_namespace_grants_its_lease_calls(render):
    """The consensus-key lock (adapters/keylock.py) and the upgrade budget (adapters/leases.py) keep their Leases in
    the operator's own namespace ($POD_NAMESPACE, from the downward API): in namespaced scope, when that namespace is
    not a watched one, its own Role must grant every Lease call the code makes."""
    docs = render(NAMESPACED)
    (deployment,) = kinds(docs, "Deployment")
    env = {e["name"]: e for c in deployment["spec"]["template"]["spec"]["containers"] for e in c.get("env") or []}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    own = [r for r in kinds(docs, "Role") if r["metadata"]["namespace"] == NAMESPACE]
    assert NAMESPACE not in json.loads(NAMESPACED["operator.namespaces"]) and len(own) == 1, own
    lease_calls = {(verb, where[0]) for (suffix, verb, _), where in api_calls().items()
                   if resource_of(suffix) == ("coordination.k8s.io", "leases")}
    assert {verb for verb, _ in lease_calls} >= {"get", "create", "update"}, lease_calls
    missing = sorted((verb, where) for verb, where in lease_calls
                     if not grants(own[0]["rules"], "coordination.k8s.io", "leases", verb))
    assert not missing, f"Lease calls the Role in the operator's own namespace does not grant: {missing}"


DOC_ROW = re.compile(r"^\|\s*`([^`]*)`\s*\|\s*`([^`]+)`\s*\|\s*`([a-z]+)`\s*\|\s*(.+?)\s*\|\s*$")


def documented_grants() -> dict[tuple[str, str, str], str]:
    rows = {}
    for line in (REPO / "docs" / "rbac.md").read_text().splitlines():
        match = DOC_ROW.match(line)
        if match:
            group = "" if match.group(1) == "core" else match.group(1)
            rows[(group, match.group(2), match.group(3))] = match.group(4)
    return rows


def granted(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    out = set()
    for role in kinds(docs, "Role") + kinds(docs, "ClusterRole"):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        out.add((group, resource, verb))
    return out


def test_every_grant_has_a_documented_reason(render):
    rows = documented_grants()
    assert rows, "docs/rbac.md has no grant table"
    every_mode = set()
    for values in MODES.values():
        every_mode |= granted(render(values))
    every_mode |= granted(render({**NAMESPACED, "operator.peering.enabled": "true"}))
    every_mode |= granted(render({"operator.peering.enabled": "true"}))
    undocumented = sorted(every_mode - set(rows))
    assert not undocumented, f"grants without a reason in docs/rbac.md: {undocumented}"
    stale = sorted(set(rows) - every_mode)
    assert not stale, f"docs/rbac.md explains grants the chart does not make: {stale}"
    assert all(len(reason) > 15 for reason in rows.values())


def test_rules_are_listed_in_one_place():
    helpers = (REPO / "charts" / "mayanode-operator" / "templates" / "_helpers.tpl").read_text()
    assert helpers.count('define "mayanode-operator.rules"') == 1
    assert json.dumps("secrets") in helpers
