"""RBAC is sufficient (every API call in the operator's code is granted) and minimal (every grant has a reason).

Sufficient: the Kubernetes client calls in the package are found by name and mapped to (group,
resource, verb); the chart's rules must grant each one, in both scopes. Code run by a person with
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

from .test_chart import MODES, NAMESPACED, RELEASE, grants, kinds
from .tools import REPO

pytestmark = pytest.mark.timeout(900)

PACKAGE = REPO / "operator" / "mayanode_operator"
NOT_THE_OPERATOR = ("sandbox", "demo")       # and cli*.py / cli/: run by a person with their own credentials
OUR_GROUP = "maya.nodeops.io"
# What kopf itself does with the operator's credentials: list and watch the three kinds, post events.
KOPF_NEEDS = {(OUR_GROUP, plural, verb) for plural in ("mayanodes", "nodebackups", "noderestores")
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


def api_calls() -> dict[tuple[str, str, str], list[str]]:
    """(client suffix, verb, reach) → where. For custom objects the suffix is `custom_object[_sub]@group/plural`."""
    found: dict[tuple[str, str, str], list[str]] = {}
    for path in operator_sources():
        text = path.read_text()
        for pattern in (CALL, CLUSTER_CALL):
            for match in pattern.finditer(text):
                prefix, suffix = match.group(1), match.group(2)
                if suffix.startswith("custom_object"):
                    suffix = f"{suffix}@{custom_target(text)}"
                where = f"{path.relative_to(REPO)}:{text.count(chr(10), 0, match.start()) + 1} {match.group(0)}"
                for verb in VERBS[prefix]:
                    found.setdefault((suffix, verb, "cluster" if pattern is CLUSTER_CALL else "ns"), []).append(where)
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
        if suffix not in RESOURCES:
            missing.append(f"unknown client call {where[0]}: add its resource to RESOURCES in this test, "
                           f"a rule to charts/mayanode-operator/templates/_helpers.tpl and a row to docs/rbac.md")
            continue
        group, resource = RESOURCES[suffix]
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
        elif suffix in RESOURCES:
            used.add((*RESOURCES[suffix], verb))
    framework = {"customresourcedefinitions", "namespaces", "kopfpeerings", "clusterkopfpeerings"}
    unused = sorted((group, resource, verb) for rule in rules for group in rule["apiGroups"]
                    for resource in rule["resources"] for verb in rule["verbs"]
                    if (group, resource, verb) not in used and resource not in framework)
    assert not unused, f"granted but never used (remove them, or name the code that needs them): {unused}"


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
