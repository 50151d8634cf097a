"""Facets: the parts of a MayaNode reconcile that act (IP, mimir, node actions, backups, upgrades…).

The core pass observes the node and computes the observed status. Each facet then runs its own
observe → plan → apply with that observation, owns distinct top-level status keys and conditions,
and may ask for an earlier requeue while an operation is under way. One status patch is written
at the end. Facets run in a fixed order; a facet's failure is reported in its own condition and
does not stop the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ..api.models import MayaNodeSpec
from ..observe.snapshot import MayaNodeObservation
from ..plan.conditions import Condition
from ..plan.events import EventSpec
from ..plan.restore import active_restore
from .runtime import Runtime


@dataclass(frozen=True)
class NodeContext:
    runtime: Runtime
    body: Mapping[str, Any]                 # the MayaNode as read at the start of the pass
    spec: MayaNodeSpec
    namespace: str
    name: str
    now: datetime
    observed: MayaNodeObservation
    previous_status: Mapping[str, Any]      # status as stored before this pass
    status: Mapping[str, Any]               # the new status so far: the core's (node, chain, network, …) and
                                            # the keys of the facets that ran before this one
    active_restore: str | None = None       # a NodeRestore of this node that has not finished
    failed_restore: tuple[str, str] | None = None   # the newest Failed NodeRestore that left the node down, and
                                                    # its nextAction
    # Writes top-level status keys at once (a transaction recorded as sent before it is sent); the
    # end-of-pass patch stays consistent. None (tests, dry runs): the record goes out with that patch.
    persist: Callable[[Mapping[str, Any]], Awaitable[None]] | None = None

    async def record_now(self, part: Mapping[str, Any]) -> None:
        """Put `part` (owned top-level status keys) on record before acting on it."""
        if self.persist is not None:
            await self.persist(part)

    @property
    def workloads_locked(self) -> str | None:
        """Why no facet may change the node's Deployments now (None: they may)."""
        if self.active_restore:
            return f"NodeRestore {self.active_restore} is in progress"
        return None

    @property
    def generation(self) -> int | None:
        return (self.body.get("metadata") or {}).get("generation")


@dataclass
class FacetOutcome:
    status: dict[str, Any] = field(default_factory=dict)         # owned top-level keys only
    conditions: list[Condition] = field(default_factory=list)
    events: list[EventSpec] = field(default_factory=list)
    requeue_after: float | None = None                           # sooner than the observe interval


class Facet(Protocol):
    name: str
    owns_status_keys: Sequence[str]

    async def reconcile(self, ctx: NodeContext) -> FacetOutcome: ...


def active_restore_for(node_name: str, restores: Sequence[Mapping[str, Any]]) -> str | None:
    """The NodeRestore that currently controls this node's workloads, if any: the one that goes first among the
    unfinished ones, by the rule the restores themselves wait by (plan/restore.py `active_restore`)."""
    return active_restore(node_name, restores)


def failed_restore_holding(node_name: str, restores: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """The newest Failed NodeRestore of this node that left it at 0 replicas: (name, its nextAction)."""
    held = [r for r in restores
            if ((r.get("spec") or {}).get("nodeRef") or {}).get("name") == node_name
            and (r.get("status") or {}).get("phase") == "Failed" and (r.get("status") or {}).get("nodeLeftDown")]
    if not held:
        return None
    newest = max(held, key=lambda r: str((r.get("metadata") or {}).get("creationTimestamp") or ""))
    return str(newest["metadata"]["name"]), str((newest.get("status") or {}).get("nextAction") or "")
