"""Standard Kubernetes conditions: lastTransitionTime moves only when the status flips."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    desired: Iterable[Condition],
    *,
    now: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """The new condition list; conditions the planner no longer computes are kept unchanged."""
    by_type = {str(cond.get("type")): dict(cond) for cond in previous or () if cond.get("type")}
    for cond in desired:
        old = by_type.get(cond.type)
        flipped = old is None or old.get("status") != cond.status
        by_type[cond.type] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": now if flipped else old.get("lastTransitionTime", now),
            **({"observedGeneration": generation} if generation is not None else {}),
        }
    return sorted(by_type.values(), key=lambda cond: cond["type"])


def find_condition(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((cond for cond in conditions or () if cond.get("type") == type_), None)


def condition_status(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> str | None:
    cond = find_condition(conditions, type_)
    return str(cond["status"]) if cond else None


def recovered(previous: Sequence[Mapping[str, Any]] | None, type_: str, reason: str, message: str) -> list[Condition]:
    """`type_` True again when it was False: a failure condition that nothing computes while all is well would
    otherwise stay False for good after its cause is gone."""
    if condition_status(previous, type_) == "False":
        return [Condition(type_, "True", reason, message)]
    return []
