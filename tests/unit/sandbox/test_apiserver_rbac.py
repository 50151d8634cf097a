"""RBAC in the emulated API server: rule matching tables, binding resolution, and the HTTP behaviour (403/401)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from mayanode_operator.sandbox.apiserver import ServerThread
from mayanode_operator.sandbox.apiserver.rbac import (
    Attributes, Authorizer, UserInfo, forbidden_message, rule_allows)
from mayanode_operator.sandbox.apiserver.store import Store

SA = UserInfo.service_account("ops", "op")


def res(verb: str, resource: str, group: str = "", namespace: str = "n1", name: str = "", sub: str = "") -> Attributes:
    return Attributes(verb=verb, group=group, resource=resource, subresource=sub, namespace=namespace, name=name)


@pytest.mark.parametrize("rule, attrs, allowed", [
    ({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, res("get", "pods", name="p"), True),
    ({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, res("list", "pods"), False),
    ({"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}, res("deletecollection", "pods"), True),
    ({"apiGroups": ["apps"], "resources": ["pods"], "verbs": ["get"]}, res("get", "pods"), False),
    ({"apiGroups": ["*"], "resources": ["deployments"], "verbs": ["get"]}, res("get", "deployments", "apps"), True),
    # subresources are distinct resources
    ({"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}, res("create", "pods", sub="exec"), False),
    ({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}, res("create", "pods", sub="exec"), True),
    ({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}, res("create", "pods"), False),
    ({"apiGroups": [""], "resources": ["pods/*"], "verbs": ["create"]}, res("create", "pods", sub="exec"), True),
    ({"apiGroups": [""], "resources": ["pods/*"], "verbs": ["create"]}, res("create", "pods"), False),
    ({"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["patch"]},
     res("patch", "deployments", "apps", sub="scale"), True),
    ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, res("patch", "deployments", "apps", sub="scale"), True),
    # resourceNames restrict named requests; a list or a create has no name
    ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["a"]},
     res("get", "secrets", name="a"), True),
    ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["a"]},
     res("get", "secrets", name="b"), False),
    ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"], "resourceNames": ["a"]},
     res("list", "secrets"), False),
    # non-resource rules never match resource requests and vice versa
    ({"nonResourceURLs": ["/metrics"], "verbs": ["get"]}, res("get", "pods"), False),
    ({"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
     Attributes(verb="get", path="/metrics", resource_request=False), True),
    ({"nonResourceURLs": ["/logs/*"], "verbs": ["get"]},
     Attributes(verb="get", path="/logs/a", resource_request=False), True),
    ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
     Attributes(verb="get", path="/metrics", resource_request=False), False),
])
def test_rule_matching(rule, attrs, allowed):
    assert rule_allows(rule, attrs) is allowed


def _store(store: Store | None = None) -> Store:
    store = store if store is not None else Store()
    for ns in ("n1", "n2", "ops"):
        store.create("namespaces", {"metadata": {"name": ns}})
    store.create("roles.rbac.authorization.k8s.io", {"metadata": {"name": "r", "namespace": "n1"}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})
    store.create("rolebindings.rbac.authorization.k8s.io", {
        "metadata": {"name": "rb", "namespace": "n1"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                                    "kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "ops"}]})
    store.create("clusterroles.rbac.authorization.k8s.io", {"metadata": {"name": "secrets-reader"}, "rules": [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]})
    store.create("rolebindings.rbac.authorization.k8s.io", {
        "metadata": {"name": "rb2", "namespace": "n2"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                                     "kind": "ClusterRole", "name": "secrets-reader"},
        "subjects": [{"kind": "Group", "name": "system:serviceaccounts:ops"}]})
    store.create("clusterroles.rbac.authorization.k8s.io", {"metadata": {"name": "ns-watch"}, "rules": [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}]})
    store.create("clusterrolebindings.rbac.authorization.k8s.io", {
        "metadata": {"name": "crb"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                 "name": "ns-watch"},
        "subjects": [{"kind": "User", "name": SA.name}]})
    return store


@pytest.mark.parametrize("attrs, allowed", [
    (res("list", "pods", namespace="n1"), True),
    (res("list", "pods", namespace="n2"), False),                 # Role only binds in its namespace
    (res("list", "pods", namespace=""), False),                   # all namespaces needs a cluster binding
    (res("watch", "pods", namespace="n1"), False),
    (res("get", "secrets", namespace="n2", name="s"), True),      # ClusterRole bound by a RoleBinding: n2 only
    (res("get", "secrets", namespace="n1", name="s"), False),
    (res("get", "secrets", namespace="", name="s"), False),
    (res("watch", "namespaces", namespace=""), True),             # ClusterRoleBinding: cluster-wide
    (res("list", "namespaces", namespace="n1"), True),
    (Attributes(verb="get", path="/apis/apps/v1", resource_request=False), True),   # discovery
    (Attributes(verb="get", path="/version", resource_request=False), True),
    (Attributes(verb="get", path="/openapi/v2", resource_request=False), True),
    (Attributes(verb="get", path="/metrics", resource_request=False), False),
])
def test_bindings(attrs, allowed):
    assert Authorizer(_store()).allowed(SA, attrs) is allowed


def test_other_users_get_nothing():
    other = UserInfo.service_account("elsewhere", "op")
    assert not Authorizer(_store()).allowed(other, res("list", "pods", namespace="n1"))
    assert not Authorizer(_store()).allowed(UserInfo("bob"), Attributes(verb="get", path="/api",
                                                                           resource_request=False))


@pytest.mark.parametrize("attrs, message", [
    (res("list", "pods", namespace="x"),
     'pods is forbidden: User "system:serviceaccount:ops:op" cannot list resource "pods" in API group "" '
     'in the namespace "x"'),
    (res("patch", "deployments", "apps", namespace="x", name="mayanode", sub="scale"),
     'deployments.apps "mayanode" is forbidden: User "system:serviceaccount:ops:op" cannot patch resource '
     '"deployments/scale" in API group "apps" in the namespace "x"'),
    (res("list", "secrets", namespace=""),
     'secrets is forbidden: User "system:serviceaccount:ops:op" cannot list resource "secrets" in API group "" '
     'at the cluster scope'),
    (Attributes(verb="get", path="/metrics", resource_request=False),
     'forbidden: User "system:serviceaccount:ops:op" cannot get path "/metrics"'),
])
def test_forbidden_messages(attrs, message):
    assert forbidden_message(SA, attrs) == message


def _call(url: str, path: str, token: str | None = None, method: str = "GET", body=None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.fixture()
def rbac_server():
    thread = ServerThread().start()
    server = thread.server
    thread.call(_store, server.store)
    server.enable_rbac({"tok": SA})
    try:
        yield thread
    finally:
        thread.stop()


def test_http_enforcement(rbac_server):
    url, server = rbac_server.url, rbac_server.server
    assert _call(url, "/api/v1/namespaces/n1/pods", "tok")[0] == 200
    assert _call(url, "/api/v1/namespaces/n1/pods?watch=true&timeoutSeconds=0", "tok")[0] == 403
    code, status = _call(url, "/api/v1/pods", "tok")
    assert code == 403 and status["reason"] == "Forbidden" and status["details"] == {"kind": "pods"}
    assert status["message"].endswith('cannot list resource "pods" in API group "" at the cluster scope')
    code, status = _call(url, "/api/v1/namespaces/n1/pods/p/exec?command=ls", "tok", method="POST")
    assert code == 403 and 'cannot create resource "pods/exec"' in status["message"]
    assert _call(url, "/api/v1/namespaces/n2/secrets/none", "tok")[0] == 404                # allowed, absent
    assert _call(url, "/apis", "tok")[0] == 200 and _call(url, "/version", "tok")[0] == 200
    assert _call(url, "/api/v1/pods", "wrong")[0] == 401
    assert _call(url, "/api/v1/pods")[0] == 200                                              # no token: admin
    assert [d.attributes.verb for d in server.rbac_denials] == ["watch", "list", "create"]


def test_off_by_default():
    thread = ServerThread().start()
    try:
        assert _call(thread.url, "/api/v1/pods", "anything")[0] == 200
        assert thread.server.rbac_denials == []
    finally:
        thread.stop()
