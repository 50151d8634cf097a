"""HTTP side of the mocknet: `/ns/{namespace}/mayachain/…` (REST) and `/ns/{namespace}/rpc/…` (CometBFT)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from mayanode_operator import chainkeys

from . import render, rules
from .model import ACTIVE, NodeProcess

if TYPE_CHECKING:
    from .network import Mocknet

NO_ENDPOINTS_BODY = 'no endpoints available for service "mayanode"\n'
GARBAGE_BODY = b'{"result": {"sync_info": <html><body>502 Bad Gateway</body></html>'
NESTED_BODY = b"[" * 100_000 + b"]" * 100_000      # 200 KB of JSON that json.loads cannot take
HUGE_BODY_BYTES = 8 * 1024 * 1024
HUGE_CHUNK = b"A" * 65536

Handler = Callable[["Mocknet", web.Request, NodeProcess], Awaitable[web.StreamResponse]]


def build_app(net: Mocknet) -> web.Application:
    app = web.Application()
    app.router.add_get("/ns/{namespace}/mayachain/{route:.*}", _namespaced(net, _rest))
    app.router.add_get("/ns/{namespace}/rpc/{route:.*}", _namespaced(net, _rpc))
    # A public full node outside the cluster (not a validator), always up: what operators point a
    # restore's double-sign guard at while both the old and the new node are down.
    app.router.add_get("/public/mayachain/{route:.*}", _public(net, _rest))
    app.router.add_get("/public/rpc/{route:.*}", _public(net, _rpc))
    return app


PUBLIC_NAMESPACE = "public"


def _public(net: Mocknet, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def serve(request: web.Request) -> web.StreamResponse:
        versions = net.network_versions()
        full_node = NodeProcess(instance_id="public-full-node", namespace=PUBLIC_NAMESPACE, node_address="",
                                cons_pubkey_b64="", validator_address="",
                                version=versions.current if versions else "", started_at=float("-inf"),
                                start_height=0, last_signed_height=0)
        return await handler(net, request, full_node)

    return serve


def _namespaced(net: Mocknet, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def serve(request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        failure = net.failures.get(namespace)
        if failure == "down":
            return _drop_connection(request)
        if failure == "garbage":
            return web.Response(body=GARBAGE_BODY, content_type="application/json")
        if failure == "huge":
            return await _huge_response(request)
        if failure == "nested":
            return web.Response(body=NESTED_BODY, content_type="application/json")
        process = net.serving_process(namespace)
        if process is None:
            return web.Response(status=503, text=NO_ENDPOINTS_BODY)
        return await handler(net, request, process)

    return serve


def _drop_connection(request: web.Request) -> web.StreamResponse:
    # A node that is down: the connection closes without an HTTP answer (the response below is
    # never sent because the transport is already gone).
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=503)


async def _huge_response(request: web.Request) -> web.StreamResponse:
    # Chunked, with no Content-Length, so only a client that caps what it reads is protected.
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        await response.write(b'{"padding":"')
        for _ in range(HUGE_BODY_BYTES // len(HUGE_CHUNK)):
            await response.write(HUGE_CHUNK)
        await response.write(b'"}')
        await response.write_eof()
    except (ConnectionResetError, ConnectionError):
        pass  # the client stopped reading, as a careful client should
    return response


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


# --- REST -------------------------------------------------------------------------------------

async def _rest(net: Mocknet, request: web.Request, process: NodeProcess) -> web.StreamResponse:
    parts = [p for p in request.match_info["route"].split("/") if p]
    height = net.height
    versions = net.network_versions()
    min_join = versions.next if versions else None

    def account_json(address: str) -> web.Response:
        if not chainkeys.is_valid_node_address(address, net.network):
            return _json(render.cosmos_error(3, f"invalid node address: {address}"), status=400)
        account = net.nodes.get(address)
        if account is None:
            return _json(render.cosmos_error(5, f"node account {address} not found"), status=404)
        return _json(render.node_account(account, rules.preflight(account, min_join, height)))

    match parts:
        case ["version"]:
            return _json(render.version(versions, process.version))
        case ["nodes"] | ["nodeaccounts"]:
            accounts = net.nodes.values()
            return _json([render.node_account(a, rules.preflight(a, min_join, height)) for a in accounts])
        case ["node", address] | ["nodeaccount", address]:
            return account_json(address)
        case ["mimir"]:
            return _json(net.mimirs())
        case ["mimir", "nodes_all"]:
            return _json(render.mimir_nodes_all(net.node_mimirs))
        case ["mimir", "key", key]:
            return _json(net.mimirs().get(key.upper(), -1))
        case ["lastblock"]:
            return _json(render.lastblock(net.external_chains, net.namespace_height(process.namespace)))
        case ["inbound_addresses"]:
            return _json(render.inbound_addresses(net.active_vault, net.mimirs(), height))
        case ["vaults", "asgard"]:
            return _json([render.vault(v) for v in reversed(net.current_vaults())])
    return _json(render.cosmos_error(12, "Not Implemented"), status=501)


# --- RPC --------------------------------------------------------------------------------------

async def _rpc(net: Mocknet, request: web.Request, process: NodeProcess) -> web.StreamResponse:
    route = request.match_info["route"].strip("/")
    if route == "status":
        return _rpc_status(net, process)
    if route == "block":
        return _rpc_block(net, request, process)
    return web.Response(status=404, text="404 page not found\n")


def _rpc_status(net: Mocknet, process: NodeProcess) -> web.Response:
    latest = net.block(net.namespace_height(process.namespace))
    earliest = net.block(net.earliest_height)
    assert latest is not None and earliest is not None  # namespace_height stays within history
    account = net.nodes.get(process.node_address)
    is_validator = account is not None and account.status == ACTIVE
    body = render.rpc_status(
        chain_id=net.chain_id,
        node_id=process.validator_address.lower(),  # the sandbox has no p2p key; any stable 40-hex id
        moniker=process.namespace,
        latest=latest,
        earliest=earliest,
        catching_up=net.is_catching_up(process),
        validator_address=process.validator_address,
        pubkey_b64=process.cons_pubkey_b64,
        voting_power=100 if is_validator else 0,
    )
    return _json(body)


def _rpc_block(net: Mocknet, request: web.Request, process: NodeProcess) -> web.Response:
    top = net.namespace_height(process.namespace)
    raw = request.query.get("height", "").strip('"')
    if raw == "":
        height = top
    else:
        try:
            height = int(raw)
        except ValueError:
            data = f"error converting http params to arguments: invalid height {raw!r}"
            return _json(render.rpc_error(-32602, "Invalid params", data), status=500)
    if height <= 0:
        return _json(render.rpc_error(-32603, "Internal error", "height must be greater than 0"), status=500)
    if height > top:
        data = f"height {height} must be less than or equal to the current blockchain height {top}"
        return _json(render.rpc_error(-32603, "Internal error", data), status=500)
    block = net.block(height)
    if block is None:
        data = f"height {height} is not available, lowest height is {net.earliest_height}"
        return _json(render.rpc_error(-32603, "Internal error", data), status=500)
    return _json(render.rpc_block(block, net.block(height - 1), net.chain_id))
