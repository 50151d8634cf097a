"""Thin I/O over the Kubernetes API with the official client.

Calls are synchronous in the client, so they run in worker threads. Answers are read raw and returned as
the JSON dicts the server sent.

Reads (GETs) and JSON merge patches can instead be served on the event loop (`KubeApi.open_loop_reads`, done by
the operator's runtime): an aiohttp session set up from the same configuration (server, CA or insecure, client
certificate, proxy decides against it, bearer token through the client's own refresh hook), sending the same URL,
headers and body and raising the same ApiException. Every reconcile makes six reads, and an idle node's status is
patched once a minute (its height); in worker threads, the thread hand-offs and the synchronous client's HTTP code
cost most of the operator's CPU. Other writes, exec and streams stay on the official client.

The methods below go through the ApiClient's REST layer (same configuration, auth, connection pool, User-Agent
and ApiException as the typed APIs), not through CoreV1Api/AppsV1Api: the typed APIs of the client import and
build hundreds of pydantic models when first used (about 22 MiB of operator memory) and validate every call's
arguments with pydantic. `core`, `apps` and `custom` remain for the rarer paths (restores, backups, exec,
workload patches) and are made on first use.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import re
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import aiohttp
import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import should_bypass_proxies
from yarl import URL

from ..api import naming
from ..plan.events import EventSpec
from ..plan.patches import apply_merge_patch

MERGE_PATCH = "application/merge-patch+json"
THROTTLE_RETRIES = 3                  # a 429 is tried again this many times, each after the server's Retry-After
MAX_RETRY_AFTER_SECONDS = 10.0
READ_RETRY_STATUSES = frozenset({500, 502, 503, 504})
READ_RETRY_SECONDS = 0.1              # a GET that met a server error is tried again after 0.1, 0.2, 0.3 s
CUSTOM_OBJECTS = "/apis/{group}/{version}/namespaces/{namespace}/{plural}"
CUSTOM_OBJECT = CUSTOM_OBJECTS + "/{name}"
READ_RETRIES = 3                      # a GET whose connection failed is tried again, as urllib3's default Retry does
AUTHORIZATION_TTL_SECONDS = 5.0       # how long a bearer token read through the client's refresh hook is reused
NAMESPACED_PATH = re.compile(r"/namespaces/([^/?]+)(?:/([^/?]+))?")


def namespaced_target(url: str) -> tuple[str, str] | None:
    """(namespace, resource) a request's URL addresses ("" for the Namespace itself; None: cluster-scoped)."""
    match = NAMESPACED_PATH.search(url)
    return (match.group(1), match.group(2) or "") if match else None


API_REQUEST_TIMEOUT = (10.0, 60.0)     # (connect, read) seconds of one request to the API server


class BoundedApiClient(k8s.ApiClient):
    """The official client with a deadline on every request. urllib3 waits for ever unless told otherwise: a
    connection the network dropped without a word (an API server replaced behind its load balancer, a NAT entry
    expired) would hold a reconcile, and the thread it runs in, for good. Watches are kopf's, execs have a client of
    their own: every call here is a short request."""

    def call_api(self, method, url, header_params=None, body=None, post_params=None,  # noqa: ANN001, ANN201
                 _request_timeout=None):
        return super().call_api(method, url, header_params, body, post_params,
                                _request_timeout or API_REQUEST_TIMEOUT)


def make_api_client(kubeconfig: str | None = None, context: str | None = None) -> k8s.ApiClient:
    """In-cluster when no kubeconfig is named and a service account is mounted; else the kubeconfig."""
    configuration = k8s.Configuration()
    if kubeconfig is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
            return BoundedApiClient(configuration)
        except k8s_config.ConfigException:
            pass
    k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
    return BoundedApiClient(configuration)


