"""The fleet budget's store: one coordination.k8s.io/v1 Lease per rollout group.

The Lease records every holder (the MayaNodes upgrading now) with the time it last renewed, and
the canary of each target version, in annotations; `spec.holderIdentity` and `spec.renewTime`
mirror them for `kubectl get lease`. Writes are optimistic: a replace carries the resourceVersion
that was read, so two operators (or two workers) deciding at once cannot both take the last slot;
the loser gets `LeaseConflict` and decides again on fresh data. Holders that stop renewing expire
(see `plan.upgrade_rollout.live_holders`), so a slot is never lost to an operator that died.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from ..api import naming
from ..plan.upgrade_rollout import BudgetState, budget_from_json, budget_to_json

HOLDERS_ANNOTATION = f"{naming.GROUP}/rollout-holders"
CANARIES_ANNOTATION = f"{naming.GROUP}/rollout-canaries"
LEASE_PREFIX = "mayanode-rollout-"


class LeaseConflict(Exception):
    """Someone else wrote the Lease since it was read (or created it first): read again and decide again."""


@dataclass(frozen=True)
class LeaseRead:
    state: BudgetState
    resource_version: str | None      # None: the Lease does not exist yet


def lease_name(group: str) -> str:
    return (LEASE_PREFIX + group)[:253]


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_body(namespace: str, group: str, state: BudgetState, *, lease_seconds: int, now: datetime,
               resource_version: str | None) -> dict[str, Any]:
    holders_json, canaries_json = budget_to_json(state)
    metadata: dict[str, Any] = {
        "name": lease_name(group), "namespace": namespace,
        "labels": {naming.LABEL_MANAGED_BY: naming.FIELD_MANAGER, f"{naming.GROUP}/rollout-group": group},
        "annotations": {HOLDERS_ANNOTATION: holders_json, CANARIES_ANNOTATION: canaries_json},
    }
    if resource_version:
        metadata["resourceVersion"] = resource_version
    renewed = max((h.renewed for h in state.holders), default=None)
    acquired = min((h.acquired for h in state.holders), default=None)
    spec: dict[str, Any] = {"leaseDurationSeconds": int(lease_seconds)}
    if state.holders:
        spec["holderIdentity"] = ",".join(sorted(h.node for h in state.holders))[:1024]
        spec["renewTime"] = _micro_time(renewed or now)
        spec["acquireTime"] = _micro_time(acquired or now)
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


def state_from_lease(body: dict[str, Any]) -> BudgetState:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return budget_from_json(annotations.get(HOLDERS_ANNOTATION), annotations.get(CANARIES_ANNOTATION))


class RolloutLeases:
    def __init__(self, api_client: k8s.ApiClient, namespace: str, lease_seconds: int = 120) -> None:
        self._api = k8s.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.lease_seconds = lease_seconds

    async def read(self, group: str) -> LeaseRead:
        try:
            response = await asyncio.to_thread(self._api.read_namespaced_lease, lease_name(group), self.namespace,
                                               _preload_content=False)
        except ApiException as err:
            if err.status == 404:
                return LeaseRead(BudgetState(), None)
            raise
        body = json.loads(response.data)
        return LeaseRead(state_from_lease(body), str((body.get("metadata") or {}).get("resourceVersion") or ""))

    async def write(self, group: str, state: BudgetState, resource_version: str | None, now: datetime) -> None:
        """Create (when it did not exist) or replace at exactly `resource_version`; LeaseConflict otherwise."""
        body = lease_body(self.namespace, group, state, lease_seconds=self.lease_seconds, now=now,
                          resource_version=resource_version)
        try:
            if resource_version is None:
                await asyncio.to_thread(self._api.create_namespaced_lease, self.namespace, body,
                                        field_manager=naming.FIELD_MANAGER, _preload_content=False)
            else:
                await asyncio.to_thread(self._api.replace_namespaced_lease, lease_name(group), self.namespace, body,
                                        field_manager=naming.FIELD_MANAGER, _preload_content=False)
        except ApiException as err:
            if err.status == 409:
                raise LeaseConflict(f"Lease {lease_name(group)} changed meanwhile") from None
            raise

    async def update(self, group: str, change: Callable[[BudgetState], BudgetState], now: datetime,
                     attempts: int = 5) -> BudgetState:
        """Read, apply the pure `change`, write; again on a conflict. For changes that never need a fresh
        decision (releasing one's own slot, renewing it)."""
        for attempt in range(attempts):
            current = await self.read(group)
            new_state = change(current.state)
            if new_state == current.state:
                return new_state
            try:
                await self.write(group, new_state, current.resource_version, now)
                return new_state
            except LeaseConflict:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.02 * (attempt + 1))
        raise LeaseConflict(f"Lease {lease_name(group)}: too many concurrent writers")
