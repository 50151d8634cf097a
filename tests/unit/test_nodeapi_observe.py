"""`NodeApi.observe` over real HTTP: the REST routes go one after another over one connection (a node's server
closes an idle one after 10 s, so concurrent requests would each open a connection at every pass), the RPC beside
them; after a timeout, the REST routes not yet asked are not."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from mayanode_operator.observe.nodeapi import NodeApi

ADDRESS = "maya1node"
STATUS = {"result": {"node_info": {"network": "mayachain-mainnet-v1"},
                     "sync_info": {"latest_block_height": "100", "catching_up": False},
                     "validator_info": {"address": "ABC"}}}
ANSWERS = {
    "/mayachain/version": {"current": "1.112.0", "next": "1.112.0", "querier": "1.112.0"},
    "/mayachain/mimir": {"HALTCHURNING": 0},
    "/mayachain/inbound_addresses": [{"chain": "BTC", "halted": False}],
    "/mayachain/vaults/asgard": [{"pub_key": "mayapub1vault", "status": "ActiveVault", "block_height": 90}],
    f"/mayachain/node/{ADDRESS}": {"node_address": ADDRESS, "status": "Active"},
    "/status": STATUS,
}


class NodeServer:
    """A node's REST and RPC servers on two ports; what was asked, over which client connection."""

    def __init__(self, slow: frozenset[str] = frozenset(), delay: float = 0.0, answers: dict | None = None) -> None:
        self.slow, self.delay = slow, delay
        self.answers = {**ANSWERS, **(answers or {})}
        self.asked: list[tuple[str, object]] = []
        self.runners: list[web.AppRunner] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.asked.append((request.path, request.transport.get_extra_info("peername") if request.transport else None))
        if request.path in self.slow:
            await asyncio.sleep(self.delay)
        return web.json_response(self.answers[request.path])

    async def start(self) -> tuple[str, str]:
        urls = []
        for _ in ("rest", "rpc"):
            app = web.Application()
            app.router.add_get("/{path:.*}", self.handle)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.runners.append(runner)
            urls.append(f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")
        return urls[0], urls[1]

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


@pytest.fixture
async def node():
    servers: list[NodeServer] = []

    async def start(**kwargs) -> tuple[NodeServer, str, str]:
        server = NodeServer(**kwargs)
        servers.append(server)
        return (server, *await server.start())
    yield start
    for server in servers:
        await server.stop()


async def test_the_rest_routes_share_one_connection_and_the_rpc_has_its_own(node):
    server, rest, rpc = await node()
    async with aiohttp.ClientSession() as session:
        observed = await NodeApi(session, rest, rpc, timeout=5).observe(ADDRESS)
    assert observed.errors == ()
    assert observed.account.status == "Active" and observed.chain.height == 100
    assert observed.network.current_version == "1.112.0" and observed.network.vault.pub_key == "mayapub1vault"
    rest_connections = {peer for path, peer in server.asked if path != "/status"}
    assert len([path for path, _ in server.asked if path != "/status"]) == 5 and len(rest_connections) == 1
    assert {peer for path, peer in server.asked if path == "/status"}.isdisjoint(rest_connections)


async def test_after_a_timeout_the_rest_routes_not_yet_asked_are_not(node):
    server, rest, rpc = await node(slow=frozenset({"/mayachain/version"}), delay=1.2)
    async with aiohttp.ClientSession() as session:
        started = asyncio.get_running_loop().time()
        observed = await NodeApi(session, rest, rpc, timeout=0.4).observe(ADDRESS)
        elapsed = asyncio.get_running_loop().time() - started
    assert elapsed < 1.0                                    # one timeout (0.4 s), not one per route
    assert observed.account is not None and observed.chain.height == 100      # asked before, and the RPC beside
    errors = {error.endpoint: error for error in observed.errors}
    assert set(errors) == {"version", "mimir", "inbound", "asgard"}
    assert all(error.reason == "Timeout" for error in errors.values())
    assert "within 0.4s" in errors["version"].message
    assert errors["asgard"].message.startswith(f"{rest}/mayachain/vaults/asgard not asked: ")
    assert "/mayachain/version" in errors["asgard"].message
    asked = [path for path, _ in server.asked]
    assert "/mayachain/mimir" not in asked and "/mayachain/vaults/asgard" not in asked


async def test_a_failure_other_than_a_timeout_leaves_the_other_routes_asked(node):
    server, rest, rpc = await node(answers={"/mayachain/mimir": ["not", "an", "object"]})
    async with aiohttp.ClientSession() as session:
        observed = await NodeApi(session, rest, rpc, timeout=5).observe(ADDRESS)
    assert [(error.endpoint, error.reason) for error in observed.errors] == [("mimir", "InvalidResponse")]
    assert observed.network.inbound and observed.network.vault is not None
