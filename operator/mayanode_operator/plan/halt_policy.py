"""Which operator action waits during which network halt, per `spec.haltPolicy`. Pure.

Every facet or state machine that acts on a node asks the same question before acting:

    halt = blocking_halt(spec.halt_policy, HaltAction.RESTORE, status["network"]["halts"], force=spec.force)
    if halt is not None:
        ...wait, and say so: waiting_message(HaltAction.RESTORE, halt)

`halts` may be the observed `Halt` snapshots or the `status.network.halts` entries (dicts with
`kind`, `key`, `chain`). The answer is deterministic: the first blocking halt in (kind, chain, key)
order, so a condition message does not flap between two halts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..api.mayanode import HaltAction, HaltPolicy
from ..observe.snapshot import Halt

HaltLike = Halt | Mapping[str, Any]


def as_halt(item: HaltLike) -> Halt:
    """A status entry (`{"kind", "key", "chain"}`) or a snapshot, as a snapshot."""
    if isinstance(item, Halt):
        return item
    return Halt(kind=str(item.get("kind") or ""), key=str(item.get("key") or ""),
                chain=(str(item["chain"]) if item.get("chain") else None))


def blocking_halts(policy: HaltPolicy, action: HaltAction | str, halts: Iterable[HaltLike] | None,
                   *, force: bool = False) -> tuple[Halt, ...]:
    """Every halt in effect that holds `action` back under `policy`, sorted (empty: go ahead)."""
    if force:
        return ()
    found = [as_halt(h) for h in halts or ()]
    waiting = set(policy.blocking(HaltAction(action), [h.kind for h in found]))
    return tuple(sorted((h for h in found if h.kind in waiting), key=lambda h: (h.kind, h.chain or "", h.key)))


def blocking_halt(policy: HaltPolicy, action: HaltAction | str, halts: Iterable[HaltLike] | None,
                  *, force: bool = False) -> Halt | None:
    """The halt that holds `action` back, or None when the action may go ahead (always None when forced)."""
    blocking = blocking_halts(policy, action, halts, force=force)
    return blocking[0] if blocking else None


def describe(halt: Halt) -> str:
    where = f"on {halt.chain}" if halt.chain else "network-wide"
    return f"{halt.kind} halt {where} ({halt.key})"


def waiting_message(action: HaltAction | str, halt: Halt, *, more: int = 0) -> str:
    """What a condition or an event says while an action waits for a halt."""
    extra = f" and {more} more" if more else ""
    field = _POLICY_FIELD[HaltAction(action)]
    return (f"{HaltAction(action).value} waits: {describe(halt)}{extra} is in effect and "
            f"spec.haltPolicy.{field} lists {halt.kind}; it goes ahead when the halt ends")


_POLICY_FIELD = {
    HaltAction.RESTORE: "restore",
    HaltAction.UPGRADE: "upgrade",
    HaltAction.BACKUP: "backup",
    HaltAction.ANNOUNCE_IP: "announceIP",
    HaltAction.MIMIR_VOTE: "mimirVotes",
    HaltAction.NODE_ACTION: "nodeActions",
}
