"""CSI VolumeSnapshots (`snapshot.storage.k8s.io/v1`) of a node's PVCs: create, read, delete. Thin I/O."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from ..api import naming
from .kube import KubeApi

GROUP, VERSION, PLURAL = "snapshot.storage.k8s.io", "v1", "volumesnapshots"


def snapshot_name(backup: str, component: str) -> str:
    """`<backup>-<component>`, shortened with a hash when the backup name is long (DNS subdomain, ≤ 253)."""
    name = f"{backup}-{component}"
    if len(name) <= 200:
        return name
    digest = hashlib.sha256(backup.encode()).hexdigest()[:10]
    return f"{backup[:180].rstrip('-.')}-{digest}-{component}"


def snapshot_body(namespace: str, name: str, pvc: str, class_name: str | None,
                  labels: Mapping[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"source": {"persistentVolumeClaimName": pvc}}
    if class_name:
        spec["volumeSnapshotClassName"] = class_name
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VolumeSnapshot",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {naming.LABEL_MANAGED_BY: naming.FIELD_MANAGER, **labels}},
            "spec": spec}


def snapshot_state(body: Mapping[str, Any] | None) -> tuple[bool, str | None, str | None]:
    """(readyToUse, restoreSize, error message) of a VolumeSnapshot body."""
    status = (body or {}).get("status") or {}
    error = (status.get("error") or {}).get("message")
    return bool(status.get("readyToUse")), status.get("restoreSize"), (str(error)[:300] if error else None)


class Snapshots:
    def __init__(self, kube: KubeApi) -> None:
        self._custom = kube.custom

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        response = await asyncio.to_thread(fn, *args, _preload_content=False, **kwargs)
        return json.loads(response.data) if response.data else {}

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._call(self._custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    async def create(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create; an existing snapshot of that name is answered as is (a retried create)."""
        try:
            return await self._call(self._custom.create_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                                    dict(body))
        except ApiException as err:
            if err.status == 409:
                existing = await self.get(namespace, body["metadata"]["name"])
                if existing is not None:
                    return existing
            raise

    async def delete(self, namespace: str, name: str) -> None:
        try:
            await self._call(self._custom.delete_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as err:
            if err.status != 404:
                raise
