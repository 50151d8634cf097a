"""The Helm chart's namespaced-mode RBAC is sufficient: the operator runs as the chart's ServiceAccount against an
emulated API server that authenticates its token and enforces the rendered Roles and bindings like kube-apiserver.

Observe, a NodeBackup to Completed + Verified, an external IP announce, a rollout-group upgrade, a NodeRestore of a
wiped node (Completed, Ready with the same address; the consensus-key Lease created in the operator's own namespace)
and a hand-off NodeRestore of that node into another watched namespace (backup and old node in the first one,
`doubleSignGuard.oldNode`; the Lease transferred) converge with no request refused; removing the `pods/exec` rule
stops the next backup with a condition naming the refusal, which is recorded; a NodeRestore of a backup in a namespace
that is not watched is refused by RBAC before it changes anything (the limitation docs/restore.md states).
"""

from __future__ import annotations

import json
import re
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
RESTORE_NS, HANDOFF_NS = "rbac-restore", "rbac-handoff"
WATCHED = (NODE_NS, IP_NS, UPGRADE_NS, RESTORE_NS, HANDOFF_NS)
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
        RESTORE_NS: world.seed_node(RESTORE_NS),
    }
    # The hand-off target: a new, empty node (no keys, scaled to 0) for the restored node's account.
    seeded[HANDOFF_NS] = world.seed_node(HANDOFF_NS, identity=seeded[RESTORE_NS].identity, with_keys=False,
                                         register=False, replicas=0)
    for namespace in (NODE_NS, RESTORE_NS):
        admin.core.create_namespaced_secret(namespace, {"metadata": {"name": "age-identity"},
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
    # kopf holds one watch connection per kind (3) and watched namespace: the operator sizes its pool for them
    # (the default cap of 10 would starve the watches of more than 3 namespaces).
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


def nodebackup(name: str, namespace: str = NODE_NS) -> dict[str, Any]:
    return {"apiVersion": naming.API_VERSION, "kind": "NodeBackup", "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeRef": {"name": namespace}}}


def noderestore(namespace: str, name: str, node: str, guard: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": naming.API_VERSION, "kind": "NodeRestore", "metadata": {"name": name, "namespace": namespace},
            "spec": {"backupRef": {"name": "full"}, "nodeRef": {"name": node},
                     "doubleSignGuard": {"silentBlocks": 3, **guard},
                     "timeouts": {"guardSeconds": 60, "readySeconds": 60, "scaleDownSeconds": 30}}}


def denials(world) -> list[str]:
    return [str(d) for d in world.sandbox.api.rbac_denials]


def finished_backup(admin, name: str, operator, namespace: str = NODE_NS) -> dict[str, Any]:
    return finished(admin, naming.NODEBACKUP_PLURAL, namespace, name, operator)


def finished(admin, plural: str, namespace: str, name: str, operator) -> dict[str, Any]:
    def done():
        body = admin.get_custom(plural, namespace, name)
        assert (body.get("status") or {}).get("phase") in ("Completed", "PartiallyFailed", "Failed"), \
            dump(body.get("status"))
        return body
    return eventually(done, timeout=40, message=lambda: operator.log_text()[-3000:])


@pytest.fixture(scope="module")
def restore_backup(applied, admin, operator, world):
    """A full backup of the node to restore, taken by the operator under the Role."""
    admin.apply(mayanode_manifest(applied[RESTORE_NS], backup={"afterChurn": False, "location": {
        "secret": {}, "encryption": {"recipients": [RECIPIENT], "identitySecret": {"name": "age-identity"}}}}))
    admin.apply(nodebackup("full", RESTORE_NS))
    body = finished_backup(admin, "full", operator, RESTORE_NS)
    assert body["status"]["phase"] == "Completed", dump(body.get("status")) + str(denials(world))
    return applied


def consensus_leases(world) -> dict[str, dict[str, Any]]:
    return {lease["metadata"]["name"]: lease for lease in world.sandbox.api.store.items("leases", OPERATOR_NS)
            if lease["metadata"]["name"].startswith("consensus-")}


def serving_address(world, namespace: str) -> str | None:
    process = world.mocknet.serving_process(namespace)
    return process.node_address if process else None


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


def test_a_wiped_node_is_restored(restore_backup, admin, operator, world):
    ns, node = RESTORE_NS, restore_backup[RESTORE_NS]
    for deployment in ("mayanode", "bifrost"):
        admin.apps.patch_namespaced_deployment_scale(deployment, ns, {"spec": {"replicas": 0}})
    eventually(lambda: not world.mocknet.running_processes(ns), timeout=15)
    for claim in ("mayanode", "bifrost"):
        world.kubelet.volume(ns, claim).wipe()
    admin.core.delete_namespaced_secret("mayanode-mnemonic", ns)
    for deployment in ("mayanode", "bifrost"):
        admin.apps.patch_namespaced_deployment_scale(deployment, ns, {"spec": {"replicas": 1}})

    # No explicit RPC: the guard reads blocks from the other MayaNodes it can list in the watched namespaces.
    admin.apply(noderestore(ns, "back", ns, {}))
    body = finished(admin, naming.NODERESTORE_PLURAL, ns, "back", operator)
    status = body["status"]
    assert status["phase"] == "Completed", dump(status) + str(denials(world))
    assert status["guard"]["method"] == "Silent" and status["highWaterMark"]["source"] == "ChainTip", dump(status)
    assert world.kubelet.volume(ns, "mayanode").exists(".mayanode/config/priv_validator_key.json")
    assert admin.core.read_namespaced_secret("mayanode-mnemonic", ns).data["mnemonic"]
    eventually(lambda: serving_address(world, ns) == node.node_address, timeout=20)

    def ready():
        mn = admin.mayanode(ns, ns)
        assert condition(mn, "Ready").get("status") == "True", dump(mn.get("status")) + str(denials(world))
        return mn
    mn = eventually(ready, timeout=30, message=lambda: operator.log_text()[-3000:])
    assert mn["status"]["node"]["address"] == node.node_address, dump(mn["status"]["node"])
    leases = consensus_leases(world)
    assert [lease["spec"]["holderIdentity"] for lease in leases.values()] == [f"{ns}/{ns}"], leases
    assert not world.mocknet.double_signs


def test_a_hand_off_between_watched_namespaces(restore_backup, admin, operator, world):
    """The restored node hands its key over to a new node in another watched namespace."""
    old_ns, new_ns, old = RESTORE_NS, HANDOFF_NS, restore_backup[RESTORE_NS]
    target = mayanode_manifest(old, name="new")
    target["metadata"]["namespace"] = new_ns
    target["spec"]["api"].update(rest=restore_backup[new_ns].rest_url, rpc=restore_backup[new_ns].rpc_url)
    admin.apply(target)
    admin.patch_spec(naming.NODEBACKUP_PLURAL, old_ns, "full", {"restoreNamespaces": [new_ns]})
    restore = noderestore(new_ns, "handoff", "new", {"oldNode": {"name": old_ns, "namespace": old_ns}})
    restore["spec"]["backupRef"]["namespace"] = old_ns
    admin.apply(restore)
    status = finished(admin, naming.NODERESTORE_PLURAL, new_ns, "handoff", operator)["status"]
    assert status["phase"] == "Completed", dump(status) + str(denials(world))
    assert status["guard"]["method"] == "HandOff", dump(status)
    assert "OldNodeVolume" in {i["source"] for i in status["signStateInputs"]}, dump(status)
    assert admin.mayanode(old_ns, old_ns)["spec"]["suspend"] is True
    eventually(lambda: serving_address(world, new_ns) == old.node_address, timeout=20)
    assert not world.mocknet.running_processes(old_ns) and not world.mocknet.double_signs
    (lease,) = consensus_leases(world).values()            # the wiped node's restore created it: now transferred
    assert lease["spec"]["holderIdentity"] == f"{new_ns}/new", lease


def test_no_request_was_refused(applied, operator, world):
    assert denials(world) == [], "\n".join(denials(world))
    # Every log line but its timestamp (",403" milliseconds are no refusal).
    log = re.sub(r'^\{"time": "[^"]*", ', "{", operator.log_text(), flags=re.M)
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


def test_a_backup_outside_the_watched_namespaces_is_refused_before_anything_changes(restore_backup, admin, operator,
                                                                                   world):
    """docs/restore.md: in namespaced scope a NodeRestore's backup (and old node) must be in a watched namespace."""
    ns = HANDOFF_NS                                          # its node runs again since the hand-off
    admin.core.create_namespace({"metadata": {"name": "rbac-outside"}})
    restore = noderestore(ns, "outside", "new", {})
    restore["spec"]["backupRef"]["namespace"] = "rbac-outside"
    admin.apply(restore)

    def refused():
        body = admin.get_custom(naming.NODERESTORE_PLURAL, ns, "outside")
        assert "forbidden" in (body.get("status") or {}).get("message", "").lower(), dump(body.get("status"))
        return body
    status = eventually(refused, timeout=20, message=lambda: operator.log_text()[-3000:])["status"]
    assert status["phase"] in ("Verifying", "Failed"), dump(status)
    assert [s["name"] for s in status.get("steps") or []] in ([], ["VerifyBackup"]), dump(status)
    outside = [d for d in world.sandbox.api.rbac_denials if d.attributes.namespace == "rbac-outside"]
    assert outside and {(d.attributes.resource, d.attributes.verb) for d in outside} == {("nodebackups", "get")}, \
        denials(world)
    assert admin.apps.read_namespaced_deployment("mayanode", ns).spec.replicas == 1
    assert serving_address(world, ns) == restore_backup[RESTORE_NS].node_address
