"""Reads on the event loop (`KubeApi.open_loop_reads`): the same requests, credentials, TLS and errors as the official
client's, on an emulated API server (plain HTTP, and TLS with client certificates in front of the same store)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import sys
import threading
from pathlib import Path

import pytest
import urllib3
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException, ForbiddenException, UnauthorizedException

from mayanode_operator.adapters import kube as kube_module
from mayanode_operator.adapters.kube import KubeApi, make_api_client
from mayanode_operator.sandbox.apiserver import EmulatedApiServer

NS = "default"
SELECTOR = "app.kubernetes.io/name in (bifrost,mayanode),app.kubernetes.io/part-of=node"
COMPARED_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Authorization", "Content-Type")


def deployment(name: str) -> dict:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "node"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": name, "image": f"{name}:1"}]}}}}


def pod(name: str, app: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS,
                         "labels": {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "node"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


class Recorder:
    """Every request's method, path with query, compared headers and the thread-independent TLS peer certificate."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str | None]]] = []
        self.bodies: list[bytes] = []
        self.peer_subjects: list[str | None] = []

    async def __call__(self, request, call_next):
        self.seen.append((request.method, request.path_qs, {h: request.headers.get(h) for h in COMPARED_HEADERS}))
        self.bodies.append(await request.read())
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        cert = ssl_object.getpeercert() if ssl_object is not None else None
        self.peer_subjects.append(dict(item[0] for item in cert["subject"])["commonName"] if cert else None)
        return await call_next(request)


def kubeconfig(path: Path, server: str, *, cluster: dict | None = None, user: dict | None = None) -> str:
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "c", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "u", "user": user or {}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": NS}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
async def server():
    api_server = EmulatedApiServer()
    await api_server.start()
    api_server.store.create("deployments", deployment("mayanode"), NS)
    api_server.store.create("pods", pod("mayanode-0", "mayanode"), NS)
    api_server.store.create("pods", pod("bifrost-0", "bifrost"), NS)
    api_server.store.create("pods", pod("other-0", "gateway"), NS)
    recorder = Recorder()
    api_server.add_request_hook(recorder)
    api_server.recorder = recorder
    try:
        yield api_server
    finally:
        await api_server.stop()


async def open_api(config_file: str) -> KubeApi:
    client = make_api_client(config_file)
    client.user_agent = "mayanode-operator/test"
    api = KubeApi(client)
    assert await api.open_loop_reads(limit=8) is None
    return api


async def close_api(api: KubeApi) -> None:
    await api.close_loop_reads()
    api.api_client.close()


async def all_reads(api: KubeApi) -> list:
    return [
        await api.get_deployment(NS, "mayanode"),
        await api.get_deployment(NS, "absent"),
        await api.list_pods_selected(NS, SELECTOR),
        await api.list_pods(NS, {"app.kubernetes.io/name": "mayanode"}),
        await api.get_configmap(NS, "absent"),
    ]


# --- the same requests and answers as the official client -----------------------------------------------------------
async def test_reads_send_the_requests_and_give_the_answers_of_the_official_client(server, tmp_path):
    config_file = kubeconfig(tmp_path / "kubeconfig", server.url, user={"token": "secret-token"})
    threaded = KubeApi(make_api_client(config_file))
    threaded.api_client.user_agent = "mayanode-operator/test"
    expected = await all_reads(threaded)
    threaded_requests = list(server.recorder.seen)
    server.recorder.seen.clear()

    api = await open_api(config_file)
    try:
        assert await all_reads(api) == expected
    finally:
        await close_api(api)
        threaded.api_client.close()
    assert server.recorder.seen == threaded_requests
    assert all(headers["User-Agent"] == "mayanode-operator/test" and headers["Accept-Encoding"] == "identity"
               and headers["Authorization"] == "Bearer secret-token" for _, _, headers in server.recorder.seen)
    assert sorted(p["metadata"]["name"] for p in expected[2]) == ["bifrost-0", "mayanode-0"]


