"""The double-sign guards of a NodeRestore. Pure.

- `high_water_mark`: the priv_validator_state.json written to the restored node is the highest of its inputs
  (the backup, the target volume, the old node's volume read after it stopped, and the chain tip once the old key is
  proven silent). It never moves backwards.
- `advance_silence`: the consensus key must have signed none of `silentBlocks` consecutive blocks *after* the height
  at which the last pod that may sign with it was gone (the stop height).
- `decide_lock`: two MayaNodes in one cluster never hold the same consensus key (a Lease records the holder; the
  MayaNodes whose observed consensus key is this one are scanned too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ..chainkeys import SignState

# Source names, in the order a tie is attributed (the first one that reaches the maximum wins).
BACKUP, TARGET_VOLUME, OLD_NODE_VOLUME, CHAIN_TIP = "Backup", "TargetVolume", "OldNodeVolume", "ChainTip"
SOURCE_ORDER = (BACKUP, TARGET_VOLUME, OLD_NODE_VOLUME, CHAIN_TIP)
PRECOMMIT_STEP = 3


@dataclass(frozen=True)
class HighWaterMark:
    state: SignState
    source: str

    def to_status(self) -> dict[str, object]:
        return {"height": self.state.height, "round": self.state.round, "step": self.state.step,
                "source": self.source}


def chain_tip_state(tip_height: int) -> SignState:
    """The sign state of a validator that precommitted the tip: it may sign nothing at or below the tip again.

    Once the old key is proven silent for `silentBlocks` blocks after it stopped, every height it may have signed
    (the last one it committed, and one more in flight that never reached a commit) is below the tip, so nothing the
    restored node signs can conflict with it."""
    return SignState(max(0, int(tip_height)), 0, PRECOMMIT_STEP)


def high_water_mark(inputs: Mapping[str, SignState | None]) -> HighWaterMark:
    """The highest (height, round, step) among the inputs that are known; ties go to the earlier source."""
    best: HighWaterMark | None = None
    ordered = [s for s in SOURCE_ORDER if s in inputs] + sorted(s for s in inputs if s not in SOURCE_ORDER)
    for source in ordered:
        state = inputs[source]
        if state is None:
            continue
        if best is None or state > best.state:
            best = HighWaterMark(state, source)
    return best or HighWaterMark(SignState(0, 0, 0), BACKUP)


def fold_volume_state(states: Mapping[str, SignState | None],
                      volume: SignState | None) -> dict[str, SignState | None]:
    """The inputs with the sign state read from the target's volume just before the mark is written: when it is above
    the mark of the recorded inputs (the node's own pods ran after the files were written and signed), it raises the
    TargetVolume input to it, so the mark written never moves below what the volume says was signed. Otherwise the
    inputs stay as they are (the same volume read again, or the mark this restore wrote there itself)."""
    out = dict(states)
    if volume is not None and volume > high_water_mark(states).state:
        out[TARGET_VOLUME] = volume
    return out


def volume_key_problem(guarded: str | None, on_volume: str | None) -> str | None:
    """Why the node must not start with the key on its volume (None: it is the one whose guard passed)."""
    if not guarded:
        return "no consensus key was recorded by the guard"
    if on_volume == guarded:
        return None
    found = f"consensus key {on_volume}" if on_volume else "no readable consensus key"
    return (f"the node's volume holds {found}, not {guarded} whose double-sign guard passed: something else wrote the "
            f"node's files since (another NodeRestore, or a hand-made change)")


# --------------------------------------------------------------------------------------------------
# Silence of the consensus key on chain
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Silence:
    """`window_start`: the last height at which the key may have signed (the stop height, or a block that showed
    its signature). `checked_to`: every block from window_start + 1 to here was read and does not carry it."""

    window_start: int
    checked_to: int

    def silent_for(self) -> int:
        return max(0, self.checked_to - self.window_start)

    def passed(self, silent_blocks: int) -> bool:
        return self.silent_for() >= silent_blocks


def start_silence(stop_height: int) -> Silence:
    return Silence(window_start=stop_height, checked_to=stop_height)


def heights_to_read(silence: Silence, tip: int, limit: int = 50) -> list[int]:
    """The next blocks to read: consecutive, after what is checked, up to the tip."""
    first = silence.checked_to + 1
    return list(range(first, min(tip, first + limit - 1) + 1))


def advance_silence(silence: Silence, validator_address: str,
                    blocks: Mapping[int, Sequence[str] | None]) -> tuple[Silence, int | None]:
    """Walk the blocks after `checked_to` in order (stopping at the first one not read); a block whose commit carries
    the address restarts the window there. Returns the new state and the last height seen signed (or None)."""
    address = validator_address.upper()
    window, checked, seen = silence.window_start, silence.checked_to, None
    height = checked + 1
    while height in blocks and blocks[height] is not None:
        if address in {str(a).upper() for a in blocks[height] or ()}:
            window, seen = height, height
        checked = height
        height += 1
    return Silence(window, checked), seen


# --------------------------------------------------------------------------------------------------
# The consensus-key lock
# --------------------------------------------------------------------------------------------------
LockAction = Literal["create", "keep", "transfer", "takeover", "refuse"]


@dataclass(frozen=True)
class NodeView:
    """A MayaNode in the cluster, as the lock sees it."""

    key: str                          # namespace/name
    suspended: bool
    cons_pub_key: str | None          # status.node.validatorConsPubKey (observed on chain)
    node_address: str | None = None


@dataclass(frozen=True)
class LeaseView:
    exists: bool
    holder: str | None = None         # namespace/name of a MayaNode
    cons_pub_key: str | None = None


@dataclass(frozen=True)
class LockDecision:
    action: LockAction
    holder: str | None                # who holds it before (refuse: who blocks)
    reason: str
    message: str

    @property
    def refused(self) -> bool:
        return self.action == "refuse"


def decide_lock(cons_pub_key: str, target: str, handoff_source: str | None, lease: LeaseView,
                nodes: Sequence[NodeView]) -> LockDecision:
    """May `target` hold `cons_pub_key`? `nodes` are the cluster's MayaNodes (the lease's holder is looked up in it:
    absent means that MayaNode no longer exists)."""
    by_key = {n.key: n for n in nodes}
    for node in sorted(nodes, key=lambda n: n.key):
        if node.key in (target, handoff_source) or node.suspended or node.cons_pub_key != cons_pub_key:
            continue
        return LockDecision(
            "refuse", node.key, "KeyInUse",
            f"MayaNode {node.key} runs with consensus key {cons_pub_key} (it is not suspended): two nodes with one "
            f"key double-sign. Stop it first (`kubectl -n {node.key.split('/')[0]} patch mayanode "
            f"{node.key.split('/')[1]} --type merge -p '{{\"spec\":{{\"suspend\":true}}}}'`) or restore as a hand-off "
            f"(spec.doubleSignGuard.oldNode: {node.key})")
    if not lease.exists or not lease.holder:
        return LockDecision("create", None, "KeyLockFree", f"no MayaNode holds consensus key {cons_pub_key}")
    holder = lease.holder
    if holder == target:
        return LockDecision("keep", holder, "KeyLockHeld", f"{target} already holds consensus key {cons_pub_key}")
    if handoff_source and holder == handoff_source:
        return LockDecision("transfer", holder, "KeyLockTransferred",
                            f"hand-off: consensus key {cons_pub_key} moves from {holder} to {target}")
    holder_node = by_key.get(holder)
    if holder_node is None:
        return LockDecision("takeover", holder, "KeyLockTakenOver",
                            f"consensus key {cons_pub_key} was held by {holder}, which no longer exists")
    if holder_node.suspended:
        return LockDecision("takeover", holder, "KeyLockTakenOver",
                            f"consensus key {cons_pub_key} was held by {holder}, which is suspended; it cannot be "
                            f"brought back up while {target} holds the key")
    return LockDecision(
        "refuse", holder, "KeyLocked",
        f"consensus key {cons_pub_key} is held by MayaNode {holder} (not suspended). Suspend or delete it first, or "
        f"restore as a hand-off (spec.doubleSignGuard.oldNode: {holder})")


def may_start_with_key(node: str, lease: LeaseView, existing: set[str]) -> tuple[bool, str | None]:
    """May MayaNode `node`, whose key the lease describes, be scaled up? Not when another MayaNode that still exists
    holds the key (it was restored or migrated there)."""
    if not lease.exists or not lease.holder or lease.holder == node:
        return True, None
    if lease.holder not in existing:
        return True, None
    return False, lease.holder
