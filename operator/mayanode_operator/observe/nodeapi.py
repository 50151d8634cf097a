"""Read-only client of a MAYANode's HTTP API (REST on 1317, CometBFT RPC on 27147).

Every route is fetched with a timeout and a body-size cap; a failure becomes an EndpointError
naming the route and the cause, never an exception that escapes the reconcile.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .snapshot import (
    ChainStatus,
    EndpointError,
    InboundChain,
    Jail,
    NetworkObservation,
    NodeAccount,
    NodeApiObservation,
    Preflight,
    Vault,
)

# A node's API is a Service name (`mayanode.<ns>.svc`), whose ClusterIP lives as long as the Service. aiohttp looks a
# name up again after 10 s by default: at every pass, and in a pod (`ndots:5`) that is up to six DNS queries per
# name while the search domains are tried. An address that stops answering is forgotten at once
# (`forget_address`), so a re-created Service is found again at the next pass.
NODE_API_DNS_CACHE_SECONDS = 300
NODE_API_DNS_CACHE_ENTRIES = 65536          # aiohttp's default (1,000) is two ports of 500 nodes


def node_api_session(limit: int, resolver: aiohttp.abc.AbstractResolver | None = None) -> aiohttp.ClientSession:
    """The session every node-API read goes through (`resolver`: aiohttp's default)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(
        limit=limit, ttl_dns_cache=NODE_API_DNS_CACHE_SECONDS, dns_cache_max_size=NODE_API_DNS_CACHE_ENTRIES,
        resolver=resolver))


def forget_address(session: aiohttp.ClientSession, url: str) -> None:
    """The address `url`'s name was looked up to is not used again: the node did not answer there."""
    connector = session.connector
    target = urlsplit(url)
    if isinstance(connector, aiohttp.TCPConnector) and target.hostname:
        connector.clear_dns_cache(target.hostname, target.port or (443 if target.scheme == "https" else 80))


MAX_BODY_BYTES = 4 * 1024 * 1024   # the largest honest answer (all nodes, all mimirs) is far below


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class _VersionDoc(_Lenient):
    current: str = ""
    next: str = ""
    querier: str = ""


class _JailDoc(_Lenient):
    release_height: int = 0
    reason: str = ""


class _PreflightDoc(_Lenient):
    status: str = ""
    reason: str = ""
    code: int = 0


class _PubKeySetDoc(_Lenient):
    secp256k1: str = ""
    ed25519: str = ""


class _NodeDoc(_Lenient):
    node_address: str
    status: str
    bond: str = "0"
    slash_points: int = 0
    version: str = ""
    ip_address: str = ""
    validator_cons_pub_key: str = ""
    jail: _JailDoc | None = None
    preflight_status: _PreflightDoc | None = None
    requested_to_leave: bool = False
    forced_to_leave: bool = False
    signer_membership: list[str] | None = None
    pub_key_set: _PubKeySetDoc | None = None


class _SyncInfoDoc(_Lenient):
    latest_block_height: int
    catching_up: bool


class _ValidatorInfoDoc(_Lenient):
    address: str = ""


class _NodeInfoDoc(_Lenient):
    network: str = ""


class _StatusResultDoc(_Lenient):
    node_info: _NodeInfoDoc | None = None
    sync_info: _SyncInfoDoc
    validator_info: _ValidatorInfoDoc | None = None


class _StatusDoc(_Lenient):
    result: _StatusResultDoc


class _InboundDoc(_Lenient):
    chain: str
    halted: bool = False
    global_trading_paused: bool = False
    chain_trading_paused: bool = False
    chain_lp_actions_paused: bool = False


class _VaultDoc(_Lenient):
    pub_key: str
    status: str = ""
    block_height: int = 0
    membership: list[str] | None = Field(default=None)


