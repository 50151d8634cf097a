"""The fault injector itself: each fault does what it says, only to the operator, reproducibly."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from mayanode_operator.sandbox.apiserver import EmulatedApiServer
from mayanode_operator.sandbox.apiserver.exec import ExecRequest
from mayanode_operator.sandbox.faults import FaultInjector, FaultRates

OPERATOR = {"User-Agent": "mayanode-operator/0.1.0"}
KOPF = {"User-Agent": "kopf/1.45.2"}
BYSTANDER = {"User-Agent": "Python/3.11 aiohttp/3.14.5"}
CM = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
async def api():
    server = EmulatedApiServer()
    await server.start()
    async with aiohttp.ClientSession() as session:
        yield server, session
    await server.stop()


async def _create(session, url, name, headers=OPERATOR):
    async with session.post(url + CM, json={"metadata": {"name": name}, "data": {"a": "1"}}, headers=headers) as r:
        return r.status, await r.json()


async def _patch(session, url, name, headers=OPERATOR):
    async with session.patch(url + CM + "/" + name, data=json.dumps({"data": {"a": "2"}}),
                             headers={**headers, "Content-Type": "application/merge-patch+json"}) as r:
        return r.status, dict(r.headers), await r.json()


async def test_conflicts_throttles_and_errors_have_real_status_bodies(api):
    server, session = api
    faults = FaultInjector(seed=1).install(server)
    assert (await _create(session, server.url, "a"))[0] == 201
    faults.set(conflict=1.0)
    status, _, body = await _patch(session, server.url, "a")
    assert status == 409 and body["reason"] == "Conflict" and body["kind"] == "Status"
    assert server.store.get("configmaps", "a", "default")["data"] == {"a": "1"}
    faults.set(throttle=1.0, retry_after=2)
    status, headers, body = await _patch(session, server.url, "a")
    assert status == 429 and headers["Retry-After"] == "2" and body["details"]["retryAfterSeconds"] == 2
    faults.set(error=1.0)
    assert (await _patch(session, server.url, "a"))[0] == 500
    assert faults.counts == {"conflict": 1, "throttle": 1, "error": 1}
    assert [entry[:3] for entry in faults.log] == [("conflict", "patch", "configmaps")] + \
        [(f, "patch", "configmaps") for f in ("throttle", "error")]


async def test_a_lost_answer_applies_the_write(api):
    server, session = api
    faults = FaultInjector(seed=1).install(server)
    faults.set(lost_answer=1.0)
    status, body = await _create(session, server.url, "b")
    assert status == 504 and body["reason"] == "Timeout"
    assert server.store.get("configmaps", "b", "default") is not None        # it happened all the same


async def test_only_the_operators_requests_are_disturbed(api):
    server, session = api
    faults = FaultInjector(seed=1, rates=FaultRates(error=1.0)).install(server)
    assert (await _create(session, server.url, "c", headers=BYSTANDER))[0] == 201
    assert (await _create(session, server.url, "d", headers=KOPF))[0] == 500
    assert (await _create(session, server.url, "e", headers=OPERATOR))[0] == 500
    with faults.paused():
        assert (await _create(session, server.url, "e", headers=OPERATOR))[0] == 201
    faults.set()
    assert (await _patch(session, server.url, "e"))[0] == 200
    assert faults.total == 2


async def test_the_same_seed_gives_the_same_faults(api):
    server, session = api
    outcomes = []
    for _ in range(2):
        faults = FaultInjector(seed=42, rates=FaultRates(conflict=0.3, error=0.2, throttle=0.2)).install(server)
        outcomes.append([(await _patch(session, server.url, "z"))[0] for _ in range(30)])
        faults.uninstall()
    assert outcomes[0] == outcomes[1] and len(set(outcomes[0])) >= 3


async def test_slow_answers_come_late(api):
    server, session = api
    FaultInjector(seed=1, rates=FaultRates(slow=1.0, slow_seconds=0.3)).install(server)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await _create(session, server.url, "s"))[0] == 201
    assert loop.time() - started >= 0.3


async def _read_watch(session, url) -> tuple[list[str], str]:
    lines: list[str] = []
    try:
        async with session.get(url + CM + "?watch=true&timeoutSeconds=20", headers=OPERATOR) as r:
            async for line in r.content:
                lines.append(line.decode())
    except aiohttp.ClientPayloadError as err:
        return lines, type(err).__name__
    return lines, "eof"


async def test_watch_streams_are_cut_or_ended_early(api):
    server, session = api
    await _create(session, server.url, "w", headers=BYSTANDER)
    faults = FaultInjector(seed=3, rates=FaultRates(watch_drop=1.0, watch_max_seconds=0.5)).install(server)
    started = asyncio.get_running_loop().time()
    lines, how = await _read_watch(session, server.url)
    assert how == "ClientPayloadError" and len(lines) == 1
    faults.set(watch_end=1.0, watch_max_seconds=0.5)
    lines, how = await _read_watch(session, server.url)
    assert how == "eof" and len(lines) == 1 and json.loads(lines[0])["type"] == "ADDED"
    assert asyncio.get_running_loop().time() - started < 5
    assert faults.counts == {"watch_drop": 1, "watch_end": 1}


async def test_exec_fails_before_or_inside_the_stream():
    ran: list[list[str]] = []

    async def handler(request: ExecRequest, stdin, stdout, stderr) -> int:
        ran.append(request.command)
        return 0

    server = EmulatedApiServer(exec_handler=handler)
    faults = FaultInjector(seed=1, rates=FaultRates(exec_exit=1.0))
    faults.install(server)
    assert server.exec_handler is not handler
    request = ExecRequest("ns", "pod", "c", ["true"], False, False)
    errors: list[bytes] = []

    async def collect(data: bytes) -> None:
        errors.append(data)

    # Not reached through an operator's request: the command runs.
    assert await server.exec_handler(request, asyncio.StreamReader(), collect, collect) == 0
    assert ran == [["true"]]
    faults.uninstall()
    assert server.exec_handler is handler


async def test_forced_faults_hit_the_next_matching_requests(api):
    server, session = api
    faults = FaultInjector(seed=1).install(server)
    await _create(session, server.url, "f", headers=BYSTANDER)
    faults.force("conflict", times=2, resource="configmaps").force("error", resource="secrets")
    assert [(await _patch(session, server.url, "f"))[0] for _ in range(3)] == [409, 409, 200]
    assert faults.counts == {"conflict": 2}
    with pytest.raises(ValueError):
        faults.force("exec_exit")
