"""Replica control of a MayaNode (`spec.suspend`, NodeRestores holding the node down). Pure.

- `spec.suspend: true` scales mayanode and bifrost to 0 and keeps them there (maintenance mode);
- `false` brings them back to 1, only when the operator had suspended them (a Deployment someone scaled to 0 by
  hand is left alone: the core reports it in WorkloadsReady), and only when no other MayaNode holds the node's
  consensus key (after a migration the old MayaNode must not come back);
- while a NodeRestore of the node runs, nothing is changed (the restore is the only writer);
- a NodeRestore that failed after scaling the node down holds it at 0 until a person acts (its nextAction says how);
- never more than 1 replica: a Deployment found above 1 is brought back to 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .conditions import Condition
from .events import EventSpec

CONDITION = "Suspended"
SUSPENDED, RESTORE_IN_PROGRESS, RESTORE_FAILED, KEY_HELD_ELSEWHERE = (
    "Suspended", "RestoreInProgress", "RestoreFailed", "KeyHeldElsewhere")


@dataclass(frozen=True)
class ReplicasInputs:
    suspend: bool
    mayanode: int | None                    # desired replicas observed (None: no such Deployment)
    bifrost: int | None
    previous: Mapping[str, Any]             # status.replicas as stored
    now: datetime
    active_restore: str | None = None
    failed_restore: str | None = None       # a Failed NodeRestore that left the node at 0 replicas
    failed_next_action: str = ""
    key_held_by: str | None = None          # another existing MayaNode holding this node's consensus key
    deployments: tuple[str, str] = ("mayanode", "bifrost")


@dataclass
class ReplicasPlan:
    scale: list[tuple[str, int]] = field(default_factory=list)      # (component, replicas)
    status: dict[str, Any] = field(default_factory=dict)
    condition: Condition | None = None
    events: list[EventSpec] = field(default_factory=list)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def wants_scale_up(inputs: ReplicasInputs) -> bool:
    """Would the plan bring the node back up (so the consensus-key lock must be looked at first)?"""
    if inputs.suspend or inputs.active_restore or inputs.failed_restore:
        return False
    return bool(inputs.previous.get("suspended")) and inputs.previous.get("reason") in (SUSPENDED, KEY_HELD_ELSEWHERE)


def plan_replicas(inputs: ReplicasInputs) -> ReplicasPlan:
    plan = ReplicasPlan()
    previous = inputs.previous
    observed = {"mayanode": inputs.mayanode, "bifrost": inputs.bifrost}
    base = {"mayanode": inputs.mayanode, "bifrost": inputs.bifrost, "changedAt": previous.get("changedAt")}

    def hold(reason: str, message: str, restore: str | None = None) -> ReplicasPlan:
        plan.status = {**base, "suspended": True, "reason": reason, "message": message, "restore": restore}
        plan.condition = Condition(CONDITION, "True", reason, message)
        return plan

    if inputs.active_restore:
        return hold(RESTORE_IN_PROGRESS, f"NodeRestore {inputs.active_restore} controls mayanode and bifrost until it "
                                         f"finishes", inputs.active_restore)
    if inputs.failed_restore:
        if previous.get("reason") != RESTORE_FAILED or previous.get("restore") != inputs.failed_restore:
            plan.events.append(EventSpec(
                "Warning", RESTORE_FAILED,
                f"NodeRestore {inputs.failed_restore} failed and left the node at 0 replicas: "
                f"{inputs.failed_next_action}"))
        return hold(RESTORE_FAILED, f"NodeRestore {inputs.failed_restore} failed after scaling the node down; it stays "
                                    f"at 0 replicas. Next: {inputs.failed_next_action}", inputs.failed_restore)
    if inputs.suspend:
        to_zero = [c for c, n in observed.items() if n]
        plan.scale = [(c, 0) for c in to_zero]
        if to_zero:
            base = {**base, **{c: 0 for c in to_zero}, "changedAt": _iso(inputs.now)}
            plan.events.append(EventSpec("Normal", "Suspended",
                                         f"spec.suspend is true: scaled {', '.join(to_zero)} to 0"))
        return hold(SUSPENDED, "spec.suspend is true: mayanode and bifrost are held at 0 replicas; set it to false "
                               "to bring them back")
    if wants_scale_up(inputs):
        if inputs.key_held_by:
            if previous.get("reason") != KEY_HELD_ELSEWHERE:
                plan.events.append(EventSpec(
                    "Warning", KEY_HELD_ELSEWHERE,
                    f"not scaling up: MayaNode {inputs.key_held_by} holds this node's consensus key (it was restored "
                    f"or migrated there); two nodes with one key double-sign"))
            return hold(KEY_HELD_ELSEWHERE,
                        f"spec.suspend is false, but MayaNode {inputs.key_held_by} holds this node's consensus key: "
                        f"the node stays at 0 replicas. Restore another identity onto it, or delete it")
        to_one = [c for c, n in observed.items() if n == 0]
        plan.scale = [(c, 1) for c in to_one]
        base = {**base, **{c: 1 for c in to_one}, "changedAt": _iso(inputs.now) if to_one else base["changedAt"]}
        plan.events.append(EventSpec("Normal", "Resumed", "spec.suspend is false: scaled "
                                     f"{', '.join(to_one) or 'nothing (already up)'} back to 1"))
    too_many = [c for c, n in observed.items() if n is not None and n > 1]
    if too_many:
        plan.scale += [(c, 1) for c in too_many]
        base = {**base, **{c: 1 for c in too_many}, "changedAt": _iso(inputs.now)}
        plan.events.append(EventSpec("Warning", "TooManyReplicas",
                                     f"{', '.join(too_many)} had more than 1 replica (two signers): scaled to 1"))
    plan.status = {**base, "suspended": False, "reason": None, "message": None, "restore": None}
    plan.condition = Condition(CONDITION, "False", "NotSuspended", "spec.suspend is false")
    return plan