async def test_writes_other_than_merge_patches_stay_on_the_official_client(server, tmp_path, monkeypatch):
    api = await open_api(kubeconfig(tmp_path / "kubeconfig", server.url))
    calls: list[str] = []
    original = KubeApi._request

    def counted(self, method, *args):
        calls.append(method)
        return original(self, method, *args)

    monkeypatch.setattr(KubeApi, "_request", counted)
    try:
        await api.create_configmap(NS, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
        assert (await api.get_configmap(NS, "cm"))["data"] == {"a": "1"}
        await api.patch_configmap(NS, "cm", {"data": {"a": "2"}})
    finally:
        await close_api(api)
    assert calls == ["POST"]


async def test_merge_patches_send_the_requests_and_bodies_of_the_official_client(server, tmp_path):
    """A status merge patch (an idle node's height, once a minute) and a ConfigMap's: same method, URL, headers and
    body as the official client sends, same answer."""
    from mayanode_operator.api.crdgen import all_crds
    server.store.create("customresourcedefinitions", next(
        crd for crd in all_crds() if crd["spec"]["names"]["plural"] == "mayanodes"))
    server.store.create("mayanodes", {"apiVersion": "maya.nodeops.io/v1alpha1", "kind": "MayaNode",
                                      "metadata": {"name": "node", "namespace": NS},
                                      "spec": {"network": "mocknet"}}, NS)
    config_file = kubeconfig(tmp_path / "kubeconfig", server.url, user={"token": "secret-token"})

    async def patches(api: KubeApi, n: int) -> list:
        status = await api.patch_custom_status("mayanodes", NS, "node", {"chain": {"height": n, "note": None}})
        configmap = await api.patch_configmap(NS, "cm", {"data": {"a": str(n)}, "metadata": {"annotations": None}})
        return [status["status"], configmap["data"]]

    threaded = KubeApi(make_api_client(config_file))
    threaded.api_client.user_agent = "mayanode-operator/test"
    await threaded.create_configmap(NS, {"metadata": {"name": "cm"}, "data": {"a": "0"}})
    server.recorder.seen.clear()
    server.recorder.bodies.clear()
    expected = await patches(threaded, 7)
    threaded_requests, threaded_bodies = list(server.recorder.seen), list(server.recorder.bodies)
    server.recorder.seen.clear()
    server.recorder.bodies.clear()

    api = await open_api(config_file)
    try:
        assert await patches(api, 7) == expected == [{"chain": {"height": 7}}, {"a": "7"}]
    finally:
        await close_api(api)
        threaded.api_client.close()
    assert server.recorder.seen == threaded_requests
    assert [json.loads(body) for body in server.recorder.bodies] == [json.loads(body) for body in threaded_bodies]
    assert [method for method, _, _ in threaded_requests] == ["PATCH", "PATCH"]
    assert all(headers["Content-Type"] == "application/merge-patch+json" for _, _, headers in threaded_requests)


async def test_reads_from_another_event_loop_go_through_the_official_client(server, tmp_path, monkeypatch):
    api = await open_api(kubeconfig(tmp_path / "kubeconfig", server.url))
    threaded: list[str] = []
    original = KubeApi._request
    monkeypatch.setattr(KubeApi, "_request", lambda self, method, *args: threaded.append(method) or original(
        self, method, *args))
    answer: list = []
    thread = threading.Thread(target=lambda: answer.append(asyncio.run(api.get_deployment(NS, "mayanode"))))
    try:
        await asyncio.to_thread(lambda: (thread.start(), thread.join()))
    finally:
        await close_api(api)
    assert answer[0]["metadata"]["name"] == "mayanode" and threaded == ["GET"]


# --- errors ----------------------------------------------------------------------------------------------------------
class Refuse:
    """Answers the first `times` GETs with `status` and a Status body."""

    def __init__(self, status: int, times: int = 1, headers: dict | None = None) -> None:
        self.status, self.left, self.headers = status, times, headers or {}

    async def __call__(self, request, call_next):
        if request.method != "GET" or self.left <= 0:
            return await call_next(request)
        self.left -= 1
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": self.status,
                                  "reason": "Refused", "message": "refused"},
                                 status=self.status, headers={"X-Why": "test", **self.headers})


