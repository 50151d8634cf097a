"""The Helm chart: lint, render in every mode, validate the built-in objects, schema, RBAC scope, CRDs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mayanode_operator.config import DEFAULT_WORKLOAD_SELECTOR

from .conftest import NAMESPACE, RELEASE, set_args
from .tools import CHART, REPO

pytestmark = pytest.mark.timeout(900)     # the first test may fetch helm

WATCHED = ["mayanode", "mayanode-stagenet"]
NAMESPACED = {"operator.scope": "namespaced", "operator.namespaces": json.dumps(WATCHED)}
MODES: dict[str, dict[str, str]] = {
    "cluster": {},
    "cluster-servicemonitor-dashboard": {"metrics.serviceMonitor.enabled": "true", "metrics.dashboard.enabled": "true"},
    "namespaced": NAMESPACED,
    "namespaced-servicemonitor-peering": {**NAMESPACED, "metrics.serviceMonitor.enabled": "true",
                                          "operator.peering.enabled": "true", "replicaCount": "2"},
    "namespaced-in-own-namespace-no-discovery": {"operator.scope": "namespaced",
                                                 "operator.namespaces": json.dumps([NAMESPACE, "mayanode"]),
                                                 "rbac.discovery": "false"},
    "metrics-off": {"metrics.enabled": "false", "metrics.serviceMonitor.enabled": "true"},
}
KUBERNETES_VERSIONS = ("1.27.0", "1.35.0")     # the chart's kubeVersion floor and a recent release
BUILT_IN_GROUPS = {"v1", "apps/v1", "rbac.authorization.k8s.io/v1"}


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def the(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = kinds(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def grants(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any((group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", []))
               and (resource in rule.get("resources", []) or "*" in rule.get("resources", []))
               and (verb in rule.get("verbs", []) or "*" in rule.get("verbs", []))
               for rule in rules)


# --- lint and render ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_helm_lint_strict(run_helm, mode):
    result = run_helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, *set_args(MODES[mode]))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("mode", MODES)
def test_rendered_built_in_objects_are_valid(render, mode):
    docs = render(MODES[mode])
    built_in = [doc for doc in docs if doc["apiVersion"] in BUILT_IN_GROUPS]
    assert len(built_in) == len(docs) - len(kinds(docs, "ServiceMonitor")), \
        f"unexpected kinds: {sorted({d['apiVersion'] + ' ' + d['kind'] for d in docs})}"
    for version in KUBERNETES_VERSIONS:
        for doc in built_in:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} is invalid for Kubernetes {version}: "
                            f"{str(err)[:600]}", pytrace=False)


def test_the_validator_is_strict():
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                  "spec": {"selector": {"matchLabels": {"a": "b"}},
                           "template": {"metadata": {"labels": {"a": "b"}},
                                        "spec": {"containers": [{"name": "c", "image": "i", "bogus": 1}]}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_crds_are_not_rendered_as_templates(render):
    assert not kinds(render(), "CustomResourceDefinition")


def test_chart_crds_are_the_generated_crds():
    top = {path.name: path.read_bytes() for path in sorted((REPO / "crds").glob("*.yaml"))}
    chart = {path.name: path.read_bytes() for path in sorted((CHART / "crds").glob("*.yaml"))}
    assert set(chart) == set(top), f"chart CRD files {sorted(chart)} != crds/ {sorted(top)}"
    stale = [name for name in top if chart[name] != top[name]]
    assert not stale, (f"charts/mayanode-operator/crds/ differs from crds/ for {stale}: "
                       f"run `cp crds/*.yaml charts/mayanode-operator/crds/`")
    for name, text in chart.items():
        assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition", name


# --- the Deployment ---------------------------------------------------------------------------------
def container_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = the(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def test_deployment_runs_one_locked_down_replica(render):
    docs = render()
    deployment = the(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = container_of(docs)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["runAsNonRoot"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert any(v["name"] == "tmp" and "emptyDir" in v for v in pod["volumes"])
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["image"] == "mayanode-operator:0.1.0"
    assert pod["serviceAccountName"] == the(docs, "ServiceAccount")["metadata"]["name"]


def test_probes_hit_the_kopf_liveness_endpoint(render):
    container = container_of(render())
    args = container["args"]
    assert args[0] == "run"
    liveness = next(arg for arg in args if arg.startswith("--liveness="))
    match = re.fullmatch(r"--liveness=http://0\.0\.0\.0:(\d+)(/healthz)", liveness)
    assert match, liveness
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["health"] == int(match.group(1))
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": match.group(2), "port": "health"}


def test_cli_accepts_every_rendered_argument(render):
    from mayanode_operator.cli import build_parser

    for mode in MODES:
        args = build_parser().parse_args(container_of(render(MODES[mode]))["args"])
        if MODES[mode].get("operator.scope") == "namespaced":
            assert args.namespaces == json.loads(MODES[mode]["operator.namespaces"])
        else:
            assert args.namespaces is None
        assert args.metrics_port == (0 if mode == "metrics-off" else 8080)
        assert args.workload_selector == DEFAULT_WORKLOAD_SELECTOR


def test_workload_selector_reaches_the_operator_as_one_argument(render):
    from mayanode_operator.cli import build_parser

    for selector in ("app.kubernetes.io/part-of=mayanode-stack, tier notin (test)", ""):
        args = build_parser().parse_args(container_of(render({"operator.workloadSelector": json.dumps(selector)}))["args"])
        assert args.workload_selector == selector


def test_replicas_above_one_need_peering(render):
    docs = render(MODES["namespaced-servicemonitor-peering"])
    assert the(docs, "Deployment")["spec"]["replicas"] == 2
    assert "--peering=mayanode-operator" in container_of(docs)["args"]


# --- metrics ------------------------------------------------------------------------------------------
def test_metrics_service_targets_the_metrics_port(render):
    docs = render(MODES["cluster-servicemonitor-dashboard"])
    service = the(docs, "Service")
    container = container_of(docs)
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    assert {"name": "metrics", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert "--metrics-port=8080" in container["args"]
    pod_labels = the(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()

    monitor = the(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_service_monitor_is_off_by_default(render):
    assert not kinds(render(), "ServiceMonitor")
    assert not kinds(render(), "ConfigMap")


def test_metrics_off_renders_no_service_and_no_monitor(render):
    docs = render(MODES["metrics-off"])
    assert not kinds(docs, "Service") and not kinds(docs, "ServiceMonitor")
    assert "--metrics-port=0" in container_of(docs)["args"]
    assert all(port["name"] != "metrics" for port in container_of(docs)["ports"])


def test_dashboard_configmap_holds_the_dashboard(render):
    (configmap,) = kinds(render(MODES["cluster-servicemonitor-dashboard"]), "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "mayanode-operator.json").read_text())
    assert json.loads(configmap["data"]["mayanode-operator.json"]) == shipped


# --- RBAC -----------------------------------------------------------------------------------------------
def test_cluster_scope_binds_one_cluster_role(render):
    docs = render()
    role, binding = the(docs, "ClusterRole"), the(docs, "ClusterRoleBinding")
    assert not kinds(docs, "Role") and not kinds(docs, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": the(docs, "ServiceAccount")["metadata"]["name"],
                                    "namespace": NAMESPACE}]
    assert grants(role["rules"], "", "secrets", "get")
    assert grants(role["rules"], "apiextensions.k8s.io", "customresourcedefinitions", "watch")
    assert not grants(role["rules"], "kopf.dev", "clusterkopfpeerings", "patch")


@pytest.mark.parametrize("mode", [m for m in MODES if m.startswith("namespaced")])
def test_namespaced_scope_has_no_cluster_wide_access_to_namespaced_objects(render, mode):
    docs = render(MODES[mode])
    watched = json.loads(MODES[mode]["operator.namespaces"])
    for role in kinds(docs, "ClusterRole"):
        for rule in role["rules"]:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
            assert set(rule["resources"]) <= {"customresourcedefinitions", "namespaces"}, rule
            assert "*" not in rule["apiGroups"]
    assert len(kinds(docs, "ClusterRole")) == (0 if MODES[mode].get("rbac.discovery") == "false" else 1)

    roles = {role["metadata"]["namespace"]: role for role in kinds(docs, "Role")
             if role["metadata"]["name"] == f"{RELEASE}-mayanode-operator"}
    assert sorted(roles) == sorted(watched)
    for namespace, role in roles.items():
        assert grants(role["rules"], "", "secrets", "get"), namespace
        assert grants(role["rules"], "maya.nodeops.io", "mayanodes", "watch"), namespace
    bound = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in kinds(docs, "RoleBinding")}
    assert {(ns, f"{RELEASE}-mayanode-operator") for ns in watched} <= bound
    for binding in kinds(docs, "RoleBinding") + kinds(docs, "ClusterRoleBinding"):
        assert binding["subjects"][0]["namespace"] == NAMESPACE

    if NAMESPACE not in watched:
        (own,) = [r for r in kinds(docs, "Role") if r["metadata"]["namespace"] == NAMESPACE]
        assert not grants(own["rules"], "", "secrets", "get")
        assert grants(own["rules"], "coordination.k8s.io", "leases", "update")
    assert "--namespace=mayanode" in container_of(docs)["args"]


def test_peering_adds_only_kopf_peering_rights(render):
    plain = {json.dumps(r, sort_keys=True) for role in kinds(render(NAMESPACED), "Role") for r in role["rules"]}
    peered = {json.dumps(r, sort_keys=True)
              for role in kinds(render(MODES["namespaced-servicemonitor-peering"]), "Role") for r in role["rules"]}
    added = [json.loads(r) for r in peered - plain]
    assert added == [{"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"], "verbs": ["get", "list", "watch", "patch"]}]


def test_no_rule_uses_wildcards(render):
    for mode in MODES:
        for role in kinds(render(MODES[mode]), "Role") + kinds(render(MODES[mode]), "ClusterRole"):
            for rule in role["rules"]:
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], (mode, rule)
                assert "escalate" not in rule["verbs"] and "bind" not in rule["verbs"] and "impersonate" not in rule["verbs"]


# --- values and their schema ----------------------------------------------------------------------------
BAD_VALUES = {
    "unknown scope": ({"operator.scope": "everywhere"}, "/operator/scope"),
    "namespaced without namespaces": ({"operator.scope": "namespaced"}, "/operator/namespaces"),
    "invalid namespace name": ({**NAMESPACED, "operator.namespaces": '["Not_A_Namespace"]'}, "/operator/namespaces/0"),
    "zero workers": ({"operator.workers": "0"}, "/operator/workers"),
    "selector not a string": ({"operator.workloadSelector": "[1]"}, "/operator/workloadSelector"),
    "unknown top-level key": ({"replicas": "2"}, "'replicas' not allowed"),
    "unknown nested key": ({"metrics.serviceMonitor.intervall": "1m"}, "'intervall' not allowed"),
    "port out of range": ({"metrics.port": "70000"}, "/metrics/port"),
    "bad pull policy": ({"image.pullPolicy": "Sometimes"}, "/image/pullPolicy"),
    "privilege escalation": ({"securityContext.allowPrivilegeEscalation": "true"}, "/securityContext/allowPrivilegeEscalation"),
    "root": ({"securityContext.runAsNonRoot": "false"}, "/securityContext/runAsNonRoot"),
    "bad log level": ({"operator.logLevel": "TRACE"}, "/operator/logLevel"),
    "bad interval": ({"metrics.serviceMonitor.interval": "soon"}, "/metrics/serviceMonitor/interval"),
    "two replicas without peering": ({"replicaCount": "2"}, "replicaCount > 1 needs operator.peering.enabled"),
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_bad_values_are_refused(run_helm, case):
    values, word = BAD_VALUES[case]
    result = run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *set_args(values), check=False)
    assert result.returncode != 0, f"{case}: accepted"
    assert word in result.stderr, result.stderr


def _values_lines() -> list[str]:
    return (CHART / "values.yaml").read_text().splitlines()


def test_every_value_is_documented():
    """Every key in values.yaml has a comment above it, or is inside a documented map."""
    documented_parents: list[tuple[int, bool]] = []      # (indent, documented) of open mappings
    commented = False                                     # the lines above form a `# --` comment
    undocumented = []
    for line in _values_lines():
        stripped = line.strip()
        if not stripped or stripped.startswith("- "):
            continue
        if stripped.startswith("#"):
            commented = stripped.startswith("# --") or commented
            continue
        indent = len(line) - len(line.lstrip())
        while documented_parents and documented_parents[-1][0] >= indent:
            documented_parents.pop()
        key, _, rest = stripped.partition(":")
        is_group = rest.strip() == ""
        inherited = any(doc for _, doc in documented_parents)
        if not (commented or inherited or is_group):
            undocumented.append(key)
        documented_parents.append((indent, commented or inherited))
        commented = False
    assert not undocumented, f"values without a `# --` comment: {undocumented}"


def test_schema_covers_every_default_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node
        if isinstance(value, dict) and "properties" in node:
            for key, sub in value.items():
                if node.get("additionalProperties") is False:
                    assert key in node["properties"], f"{path}{key} is not in values.schema.json"
                if key in node["properties"]:
                    walk(sub, node["properties"][key], f"{path}{key}.")
    walk(values, schema, "")
    assert set(schema["required"]) <= set(values)


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = (REPO / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    assert chart["apiVersion"] == "v2" and chart["appVersion"] == version
    assert (CHART / "templates" / "NOTES.txt").is_file()


def test_dashboard_uses_only_exported_metrics():
    from mayanode_operator import metrics

    exported = set()
    for collector in list(metrics.REGISTRY._collector_to_names):
        for family in collector.collect():
            exported.add(family.name)
            exported |= {sample.name for sample in family.samples}
            if family.type == "counter":
                exported.add(family.name + "_total")
            if family.type == "histogram":
                exported |= {family.name + suffix for suffix in ("_bucket", "_count", "_sum")}
    dashboard = json.loads((CHART / "dashboards" / "mayanode-operator.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    exprs += [var["query"]["query"] for var in dashboard["templating"]["list"] if isinstance(var.get("query"), dict)]
    used = {name for expr in exprs for name in re.findall(r"\b((?:mayanode|process)_[a-z_]+)\b", expr)}
    assert used, "the dashboard queries nothing"
    assert not used - exported, f"the dashboard uses metrics the operator does not export: {sorted(used - exported)}"
    assert dashboard["uid"] == "mayanode-operator"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_chart_file_layout():
    for path in ("Chart.yaml", "values.yaml", "values.schema.json", "templates/NOTES.txt", "templates/_helpers.tpl",
                 "dashboards/mayanode-operator.json", ".helmignore"):
        assert (CHART / path).is_file(), path
    assert not list(Path(CHART).rglob("*.pyc"))