def retry_after_seconds(err: ApiException) -> float:
    """The server's Retry-After (seconds), bounded; 1 s when it sent none."""
    try:
        seconds = float((err.headers or {}).get("Retry-After", 1))
    except (TypeError, ValueError):
        seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def status_message(err: ApiException) -> str:
    """The message of the Status object an API error carries ("" when it carries none)."""
    try:
        body = json.loads(err.body) if err.body else {}
    except (ValueError, TypeError):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return str(message) if message else ""


def loop_reads_unsupported(configuration: k8s.Configuration) -> str | None:
    """Why a configuration's reads must stay on the official client, or None. Its proxies (HTTP and SOCKS), a
    hostname asserted apart from the one connected to and client-go style retries are left to it."""
    if configuration.proxy and not should_bypass_proxies(configuration.host, configuration.no_proxy or ""):
        return "a proxy"
    if configuration.assert_hostname not in (None, False):
        return "assert_hostname"
    if getattr(configuration, "client_go_retries", False) or configuration.retries is not None:
        return "retries"
    if not str(configuration.host).startswith(("http://", "https://")):
        return "the server URL"
    return None


def watch_session_options(configuration: k8s.Configuration) -> tuple[str | None, list[str]]:
    """The proxy kopf's session (its watches) must use, as the official client does: the kubeconfig's `proxy-url`
    unless `no_proxy` names the server. And what that session cannot do like the official client (aiohttp speaks
    to HTTP proxies only, and sets the TLS server name from the URL's host), to be said at login."""
    problems: list[str] = []
    proxy = configuration.proxy or None
    if proxy and should_bypass_proxies(configuration.host, configuration.no_proxy or ""):
        proxy = None
    if proxy and not str(proxy).startswith(("http://", "https://")):
        problems.append(f"the proxy {str(proxy).split('://')[0]}:// is not an HTTP proxy: the watches connect directly")
        proxy = None
    if getattr(configuration, "tls_server_name", None):
        problems.append("tls-server-name is not applied to the watches: they check the certificate against the "
                        "server URL's host name")
    return proxy, problems


def ssl_context_of(configuration: k8s.Configuration) -> ssl.SSLContext | None:
    """The TLS the official client's urllib3 pool uses: its CA (file or data, else the system's), verification on or
    off (insecure-skip-tls-verify), the client certificate and key. None for a plain-HTTP server. Reads files: call
    it off the event loop."""
    if not str(configuration.host).startswith("https://"):
        return None
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert, cadata=configuration.ca_cert_data)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif configuration.assert_hostname is False:
        context.check_hostname = False
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


def bearer_authorization(configuration: k8s.Configuration) -> str | None:
    """The Authorization header the official client would send now (its refresh hook runs: in-cluster token files are
    read again, exec plugins run when their token expired). Blocking: call it off the event loop."""
    setting = configuration.auth_settings().get("BearerToken")
    return setting["value"] if setting else None


