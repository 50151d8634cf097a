"""The kube adapter's REST path: the answers, errors and requests of the official client's typed APIs, without them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from kubernetes.client.exceptions import ApiException

from mayanode_operator.adapters.kube import KubeApi, make_api_client, namespaced_target
from mayanode_operator.plan.events import EventSpec
from mayanode_operator.sandbox.apiserver import EmulatedApiServer

NS = "default"


def deployment(name: str) -> dict:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": name, "image": f"{name}:1"}]}}}}


def pod(name: str, labels: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


@pytest.fixture
async def kube(tmp_path):
    server = EmulatedApiServer()
    await server.start()
    seen: list[tuple[str, str, str | None]] = []

    async def record(request, call_next):
        seen.append((request.method, request.path_qs, request.headers.get("User-Agent")))
        return await call_next(request)

    server.add_request_hook(record)
    client = make_api_client(str(server.write_kubeconfig(tmp_path / "kubeconfig")))
    client.user_agent = "mayanode-operator/test"
    api = KubeApi(client)
    api.seen = seen
    try:
        yield api, server
    finally:
        client.close()
        await server.stop()


async def test_reads_answer_the_server_json_and_none_when_missing(kube):
    api, server = kube
    server.store.create("deployments", deployment("mayanode"), NS)
    server.store.create("configmaps", {"metadata": {"name": "cm", "namespace": NS}, "data": {"a": "1"}}, NS)
    server.store.create("secrets", {"metadata": {"name": "s", "namespace": NS}, "data": {"k": "dmFsdWU="}}, NS)
    typed = json.loads((await asyncio.to_thread(api.apps.read_namespaced_deployment, "mayanode", NS,
                                                _preload_content=False)).data)
    assert await api.get_deployment(NS, "mayanode") == typed
    assert await api.get_deployment(NS, "absent") is None
    assert (await api.get_configmap(NS, "cm"))["data"] == {"a": "1"}
    assert await api.read_secret(NS, "s") == {"k": b"value"}
    assert await api.read_secret(NS, "absent") is None
    assert await api.get_service(NS, "absent") is None
    assert all(agent == "mayanode-operator/test" for _, _, agent in api.seen)


async def test_errors_raise_api_exception_as_the_typed_apis_do(kube):
    api, _ = kube
    await api.create_configmap(NS, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    with pytest.raises(ApiException) as raised:
        await api.create_configmap(NS, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    assert raised.value.status == 409 and json.loads(raised.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as raised:
        await api.list_pods_selected(NS, "not a selector(")
    assert raised.value.status == 400


async def test_writes_send_merge_patches_with_the_field_manager(kube):
    api, server = kube
    await api.create_configmap(NS, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    patched = await api.patch_configmap(NS, "cm", {"data": {"b": "2"}, "metadata": {"annotations": {"x": "y"}}})
    assert patched["data"] == {"a": "1", "b": "2"} and patched["metadata"]["annotations"] == {"x": "y"}
    assert [(method, path) for method, path, _ in api.seen] == [
        ("POST", "/api/v1/namespaces/default/configmaps?fieldManager=mayanode-operator"),
        ("PATCH", "/api/v1/namespaces/default/configmaps/cm?fieldManager=mayanode-operator"),
    ]
    await api.emit_event({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": NS}},
                         EventSpec("Normal", "Tested", "a message"))
    events = server.store.list("events", NS)["items"]
    assert [(e["reason"], e["involvedObject"]["name"]) for e in events] == [("Tested", "cm")]


async def test_pods_by_label_selector(kube):
    api, server = kube
    server.store.create("pods", pod("m", {"app": "mayanode", "tier": "node"}), NS)
    server.store.create("pods", pod("b", {"app": "bifrost", "tier": "node"}), NS)
    server.store.create("pods", pod("g", {"app": "gateway", "tier": "node"}), NS)
    assert [p["metadata"]["name"] for p in await api.list_pods(NS, {"app": "mayanode", "tier": "node"})] == ["m"]
    got = await api.list_pods_selected(NS, "app in (bifrost,mayanode),tier=node")
    assert sorted(p["metadata"]["name"] for p in got) == ["b", "m"]
    assert len(await api.list_pods_selected(NS, "")) == 3


async def test_a_pods_warning_events_only(kube):
    api, server = kube

    def event(name: str, kind: str, about: str, type_: str) -> dict:
        return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": NS},
                "involvedObject": {"apiVersion": "v1", "kind": kind, "name": about, "namespace": NS},
                "type": type_, "reason": name, "message": name}

    server.store.create("events", event("attach", "Pod", "helper-1", "Warning"), NS)
    server.store.create("events", event("scheduled", "Pod", "helper-1", "Normal"), NS)
    server.store.create("events", event("other-pod", "Pod", "helper-2", "Warning"), NS)
    server.store.create("events", event("same-name-not-a-pod", "MayaNode", "helper-1", "Warning"), NS)
    assert [e["reason"] for e in await api.pod_warning_events(NS, "helper-1")] == ["attach"]
    assert await api.pod_warning_events(NS, "nobody") == []


def test_the_typed_apis_and_the_heavy_libraries_are_not_loaded_to_run():
    """The typed APIs import hundreds of pydantic models (~22 MiB); boto3, cryptography and pyrage only serve
    backups and restores. An operator that starts and reconciles MayaNodes loads none of them."""
    code = (
        "import sys\n"
        "from kubernetes import client as k8s\n"
        "import mayanode_operator.operator_loop, mayanode_operator.cli\n"
        "from mayanode_operator.adapters.kube import KubeApi\n"
        "KubeApi(k8s.ApiClient())\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('kubernetes.client.api.') or\n"
        "                m.split('.')[0] in ('boto3', 'botocore', 'cryptography', 'pyrage'))\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- answers a real API server gives under load ---------------------------------------------------------------------
def install_mayanode_crd(server) -> None:
    import yaml
    from pathlib import Path

    crd = yaml.safe_load((Path(__file__).resolve().parents[2] / "crds" / "mayanodes.yaml").read_text())
    server.store.create("customresourcedefinitions", crd)


def mayanode_object(name: str) -> dict:
    return {"apiVersion": "maya.nodeops.io/v1alpha1", "kind": "MayaNode", "metadata": {"name": name, "namespace": NS},
            "spec": {"network": "mocknet"}}


class Answer:
    """Answers the first `times` matching requests with `status` (after applying them when `apply`)."""

    def __init__(self, status: int, *, method: str, times: int = 1, apply: bool = False, headers=None) -> None:
        self.status, self.method, self.left, self.apply, self.headers = status, method, times, apply, headers or {}

    async def __call__(self, request, call_next):
        from aiohttp import web

        if request.method != self.method or self.left <= 0:
            return await call_next(request)
        self.left -= 1
        if self.apply:
            await call_next(request)
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": self.status,
                                  "reason": "Timeout" if self.status == 504 else "TooManyRequests"},
                                 status=self.status, headers=self.headers)


async def test_a_throttled_call_is_tried_again_after_retry_after(kube):
    api, server = kube
    server.add_request_hook(Answer(429, method="POST", times=2, headers={"Retry-After": "0"}))
    await api.create_configmap(NS, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    assert [m for m, _, _ in api.seen].count("POST") == 3
    server.add_request_hook(Answer(429, method="PATCH", times=100, headers={"Retry-After": "0"}))
    with pytest.raises(ApiException) as raised:                        # not forever
        await api.patch_configmap(NS, "cm", {"data": {"a": "2"}})
    assert raised.value.status == 429 and [m for m, _, _ in api.seen].count("PATCH") == 4


async def test_a_status_write_whose_answer_was_lost_is_read_back(kube):
    api, server = kube
    install_mayanode_crd(server)
    server.store.create("mayanodes", mayanode_object("n"), NS)
    server.add_request_hook(Answer(504, method="PATCH", apply=True))
    body = await api.patch_custom_status("mayanodes", NS, "n", {"phase": "Running", "chain": {"height": 7}})
    assert body["status"]["phase"] == "Running"                        # applied: taken as done
    server.add_request_hook(Answer(504, method="PATCH", apply=False))
    with pytest.raises(ApiException) as raised:                        # not applied: the 504 stands
        await api.patch_custom_status("mayanodes", NS, "n", {"phase": "Degraded"})
    assert raised.value.status == 504
    assert server.store.get("mayanodes", "n", NS)["status"]["phase"] == "Running"


async def test_a_read_that_met_a_server_error_is_tried_again_a_write_is_not(kube):
    api, server = kube
    await api.create_configmap(NS, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    server.add_request_hook(Answer(500, method="GET", times=2))
    assert (await api.get_configmap(NS, "cm"))["data"] == {"a": "1"}
    assert [m for m, _, _ in api.seen].count("GET") == 3
    server.add_request_hook(Answer(503, method="GET", times=100))
    with pytest.raises(ApiException) as raised:                        # not forever
        await api.get_configmap(NS, "cm")
    assert raised.value.status == 503 and [m for m, _, _ in api.seen].count("GET") == 3 + 4
    server.add_request_hook(Answer(500, method="PATCH", times=1))
    with pytest.raises(ApiException):                                  # a write's 500 is the caller's to judge
        await api.patch_configmap(NS, "cm", {"data": {"a": "2"}})
    assert [m for m, _, _ in api.seen].count("PATCH") == 1


@pytest.mark.parametrize("url, target", [
    ("https://k:6443/api/v1/namespaces/ns/pods/x", ("ns", "pods")),
    ("/apis/apps/v1/namespaces/ns/deployments/d/scale", ("ns", "deployments")),
    ("/apis/maya.nodeops.io/v1alpha1/namespaces/ns/mayanodes/n/status", ("ns", "mayanodes")),
    ("/api/v1/namespaces/ns", ("ns", "")),
    ("/apis/maya.nodeops.io/v1alpha1/mayanodes", None),
])
def test_the_namespace_and_kind_a_write_addresses(url, target):
    assert namespaced_target(url) == target


@pytest.fixture
def silent_server():
    """Accepts connections and never answers: a connection the network dropped without a word."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@pytest.mark.parametrize("loop_reads", [False, True])
async def test_a_request_the_server_never_answers_ends_at_its_deadline(silent_server, monkeypatch, loop_reads):
    import time

    import urllib3
    from kubernetes import client as k8s

    from mayanode_operator.adapters import kube as kube_module

    monkeypatch.setattr(kube_module, "API_REQUEST_TIMEOUT", (1.0, 0.5))
    configuration = k8s.Configuration(host=silent_server)
    configuration.retries = False               # urllib3 would try the read again
    api = KubeApi(kube_module.BoundedApiClient(configuration))
    if loop_reads:
        configuration.retries = None
        assert await api.open_loop_reads(limit=2) is None
    started = time.monotonic()
    try:
        with pytest.raises((urllib3.exceptions.HTTPError, asyncio.TimeoutError, TimeoutError)):
            await api.get_custom("mayanodes", NS, "never")
    finally:
        await api.close_loop_reads()
        api.api_client.close()
    assert time.monotonic() - started < 5