async def test_errors_are_the_api_exceptions_of_the_official_client(server, tmp_path):
    api = await open_api(kubeconfig(tmp_path / "kubeconfig", server.url))
    try:
        with pytest.raises(ApiException) as raised:
            await api.list_pods_selected(NS, "not a selector(")
        assert type(raised.value).__name__ == "BadRequestException" and raised.value.status == 400
        assert raised.value.reason == "Bad Request" and json.loads(raised.value.body)["code"] == 400
        assert isinstance(raised.value.headers, urllib3.HTTPHeaderDict)
        assert raised.value.headers["content-type"].startswith("application/json")

        refuse = Refuse(500, times=100)                        # a read's 5xx is tried again: it has to last
        server.add_request_hook(refuse)
        with pytest.raises(ApiException) as raised:
            await api.get_deployment(NS, "mayanode")
        assert type(raised.value).__name__ == "ServiceException" and raised.value.status == 500
        assert raised.value.headers.get("x-why") == "test" and "refused" in raised.value.body
        server.remove_request_hook(refuse)
        assert await api.get_deployment(NS, "absent") is None
    finally:
        await close_api(api)


async def test_a_throttled_read_is_tried_again_after_retry_after(server, tmp_path):
    api = await open_api(kubeconfig(tmp_path / "kubeconfig", server.url))
    try:
        server.add_request_hook(Refuse(429, times=2, headers={"Retry-After": "0"}))
        assert (await api.get_deployment(NS, "mayanode"))["metadata"]["name"] == "mayanode"
        assert len(server.recorder.seen) == 3
        server.add_request_hook(Refuse(429, times=100, headers={"Retry-After": "0"}))
        with pytest.raises(ApiException) as raised:                    # not forever
            await api.get_deployment(NS, "mayanode")
        assert raised.value.status == 429 and len(server.recorder.seen) == 3 + 4
    finally:
        await close_api(api)


async def test_an_unreachable_server_raises_what_urllib3_raises(tmp_path):
    probe = EmulatedApiServer()
    await probe.start()
    url = probe.url
    await probe.stop()                                                  # nothing listens there any more
    api = await open_api(kubeconfig(tmp_path / "kubeconfig", url))
    try:
        with pytest.raises(urllib3.exceptions.MaxRetryError) as raised:
            await api.get_deployment(NS, "mayanode")
        assert isinstance(raised.value, urllib3.exceptions.HTTPError)
    finally:
        await close_api(api)


async def test_a_token_rbac_refuses_is_a_forbidden_exception(server, tmp_path):
    server.enable_rbac({"nobody-token": ("system:serviceaccount:x:nobody", [])})
    api = await open_api(kubeconfig(tmp_path / "kubeconfig", server.url, user={"token": "nobody-token"}))
    try:
        with pytest.raises(ForbiddenException) as raised:
            await api.get_deployment(NS, "mayanode")
        assert raised.value.status == 403
    finally:
        await close_api(api)


# --- tokens that change ----------------------------------------------------------------------------------------------
class RotatingToken:
    """A refresh hook as the client's loaders install: sets the token it holds now; records the threads it ran on."""

    def __init__(self) -> None:
        self.token = "Bearer first"
        self.threads: list[threading.Thread] = []

    def __call__(self, configuration: k8s.Configuration) -> None:
        self.threads.append(threading.current_thread())
        configuration.api_key["BearerToken"] = self.token


async def test_the_token_is_read_through_the_refresh_hook_off_the_event_loop(server, tmp_path, monkeypatch):
    monkeypatch.setattr(kube_module, "AUTHORIZATION_TTL_SECONDS", 0.0)
    api = await open_api(kubeconfig(tmp_path / "kubeconfig", server.url, user={"token": "first"}))
    hook = RotatingToken()
    api.api_client.configuration.refresh_api_key_hook = hook
    try:
        await api.get_deployment(NS, "mayanode")
        hook.token = "Bearer second"
        await api.get_deployment(NS, "mayanode")
    finally:
        await close_api(api)
    assert [headers["Authorization"] for _, _, headers in server.recorder.seen] == ["Bearer first", "Bearer second"]
    assert hook.threads and threading.current_thread() not in hook.threads


