"""Pure decisions of the simulated Deployment controller (no ReplicaSets: pods are owned directly)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass

HASH_LABEL = "pod-template-hash"
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s rand.SafeEncodeString's alphabet


def safe_encode(digest: bytes, length: int) -> str:
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in digest[:length])


def template_hash(template: dict) -> str:
    """A stable 10-character hash of a pod template (the ``pod-template-hash`` label)."""
    t = copy.deepcopy(template or {})
    (t.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    digest = hashlib.sha256(json.dumps(t, sort_keys=True, separators=(",", ":")).encode()).digest()
    return safe_encode(digest, 10)


@dataclass(frozen=True)
class OwnedPod:
    name: str
    template_hash: str
    terminating: bool
    ready: bool
    created: str = ""  # creationTimestamp, for choosing which extra pod to drop


@dataclass(frozen=True)
class PodPlan:
    create: int = 0
    delete: tuple[str, ...] = ()
    reason: str = ""


def _int_or_percent(value, replicas: int, round_up: bool) -> int:
    if value is None:
        value = "25%"
    if isinstance(value, str) and value.endswith("%"):
        frac = int(value[:-1]) * replicas / 100
        return math.ceil(frac) if round_up else math.floor(frac)
    return int(value)


def max_unavailable(deployment: dict) -> int:
    spec = deployment.get("spec", {})
    strategy = spec.get("strategy") or {}
    replicas = int(spec.get("replicas", 1))
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0
    ru = strategy.get("rollingUpdate") or {}
    surge = _int_or_percent(ru.get("maxSurge"), replicas, True)
    unavailable = _int_or_percent(ru.get("maxUnavailable"), replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return min(unavailable, replicas)


def plan_pods(deployment: dict, current_hash: str, pods: list[OwnedPod]) -> PodPlan:
    spec = deployment.get("spec", {})
    replicas = int(spec.get("replicas", 1))
    strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")
    old = [p for p in pods if p.template_hash != current_hash]
    new = [p for p in pods if p.template_hash == current_hash]
    new_active = [p for p in new if not p.terminating]

    def extras(active: list[OwnedPod], keep: int) -> tuple[str, ...]:
        # Drop not-ready pods first, then the newest (like the ReplicaSet controller).
        ranked = sorted(active, key=lambda p: (p.ready, _neg(p.created)))
        return tuple(p.name for p in ranked[: max(0, len(active) - keep)])

    if strategy == "Recreate":
        if old:
            to_delete = tuple(p.name for p in old if not p.terminating)
            return PodPlan(0, to_delete, "recreate: stopping old pods" if to_delete
                           else "recreate: waiting for old pods to terminate")
        if len(new_active) > replicas:
            return PodPlan(0, extras(new_active, replicas), "scaling down")
        # Terminating pods still count: a Recreate Deployment never has more pods than replicas.
        create = max(0, replicas - len(new))
        return PodPlan(create, (), "scaling up" if create else "")

    ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    surge = _int_or_percent(ru.get("maxSurge"), replicas, True)
    delete: list[str] = []
    if len(new_active) > replicas:
        delete.extend(extras(new_active, replicas))
        new_active = [p for p in new_active if p.name not in delete]
    old_active = [p for p in old if not p.terminating]
    new_ready = sum(1 for p in new_active if p.ready)
    if old_active and (replicas == 0 or new_ready >= replicas):
        delete.extend(p.name for p in old_active)
        old_active = []
    room = replicas + surge - len(new_active) - len(old_active)
    create = max(0, min(replicas - len(new_active), room))
    return PodPlan(create, tuple(delete), "rolling update" if (create or delete) else "")


def _neg(ts: str) -> str:
    # Sort newest first: invert characters of an ISO timestamp.
    return "".join(chr(0x10FFFF - ord(c)) for c in ts)


def deployment_status(deployment: dict, current_hash: str, pods: list[OwnedPod], now: str) -> dict:
    """The Deployment's ``.status`` (fields with value 0 are omitted, like the real API)."""
    spec = deployment.get("spec", {})
    meta = deployment.get("metadata", {})
    replicas = int(spec.get("replicas", 1))
    active = [p for p in pods if not p.terminating]
    updated = [p for p in active if p.template_hash == current_hash]
    ready = [p for p in active if p.ready]
    available = len(ready)
    old_exist = any(p.template_hash != current_hash for p in pods)
    rs_name = f"{meta.get('name', '')}-{current_hash}"

    previous = {c.get("type"): c for c in (deployment.get("status") or {}).get("conditions") or []}

    def condition(ctype: str, status: str, reason: str, message: str) -> dict:
        prev = previous.get(ctype) or {}
        changed_status = prev.get("status") != status
        changed = changed_status or prev.get("reason") != reason or prev.get("message") != message
        return {
            "type": ctype, "status": status,
            "lastUpdateTime": now if changed else prev.get("lastUpdateTime", now),
            "lastTransitionTime": now if changed_status else prev.get("lastTransitionTime", now),
            "reason": reason, "message": message,
        }

    if available >= replicas - max_unavailable(deployment):
        avail = condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    else:
        avail = condition("Available", "False", "MinimumReplicasUnavailable",
                          "Deployment does not have minimum availability.")
    if len(updated) == replicas and available >= replicas and not old_exist and len(active) == replicas:
        prog = condition("Progressing", "True", "NewReplicaSetAvailable",
                         f'ReplicaSet "{rs_name}" has successfully progressed.')
    else:
        prog = condition("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')

    status: dict = {
        "observedGeneration": meta.get("generation", 1),
        "replicas": len(active),
        "updatedReplicas": len(updated),
        "readyReplicas": len(ready),
        "availableReplicas": available,
        "unavailableReplicas": max(replicas - available, 0),
        "conditions": [avail, prog],
    }
    return {k: v for k, v in status.items() if v != 0 or k == "observedGeneration"}
