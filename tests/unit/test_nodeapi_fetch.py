"""`fetch_json` over real HTTP: every way a node API can answer badly becomes an EndpointFailure with its reason,
bounded in time and in the bytes it takes in (a declared length, a chunked body, a compressed one that inflates)."""

from __future__ import annotations

import asyncio
import gzip
import socket

import aiohttp
import pytest
from aiohttp import web

from mayanode_operator.observe.nodeapi import MAX_BODY_BYTES, EndpointFailure, fetch_json

BIG = MAX_BODY_BYTES + 1


async def chunked(request: web.Request, body: bytes, *, delay: float = 0.0) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for start in range(0, len(body), 65536):
        if delay:
            await asyncio.sleep(delay)
        await response.write(body[start:start + 65536])
    await response.write_eof()
    return response


async def gzipped(request: web.Request, body: bytes) -> web.Response:
    return web.Response(body=gzip.compress(body), headers={"Content-Type": "application/json",
                                                           "Content-Encoding": "gzip"})


async def slow_headers(request: web.Request) -> web.Response:
    await asyncio.sleep(2)
    return web.json_response({"late": True})


async def slow_body(request: web.Request) -> web.StreamResponse:
    return await chunked(request, b'{"a": "' + b"x" * 300_000 + b'"}', delay=0.2)


def answer(make):
    """An async handler from a function of the request giving a response, or an awaitable of one."""
    async def handle(request: web.Request) -> web.StreamResponse:
        response = make(request)
        return await response if asyncio.iscoroutine(response) else response
    return handle


ROUTES = {
    "/ok": answer(lambda request: web.json_response({"current": "1.112.0"})),
    "/ok-chunked": answer(lambda request: chunked(request, b'{"chunked": [1, 2, 3]}')),
    "/ok-gzip": answer(lambda request: gzipped(request, b'{"gzip": true}')),
    "/missing": answer(lambda request: web.Response(status=404)),
    "/broken": answer(lambda request: web.Response(status=500)),
    "/garbage": answer(lambda request: web.Response(body=b"<html>not json", content_type="text/html")),
    "/deeply-nested": answer(lambda request: web.Response(body=b"[" * 200_000 + b"]" * 200_000,
                                                          content_type="application/json")),
    "/declared-too-large": answer(lambda request: web.Response(body=b" " * BIG, content_type="application/json")),
    "/chunked-too-large": answer(lambda request: chunked(request, b" " * BIG)),
    "/gzip-bomb": answer(lambda request: gzipped(request, b" " * (4 * BIG))),
    "/slow-headers": slow_headers,
    "/slow-body": slow_body,
}


@pytest.fixture
async def server():
    app = web.Application()
    for path, handler in ROUTES.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    async with aiohttp.ClientSession() as session:
        yield session, f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.parametrize("path, expected", [
    ("/ok", {"current": "1.112.0"}),
    ("/ok-chunked", {"chunked": [1, 2, 3]}),
    ("/ok-gzip", {"gzip": True}),
])
async def test_answers_are_read_whole(server, path, expected):
    session, base = server
    assert await fetch_json(session, base + path, timeout=5) == expected


@pytest.mark.parametrize("path, reason", [
    ("/missing", "NotFound"),
    ("/broken", "HTTPError"),
    ("/garbage", "InvalidResponse"),
    ("/deeply-nested", "InvalidResponse"),            # json.loads raises RecursionError: one route's failure
    ("/declared-too-large", "TooLarge"),
    ("/chunked-too-large", "TooLarge"),
    ("/gzip-bomb", "TooLarge"),
])
async def test_bad_answers_name_their_reason(server, path, reason):
    session, base = server
    with pytest.raises(EndpointFailure) as failure:
        await fetch_json(session, base + path, timeout=5)
    assert failure.value.reason == reason and path in failure.value.message


@pytest.mark.parametrize("path", ["/slow-headers", "/slow-body"])
async def test_the_deadline_covers_the_whole_answer(server, path):
    session, base = server
    started = asyncio.get_running_loop().time()
    with pytest.raises(EndpointFailure) as failure:
        await fetch_json(session, base + path, timeout=0.5)
    assert failure.value.reason == "Timeout" and "0.5s" in failure.value.message
    assert asyncio.get_running_loop().time() - started < 1.5


async def test_nothing_listening_is_unreachable():
    with socket.socket() as probe:          # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(EndpointFailure) as failure:
            await fetch_json(session, f"http://127.0.0.1:{port}/mayachain/version", timeout=2)
    assert failure.value.reason == "Unreachable"