async def test_a_401_reads_the_token_again_and_tries_once_more(server, tmp_path):
    api = await open_api(kubeconfig(tmp_path / "kubeconfig", server.url, user={"token": "first"}))
    hook = RotatingToken()
    api.api_client.configuration.refresh_api_key_hook = hook
    try:
        await api.get_deployment(NS, "mayanode")                        # "first" is now held for a while
        hook.token = "Bearer second"
        server.add_request_hook(Refuse(401))
        assert (await api.get_deployment(NS, "mayanode"))["metadata"]["name"] == "mayanode"
        assert [h["Authorization"] for _, _, h in server.recorder.seen] == ["Bearer first"] * 2 + ["Bearer second"]
        server.add_request_hook(Refuse(401, times=100))
        with pytest.raises(UnauthorizedException) as raised:            # once, not forever
            await api.get_deployment(NS, "mayanode")
        assert raised.value.status == 401 and len(server.recorder.seen) == 5
    finally:
        await close_api(api)


async def test_an_exec_plugin_token_is_renewed_when_it_expires(server, tmp_path, monkeypatch):
    """EKS-style credentials: `exec` prints an ExecCredential whose token has expired, so every refresh runs it."""
    monkeypatch.setattr(kube_module, "AUTHORIZATION_TTL_SECONDS", 0.0)
    counter = tmp_path / "runs"
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, pathlib\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1', 'kind': 'ExecCredential',\n"
        "                  'status': {'token': f'exec-{n}', 'expirationTimestamp': '2000-01-01T00:00:00Z'}}))\n"
    )
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable,
                     "args": [str(plugin)], "interactiveMode": "Never"}}
    api = await open_api(kubeconfig(tmp_path / "kubeconfig", server.url, user=user))
    try:
        await api.get_deployment(NS, "mayanode")
        await api.get_deployment(NS, "mayanode")
    finally:
        await close_api(api)
    tokens = [headers["Authorization"] for _, _, headers in server.recorder.seen]
    assert len(set(tokens)) == 2 and all(token.startswith("Bearer exec-") for token in tokens)