class LoopReads:
    """GETs and merge patches on an aiohttp session of one event loop, as the official client would send them."""

    def __init__(self, configuration: k8s.Configuration, ssl_context: ssl.SSLContext | None, limit: int) -> None:
        self.configuration = configuration
        self.loop = asyncio.get_running_loop()
        self._server_hostname = configuration.tls_server_name or None
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, ssl=ssl_context if ssl_context is not None else True),
            headers={"Accept-Encoding": "identity"},        # as urllib3 sends: no compressed answers
            raise_for_status=False,
            timeout=aiohttp.ClientTimeout(sock_connect=API_REQUEST_TIMEOUT[0], sock_read=API_REQUEST_TIMEOUT[1]),
        )
        self._authorization: str | None = None
        self._authorization_until = 0.0
        self._authorization_lock = asyncio.Lock()

    @classmethod
    async def open(cls, configuration: k8s.Configuration, limit: int) -> "LoopReads":
        return cls(configuration, await asyncio.to_thread(ssl_context_of, configuration), limit)

    async def close(self) -> None:
        await self._session.close()

    async def authorization(self, *, renew: bool = False) -> str | None:
        if not renew and time.monotonic() < self._authorization_until:
            return self._authorization
        async with self._authorization_lock:
            if renew or time.monotonic() >= self._authorization_until:
                self._authorization = await asyncio.to_thread(bearer_authorization, self.configuration)
                self._authorization_until = time.monotonic() + AUTHORIZATION_TTL_SECONDS
            return self._authorization

    async def get(self, url: str, headers: dict[str, str]) -> bytes:
        return await self.send("GET", url, headers)

    async def send(self, method: str, url: str, headers: dict[str, str], data: bytes | None = None) -> bytes:
        """The body of a 2xx answer; ApiException (built as the official client builds it) otherwise. A 401 is tried
        once more with the token read again: a token that the hook would have refreshed may be reused for up to
        AUTHORIZATION_TTL_SECONDS. Only for requests that may be repeated (GET, a merge patch): a failed connection
        is tried again."""
        renew = False
        while True:
            authorization = await self.authorization(renew=renew)
            status, reason, body, response_headers = await self._send_once(method, url, headers, data, authorization)
            if 200 <= status <= 299:
                return body
            if status == 401 and not renew and authorization is not None:
                renew = True
                continue
            raise ApiException.from_response(http_resp=SimpleNamespace(
                status=status, reason=reason, data=body, headers=response_headers), body=None, data=None)

    async def _send_once(self, method: str, url: str, headers: dict[str, str], data: bytes | None,
                         authorization: str | None) -> tuple[int, str, bytes, urllib3.HTTPHeaderDict]:
        if authorization:
            headers = {**headers, "authorization": authorization}
        for attempt in range(READ_RETRIES + 1):
            try:
                async with self._session.request(method, URL(url, encoded=True), headers=headers, data=data,
                                                 allow_redirects=method == "GET",
                                                 server_hostname=self._server_hostname) as response:
                    body = await response.read()
                    if 200 <= response.status <= 299:
                        return response.status, "", body, urllib3.HTTPHeaderDict()
                    return (response.status, response.reason or "", body,
                            urllib3.HTTPHeaderDict(list(response.headers.items())))
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as err:
                if attempt == READ_RETRIES:
                    raise urllib3.exceptions.MaxRetryError(None, url.split("?")[0], reason=err) from err  # type: ignore[arg-type]
        raise AssertionError("unreachable")


def _decode(response: Any) -> dict[str, Any]:
    return json.loads(response.data) if response.data else {}


def _custom(plural: str, namespace: str, name: str | None = None) -> dict[str, str]:
    params = {"group": naming.GROUP, "version": naming.VERSION, "namespace": namespace, "plural": plural}
    return params if name is None else {**params, "name": name}


