"""Observe the node's workloads (Deployments and their pods) through the kube adapter."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..adapters.kube import KubeApi
from ..selectors import match_labels
from .snapshot import PodObservation, WorkloadObservation


@dataclass(frozen=True)
class WorkloadObjects:
    """A Deployment as the API server sent it (None: absent) and the pods its selector matches."""

    deployment: Mapping[str, Any] | None
    pods: tuple[Mapping[str, Any], ...] = ()


async def read_workloads(kube: KubeApi, namespace: str, deployments: Sequence[str]) -> tuple[WorkloadObjects, ...]:
    """Each Deployment of a node (read at once), then their pods in one LIST when their selectors share a label key
    (the node-launcher's do), each Deployment keeping the pods its own matchLabels select. One LIST per Deployment
    otherwise, so a namespace is never listed whole."""
    bodies = await asyncio.gather(*(kube.get_deployment(namespace, deployment) for deployment in deployments))
    selectors = [match_labels(body) for body in bodies if body is not None]
    covering = covering_selector([labels for labels in selectors if labels])
    if covering:
        listed = await kube.list_pods_selected(namespace, covering)
        pods = [[pod for pod in listed if selects(labels, pod)] if labels else [] for labels in selectors]
    else:
        pods = list(await asyncio.gather(*(_pods(kube, namespace, labels) for labels in selectors)))
    pods_of_existing = iter(pods)
    return tuple(WorkloadObjects(None) if body is None else WorkloadObjects(body, tuple(next(pods_of_existing)))
                 for body in bodies)


def observe_objects(name: str, objects: WorkloadObjects, container: str) -> WorkloadObservation:
    if objects.deployment is None:
        return WorkloadObservation(name=name, exists=False)
    return workload_from_objects(objects.deployment, list(objects.pods), container)


async def observe_workloads(kube: KubeApi, namespace: str,
                            workloads: Sequence[tuple[str, str]]) -> tuple[WorkloadObservation, ...]:
    """Each (deployment, container) of a node, read as `read_workloads` reads them."""
    objects = await read_workloads(kube, namespace, [deployment for deployment, _ in workloads])
    return tuple(observe_objects(deployment, read, container)
                 for (deployment, container), read in zip(workloads, objects))


async def _pods(kube: KubeApi, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
    return await kube.list_pods(namespace, labels) if labels else []


def covering_selector(label_sets: Sequence[Mapping[str, str]]) -> str:
    """A label selector matching at least every pod that one of `label_sets` (matchLabels) selects: the keys all
    sets have, `key=value` where they agree, `key in (a,b)` where they do not (left out when one of them is
    empty). Empty when no key is left."""
    if not label_sets:
        return ""
    shared = set(label_sets[0]).intersection(*label_sets[1:])
    terms = []
    for key in sorted(shared):
        values = sorted({labels[key] for labels in label_sets})
        if len(values) == 1:
            terms.append(f"{key}={values[0]}")
        elif "" not in values:
            terms.append(f"{key} in ({','.join(values)})")
    return ",".join(terms)


def selects(labels: Mapping[str, str], pod: Mapping[str, Any]) -> bool:
    """Whether matchLabels `labels` select `pod`, as the API server's equality selector does."""
    pod_labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(pod_labels.get(key) == value for key, value in labels.items())


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