class EndpointFailure(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


async def fetch_json(session: aiohttp.ClientSession, url: str, timeout: float) -> Any:
    """GET a JSON document, bounded in time and size."""
    return decode_json(url, await fetch_body(session, url, timeout))


def decode_json(url: str, body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):     # RecursionError: brackets nested 100,000 deep
        raise EndpointFailure("InvalidResponse", f"{url} did not answer JSON") from None


async def fetch_body(session: aiohttp.ClientSession, url: str, timeout: float) -> bytes:
    """GET a 2xx answer's body, bounded in time and size."""
    try:
        # aiohttp's own deadline (the whole request, the body included): cheaper than a second one around it.
        async with session.get(url, headers={"Accept": "application/json"},
                               timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            body = await _read_capped(response)
            if response.status == 404:
                raise EndpointFailure("NotFound", f"HTTP 404 from {url}")
            if response.status >= 400:
                raise EndpointFailure("HTTPError", f"HTTP {response.status} from {url}")
    except TimeoutError:
        forget_address(session, url)
        raise EndpointFailure("Timeout", f"no answer from {url} within {timeout:g}s") from None
    except aiohttp.ClientError as err:
        forget_address(session, url)
        raise EndpointFailure("Unreachable", f"{url}: {type(err).__name__}: {err}") from None
    return body


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    declared = response.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise EndpointFailure("TooLarge", f"{response.url} answered {declared} bytes (limit {MAX_BODY_BYTES})")
    if declared is not None and response.headers.get("Content-Encoding", "identity") == "identity":
        return await response.read()        # no more than the declared length (a compressed one could inflate)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise EndpointFailure("TooLarge", f"{response.url} answered more than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(model: type[BaseModel], doc: Any, what: str) -> Any:
    try:
        return model.model_validate(doc)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise EndpointFailure("InvalidResponse", f"{what}: unexpected shape at {where}: {first['msg']}") from None


def parse_version(doc: Any) -> _VersionDoc:
    return _parse(_VersionDoc, doc, "/mayachain/version")


def parse_node_account(doc: Any) -> NodeAccount:
    node: _NodeDoc = _parse(_NodeDoc, doc, "/mayachain/node")
    jail = node.jail if node.jail and (node.jail.release_height or node.jail.reason) else None
    return NodeAccount(
        address=node.node_address,
        status=node.status,
        bond=node.bond,
        slash_points=node.slash_points,
        version=node.version,
        ip_address=node.ip_address,
        validator_cons_pub_key=node.validator_cons_pub_key,
        jail=Jail(jail.release_height, jail.reason) if jail else None,
        preflight=Preflight(**node.preflight_status.model_dump()) if node.preflight_status else None,
        requested_to_leave=node.requested_to_leave,
        forced_to_leave=node.forced_to_leave,
        signer_membership=tuple(node.signer_membership or ()),
        secp256k1=node.pub_key_set.secp256k1 if node.pub_key_set else "",
    )


def parse_rpc_status(doc: Any) -> ChainStatus:
    status: _StatusDoc = _parse(_StatusDoc, doc, "RPC /status")
    info = status.result.validator_info
    return ChainStatus(
        height=status.result.sync_info.latest_block_height,
        catching_up=status.result.sync_info.catching_up,
        validator_address=info.address if info else "",
        chain_id=status.result.node_info.network if status.result.node_info else "",
    )


def parse_mimir(doc: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(doc, dict):
        raise EndpointFailure("InvalidResponse", "/mayachain/mimir: expected an object of KEY: value")
    pairs = []
    for key, value in doc.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise EndpointFailure("InvalidResponse", f"/mayachain/mimir: {key!s:.64} is not an integer")
        pairs.append((str(key).upper(), value))
    return tuple(sorted(pairs))


def parse_inbound(doc: Any) -> tuple[InboundChain, ...]:
    if not isinstance(doc, list):
        raise EndpointFailure("InvalidResponse", "/mayachain/inbound_addresses: expected a list")
    chains = [_parse(_InboundDoc, item, "/mayachain/inbound_addresses") for item in doc]
    return tuple(InboundChain(**chain.model_dump()) for chain in sorted(chains, key=lambda c: c.chain))


def parse_asgard(doc: Any) -> Vault | None:
    """The newest active Asgard vault: its key changes at every churn."""
    if not isinstance(doc, list):
        raise EndpointFailure("InvalidResponse", "/mayachain/vaults/asgard: expected a list")
    vaults = [_parse(_VaultDoc, item, "/mayachain/vaults/asgard") for item in doc]
    active = [vault for vault in vaults if vault.status in ("ActiveVault", "")] or vaults
    if not active:
        return None
    newest = max(active, key=lambda vault: (vault.block_height, vault.pub_key))
    return Vault(newest.pub_key, newest.block_height, tuple(sorted(newest.membership or ())))


class ParsedAnswers:
    """What the network-wide routes answered, parsed, by the exact bytes of the answer.

    Every node of a network answers `/mayachain/version`, `mimir`, `inbound_addresses` and `vaults/asgard` alike,
    and mostly as it did at the last pass: an answer seen before (by any node) is not decoded and validated again.
    On mainnet these are tens of KiB per pass and node. Only answers that parsed are kept (the parsed values are
    immutable), at most `max_entries` of at most `max_body` bytes each, the least recently used going first."""

    def __init__(self, max_entries: int = 16, max_body: int = 256 * 1024) -> None:
        self.max_entries, self.max_body = max_entries, max_body
        self._parsed: dict[tuple[str, bytes], Any] = {}

    def parse(self, route: str, url: str, body: bytes, parse: Any) -> Any:
        key = (route, body)
        if key in self._parsed:
            value = self._parsed.pop(key)
            self._parsed[key] = value           # most recently used last
            return value
        value = parse(decode_json(url, body))
        if len(body) <= self.max_body:
            self._parsed[key] = value
            while len(self._parsed) > self.max_entries:
                del self._parsed[next(iter(self._parsed))]
        return value

    def __len__(self) -> int:
        return len(self._parsed)


NETWORK_ANSWERS = ParsedAnswers()
NETWORK_ROUTES = frozenset({"version", "mimir", "inbound", "asgard"})
ROUTE_ORDER = ("version", "status", "mimir", "inbound", "asgard", "node")     # the order their errors are listed in


class NodeApi:
    """The routes one MayaNode reconcile reads, fetched concurrently.

    `network_rpc`: CometBFT RPC base URLs of other nodes of the same network (`spec.api.networkRpc`); their
    `/status` is read alongside the node's own, for the network's height (chosen by the status planner).
    """

    def __init__(self, session: aiohttp.ClientSession, rest_url: str, rpc_url: str, timeout: float,
                 network_rpc: Sequence[str] = ()) -> None:
        self._session = session
        self._rest = rest_url.rstrip("/")
        self._rpc = rpc_url.rstrip("/")
        self._timeout = timeout
        self._network_rpc = tuple(str(url).rstrip("/") for url in network_rpc)

    async def observe(self, node_address: str | None) -> NodeApiObservation:
        rest: list[tuple[str, str, Any]] = [
            ("version", f"{self._rest}/mayachain/version", parse_version),
            ("mimir", f"{self._rest}/mayachain/mimir", parse_mimir),
            ("inbound", f"{self._rest}/mayachain/inbound_addresses", parse_inbound),
            ("asgard", f"{self._rest}/mayachain/vaults/asgard", parse_asgard),
        ]
        if node_address:
            rest.insert(0, ("node", f"{self._rest}/mayachain/node/{node_address}", parse_node_account))
        rest_outcomes, status_outcome, *network_outcomes = await asyncio.gather(
            self._fetch_in_turn(rest), self._fetch(f"{self._rpc}/status", parse_rpc_status),
            *(self._fetch(f"{url}/status", parse_rpc_status) for url in self._network_rpc))
        by_route = dict(zip((name for name, _, _ in rest), rest_outcomes), status=status_outcome)
        results: dict[str, Any] = {}
        errors: list[EndpointError] = []
        for name in ROUTE_ORDER:
            if name not in by_route:
                continue
            value, failure = by_route[name]
            if failure is None:
                results[name] = value
            else:
                errors.append(EndpointError(name, failure.reason, failure.message))
        peers: list[ChainStatus] = []
        for value, failure in network_outcomes:
            if failure is None:
                peers.append(value)
            else:
                errors.append(EndpointError("networkRpc", failure.reason, failure.message))
        version = results.get("version")
        network = NetworkObservation(
            current_version=(version.current or None) if version else None,
            next_version=(version.next or None) if version else None,
            querier_version=(version.querier or None) if version else None,
            mimir=results.get("mimir", ()),
            inbound=results.get("inbound", ()),
            vault=results.get("asgard"),
        )
        return NodeApiObservation(
            network=network, account=results.get("node"), chain=results.get("status"), errors=tuple(errors),
            network_rpc=tuple(peers),
        )

    async def _fetch_in_turn(self, routes: Sequence[tuple[str, str, Any]]) -> list[tuple[Any, EndpointFailure | None]]:
        """The REST routes one after another, over one connection. A node's server closes a connection idle for
        10 s, so at every pass (30 s apart) each concurrent request would open a connection of its own: five
        connections to set up and tear down on both sides, for answers of a few KiB each. After a timeout the
        routes not yet asked are not: a node that did not answer one in time would keep each of them waiting as
        long."""
        outcomes: list[tuple[Any, EndpointFailure | None]] = []
        stalled: EndpointFailure | None = None
        for name, url, parse in routes:
            if stalled is not None:
                outcomes.append((None, EndpointFailure("Timeout", f"{url} not asked: {stalled.message}")))
                continue
            value, failure = await self._fetch(url, parse, route=name)
            if failure is not None and failure.reason == "Timeout":
                stalled = failure
            outcomes.append((value, failure))
        return outcomes

    async def _fetch(self, url: str, parse: Any, route: str = "") -> tuple[Any, EndpointFailure | None]:
        try:
            body = await fetch_body(self._session, url, self._timeout)
            if route in NETWORK_ROUTES:
                return NETWORK_ANSWERS.parse(route, url, body, parse), None
            return parse(decode_json(url, body)), None
        except EndpointFailure as failure:
            return None, failure

    async def signatures_at(self, height: int) -> tuple[str, ...]:
        """Validator addresses that signed the commit carried by block `height`."""
        doc = await fetch_json(self._session, f"{self._rpc}/block?height={height}", self._timeout)
        try:
            signatures = doc["result"]["block"]["last_commit"]["signatures"] or []
            return tuple(str(sig.get("validator_address") or "").upper() for sig in signatures)
        except (KeyError, TypeError, AttributeError):
            raise EndpointFailure("InvalidResponse", f"RPC /block?height={height}: unexpected shape") from None