class KubeApi:
    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client
        self._instance = socket.gethostname()
        self._loop_reads: LoopReads | None = None
        self._on_write: Callable[[str, str], None] | None = None
        self._on_write_loop: asyncio.AbstractEventLoop | None = None

    def notify_writes(self, on_write: Callable[[str, str], None]) -> None:
        """Call `on_write(namespace, resource)` on this event loop when a request that may change something in a
        namespace is about to be sent and when it has been answered (or failed), before its caller gets the answer:
        every request but a GET, through the official client (typed APIs, the methods below, in any thread) or the
        loop."""
        self._on_write, self._on_write_loop = on_write, asyncio.get_running_loop()
        call_api = self.api_client.call_api

        @functools.wraps(call_api)
        def call_api_noticed(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            with self._noticed(method, url):
                return call_api(method, url, *args, **kwargs)

        self.api_client.call_api = call_api_noticed      # type: ignore[method-assign]

    @contextlib.contextmanager
    def _noticed(self, method: str, url: str) -> Iterator[None]:
        """Around a request: a write is noticed before it is sent and once it is answered (or failed)."""
        if method == "GET":
            yield
            return
        self._written(url)
        try:
            yield
        finally:
            self._written(url)

    def _written(self, url: str) -> None:
        target, on_write, loop = namespaced_target(url.split("?")[0]), self._on_write, self._on_write_loop
        if target is None or on_write is None or loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            on_write(*target)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(on_write, *target)     # before the thread's answer reaches its awaiting caller

    async def open_loop_reads(self, limit: int) -> str | None:
        """Serve GETs made on this event loop from an aiohttp session; the reason when the configuration keeps them
        on the official client."""
        unsupported = loop_reads_unsupported(self.api_client.configuration)
        if unsupported is None:
            self._loop_reads = await LoopReads.open(self.api_client.configuration, limit)
        return unsupported

    async def close_loop_reads(self) -> None:
        reads, self._loop_reads = self._loop_reads, None
        if reads is not None:
            await reads.close()

    @functools.cached_property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api_client)

    @functools.cached_property
    def apps(self) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(self.api_client)

    @functools.cached_property
    def custom(self) -> k8s.CustomObjectsApi:
        return k8s.CustomObjectsApi(self.api_client)

    def _request(self, method: str, path: str, params: Mapping[str, str], query: Mapping[str, Any] | None,
                 body: Any, content_type: str | None) -> Any:
        """One synchronous call, answered as a typed API method answers with `_preload_content=False`: the raw
        urllib3 response, or ApiException on a non-2xx status. `path` has `{key}` placeholders for `params`."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        request = self.api_client.param_serialize(
            method=method, resource_path=path, path_params=dict(params),
            query_params=[(key, value) for key, value in (query or {}).items() if value is not None],
            header_params=headers, body=body, auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(*request)
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response

    async def _send_on_loop(self, reads: LoopReads, method: str, path: str, params: Mapping[str, str],
                            query: Mapping[str, Any] | None, body: Any, content_type: str | None) -> dict[str, Any]:
        """A request as `_request` sends it (the client serializes the URL, headers and body; the token comes from
        `reads`)."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        _, url, headers, body, _ = self.api_client.param_serialize(
            method=method, resource_path=path, path_params=dict(params),
            query_params=[(key, value) for key, value in (query or {}).items() if value is not None],
            header_params=headers, body=body, auth_settings=None,
        )
        with self._noticed(method, url):
            data = await reads.send(method, url, headers, None if body is None else json.dumps(body).encode())
        return json.loads(data) if data else {}

    def _loop_reads_for(self, method: str, content_type: str | None) -> LoopReads | None:
        """The loop session for a request that may be repeated (a GET; a merge patch, which applied twice gives what it
        gives once), when it was opened on the running loop."""
        reads = self._loop_reads
        repeatable = method == "GET" or (method == "PATCH" and content_type == MERGE_PATCH)
        if not repeatable or reads is None or reads.loop is not asyncio.get_running_loop():
            return None
        return reads

    async def _rest(self, method: str, path: str, params: Mapping[str, str], *, query: Mapping[str, Any] | None = None,
                    body: Any = None, content_type: str | None = None) -> dict[str, Any]:
        """One call; a 429 (the server did not process it) is tried again after its Retry-After, as client-go does, and
        a read that met a server error (5xx) again shortly: a read changes nothing, and one failed read would fail
        the whole pass, whose retry backs off for longer."""
        for attempt in range(THROTTLE_RETRIES + 1):
            try:
                reads = self._loop_reads_for(method, content_type)
                if reads is not None:
                    return await self._send_on_loop(reads, method, path, params, query, body, content_type)
                return _decode(await asyncio.to_thread(self._request, method, path, params, query, body,
                                                       content_type))
            except ApiException as err:
                if attempt == THROTTLE_RETRIES:
                    raise
                if err.status == 429:
                    await asyncio.sleep(retry_after_seconds(err))
                elif method == "GET" and err.status in READ_RETRY_STATUSES:
                    await asyncio.sleep(READ_RETRY_SECONDS * (attempt + 1))
                else:
                    raise
        raise AssertionError("unreachable")

    async def _get_or_none(self, path: str, params: Mapping[str, str]) -> dict[str, Any] | None:
        try:
            return await self._rest("GET", path, params)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    # --- reads -----------------------------------------------------------------------------
    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get_or_none("/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
                                       {"namespace": namespace, "name": name})

    async def list_pods(self, namespace: str, match_labels: Mapping[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))
        return await self.list_pods_selected(namespace, selector)

    async def list_pods_selected(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The pods a label selector (`a=b,c in (d,e)`) matches; an empty selector lists the whole namespace."""
        doc = await self._rest("GET", "/api/v1/namespaces/{namespace}/pods", {"namespace": namespace},
                               query={"labelSelector": selector or None})
        return list(doc.get("items") or [])

    async def pod_warning_events(self, namespace: str, pod_name: str) -> list[dict[str, Any]]:
        """The Warning events about a pod (FailedAttachVolume, FailedMount, FailedScheduling…), as the API server
        keeps them (about an hour)."""
        selector = f"involvedObject.kind=Pod,involvedObject.name={pod_name},type=Warning"
        doc = await self._rest("GET", "/api/v1/namespaces/{namespace}/events", {"namespace": namespace},
                               query={"fieldSelector": selector})
        return list(doc.get("items") or [])

    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """A Secret's decoded data, or None when it does not exist. Never log the result."""
        body = await self._get_or_none("/api/v1/namespaces/{namespace}/secrets/{name}",
                                       {"namespace": namespace, "name": name})
        if body is None:
            return None
        return {key: base64.b64decode(value) for key, value in (body.get("data") or {}).items()}

    async def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get_or_none("/api/v1/namespaces/{namespace}/services/{name}",
                                       {"namespace": namespace, "name": name})

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get_or_none("/api/v1/namespaces/{namespace}/configmaps/{name}",
                                       {"namespace": namespace, "name": name})

    async def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get_or_none(CUSTOM_OBJECT, _custom(plural, namespace, name))

    async def list_custom(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        doc = await self._rest("GET", CUSTOM_OBJECTS, _custom(plural, namespace))
        return list(doc.get("items") or [])

    # --- writes ----------------------------------------------------------------------------
    async def patch_custom_status(self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A merge patch of the status. A 504 says the write may have been applied all the same: the object is read
        back, and if its status already is what the patch makes of it, the write is taken as done."""
        try:
            return await self._rest("PATCH", CUSTOM_OBJECT + "/status", _custom(plural, namespace, name),
                                    body={"status": dict(patch)}, content_type=MERGE_PATCH)
        except ApiException as err:
            if err.status != 504:
                raise
            try:
                body = await self.get_custom(plural, namespace, name)
            except ApiException:
                raise err from None
            status = (body or {}).get("status") or {}
            if body is None or apply_merge_patch(status, patch) != status:
                raise
            return body

    async def create_configmap(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._rest("POST", "/api/v1/namespaces/{namespace}/configmaps", {"namespace": namespace},
                                query={"fieldManager": naming.FIELD_MANAGER}, body=dict(body))

    async def patch_configmap(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of a ConfigMap (data and metadata.annotations)."""
        return await self._rest("PATCH", "/api/v1/namespaces/{namespace}/configmaps/{name}",
                                {"namespace": namespace, "name": name}, query={"fieldManager": naming.FIELD_MANAGER},
                                body=dict(patch), content_type=MERGE_PATCH)

    async def emit_event(self, involved: Mapping[str, Any], event: EventSpec) -> None:
        """A core/v1 Event about `involved`; losing one is never worth failing a reconcile for."""
        meta = involved.get("metadata") or {}
        now = datetime.now(timezone.utc)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}", "namespace": meta.get("namespace")},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": event.reason,
            "message": event.message[:1024],
            "type": event.type,
            "source": {"component": naming.FIELD_MANAGER},
            "reportingComponent": naming.FIELD_MANAGER,
            "reportingInstance": self._instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        await self._rest("POST", "/api/v1/namespaces/{namespace}/events", {"namespace": str(meta.get("namespace"))},
                         body=body)
