"""Observe the node's workloads (Deployments and their pods) through the kube adapter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..adapters.kube import KubeApi
from .snapshot import PodObservation, WorkloadObservation


async def observe_workload(kube: KubeApi, namespace: str, deployment: str, container: str) -> WorkloadObservation:
    body = await kube.get_deployment(namespace, deployment)
    if body is None:
        return WorkloadObservation(name=deployment, exists=False)
    match_labels = ((body.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    pods = await kube.list_pods(namespace, match_labels) if match_labels else []
    return workload_from_objects(body, pods, container)


def workload_from_objects(deployment: Mapping[str, Any], pods: list[Mapping[str, Any]], container: str) -> WorkloadObservation:
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    image = next((c.get("image") for c in containers if c.get("name") == container), None)
    return WorkloadObservation(
        name=str((deployment.get("metadata") or {}).get("name")),
        exists=True,
        desired_replicas=int(spec.get("replicas", 1) or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        image=image,
        pods=tuple(sorted((pod_observation(pod) for pod in pods), key=lambda p: p.name)),
        generation=int((deployment.get("metadata") or {}).get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
    )


def pod_observation(pod: Mapping[str, Any]) -> PodObservation:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    statuses = status.get("containerStatuses") or []
    waiting = next(
        (s["state"]["waiting"].get("reason") for s in statuses if (s.get("state") or {}).get("waiting")), None
    )
    return PodObservation(
        name=str(meta.get("name")),
        phase=str(status.get("phase") or "Pending"),
        ready=conditions.get("Ready") == "True",
        restarts=sum(int(s.get("restartCount") or 0) for s in statuses),
        waiting_reason=waiting,
        terminating=bool(meta.get("deletionTimestamp")),
        images=tuple(str(c.get("image") or "") for c in (pod.get("spec") or {}).get("containers") or []),
    )
