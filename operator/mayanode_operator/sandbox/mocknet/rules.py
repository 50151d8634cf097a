"""Pure chain rules of the mocknet: versions, preflight, mimir consensus and halts.

They mirror mayanode's keeper logic closely enough that an operator tested here behaves the same
against a real node; each function takes plain values and returns plain values.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .model import ACTIVE, NodeAccount

CHAINS = ("BTC", "ETH", "DASH", "KUJI", "THOR", "ARB")
PAUSE_CHAIN_BLOCKS = 720  # how long one node's pause-chain halts trading
NODE_PAUSE_MIMIR = "NODEPAUSECHAINGLOBAL"

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


def parse_version(version: str) -> tuple[int, int, int]:
    """`1.111.0` → (1, 111, 0). Unparseable versions sort lowest, as semver parsing failures do."""
    match = _VERSION_RE.match(version or "")
    if not match:
        return (0, 0, 0)
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch)


def has_super_majority(count: int, total: int) -> bool:
    return total > 0 and 0 <= count <= total and 3 * count >= 2 * total


@dataclass(frozen=True)
class NetworkVersions:
    current: str  # lowest version among Active nodes
    next: str     # highest version run by at least 2/3 of Active nodes: the minimum to join


def network_versions(active_versions: Iterable[str]) -> NetworkVersions | None:
    """None when there is no Active node (the caller decides what to show)."""
    versions = sorted(active_versions, key=parse_version)
    if not versions:
        return None
    total = len(versions)
    # Walk from the highest version down, counting nodes at that version or above (mayanode's
    # GetMinJoinVersion); the first to reach a super-majority is `next`.
    for index in range(total - 1, -1, -1):
        candidate = versions[index]
        at_or_above = sum(1 for v in versions if parse_version(v) >= parse_version(candidate))
        if has_super_majority(at_or_above, total):
            return NetworkVersions(current=versions[0], next=candidate)
    return NetworkVersions(current=versions[0], next=versions[0])  # pragma: no cover - index 0 always wins


def is_supported_binary(binary_version: str, network_current: str) -> bool:
    """A binary older than the network's major.minor panics with "Unsupported Version"."""
    return parse_version(binary_version)[:2] >= parse_version(network_current)[:2]


@dataclass(frozen=True)
class Preflight:
    status: str
    reason: str
    code: int


def preflight(account: NodeAccount, min_join_version: str | None, height: int) -> Preflight:
    """mayanode's NodeAccountPreflightCheck, in its order."""
    if account.forced_to_leave:
        return Preflight("Disabled", "node account has been banned", 1)
    if account.requested_to_leave:
        return Preflight("Standby", "node account has requested to leave", 1)
    if not is_valid_ip(account.ip_address):
        return Preflight("Standby", "node account has invalid registered IP address", 1)
    if not account.has_pub_key_set:
        return Preflight("Whitelisted", "node account has not registered their pubkey set", 1)
    if min_join_version and parse_version(account.version) < parse_version(min_join_version):
        reason = f"node account does not meet min version requirement: {account.version} vs {min_join_version}"
        return Preflight("Standby", reason, 1)
    if account.jail.release_height > height:
        reason = f"node account is jailed until block {account.jail.release_height}: {account.jail.reason}"
        return Preflight("Standby", reason, 1)
    return Preflight("Ready", "OK", 0)


def is_valid_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# --- mimir ------------------------------------------------------------------------------------

def effective_mimirs(
    admin: Mapping[str, int],
    node_votes: Mapping[tuple[str, str], int],
    active_nodes: Iterable[str],
) -> dict[str, int]:
    """Node votes win for a key when 2/3 of Active nodes agree on one value; otherwise the admin
    value stands. Votes of nodes that are not Active do not count."""
    active = set(active_nodes)
    tallies: dict[str, dict[int, int]] = {}
    for (signer, key), value in node_votes.items():
        if signer in active:
            tallies.setdefault(key, {}).setdefault(value, 0)
            tallies[key][value] += 1
    effective = dict(admin)
    for key, counts in tallies.items():
        for value, count in counts.items():
            if has_super_majority(count, len(active)):
                effective[key] = value
    return dict(sorted(effective.items()))


def is_height_halt(value: int | None, height: int) -> bool:
    """Halt mimirs hold the height the halt starts at: on when 0 < value <= height."""
    return value is not None and 0 < value <= height


def is_node_paused(mimirs: Mapping[str, int], height: int) -> bool:
    """NodePauseChainGlobal holds the height the pause lasts until."""
    return mimirs.get(NODE_PAUSE_MIMIR, 0) > height


def is_chain_halted(chain: str, mimirs: Mapping[str, int], height: int) -> bool:
    keys = ("HALTCHAINGLOBAL", f"HALT{chain}CHAIN", f"SOLVENCYHALT{chain}CHAIN")
    return any(is_height_halt(mimirs.get(k), height) for k in keys) or is_node_paused(mimirs, height)


def is_chain_signing_halted(chain: str, mimirs: Mapping[str, int], height: int) -> bool:
    keys = ("HALTSIGNING", f"HALTSIGNING{chain}")
    return any(is_height_halt(mimirs.get(k), height) for k in keys) or is_chain_halted(chain, mimirs, height)


def is_global_trading_paused(mimirs: Mapping[str, int], height: int) -> bool:
    return is_height_halt(mimirs.get("HALTTRADING"), height) or is_node_paused(mimirs, height)


@dataclass(frozen=True)
class InboundFlags:
    halted: bool
    global_trading_paused: bool
    chain_trading_paused: bool
    chain_lp_actions_paused: bool


def inbound_flags(chain: str, mimirs: Mapping[str, int], height: int) -> InboundFlags:
    halted = is_chain_halted(chain, mimirs, height)
    global_paused = is_global_trading_paused(mimirs, height)
    chain_trading = halted or is_height_halt(mimirs.get(f"HALT{chain}TRADING"), height)
    lp_paused = any(is_height_halt(mimirs.get(k), height) for k in ("PAUSELP", f"PAUSELP{chain}"))
    return InboundFlags(halted, global_paused, chain_trading, lp_paused)


def active_addresses(nodes: Iterable[NodeAccount]) -> list[str]:
    return [n.node_address for n in nodes if n.status == ACTIVE]
