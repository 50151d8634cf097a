"""The Helm chart's namespaced-mode RBAC is sufficient: the operator runs as the chart's ServiceAccount against an
emulated API server that authenticates its token and enforces the rendered Roles and bindings like kube-apiserver.

Observe, a NodeBackup to Completed + Verified, an external IP announce and a rollout-group upgrade converge with
no request refused; removing the `pods/exec` rule stops the next backup with a condition naming the refusal, which is recorded.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mayanode_operator.api import naming
from mayanode_operator.backup import generate_identity
from mayanode_operator.sandbox.apiserver.rbac import UserInfo
from mayanode_operator.sandbox.harness import OperatorProcess

from .conftest import Kube, condition, dump, eventually, mayanode_manifest
from .world import EmulatedWorld

REPO = Path(__file__).resolve().parents[2]
OPERATOR_NS, SA = "mayanode-operator", "mayanode-operator"
NODE_NS, IP_NS, UPGRADE_NS = "rbac-a", "rbac-ip", "rbac-upgrade"
WATCHED = (NODE_NS, IP_NS, UPGRADE_NS)
TOKEN = "rbac-e2e-operator-token"
IDENTITY, RECIPIENT = generate_identity()
OLD, NEW = "1.111.0", "1.112.0"
RBAC_KINDS = {"Role": "roles", "RoleBinding": "rolebindings", "ClusterRole": "clusterroles",
              "ClusterRoleBinding": "clusterrolebindings", "ServiceAccount": "serviceaccounts"}


def render_chart(tmp: Path) -> list[dict[str, Any]]:
    from tests.packaging.tools import CHART, helm_binary

    namespaces = "{" + ",".join(WATCHED) + "}"
    result = subprocess.run([str(helm_binary()), "template", "mayanode-operator", str(CHART), "--namespace", OPERATOR_NS,
                             "--set", "operator.scope=namespaced", "--set", f"operator.namespaces={namespaces}"],
                            capture_output=True, text=True, timeout=120, env={"HOME": str(tmp), "PATH": "/usr/bin:/bin",
                                                                              "HELM_CACHE_HOME": str(tmp / "c"),
                                                                              "HELM_CONFIG_HOME": str(tmp / "f"),
                                                                              "HELM_DATA_HOME": str(tmp / "d")})
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def apply_rbac(world: EmulatedWorld, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    store = world.sandbox.api.store
    applied = [doc for doc in docs if doc["kind"] in RBAC_KINDS]

    def apply() -> None:
        for doc in applied:
            group = doc["apiVersion"].rpartition("/")[0]
            plural = f"{RBAC_KINDS[doc['kind']]}.{group}" if group else RBAC_KINDS[doc["kind"]]
            namespace = doc["metadata"].get("namespace") if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding") \
                else None
            store.create(plural, doc, namespace)
    world.call(apply)
    return applied


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    w = EmulatedWorld(tmp_path_factory.mktemp("rbac-world"))
    w.start()
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def admin(world) -> Kube:
    return Kube(world.kubeconfig_path)


@pytest.fixture(scope="module")
def nodes(world, admin):
    world.call(lambda: world.sandbox.api.store.create("namespaces", {"metadata": {"name": OPERATOR_NS}}))
    seeded = {
        NODE_NS: world.seed_node(NODE_NS),
        IP_NS: world.seed_node(IP_NS, ip_address=""),
        UPGRADE_NS: world.seed_node(UPGRADE_NS, version=OLD, status="Standby"),
    }
    admin.core.create_namespaced_secret(NODE_NS, {"metadata": {"name": "age-identity"},
                                                  "stringData": {"identity": IDENTITY}})
    return seeded


@pytest.fixture(scope="module")
def rbac(world, nodes, tmp_path_factory):
    docs = render_chart(tmp_path_factory.mktemp("helm"))
    applied = apply_rbac(world, docs)
    kinds = sorted({d["kind"] for d in applied})
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"], kinds
    assert {d["metadata"].get("namespace") for d in applied if d["kind"] == "Role"} == {*WATCHED, OPERATOR_NS}
    world.sandbox.api.enable_rbac({TOKEN: UserInfo.service_account(OPERATOR_NS, SA)})
    return applied


@pytest.fixture(scope="module")
def operator(world, rbac, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rbac-operator")
    kubeconfig = world.sandbox.api.write_kubeconfig(workdir / "kubeconfig", namespace=OPERATOR_NS, token=TOKEN)
    proc = OperatorProcess(kubeconfig, workdir / "operator.log", namespaces=WATCHED,
                           extra_env={"POD_NAMESPACE": OPERATOR_NS, "POD_NAME": "mayanode-operator-0"}).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def applied(nodes, operator, admin, world):
    admin.apply(mayanode_manifest(nodes[NODE_NS], backup={"afterChurn": False, "location": {
        "secret": {}, "encryption": {"recipients": [RECIPIENT], "identitySecret": {"name": "age-identity"}}}}))
    world.call(world.kubelet.set_lb_address(IP_NS, naming.DEFAULT_GATEWAY_SERVICE))
    admin.apply(mayanode_manifest(nodes[IP_NS], externalIP={"announce": True}))
    admin.apply(mayanode_manifest(nodes[UPGRADE_NS], version=NEW, upgrade={
        "healthTimeoutSeconds": 30, "gates": {"adoption": {"mode": "None"}},
        "rollout": {"group": "rbac-fleet", "maxConcurrent": 1}}))
    return nodes


def nodebackup(name: str) -> dict[str, Any]:
    return {"apiVersion": naming.API_VERSION, "kind": "NodeBackup", "metadata": {"name": name, "namespace": NODE_NS},
            "spec": {"nodeRef": {"name": NODE_NS}}}


def denials(world) -> list[str]:
    return [str(d) for d in world.sandbox.api.rbac_denials]


def finished_backup(admin, name: str, operator) -> dict[str, Any]:
    def done():
        body = admin.get_custom(naming.NODEBACKUP_PLURAL, NODE_NS, name)
        assert (body.get("status") or {}).get("phase") in ("Completed", "PartiallyFailed", "Failed"), \
            dump(body.get("status"))
        return body
    return eventually(done, timeout=40, message=lambda: operator.log_text()[-3000:])


def test_the_operator_is_refused_outside_its_grants(world, rbac, operator):
    """The check is live: the operator's own token cannot list Pods cluster-wide."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(world.sandbox.api.url + "/api/v1/pods",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request)
    assert err.value.code == 403
    assert (f'pods is forbidden: User "system:serviceaccount:{OPERATOR_NS}:{SA}" cannot list resource "pods" '
            'in API group "" at the cluster scope') == json.loads(err.value.read())["message"]
    world.sandbox.api.rbac_denials.clear()


