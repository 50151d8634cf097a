"""Which network halts are in effect, from mimir values and inbound_addresses.

Mimir halt keys hold the block height at which the halt began (0 = off). `NODEPAUSECHAINGLOBAL`
holds the height until which a node-requested pause lasts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..observe.snapshot import Halt, InboundChain

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^HALTTRADING$"), "Trading"),
    (re.compile(r"^HALT(?P<chain>[A-Z0-9]+)TRADING$"), "Trading"),
    (re.compile(r"^HALTCHAINGLOBAL$"), "Chain"),
    (re.compile(r"^SOLVENCYHALT(?P<chain>[A-Z0-9]+)CHAIN$"), "Solvency"),
    (re.compile(r"^HALT(?P<chain>[A-Z0-9]+)CHAIN$"), "Chain"),
    (re.compile(r"^HALTSIGNING$"), "Signing"),
    (re.compile(r"^HALTSIGNING(?P<chain>[A-Z0-9]+)$"), "Signing"),
    (re.compile(r"^PAUSELP$"), "LP"),
    (re.compile(r"^PAUSELP(?P<chain>[A-Z0-9]+)$"), "LP"),
    (re.compile(r"^HALTCHURNING$"), "Churning"),
)
HALT_KINDS = ("Trading", "Chain", "Signing", "Solvency", "LP", "Churning", "NodePause")


def classify_mimir_key(key: str) -> Halt | None:
    upper = key.upper()
    for pattern, kind in _PATTERNS:
        match = pattern.match(upper)
        if match:
            return Halt(kind=kind, key=upper, chain=match.groupdict().get("chain"))
    return None


def halts_in_effect(
    mimir: Iterable[tuple[str, int]], inbound: Iterable[InboundChain], height: int | None
) -> tuple[Halt, ...]:
    found: dict[tuple[str, str | None], Halt] = {}
    for key, value in mimir:
        if key.upper() == "NODEPAUSECHAINGLOBAL":
            if height is not None and value > height:
                found[("NodePause", None)] = Halt("NodePause", "NODEPAUSECHAINGLOBAL")
            continue
        halt = classify_mimir_key(key)
        if halt and value > 0 and (height is None or value <= height):
            found.setdefault((halt.kind, halt.chain), halt)
    for chain in inbound:
        if chain.halted:
            found.setdefault(("Chain", chain.chain), Halt("Chain", f"inbound:{chain.chain}:halted", chain.chain))
        if chain.chain_trading_paused:
            found.setdefault(("Trading", chain.chain), Halt("Trading", f"inbound:{chain.chain}:trading", chain.chain))
        if chain.chain_lp_actions_paused:
            found.setdefault(("LP", chain.chain), Halt("LP", f"inbound:{chain.chain}:lp", chain.chain))
        if chain.global_trading_paused:
            found.setdefault(("Trading", None), Halt("Trading", "inbound:global:trading"))
    return tuple(sorted(found.values(), key=lambda h: (h.kind, h.chain or "", h.key)))


def describe_halt(halt: Halt) -> str:
    return f"{halt.kind} halted on {halt.chain}" if halt.chain else f"{halt.kind} halted network-wide"
