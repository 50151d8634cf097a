"""Changes to the node's Deployments, with the validator's safety rules built in.

- never more than 1 replica;
- an image changes only on a `Recreate` Deployment (a rolling update would run old and new pod,
  i.e. two signers, at once);
- only the fields the operator owns are written (replicas through the scale subresource, the
  one container's image through a strategic merge patch), under the operator's field manager.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ..api import naming
from .kube import KubeApi

STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"


class UnsafeWorkloadChange(Exception):
    """A change that would break a safety rule; the caller reports it and does nothing."""


def check_single_replica(replicas: int) -> None:
    if replicas not in (0, 1):
        raise UnsafeWorkloadChange(f"refusing to scale a validator deployment to {replicas} replicas (0 or 1 only)")


def check_recreate(deployment: Mapping[str, Any]) -> None:
    strategy = ((deployment.get("spec") or {}).get("strategy") or {}).get("type") or "RollingUpdate"
    if strategy != "Recreate":
        name = (deployment.get("metadata") or {}).get("name")
        raise UnsafeWorkloadChange(
            f"deployment {name} uses strategy {strategy}: changing its image would run two pods at once; "
            "set spec.strategy.type: Recreate (node-launcher's default)")


class Workloads:
    def __init__(self, kube: KubeApi) -> None:
        self._kube = kube

    async def scale(self, namespace: str, deployment: str, replicas: int) -> None:
        check_single_replica(replicas)
        await asyncio.to_thread(
            self._kube.apps.patch_namespaced_deployment_scale, deployment, namespace,
            {"spec": {"replicas": replicas}}, field_manager=naming.FIELD_MANAGER, _content_type=MERGE_PATCH,
            _preload_content=False,
        )

    async def set_image(self, namespace: str, deployment: str, container: str, image: str) -> None:
        body = await self._kube.get_deployment(namespace, deployment)
        if body is None:
            raise UnsafeWorkloadChange(f"deployment {deployment} not found")
        check_recreate(body)
        check_single_replica(int((body.get("spec") or {}).get("replicas", 1)))
        patch = {"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}}
        await asyncio.to_thread(
            self._kube.apps.patch_namespaced_deployment, deployment, namespace, patch,
            field_manager=naming.FIELD_MANAGER, _content_type=STRATEGIC_MERGE_PATCH, _preload_content=False,
        )

    async def annotate(self, namespace: str, deployment: str, annotations: Mapping[str, str | None]) -> None:
        """Annotations on the Deployment object itself (not its pod template): nothing restarts."""
        await asyncio.to_thread(
            self._kube.apps.patch_namespaced_deployment, deployment, namespace,
            {"metadata": {"annotations": dict(annotations)}},
            field_manager=naming.FIELD_MANAGER, _content_type=MERGE_PATCH, _preload_content=False,
        )

    async def restart(self, namespace: str, deployment: str, *, template_annotations: Mapping[str, str],
                      annotations: Mapping[str, str] | None = None,
                      env: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """Restart the pods through a pod-template change (annotations and, optionally, literal env values of
        named containers: `{container: {NAME: value}}`), in one patch. Only on a `Recreate` Deployment of at
        most 1 replica: the old pod is gone before the new one starts."""
        body = await self._kube.get_deployment(namespace, deployment)
        if body is None:
            raise UnsafeWorkloadChange(f"deployment {deployment} not found")
        check_recreate(body)
        check_single_replica(int((body.get("spec") or {}).get("replicas", 1)))
        template: dict[str, Any] = {"metadata": {"annotations": dict(template_annotations)}}
        if env:
            template["spec"] = {"containers": [
                {"name": container, "env": [{"name": key, "value": value} for key, value in sorted(values.items())]}
                for container, values in sorted(env.items())]}
        patch: dict[str, Any] = {"spec": {"template": template}}
        if annotations:
            patch["metadata"] = {"annotations": dict(annotations)}
        await asyncio.to_thread(
            self._kube.apps.patch_namespaced_deployment, deployment, namespace, patch,
            field_manager=naming.FIELD_MANAGER, _content_type=STRATEGIC_MERGE_PATCH, _preload_content=False,
        )

    async def running_pods(self, namespace: str, deployment: str) -> list[dict[str, Any]]:
        """Pods of the deployment that exist, terminating ones included (they may still sign)."""
        body = await self._kube.get_deployment(namespace, deployment)
        if body is None:
            return []
        labels = ((body.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return await self._kube.list_pods(namespace, labels) if labels else []
