"""A second baseline: the cheapest kopf operator that reads what the operator reads on an idle pass.

    python bench/polling_kopf.py --kubeconfig PATH

Like bench/bare_kopf.py (cluster-wide, standalone, no writes), plus, for each MayaNode it sees, a poll every
`spec.observe.intervalSeconds` (±10 %, as the operator spreads its passes): a GET of the MayaNode from the API server,
then the six node-API routes an idle pass reads, as the operator reads them (the five REST routes one after another
over one connection: `/mayachain/node/<address>`, `/mayachain/version`, `/mayachain/mimir`,
`/mayachain/inbound_addresses`, `/mayachain/vaults/asgard`; the RPC's `/status` beside them), each answer parsed as
JSON and dropped. No validation, no status, no decisions: the floor under any operator that watches these nodes by
polling them. `User-Agent: polling-kopf/…`.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import aiohttp
import kopf

from bare_kopf import GROUP, VERSION, ignore_events, run

registry = kopf.OperatorRegistry()
SERVER: dict[str, str] = {}
POLLERS: dict[tuple[str, str], asyncio.Task[None]] = {}
SESSIONS: dict[str, aiohttp.ClientSession] = {}


def session() -> aiohttp.ClientSession:
    if "http" not in SESSIONS:
        SESSIONS["http"] = aiohttp.ClientSession(headers={"User-Agent": f"polling-kopf/{kopf.__version__}"})
    return SESSIONS["http"]


@kopf.on.login(registry=registry)
async def login(**_: object) -> kopf.AiohttpSession:
    kopf_session = aiohttp.ClientSession(headers={"User-Agent": f"polling-kopf/{kopf.__version__}"})
    return kopf.AiohttpSession(server=SERVER["url"], aiohttp_session=kopf_session)


async def get_json(url: str) -> Any:
    try:
        async with session().get(url, headers={"Accept": "application/json"},
                                 timeout=aiohttp.ClientTimeout(total=5)) as response:
            return json.loads(await response.read())
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


async def poll(namespace: str, name: str, spec: dict[str, Any]) -> None:
    api = spec.get("api") or {}
    rest, rpc = str(api.get("rest", "")).rstrip("/"), str(api.get("rpc", "")).rstrip("/")
    address = spec.get("nodeAddress") or ""
    interval = float((spec.get("observe") or {}).get("intervalSeconds") or 30)
    mayanode = f"{SERVER['url']}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/mayanodes/{name}"
    rest_routes = [f"{rest}/mayachain/node/{address}", f"{rest}/mayachain/version", f"{rest}/mayachain/mimir",
                   f"{rest}/mayachain/inbound_addresses", f"{rest}/mayachain/vaults/asgard"]
    while True:
        await get_json(mayanode)
        await asyncio.gather(get_in_turn(rest_routes), get_json(f"{rpc}/status"))
        await asyncio.sleep(interval * (0.9 + 0.2 * random.random()))


async def get_in_turn(urls: list[str]) -> None:
    """One after another, over one connection, as the operator reads the REST routes (the cheaper way)."""
    for url in urls:
        await get_json(url)


@kopf.on.event(GROUP, VERSION, "mayanodes", registry=registry)
async def mayanode_seen(event: dict[str, Any], body: kopf.Body, **_: object) -> None:
    key = (body.metadata.namespace or "", body.metadata.name or "")
    if event.get("type") == "DELETED":
        task = POLLERS.pop(key, None)
        if task is not None:
            task.cancel()
    elif key not in POLLERS:
        POLLERS[key] = asyncio.create_task(poll(*key, dict(body.get("spec") or {})))


ignore_events(registry, ("nodebackups", "noderestores"))

if __name__ == "__main__":
    run(registry, SERVER)