def test_observe_converges(applied, admin, operator, world):
    def ready():
        body = admin.mayanode(NODE_NS, NODE_NS)
        assert condition(body, "Ready").get("status") == "True", dump(body.get("status")) + str(denials(world))
        return body
    body = eventually(ready, timeout=40, message=lambda: operator.log_text()[-3000:])
    assert body["status"]["node"]["status"] == "Active"


def test_backup_completes_and_verifies(applied, admin, operator, world):
    admin.apply(nodebackup("full"))
    body = finished_backup(admin, "full", operator)
    assert body["status"]["phase"] == "Completed", dump(body.get("status")) + str(denials(world))
    verified = condition(body, "Verified")
    assert (verified["status"], verified["reason"]) == ("True", "Verified"), verified


def test_external_ip_is_announced(applied, admin, operator, world):
    world.call(world.kubelet.set_lb_address(IP_NS, naming.DEFAULT_GATEWAY_SERVICE, ip="198.51.100.40"))

    def announced():
        body = admin.mayanode(IP_NS, IP_NS)
        c = condition(body, "ExternalIPAssigned")
        assert c.get("status") == "True" and c["reason"] == "Announced", dump(body.get("status")) + str(denials(world))
        return body
    eventually(announced, timeout=40, message=lambda: operator.log_text()[-3000:])
    assert world.mocknet.node(applied[IP_NS].node_address).ip_address == "198.51.100.40"


def test_a_rollout_group_upgrade_succeeds(applied, admin, operator, world):
    def done():
        body = admin.mayanode(UPGRADE_NS, UPGRADE_NS)
        entries = ((body.get("status") or {}).get("upgrade") or {}).get("history") or []
        assert entries and entries[-1]["result"] == "Succeeded", dump(body.get("status")) + str(denials(world))
        return body
    body = eventually(done, timeout=60, message=lambda: operator.log_text()[-3000:])
    assert body["status"]["version"] == NEW
    leases = world.sandbox.api.store.items("leases", OPERATOR_NS)
    assert any(lease["metadata"]["name"].startswith("mayanode-rollout-") for lease in leases), leases


def test_no_request_was_refused(applied, operator, world):
    assert denials(world) == [], "\n".join(denials(world))
    log = operator.log_text()
    assert "403" not in log and "Forbidden" not in log, [line for line in log.splitlines()
                                                         if "403" in line or "Forbidden" in line][:10]


def test_without_pods_exec_a_backup_stops_and_the_refusal_is_recorded(applied, admin, operator, world):
    store = world.sandbox.api.store

    def drop_exec() -> None:
        role = store.get("roles.rbac.authorization.k8s.io", "mayanode-operator", NODE_NS)
        role["rules"] = [r for r in role["rules"] if "pods/exec" not in r.get("resources", ())]
        store.replace("roles.rbac.authorization.k8s.io", "mayanode-operator", role, NODE_NS)
    world.call(drop_exec)
    admin.apply(nodebackup("no-exec"))

    def refused_condition():
        body = admin.get_custom(naming.NODEBACKUP_PLURAL, NODE_NS, "no-exec")
        completed = condition(body, "Completed")
        assert completed.get("status") == "False" and "forbidden" in completed.get("message", "").lower(), \
            dump(body.get("status"))
        return body
    body = eventually(refused_condition, timeout=30, message=lambda: operator.log_text()[-3000:])
    completed = condition(body, "Completed")
    assert completed["reason"].endswith(("Retrying", "Failed")), completed
    assert "pods/exec" in completed["message"], completed
    assert body["status"]["phase"] != "Completed", dump(body["status"])
    refused = [d for d in world.sandbox.api.rbac_denials
               if d.attributes.resource == "pods" and d.attributes.subresource == "exec"]
    assert refused and refused[0].attributes.namespace == NODE_NS, denials(world)
    assert f'cannot create resource "pods/exec" in API group "" in the namespace "{NODE_NS}"' in refused[0].message
    assert {(d.attributes.resource, d.attributes.subresource) for d in world.sandbox.api.rbac_denials} \
        == {("pods", "exec")}, denials(world)
