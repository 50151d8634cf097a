"""MayaNode: observe → plan → apply → status. Sequencing only; decisions live in plan/."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from .. import metrics
from ..api import naming
from ..api.models import MayaNodeSpec
from ..observe.kube import WorkloadObjects, observe_objects, read_workloads
from ..observe.nodeapi import NodeApi
from ..observe.snapshot import MayaNodeObservation, WorkloadObservation
from ..plan.conditions import Condition, merge_conditions, recovered
from ..plan.events import EventSpec
from ..plan.mayanode_status import StatusInputs, iso, plan_mayanode_status
from ..plan.patches import merge_patch
from ..plan.upgrade_rollout import mayanode_halted, status_target_version
from .facet_order import FACETS
from .facets import Facet, FacetOutcome, NodeContext, active_restore_for, failed_restore_holding
from .queue import jittered
from .runtime import TRANSIENT_ERRORS, Runtime, describe_error
from .status_writer import StatusWriter

logger = logging.getLogger(__name__)

UNSENT_RETRY_SECONDS = 1.0      # a transaction recorded but not sent (the record's answer was lost): send it soon
INVALID_SPEC_RETRY_SECONDS = 300.0   # an invalid spec is looked at again at its next change, or after this


def describe_validation_error(err: ValidationError) -> str:
    """Field paths and messages only: input values may hold anything, so they are not echoed."""
    parts = []
    for item in err.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "spec"
        parts.append(f"spec.{where}: {item['msg']}")
    return "; ".join(parts)


async def reconcile_mayanode(runtime: Runtime, namespace: str, name: str) -> float | None:
    """One pass; returns seconds until the next one (None: the object is gone)."""
    body = await runtime.kube.get_custom(naming.MAYANODE_PLURAL, namespace, name)
    meta, stored = (body or {}).get("metadata") or {}, (body or {}).get("status") or {}
    if body is None or meta.get("deletionTimestamp"):
        runtime.forget_mayanode(namespace, name, meta.get("uid"))
        return None
    uid = str(meta.get("uid") or f"{namespace}/{name}")
    status = runtime.unsent.as_planned_from(uid, stored)    # plans see a record whose action never happened undone
    try:
        spec = MayaNodeSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        await _report_invalid_spec(runtime, body, describe_validation_error(err))
        return INVALID_SPEC_RETRY_SECONDS

    observed = await observe_mayanode(runtime, namespace, spec)
    inputs = StatusInputs(
        generation=meta.get("generation"),
        node_address=spec.node_address,
        target_version=status_target_version(spec, observed.api.chain.height if observed.api.chain else None, status,
                                             mayanode_halted(observed.mayanode, observed.api)),
        suspend=spec.suspend,
        rest_url=spec.rest_url(namespace),
        height_refresh_seconds=runtime.config.height_refresh_seconds,
        manages_external_ip=spec.external_ip is not None,
    )
    now = runtime.now()
    plan = plan_mayanode_status(inputs, observed, status, now)
    active_restore, failed_restore = await restore_holds(runtime, namespace, name)
    writer = StatusWriter(stored, lambda part: runtime.kube.patch_custom_status(
        naming.MAYANODE_PLURAL, namespace, name, part), runtime.unsent, uid)
    ctx = NodeContext(runtime=runtime, body=body, spec=spec, namespace=namespace, name=name, now=now,
                      observed=observed, previous_status=status, status=plan.status,
                      active_restore=active_restore, failed_restore=failed_restore, persist=writer.persist)
    new_status, requeue = dict(plan.status), float(spec.observe.interval_seconds)
    events = [*plan.events, *unwatched_events(runtime, namespace, observed.newly_unwatched)]
    for facet in FACETS:
        outcome = await run_facet(facet, dataclasses.replace(ctx, status=dict(new_status)))
        new_status.update(outcome.status)
        if outcome.conditions:
            new_status["conditions"] = merge_conditions(new_status["conditions"], outcome.conditions,
                                                        now=iso(now), generation=ctx.generation)
        events += outcome.events
        if outcome.requeue_after is not None:
            requeue = min(requeue, outcome.requeue_after)
    if writer.left_unsent:
        requeue = min(requeue, UNSENT_RETRY_SECONDS)
    metrics.observe_mayanode(namespace, name, new_status)
    await writer.write_final(new_status)
    await emit_all(runtime, body, events)
    return jittered(requeue)


async def run_facet(facet: Facet, ctx: NodeContext) -> FacetOutcome:
    """A facet that cannot reach what it needs reports it in its own condition, `<facet>Healthy` False, until a pass
    of it goes through again; the others go on."""
    health = f"{facet.name}Healthy"
    try:
        outcome = await facet.reconcile(ctx)
    except TRANSIENT_ERRORS as err:
        message = f"{facet.name}: {describe_error(err)}"
        logger.warning("facet %s of %s/%s failed: %s", facet.name, ctx.namespace, ctx.name, type(err).__name__)
        return FacetOutcome(
            conditions=[Condition(health, "False", "TransientError", message)],
            requeue_after=15.0,
        )
    if any(cond.type == health for cond in outcome.conditions):
        return outcome
    back = recovered(ctx.status.get("conditions"), health, "Reconciled", f"{facet.name}: the last pass went through")
    return dataclasses.replace(outcome, conditions=[*outcome.conditions, *back]) if back else outcome


async def restore_holds(runtime: Runtime, namespace: str, name: str) -> tuple[str | None, tuple[str, str] | None]:
    """The NodeRestore of this node that has not finished, and the newest Failed one that left it down (with its
    nextAction): from the namespace's NodeRestores, or from what the last pass found while nothing changed there."""
    key = ("restore-holds", name)
    kept = runtime.watched.get(namespace, key)
    if kept is not None:
        return kept
    epoch = runtime.watched.epoch(namespace)
    restores = await runtime.kube.list_custom(naming.NODERESTORE_PLURAL, namespace)
    holds = active_restore_for(name, restores), failed_restore_holding(name, restores)
    runtime.watched.keep(namespace, key, holds, epoch)
    return holds


