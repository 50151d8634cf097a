"""A node's API name is looked up once per `NODE_API_DNS_CACHE_SECONDS`, not at every pass, and an address that
does not answer is forgotten at once, so a re-created Service (a new ClusterIP) is found again at the next read."""

from __future__ import annotations

import socket

import aiohttp.connector
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver

from mayanode_operator.observe.nodeapi import (
    NODE_API_DNS_CACHE_SECONDS, EndpointFailure, fetch_json, node_api_session,
)


class Resolver(AbstractResolver):
    """A cluster's DNS: answers `mayanode.<ns>.svc` with the address it holds now, counting the lookups."""

    def __init__(self, address: str) -> None:
        self.address, self.lookups = address, 0

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict]:
        self.lookups += 1
        return [{"hostname": host, "host": self.address, "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(aiohttp.connector, "monotonic", clock)      # the DNS cache's clock
    return clock


def version_app(current: str) -> web.Application:
    """A node's REST server that closes each connection after its answer, as a node's does after 10 s idle (a pass
    later): every read opens a connection, so every read needs the name's address."""
    async def version(_: web.Request) -> web.Response:
        return web.json_response({"current": current}, headers={"Connection": "close"})
    app = web.Application()
    app.router.add_get("/mayachain/version", version)
    return app


@pytest.fixture
async def node():
    """A node's REST server on 127.0.0.1 (its "ClusterIP"), and its port."""
    runner = web.AppRunner(version_app("1.112.0"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield runner, port
    await runner.cleanup()


async def test_a_name_is_looked_up_once_per_cache_period_not_at_every_pass(node, clock):
    _, port = node
    resolver = Resolver("127.0.0.1")
    url = f"http://mayanode.node-a.svc:{port}/mayachain/version"
    async with node_api_session(limit=8, resolver=resolver) as session:
        for _ in range(4):                                   # four passes, 30 s apart
            assert await fetch_json(session, url, 2.0) == {"current": "1.112.0"}
            clock.now += 30
        assert resolver.lookups == 1
        clock.now += NODE_API_DNS_CACHE_SECONDS
        await fetch_json(session, url, 2.0)
        assert resolver.lookups == 2
    plain = Resolver("127.0.0.1")                             # aiohttp's default: a lookup at every pass
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=plain)) as session:
        for _ in range(4):
            await fetch_json(session, url, 2.0)
            clock.now += 30
    assert plain.lookups == 4


async def test_an_address_that_does_not_answer_is_looked_up_again_at_the_next_read(node, clock):
    runner, port = node
    resolver = Resolver("127.0.0.1")
    url = f"http://mayanode.node-a.svc:{port}/mayachain/version"
    async with node_api_session(limit=8, resolver=resolver) as session:
        await fetch_json(session, url, 2.0)
        # The Service is re-created: its old address answers no more, its new one does.
        await runner.cleanup()
        moved = web.AppRunner(version_app("1.113.0"))
        await moved.setup()
        await web.TCPSite(moved, "127.0.0.2", port).start()
        resolver.address = "127.0.0.2"
        try:
            with pytest.raises(EndpointFailure) as failure:
                await fetch_json(session, url, 2.0)           # the cached address: nothing there now
            assert failure.value.reason == "Unreachable"
            assert await fetch_json(session, url, 2.0) == {"current": "1.113.0"}
            assert resolver.lookups == 2
        finally:
            await moved.cleanup()