# --- TLS -------------------------------------------------------------------------------------------------------------
def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(subject: str, key, issuer: str, issuer_key, *, ca: bool = False, sans=(), client: bool = False):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert, key=None) -> tuple[str, str | None]:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is None:
        return str(path.with_suffix(".crt")), None
    path.with_suffix(".key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return str(path.with_suffix(".crt")), str(path.with_suffix(".key"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A cluster CA; a server certificate for 127.0.0.1, one for `kube.internal` only; a client certificate."""
    root = tmp_path_factory.mktemp("pki")
    ca_key, other_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    ca = _issue("cluster-ca", ca_key, "cluster-ca", ca_key, ca=True)
    other_ca = _issue("other-ca", other_key, "other-ca", other_key, ca=True)
    by_ip = _issue("apiserver", server_key, "cluster-ca", ca_key, sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    by_name = _issue("apiserver", server_key, "cluster-ca", ca_key, sans=[x509.DNSName("kube.internal")])
    client = _issue("operator-client", client_key, "cluster-ca", ca_key, client=True)
    return {
        "ca": _write(root / "ca", ca)[0],
        "other_ca": _write(root / "other-ca", other_ca)[0],
        "by_ip": _write(root / "by-ip", by_ip, server_key),
        "by_name": _write(root / "by-name", by_name, server_key),
        "client": _write(root / "client", client, client_key),
    }


async def serve_tls(server: EmulatedApiServer, pki: dict, certificate: str, *, require_client: bool) -> str:
    """The emulated API server's application, also on an HTTPS port (asking for a client certificate)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki["ca"])
    context.load_cert_chain(*pki[certificate])
    context.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_OPTIONAL
    site = web.TCPSite(server._runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    return f"https://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


async def test_tls_with_the_cluster_ca_and_a_client_certificate(server, tmp_path, pki):
    url = await serve_tls(server, pki, "by_ip", require_client=True)
    cert, key = pki["client"]
    config_file = kubeconfig(tmp_path / "kubeconfig", url, cluster={"certificate-authority": pki["ca"]},
                             user={"client-certificate": cert, "client-key": key})
    api = await open_api(config_file)
    try:
        assert (await api.get_deployment(NS, "mayanode"))["metadata"]["name"] == "mayanode"
        assert len(await api.list_pods_selected(NS, SELECTOR)) == 2
    finally:
        await close_api(api)
    assert server.recorder.peer_subjects == ["operator-client", "operator-client"]


async def test_a_server_the_ca_did_not_sign_is_refused(server, tmp_path, pki):
    url = await serve_tls(server, pki, "by_ip", require_client=False)
    api = await open_api(kubeconfig(tmp_path / "kubeconfig", url, cluster={"certificate-authority": pki["other_ca"]}))
    try:
        with pytest.raises(urllib3.exceptions.MaxRetryError) as raised:
            await api.get_deployment(NS, "mayanode")
        assert isinstance(raised.value.reason.__cause__ or raised.value.reason, Exception)
        assert "certificate" in str(raised.value).lower()
    finally:
        await close_api(api)
    assert server.recorder.seen == []


async def test_insecure_skip_tls_verify(server, tmp_path, pki):
    url = await serve_tls(server, pki, "by_ip", require_client=False)
    api = await open_api(kubeconfig(tmp_path / "kubeconfig", url, cluster={"insecure-skip-tls-verify": True},
                                    user={"token": "t"}))
    try:
        assert (await api.get_deployment(NS, "mayanode"))["metadata"]["name"] == "mayanode"
    finally:
        await close_api(api)


async def test_tls_server_name_is_the_name_the_certificate_is_checked_against(server, tmp_path, pki):
    url = await serve_tls(server, pki, "by_name", require_client=False)
    named = await open_api(kubeconfig(tmp_path / "named", url, cluster={"certificate-authority": pki["ca"],
                                                                          "tls-server-name": "kube.internal"}))
    unnamed = await open_api(kubeconfig(tmp_path / "unnamed", url, cluster={"certificate-authority": pki["ca"]}))
    try:
        assert (await named.get_deployment(NS, "mayanode"))["metadata"]["name"] == "mayanode"
        with pytest.raises(urllib3.exceptions.MaxRetryError):
            await unnamed.get_deployment(NS, "mayanode")
    finally:
        await close_api(named)
        await close_api(unnamed)


# --- configurations left to the official client ----------------------------------------------------------------------
async def test_a_proxy_keeps_the_reads_on_the_official_client(server, tmp_path):
    config_file = kubeconfig(tmp_path / "kubeconfig", server.url, cluster={"proxy-url": "http://127.0.0.1:9"})
    api = KubeApi(make_api_client(config_file))
    try:
        assert await api.open_loop_reads(limit=8) == "a proxy"
        assert api._loop_reads_for("GET", None) is None
    finally:
        await close_api(api)


async def test_in_cluster_service_account_token_and_ca_with_a_rotated_token(server, tmp_path, pki, monkeypatch):
    """In a pod: KUBERNETES_SERVICE_HOST/PORT, the mounted CA and token; the kubelet rotates the token file and the
    client reads it again once its minute is up."""
    import inspect

    from kubernetes.config import incluster_config

    url = await serve_tls(server, pki, "by_ip", require_client=False)
    token_file = tmp_path / "token"
    token_file.write_text("first")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token_file))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", pki["ca"])
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", url.rsplit(":", 1)[1])
    monkeypatch.setattr(kube_module, "AUTHORIZATION_TTL_SECONDS", 0.0)
    client = make_api_client(None)
    assert client.configuration.host == url
    api = KubeApi(client)
    assert await api.open_loop_reads(limit=8) is None
    try:
        await api.get_deployment(NS, "mayanode")
        token_file.write_text("second")
        loader = inspect.getclosurevars(client.configuration.refresh_api_key_hook).nonlocals["self"]
        loader.token_expires_at = datetime.datetime.now()               # its minute is up
        await api.get_deployment(NS, "mayanode")
    finally:
        await close_api(api)
    assert [headers["Authorization"] for _, _, headers in server.recorder.seen] == ["bearer first", "bearer second"]
