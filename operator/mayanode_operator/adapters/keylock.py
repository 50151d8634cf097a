"""The cluster-wide consensus-key lock: one coordination.k8s.io/v1 Lease per consensus key.

`consensus-<validator address, lower-case>` in the operator's lock namespace; `spec.holderIdentity` is the
`namespace/name` of the MayaNode that holds the key (the last one a NodeRestore put it on). The Lease is an
ownership record, not a liveness lease: it has no duration and never expires. Writes are optimistic (create, or
replace at the resourceVersion that was read), so two restores of one key deciding at once cannot both win: the
loser gets `LockConflict` and decides again on fresh data. Only public data is stored (keys' public halves).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from ..api import naming
from ..plan.restore_guard import LeaseView

PREFIX = "consensus-"
PUBKEY_ANNOTATION = f"{naming.GROUP}/consensus-pub-key"
RESTORE_ANNOTATION = f"{naming.GROUP}/restore"
PREVIOUS_ANNOTATION = f"{naming.GROUP}/previous-holder"


class LockConflict(Exception):
    """The Lease changed since it was read: read again and decide again."""


def lease_name(validator_address: str) -> str:
    return PREFIX + validator_address.lower()


@dataclass(frozen=True)
class LockRead:
    view: LeaseView
    resource_version: str | None          # None: no Lease yet
    previous_holder: str | None = None


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KeyLocks:
    def __init__(self, api_client: k8s.ApiClient, namespace: str) -> None:
        self._api = k8s.CoordinationV1Api(api_client)
        self.namespace = namespace

    def where(self, validator_address: str) -> str:
        return f"{self.namespace}/{lease_name(validator_address)}"

    async def read(self, validator_address: str) -> LockRead:
        try:
            response = await asyncio.to_thread(self._api.read_namespaced_lease, lease_name(validator_address),
                                               self.namespace, _preload_content=False)
        except ApiException as err:
            if err.status == 404:
                return LockRead(LeaseView(exists=False), None)
            raise
        body: dict[str, Any] = json.loads(response.data)
        meta = body.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        holder = (body.get("spec") or {}).get("holderIdentity") or None
        return LockRead(LeaseView(exists=True, holder=holder, cons_pub_key=annotations.get(PUBKEY_ANNOTATION)),
                        str(meta.get("resourceVersion") or ""), annotations.get(PREVIOUS_ANNOTATION) or None)

    async def hold(self, validator_address: str, cons_pub_key: str, holder: str | None, *, restore: str,
                   previous: str | None, resource_version: str | None, now: datetime) -> None:
        """Record `holder` (None: nobody) as the key's holder; create the Lease or replace it at `resource_version`."""
        name = lease_name(validator_address)
        metadata: dict[str, Any] = {
            "name": name, "namespace": self.namespace,
            "labels": {naming.LABEL_MANAGED_BY: naming.FIELD_MANAGER, f"{naming.GROUP}/lock": "consensus-key"},
            "annotations": {PUBKEY_ANNOTATION: cons_pub_key, RESTORE_ANNOTATION: restore,
                            **({PREVIOUS_ANNOTATION: previous} if previous else {})},
        }
        spec: dict[str, Any] = {}
        if holder:
            spec = {"holderIdentity": holder, "acquireTime": _micro_time(now), "renewTime": _micro_time(now)}
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}
        try:
            if resource_version is None:
                await asyncio.to_thread(self._api.create_namespaced_lease, self.namespace, body,
                                        field_manager=naming.FIELD_MANAGER, _preload_content=False)
            else:
                metadata["resourceVersion"] = resource_version
                await asyncio.to_thread(self._api.replace_namespaced_lease, name, self.namespace, body,
                                        field_manager=naming.FIELD_MANAGER, _preload_content=False)
        except ApiException as err:
            if err.status == 409:
                raise LockConflict(f"Lease {self.namespace}/{name} changed meanwhile") from None
            raise
