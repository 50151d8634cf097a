"""kopf handlers only wire: watch events to the queue, credentials to a capped session."""

import inspect

import kopf
import pytest
from kubernetes import client as k8s

from mayanode_operator.config import OperatorConfig
from mayanode_operator.main import login, mayanode_event, nodebackup_event, noderestore_event, watch_event_action
from mayanode_operator.reconcile.queue import WorkQueue


def body(generation=2, observed=2, name="node-a"):
    return kopf.Body({"metadata": {"name": name, "namespace": "node-a", "generation": generation},
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
    def __init__(self, config=None, api_client=None):
        self.queue = WorkQueue()
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
