"""This node's own mimir votes, from `/mayachain/mimir/nodes_all` filtered by signer."""

from __future__ import annotations

from typing import Any

import aiohttp

from .nodeapi import EndpointFailure, fetch_json


def parse_node_votes(doc: Any, signer: str) -> dict[str, int]:
    """`{"mimirs": [{"key", "value", "signer"}]}` → this signer's votes, keys upper-case."""
    if not isinstance(doc, dict) or (doc and "mimirs" not in doc):
        items: Any = None
    else:
        items = doc.get("mimirs") or []       # an empty answer may carry "mimirs": null
    if not isinstance(items, list):
        raise EndpointFailure("InvalidResponse", "/mayachain/mimir/nodes_all: expected {\"mimirs\": [...]}")
    votes: dict[str, int] = {}
    for item in items:
        if not isinstance(item, dict) or item.get("signer") != signer:
            continue
        key, value = item.get("key"), item.get("value")
        try:
            votes[str(key).upper()] = int(value)
        except (TypeError, ValueError):
            raise EndpointFailure("InvalidResponse",
                                  f"/mayachain/mimir/nodes_all: vote {str(key)[:64]} is not an integer") from None
    return dict(sorted(votes.items()))


async def fetch_node_votes(session: aiohttp.ClientSession, rest_url: str, signer: str,
                           timeout: float) -> dict[str, int]:
    """Raises EndpointFailure when the route gives no usable answer."""
    doc = await fetch_json(session, f"{rest_url.rstrip('/')}/mayachain/mimir/nodes_all", timeout)
    return parse_node_votes(doc, signer)
