"""kopf handlers only wire: watch events to the queue, credentials to a capped session."""

import inspect

import kopf
import pytest
from kubernetes import client as k8s

from mayanode_operator.adapters.kube import watch_session_options
from mayanode_operator.config import OperatorConfig
from mayanode_operator.main import login, mayanode_event, nodebackup_event, noderestore_event, watch_event_action
from mayanode_operator.reconcile.queue import WorkQueue
from mayanode_operator.reconcile.runtime import Runtime
from mayanode_operator.reconcile.status_writer import UnsentRecords


def body(generation=2, observed=2, name="node-a"):
    return kopf.Body({"metadata": {"name": name, "namespace": "node-a", "generation": generation, "uid": "uid-a"},
                      "status": {"observedGeneration": observed} if observed is not None else {}})


@pytest.mark.parametrize("event_type,generation,observed,action", [
    (None, 1, None, "reconcile"),           # initial listing
    ("ADDED", 1, None, "reconcile"),
    ("MODIFIED", 2, 1, "reconcile"),        # spec changed
    ("MODIFIED", 2, 2, "ignore"),           # our own status write coming back
    ("DELETED", 2, 2, "forget"),
])
def test_watch_event_action(event_type, generation, observed, action):
    assert watch_event_action(event_type, body(generation, observed)) == action


class FakeRuntime:
    forget_mayanode = Runtime.forget_mayanode

    def __init__(self, config=None, api_client=None):
        self.queue = WorkQueue()
        self.key_shares, self.votes_looks, self.unsent = {}, {}, UnsentRecords()
        self.config = config or OperatorConfig()
        self.kube = type("K", (), {"api_client": api_client})()


async def test_events_feed_the_queue():
    runtime = FakeRuntime()
    memo = kopf.Memo(runtime=runtime)
    await mayanode_event(event={"type": "ADDED"}, body=body(), memo=memo)
    assert runtime.queue.pop_due()[0] == [("mayanodes", "node-a", "node-a")]
    runtime.queue.add(("mayanodes", "node-a", "node-a"), delay=100)
    await mayanode_event(event={"type": "DELETED"}, body=body(), memo=memo)
    assert len(runtime.queue) == 0


async def test_a_deleted_mayanode_leaves_nothing_for_a_new_one_of_the_same_name():
    runtime = FakeRuntime()
    memo = kopf.Memo(runtime=runtime)
    runtime.key_shares[("node-a", "node-a")] = runtime.votes_looks[("node-a", "node-a")] = object()
    runtime.unsent.remember("uid-a", "nodeActions", stored_as={}, plan_from={"x": 1})
    other = ("node-b", "node-b")
    runtime.key_shares[other] = runtime.votes_looks[other] = object()
    await mayanode_event(event={"type": "DELETED"}, body=body(), memo=memo)
    assert list(runtime.key_shares) == list(runtime.votes_looks) == [other]
    assert len(runtime.unsent) == 0


def test_event_handlers_run_on_the_event_loop():
    """kopf runs plain functions in its thread pool; the work queue must only be touched from the loop."""
    assert all(inspect.iscoroutinefunction(handler) for handler in (mayanode_event, nodebackup_event, noderestore_event))


async def test_login_uses_the_operator_credentials_with_a_capped_pool():
    configuration = k8s.Configuration(host="https://10.0.0.1:6443", api_key={"authorization": "Bearer abc"})
    configuration.verify_ssl = False
    runtime = FakeRuntime(OperatorConfig(max_connections=12), k8s.ApiClient(configuration))
    session = (await login(memo=kopf.Memo(runtime=runtime))).aiohttp_session
    try:
        assert session.connector.limit == 12          # what is configured, above what the watches need (9)
        assert session.headers["Authorization"] == "Bearer abc"
    finally:
        await session.close()


async def test_login_never_makes_a_pool_too_small_for_the_watches():
    configuration = k8s.Configuration(host="https://10.0.0.1:6443", api_key={"authorization": "Bearer abc"})
    configuration.verify_ssl = False
    config = OperatorConfig(max_connections=1, namespaces=["a", "b"])
    session = (await login(memo=kopf.Memo(runtime=FakeRuntime(config, k8s.ApiClient(configuration))))).aiohttp_session
    try:
        assert session.connector.limit == 5 * 2 + 4       # five watched kinds in two namespaces, and kopf's own
    finally:
        await session.close()


async def test_login_again_reads_the_token_through_the_refresh_hook():
    """kopf logs in again after a 401: a rotated token (in-cluster token file, exec plugin) must be the one it gets."""
    configuration = k8s.Configuration(host="https://10.0.0.1:6443", api_key={"authorization": "Bearer old"})
    configuration.verify_ssl = False
    tokens = iter(["Bearer first", "Bearer rotated"])
    configuration.refresh_api_key_hook = lambda cfg: cfg.api_key.update(authorization=next(tokens))
    runtime = FakeRuntime(OperatorConfig(), k8s.ApiClient(configuration))
    seen = []
    for _ in range(2):
        session = (await login(memo=kopf.Memo(runtime=runtime))).aiohttp_session
        seen.append(session.headers["Authorization"])
        await session.close()
    assert seen == ["Bearer first", "Bearer rotated"]


async def test_login_sends_the_watches_through_the_kubeconfig_proxy(aiohttp_proxy):
    proxy_url, seen = aiohttp_proxy
    configuration = k8s.Configuration(host="http://api.cluster.invalid:6443", api_key={"authorization": "Bearer abc"})
    configuration.proxy = proxy_url
    runtime = FakeRuntime(OperatorConfig(), k8s.ApiClient(configuration))
    session = (await login(memo=kopf.Memo(runtime=runtime))).aiohttp_session
    try:
        async with session.get("http://api.cluster.invalid:6443/api/v1/pods?watch=true") as response:
            assert response.status == 200
    finally:
        await session.close()
    assert seen == ["http://api.cluster.invalid:6443/api/v1/pods?watch=true"]


async def test_login_connects_directly_when_no_proxy_names_the_server(caplog):
    configuration = k8s.Configuration(host="https://10.0.0.1:6443", api_key={"authorization": "Bearer abc"})
    configuration.verify_ssl = False
    configuration.proxy, configuration.no_proxy = "http://proxy.invalid:3128", "10.0.0.0/8"
    session = (await login(memo=kopf.Memo(runtime=FakeRuntime(None, k8s.ApiClient(configuration))))).aiohttp_session
    await session.close()
    assert watch_session_options(configuration) == (None, [])
    configuration.tls_server_name = "kubernetes.default"
    session = (await login(memo=kopf.Memo(runtime=FakeRuntime(None, k8s.ApiClient(configuration))))).aiohttp_session
    await session.close()
    assert [r.getMessage() for r in caplog.records if r.name == "mayanode_operator.main"] == \
        ["kubeconfig: tls-server-name is not applied to the watches: they check the certificate against the server "
         "URL's host name"]
    configuration.proxy, configuration.no_proxy = "socks5://proxy.invalid:1080", None
    proxy, problems = watch_session_options(configuration)
    assert proxy is None and "not an HTTP proxy" in problems[0]


@pytest.fixture
async def aiohttp_proxy():
    """An HTTP proxy that answers every request itself, recording the absolute URL it was asked for."""
    from aiohttp import web

    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(str(request.url))
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", seen
    finally:
        await runner.cleanup()
