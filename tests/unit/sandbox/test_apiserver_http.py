"""The emulated API server through the official `kubernetes` client (sync, server in a background thread)."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

from mayanode_operator.sandbox.apiserver import ExecRequest, ServerThread
from mayanode_operator.sandbox.apiserver.testing import api_client

GROUP, VERSION, PLURAL = "maya.nodeops.io", "v1alpha1", "mayanodes"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP, "scope": "Namespaced",
        "names": {"kind": "MayaNode", "plural": PLURAL, "singular": "mayanode", "shortNames": ["mn"]},
        "versions": [{
            "name": VERSION, "served": True, "storage": True, "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Network", "type": "string", "jsonPath": ".spec.network"},
                {"name": "Height", "type": "integer", "jsonPath": ".status.chain.height"},
                {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "required": ["network"],
                         "x-kubernetes-validations": [{"rule": "self.network == oldSelf.network",
                                                       "message": "network is immutable"}],
                         "properties": {
                             "network": {"type": "string", "enum": ["mainnet", "stagenet", "mocknet"]},
                             "replicas": {"type": "integer", "default": 1, "minimum": 0, "maximum": 1},
                         }},
                "status": {"type": "object", "properties": {
                    "chain": {"type": "object", "properties": {"height": {"type": "integer"}}},
                    "conditions": {"type": "array", "items": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}},
                }},
            }}},
        }],
    },
}


def _raw(url: str, method: str, path: str, body, content_type: str = "application/json") -> tuple[int, dict]:
    """A bare HTTP call, for content types the generated client does not choose."""
    import urllib.error
    import urllib.request
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _pod(name: str, node: str | None = "sandbox-node", containers: tuple[str, ...] = ("main",)) -> dict:
    spec: dict = {"containers": [{"name": c, "image": "busybox:1.36"} for c in containers]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}}, "spec": spec}


@pytest.fixture(scope="module")
def server():
    st = ServerThread(bookmark_interval=0.3).start()
    st.server.store.create("customresourcedefinitions", CRD)
    yield st
    st.stop()


@pytest.fixture(scope="module")
def api(server):
    with api_client(server.url) as c:
        yield c


@pytest.fixture
def ns(server):
    name = f"t{time.monotonic_ns() % 10**9}"
    server.server.store.create("namespaces", {"metadata": {"name": name}})
    return name


def test_discovery_lists_builtins_and_crds(api):
    core = client.CoreV1Api(api).get_api_resources()
    names = {r.name for r in core.resources}
    assert {"pods", "pods/exec", "pods/status", "services", "configmaps", "secrets", "persistentvolumeclaims",
            "events", "serviceaccounts", "namespaces"} <= names
    apps = client.AppsV1Api(api).get_api_resources()
    scale = next(r for r in apps.resources if r.name == "deployments/scale")
    assert (scale.group, scale.version, scale.kind) == ("autoscaling", "v1", "Scale")
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "coordination.k8s.io", "events.k8s.io", "apiextensions.k8s.io", GROUP} <= groups
    assert client.VersionApi(api).get_code().major == "1"


def test_crd_lifecycle_updates_discovery(api, server):
    ext = client.ApiextensionsV1Api(api)
    crd = json.loads(json.dumps(CRD).replace(PLURAL, "things").replace("MayaNode", "Thing")
                     .replace('"mayanode"', '"thing"').replace('["mn"]', '["th"]'))
    crd["metadata"]["name"] = f"things.{GROUP}"
    created = ext.create_custom_resource_definition(crd)
    assert {c.type for c in created.status.conditions} >= {"Established", "NamesAccepted"}
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", "things",
                                           {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Thing",
                                            "metadata": {"name": "a"}, "spec": {"network": "mocknet"}})
    resources = {r["name"] for r in custom.get_api_resources(GROUP, VERSION).to_dict()["resources"]}
    assert "things" in resources and "things/status" in resources
    ext.delete_custom_resource_definition(f"things.{GROUP}")
    deadline = time.time() + 5
    while server.server.store.exists("customresourcedefinitions", f"things.{GROUP}") and time.time() < deadline:
        time.sleep(0.05)
    resources = {r["name"] for r in custom.get_api_resources(GROUP, VERSION).to_dict()["resources"]}
    assert "things" not in resources
    with pytest.raises(ApiException) as err:
        custom.list_namespaced_custom_object(GROUP, VERSION, "default", "things")
    assert err.value.status == 404


def test_object_metadata_create_conflicts_and_namespaces(api, ns):
    core = client.CoreV1Api(api)
    cm = core.create_namespaced_config_map(ns, {"metadata": {"generateName": "cfg-"}, "data": {"a": "1"}})
    assert cm.metadata.name.startswith("cfg-") and len(cm.metadata.name) == 9
    assert cm.metadata.uid and cm.metadata.creation_timestamp and int(cm.metadata.resource_version) > 0
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, {"metadata": {"name": cm.metadata.name}})
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("no-such-ns", {"metadata": {"name": "x"}})
    assert err.value.status == 404 and json.loads(err.value.body)["message"] == 'namespaces "no-such-ns" not found'
    stale = cm.metadata.resource_version
    cm.data = {"a": "2"}
    updated = core.replace_namespaced_config_map(cm.metadata.name, ns, cm)
    assert int(updated.metadata.resource_version) > int(stale)
    cm.metadata.resource_version = stale
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map(cm.metadata.name, ns, cm)
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "Conflict"


def test_custom_resource_put_requires_resource_version(api, ns):
    custom = client.CustomObjectsApi(api)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MayaNode", "metadata": {"name": "n"},
            "spec": {"network": "mocknet"}}
    created = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    assert created["spec"]["replicas"] == 1                       # defaulted
    with pytest.raises(ApiException) as err:
        custom.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "n", body)
    status = json.loads(err.value.body)
    assert err.value.status == 422
    assert status["message"] == ('MayaNode.maya.nodeops.io "n" is invalid: metadata.resourceVersion: '
                                 'Invalid value: 0x0: must be specified for an update')


def test_validation_errors_are_real_status_objects(api, ns):
    custom = client.CustomObjectsApi(api)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MayaNode", "metadata": {"name": "bad"},
            "spec": {"network": "foo"}}
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    status = json.loads(err.value.body)
    assert err.value.status == 422 and status["reason"] == "Invalid"
    # The CRD has CEL rules: like kube-apiserver, they are skipped (and said so) after a blocking error.
    assert status["message"] == ('MayaNode.maya.nodeops.io "bad" is invalid: [spec.network: Unsupported value: '
                                 '"foo": supported values: "mainnet", "stagenet", "mocknet", <nil>: Invalid value: '
                                 '"null": some validation rules were not checked because the object was invalid; '
                                 'correct the existing errors to complete validation]')
    assert status["details"]["causes"][0] == {"reason": "FieldValueNotSupported", "field": "spec.network",
                                              "message": 'Unsupported value: "foo": supported values: "mainnet", '
                                                         '"stagenet", "mocknet"'}
    body["spec"] = {"network": "mocknet", "extra": 1}
    created = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    assert "extra" not in created["spec"]                          # pruned
    with pytest.raises(ApiException) as err:                       # CEL transition rule
        custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "bad", {"spec": {"network": "mainnet"}})
    assert json.loads(err.value.body)["details"]["causes"][0]["message"] == 'Invalid value: "object": network is immutable'
    with pytest.raises(ApiException) as err:                       # status is validated too
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "bad",
                                                     {"status": {"chain": {"height": "high"}}})
    assert err.value.status == 422
    assert "status.chain.height in body must be of type integer" in json.loads(err.value.body)["message"]


def test_status_subresource_and_generation(api, ns):
    custom = client.CustomObjectsApi(api)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MayaNode", "metadata": {"name": "g"},
            "spec": {"network": "mocknet"}, "status": {"chain": {"height": 5}}}
    obj = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    assert "status" not in obj and obj["metadata"]["generation"] == 1
    obj = custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "g",
                                                       {"status": {"chain": {"height": 7}}, "spec": {"replicas": 0}})
    assert obj["status"]["chain"]["height"] == 7 and obj["spec"]["replicas"] == 1
    assert obj["metadata"]["generation"] == 1
    obj = custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "g",
                                                {"metadata": {"labels": {"a": "b"}}, "status": {"chain": {"height": 1}}})
    assert obj["metadata"]["generation"] == 1 and obj["status"]["chain"]["height"] == 7
    obj = custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "g", {"spec": {"replicas": 0}})
    assert obj["metadata"]["generation"] == 2
    same = custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "g", {"spec": {"replicas": 0}})
    assert same["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]     # no-op write


def test_patch_flavours(api, ns, server):
    apps = client.AppsV1Api(api)
    deployment = {"metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"app": "d"}},
        "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}]}}}}
    created = apps.create_namespaced_deployment(ns, deployment)
    assert created.metadata.generation == 1 and created.spec.replicas == 1
    smp = apps.patch_namespaced_deployment("d", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "env": [{"name": "Y", "value": "2"}]}]}}}})       # python client: strategic merge
    containers = smp.spec.template.spec.containers
    assert [c.name for c in containers] == ["a", "b"]
    assert [(e.name, e.value) for e in containers[0].env] == [("X", "1"), ("Y", "2")]
    assert smp.metadata.generation == 2
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/d"
    code, jp = _raw(server.url, "PATCH", path, [{"op": "replace", "path": "/spec/replicas", "value": 0}],
                    "application/json-patch+json")
    assert code == 200 and jp["spec"]["replicas"] == 0
    code, status = _raw(server.url, "PATCH", path, [{"op": "test", "path": "/spec/replicas", "value": 5}],
                        "application/json-patch+json")
    assert code == 422 and status["kind"] == "Status"
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "MayaNode", "metadata": {"name": "m"}, "spec": {"network": "mocknet"}})
    code, _ = _raw(server.url, "PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/m", {"spec": {}},
                   "application/strategic-merge-patch+json")
    assert code == 415
    apply_path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/applied?fieldManager=test"
    manifest = (f"apiVersion: {GROUP}/{VERSION}\nkind: MayaNode\nmetadata: {{name: applied}}\n"
                f"spec: {{network: stagenet}}\n").encode()
    code, applied = _raw(server.url, "PATCH", apply_path, manifest, "application/apply-patch+yaml")
    assert code == 201 and applied["spec"] == {"network": "stagenet", "replicas": 1}
    code, applied = _raw(server.url, "PATCH", apply_path, manifest.replace(b"stagenet", b"stagenet, replicas: 0"),
                         "application/apply-patch+yaml")
    assert code == 200 and applied["spec"] == {"network": "stagenet", "replicas": 0}


def test_scale_subresource(api, ns):
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, {"metadata": {"name": "s"}, "spec": {
        "selector": {"matchLabels": {"app": "s"}},
        "template": {"metadata": {"labels": {"app": "s"}}, "spec": {"containers": [{"name": "a", "image": "a"}]}}}})
    scale = apps.read_namespaced_deployment_scale("s", ns)
    assert scale.spec.replicas == 1 and scale.status.selector == "app=s"
    scale = apps.patch_namespaced_deployment_scale("s", ns, {"spec": {"replicas": 0}})
    assert scale.spec.replicas == 0
    deployment = apps.read_namespaced_deployment("s", ns)
    assert deployment.spec.replicas == 0 and deployment.metadata.generation == 2


def test_secrets_base64_string_data_and_size(api, ns):
    core = client.CoreV1Api(api)
    secret = core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "stringData": {"password": "hunter2"},
                                                "data": {"a": base64.b64encode(b"x").decode()}})
    assert secret.data == {"a": "eA==", "password": base64.b64encode(b"hunter2").decode()}
    assert secret.string_data is None and secret.type == "Opaque"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_secret(ns, {"metadata": {"name": "bad"}, "data": {"a": "!!notbase64"}})
    assert err.value.status == 422
    big = base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()
    with pytest.raises(ApiException) as err:
        core.create_namespaced_secret(ns, {"metadata": {"name": "big"}, "data": {"a": big}})
    assert err.value.status == 422
    assert json.loads(err.value.body)["message"] == 'Secret "big" is invalid: data: Too long: must have at most 1048576 bytes'
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "big"}, "data": {"a": "x" * (1024 * 1024 + 1)}})
    assert err.value.status == 422


def test_label_and_field_selectors(api, ns):
    core = client.CoreV1Api(api)
    for name, labels in (("a", {"tier": "web", "env": "prod"}), ("b", {"tier": "db"}), ("c", {})):
        core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": labels}})

    def names(**kw):
        return [i.metadata.name for i in core.list_namespaced_config_map(ns, **kw).items]

    assert names(label_selector="tier=web") == ["a"]
    assert names(label_selector="tier==web") == ["a"]
    assert names(label_selector="tier!=web") == ["b", "c"]
    assert names(label_selector="tier in (web,db)") == ["a", "b"]
    assert names(label_selector="tier notin (web)") == ["b", "c"]
    assert names(label_selector="tier") == ["a", "b"]
    assert names(label_selector="!tier") == ["c"]
    assert names(label_selector="tier,env=prod") == ["a"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b") == ["a", "c"]
    listed = core.list_config_map_for_all_namespaces(field_selector=f"metadata.namespace={ns}")
    assert len(listed.items) == 3 and listed.kind == "ConfigMapList" and listed.metadata.resource_version
    core.create_namespaced_pod(ns, _pod("bound"))
    core.create_namespaced_pod(ns, _pod("unbound", node=None))
    assert [p.metadata.name for p in core.list_namespaced_pod(ns, field_selector="spec.nodeName=sandbox-node").items] == ["bound"]
    assert len(core.list_namespaced_pod(ns, field_selector="status.phase=Pending").items) == 2
    with pytest.raises(ApiException) as err:
        core.list_namespaced_config_map(ns, field_selector="data.a=1")
    assert err.value.status == 400


def test_watch_resume_bookmarks_selectors_and_gone(api, ns, server):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "w1", "labels": {"sel": "yes"}}})
    listed = core.list_namespaced_config_map(ns)
    rv = listed.metadata.resource_version
    core.create_namespaced_config_map(ns, {"metadata": {"name": "w2", "labels": {"sel": "yes"}}})
    core.patch_namespaced_config_map("w1", ns, {"metadata": {"labels": {"sel": "no"}}})
    core.delete_namespaced_config_map("w2", ns)
    seen = []
    for event in watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=rv,
                                      label_selector="sel=yes", timeout_seconds=1):
        seen.append((event["type"], event["object"].metadata.name))
    assert seen == [("ADDED", "w2"), ("DELETED", "w1"), ("DELETED", "w2")]

    initial = [(e["type"], e["object"].metadata.name) for e in
               watch.Watch().stream(core.list_namespaced_config_map, ns, timeout_seconds=1)]
    assert initial == [("ADDED", "w1")]

    raw = core.list_namespaced_config_map(ns, watch=True, resource_version=rv, allow_watch_bookmarks=True,
                                          timeout_seconds=1, _preload_content=False)
    lines = [json.loads(line) for line in raw.read().decode().splitlines() if line]
    assert any(e["type"] == "BOOKMARK" for e in lines)
    assert all(e["object"]["kind"] in ("ConfigMap",) for e in lines)

    small = ServerThread(history_size=5).start()
    try:
        small_core = client.CoreV1Api(api_client(small.url))
        first = small_core.list_namespaced_config_map("default").metadata.resource_version
        for i in range(10):
            small_core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
        raw = small_core.list_namespaced_config_map("default", watch=True, resource_version=first,
                                                    timeout_seconds=1, _preload_content=False)
        event = json.loads(raw.read().decode().splitlines()[0])
        assert event["type"] == "ERROR" and event["object"]["code"] == 410
        assert event["object"]["reason"] == "Expired"
    finally:
        small.stop()


def test_watch_loses_nothing_between_list_and_watch(api, ns):
    core = client.CoreV1Api(api)
    stop = threading.Event()
    written: list[str] = []

    def writer():
        i = 0
        while not stop.is_set() and i < 200:
            core.create_namespaced_config_map(ns, {"metadata": {"name": f"x{i}"}})
            written.append(f"x{i}")
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.05)
    listed = core.list_namespaced_config_map(ns)
    seen = {i.metadata.name for i in listed.items}
    thread.join()
    for event in watch.Watch().stream(core.list_namespaced_config_map, ns,
                                      resource_version=listed.metadata.resource_version, timeout_seconds=1):
        seen.add(event["object"].metadata.name)
    assert seen == set(written)


def test_deletion_finalizers_graceful_pods_and_gc(api, ns, server):
    core = client.CoreV1Api(api)
    cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "f", "finalizers": ["x/y"]}})
    core.delete_namespaced_config_map("f", ns)
    held = core.read_namespaced_config_map("f", ns)
    assert held.metadata.deletion_timestamp and held.metadata.deletion_grace_period_seconds == 0
    core.patch_namespaced_config_map("f", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("f", ns)
    assert err.value.status == 404

    core.create_namespaced_pod(ns, _pod("bound"))
    core.create_namespaced_pod(ns, _pod("unbound", node=None))
    core.delete_namespaced_pod("unbound", ns)
    assert [p.metadata.name for p in core.list_namespaced_pod(ns).items] == ["bound"]
    core.delete_namespaced_pod("bound", ns, grace_period_seconds=15)
    pod = core.read_namespaced_pod("bound", ns)
    assert pod.metadata.deletion_grace_period_seconds == 15 and pod.metadata.deletion_timestamp
    core.delete_namespaced_pod("bound", ns, grace_period_seconds=0)
    assert core.list_namespaced_pod(ns).items == []

    owner = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(ns, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "kept", "ownerReferences": [ref]}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "other", "labels": {"del": "me"}}})
    core.delete_namespaced_config_map("owner", ns)
    assert [c.metadata.name for c in core.list_namespaced_config_map(ns).items] == ["other"]
    core.delete_collection_namespaced_config_map(ns, label_selector="del=me")
    assert core.list_namespaced_config_map(ns).items == []


def test_namespace_deletion_removes_content(api, ns, server):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "a"}})
    core.create_namespaced_pod(ns, _pod("p"))
    core.delete_namespace(ns)
    assert core.read_namespace(ns).status.phase == "Terminating"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "late"}})
    assert err.value.status == 403
    core.delete_namespaced_pod("p", ns, grace_period_seconds=0)          # what the kubelet does
    with pytest.raises(ApiException) as err:
        core.read_namespace(ns)
    assert err.value.status == 404


class _Echo:
    """An ExecHandler: echoes stdin upper-cased; `fail N` exits with N."""

    def __init__(self) -> None:
        self.requests: list[ExecRequest] = []

    async def __call__(self, request, stdin, stdout, stderr) -> int:
        self.requests.append(request)
        if request.command[0] == "fail":
            await stderr(b"boom\n")
            return int(request.command[1])
        data = await stdin.read()
        await stdout(data.upper())
        return 0


def test_exec_with_the_official_client(api, ns, server):
    handler = _Echo()
    server.server.set_exec_handler(handler)
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(ns, _pod("runner"))
    core.patch_namespaced_pod_status("runner", ns, {"status": {"phase": "Running"}})
    resp = stream(core.connect_get_namespaced_pod_exec, "runner", ns, command=["cat"], container="main",
                  stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
    assert resp.subprotocol == "v5.channel.k8s.io"
    resp.write_stdin("hello\n")
    resp.close_channel(0)
    out = ""
    while resp.is_open():
        resp.update(timeout=1)
        out += resp.read_stdout()
    out += resp.read_stdout()
    assert out == "HELLO\n" and resp.returncode == 0
    assert handler.requests[-1] == ExecRequest(ns, "runner", "main", ["cat"], True, False)

    resp = stream(core.connect_get_namespaced_pod_exec, "runner", ns, command=["fail", "3"],
                  stdin=False, stdout=True, stderr=True, tty=False, _preload_content=False)
    resp.run_forever(timeout=5)
    status = json.loads(resp.peek_channel(3))
    assert resp.returncode == 3 and "boom" in resp.read_stderr()
    assert status["message"] == "command terminated with non-zero exit code: error executing command [fail 3], exit code 3"

    core.create_namespaced_pod(ns, _pod("pending", node=None))
    for pod, container, message in (("pending", "main", "pod pending does not have a host assigned"),
                                    ("runner", "nope", "container nope is not valid for pod runner")):
        with pytest.raises(ApiException) as err:
            stream(core.connect_get_namespaced_pod_exec, pod, ns, command=["true"], container=container,
                   stdout=True, stderr=True)
        assert "Handshake status 400" in str(err.value) and message in str(err.value)   # client wraps it
    with pytest.raises(ApiException) as err:
        stream(core.connect_get_namespaced_pod_exec, "ghost", ns, command=["true"], stdout=True)
    assert "Handshake status 404" in str(err.value) and 'pods \\"ghost\\" not found' in str(err.value)


@pytest.mark.parametrize("command,stdin", [(["cat"], b"hello\n"), (["fail", "3"], None)])
def test_exec_completes_the_websocket_close_handshake(api, ns, server, command, stdin):
    """Like a real API server, the emulator sends its close frame (1000) after the final Status, then waits for the
    client's close reply before it closes the connection: no hang-up before the reply, no reset after it."""
    import select
    import struct
    from urllib.parse import urlencode

    import websocket

    server.server.set_exec_handler(_Echo())
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(ns, _pod("closer"))
    core.patch_namespaced_pod_status("closer", ns, {"status": {"phase": "Running"}})
    query = urlencode([*(("command", c) for c in command), ("container", "main"), ("stdout", "true"),
                       ("stderr", "true"), ("stdin", "true" if stdin is not None else "false")])
    ws = websocket.WebSocket()
    ws.connect(f"{server.url.replace('http', 'ws', 1)}/api/v1/namespaces/{ns}/pods/closer/exec?{query}",
               subprotocols=["v5.channel.k8s.io"], timeout=5)
    try:
        if stdin is not None:
            ws.send_binary(bytes([0]) + stdin)
            ws.send_binary(bytes([255, 0]))                      # v5: close stdin
        channels: dict[int, bytes] = {}
        while True:
            frame = ws.recv_frame()                               # raw frames: no automatic close reply
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            if frame.opcode == websocket.ABNF.OPCODE_BINARY and frame.data:
                channels[frame.data[0]] = channels.get(frame.data[0], b"") + frame.data[1:]
        assert struct.unpack("!H", frame.data[:2])[0] == 1000, frame.data
        status = json.loads(channels[3])
        assert status["status"] == ("Success" if stdin is not None else "Failure"), status
        if stdin is not None:
            assert channels[1] == b"HELLO\n"
        # The server waits for our reply: the connection stays open (no EOF, no reset) meanwhile.
        readable, _, _ = select.select([ws.sock], [], [], 0.3)
        assert readable == [], "the server hung up before the client's close reply"
        ws.send_close(1000)
        ws.sock.settimeout(5)
        assert ws.sock.recv(1) == b"", "after the close reply the server closes the connection cleanly"
    finally:
        ws.shutdown()


def test_a_client_gone_mid_request_is_no_server_error(api, server, ns, caplog):
    """A killed client's half-sent body ends its request quietly, as a real API server's would: no 500, no
    "internal error" in the server's log, and nothing is stored."""
    import socket
    from urllib.parse import urlsplit
    url = urlsplit(server.url)
    path = f"/api/v1/namespaces/{ns}/configmaps"
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
                     "Content-Length: 4096\r\n\r\n{\"metadata\":".encode())
        time.sleep(0.2)
    time.sleep(0.3)
    assert not [r for r in caplog.records if "internal error" in r.getMessage()]
    assert client.CoreV1Api(api).list_namespaced_config_map(ns).items == []