async def observe_mayanode(runtime: Runtime, namespace: str, spec: MayaNodeSpec) -> MayaNodeObservation:
    node_api = NodeApi(runtime.http, spec.rest_url(namespace), spec.rpc_url(namespace),
                       float(spec.api.timeout_seconds),
                       network_rpc=[str(url) for url in spec.api.network_rpc])
    (mayanode, bifrost, objects, newly_unwatched), api = await asyncio.gather(
        observe_node_workloads(runtime, namespace, spec), node_api.observe(spec.node_address))
    return MayaNodeObservation(mayanode=mayanode, bifrost=bifrost, api=api, objects=objects,
                               newly_unwatched=newly_unwatched)


async def observe_node_workloads(runtime: Runtime, namespace: str, spec: MayaNodeSpec) -> tuple[
        WorkloadObservation, WorkloadObservation, dict[str, WorkloadObjects], tuple[str, ...]]:
    """The node's two workloads, the objects read for them (none when the last pass's observation still holds:
    the watches have shown every object it was made of, and nothing changed in the namespace since), and its
    Deployments first seen to be out of the workload watch's sight."""
    workloads = ((spec.mayanode.deployment, spec.mayanode.container), (spec.bifrost.deployment, spec.bifrost.container))
    key = ("workloads", workloads)
    kept = runtime.watched.get(namespace, key)
    if kept is not None:
        return (*kept, {}, ())
    epoch = runtime.watched.epoch(namespace)
    mayanode, bifrost = await read_workloads(runtime.kube, namespace, [spec.mayanode.deployment, spec.bifrost.deployment])
    observed = (observe_objects(spec.mayanode.deployment, mayanode, spec.mayanode.container),
                observe_objects(spec.bifrost.deployment, bifrost, spec.bifrost.container))
    deployments = [read.deployment for read in (mayanode, bifrost) if read.deployment is not None]
    pods = [pod for read in (mayanode, bifrost) for pod in read.pods]
    unwatched = runtime.watched.unwatched(deployments)
    newly_unwatched = runtime.watched.newly_unwatched(
        namespace, [str((d.get("metadata") or {}).get("name")) for d in deployments], unwatched)
    if (len(deployments) == 2 and not unwatched and runtime.watched.covers("deployments", namespace, deployments)
            and runtime.watched.covers("pods", namespace, pods)):
        runtime.watched.keep(namespace, key, observed, epoch)
    return (*observed, {spec.mayanode.deployment: mayanode, spec.bifrost.deployment: bifrost}, tuple(newly_unwatched))


def unwatched_events(runtime: Runtime, namespace: str, deployments: tuple[str, ...]) -> list[EventSpec]:
    """Said once per Deployment: a node the workload watch does not see works, at the cost of reading its workloads
    at every pass."""
    if not deployments:
        return []
    names = ", ".join(deployments)
    logger.warning("Deployment(s) %s in %s are not picked by the workload selector %r (or not all of their pods "
                   "are): their node's workloads are read at every pass", names, namespace,
                   runtime.watched.workload_selector)
    return [EventSpec("Warning", "WorkloadsNotWatched",
                      f"Deployment(s) {names} or their pods are not picked by the operator's workload selector "
                      f"'{runtime.watched.workload_selector}' (their labels and spec.selector.matchLabels must "
                      f"match it): this node's Deployments and pods are read at every pass instead of when they "
                      f"change. Label them, or set the operator's workloadSelector.")]


async def _report_invalid_spec(runtime: Runtime, body: dict[str, Any], message: str) -> None:
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    conditions = merge_conditions(
        status.get("conditions"),
        [Condition("Ready", "False", "InvalidSpec", message)],
        now=iso(runtime.now()), generation=generation,
    )
    patch = merge_patch(status, {"phase": "Degraded", "observedGeneration": generation, "conditions": conditions})
    if patch:
        await runtime.kube.patch_custom_status(naming.MAYANODE_PLURAL, body["metadata"]["namespace"],
                                               body["metadata"]["name"], patch)
        await emit_all(runtime, body, [EventSpec("Warning", "InvalidSpec", message)])


async def emit_all(runtime: Runtime, body: dict[str, Any], events: Any) -> None:
    for event in events:
        try:
            await runtime.kube.emit_event(body, event)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as err:  # an event is a courtesy
            logger.warning("could not emit event %s: %s", event.reason, type(err).__name__)
