"""Facet `replicas`: spec.suspend (maintenance mode), and the node held down by a failed NodeRestore.

Runs first among the facets. It changes Deployments only through `adapters/workloads.py` and never while a
NodeRestore of the node is active (`ctx.workloads_locked`): the restore is the only writer then. Before bringing a
suspended node back it checks the consensus-key lock: a node whose key now belongs to another MayaNode (it was
migrated) stays down.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ..adapters.keylock import KeyLocks
from ..adapters.workloads import UnsafeWorkloadChange, Workloads
from ..api import naming
from ..chainkeys import ChainKeyError, consensus_pubkey_bytes, validator_address
from ..plan.conditions import Condition
from ..plan.replicas import CONDITION, ReplicasInputs, plan_replicas, wants_scale_up
from ..plan.restore_guard import may_start_with_key

from .facets import FacetOutcome, NodeContext

STATUS_KEY = "replicas"


async def list_all_mayanodes(runtime: Any) -> list[dict[str, Any]]:
    """The MayaNodes the operator sees (every watched namespace, or the cluster)."""
    if runtime.config.namespaces:
        out: list[dict[str, Any]] = []
        for namespace in runtime.config.namespaces:
            out += await runtime.kube.list_custom(naming.MAYANODE_PLURAL, namespace)
        return out
    response = await asyncio.to_thread(runtime.kube.custom.list_cluster_custom_object, naming.GROUP, naming.VERSION,
                                       naming.MAYANODE_PLURAL, _preload_content=False)
    return list(json.loads(response.data).get("items") or [])


class ReplicasFacet:
    name = "Replicas"
    owns_status_keys = (STATUS_KEY,)

    async def reconcile(self, ctx: NodeContext) -> FacetOutcome:

        spec, observed = ctx.spec, ctx.observed
        failed = ctx.failed_restore if not ctx.workloads_locked else None
        inputs = ReplicasInputs(
            suspend=spec.suspend,
            mayanode=observed.mayanode.desired_replicas if observed.mayanode.exists else None,
            bifrost=observed.bifrost.desired_replicas if observed.bifrost.exists else None,
            previous=ctx.previous_status.get(STATUS_KEY) or {},
            now=ctx.now,
            active_restore=ctx.active_restore,
            failed_restore=failed[0] if failed else None,
            failed_next_action=failed[1] if failed else "",
            deployments=(spec.mayanode.deployment, spec.bifrost.deployment),
        )
        cons = ((ctx.status.get("node") or {}).get("validatorConsPubKey")
                or (ctx.previous_status.get("node") or {}).get("validatorConsPubKey")
                or inputs.previous.get("consensusPubKey"))
        if wants_scale_up(inputs):
            holder = await self._running_twin(ctx) or await self._key_holder(ctx, cons)
            if holder:
                inputs = ReplicasInputs(**{**inputs.__dict__, "key_held_by": holder})
        plan = plan_replicas(inputs)
        plan.status["consensusPubKey"] = cons
        workloads = Workloads(ctx.runtime.kube)
        deployments = {"mayanode": spec.mayanode.deployment, "bifrost": spec.bifrost.deployment}
        conditions = [plan.condition] if plan.condition else []
        for component, replicas in plan.scale:
            try:
                await workloads.scale(ctx.namespace, deployments[component], replicas)
            except UnsafeWorkloadChange as err:
                conditions = [Condition(CONDITION, "Unknown", "UnsafeChange", str(err))]
        return FacetOutcome(status={STATUS_KEY: plan.status}, conditions=conditions, events=plan.events,
                            requeue_after=2.0 if plan.scale else None)

    async def _running_twin(self, ctx: NodeContext) -> str | None:
        """Another MayaNode of the same node account that is not suspended (after a migration: the new one)."""
        if not ctx.spec.node_address:
            return None
        from .noderestore import node_key
        me = f"{ctx.namespace}/{ctx.name}"
        for body in await list_all_mayanodes(ctx.runtime):
            spec = body.get("spec") or {}
            if node_key(body) != me and spec.get("nodeAddress") == ctx.spec.node_address and not spec.get("suspend"):
                return node_key(body)
        return None

    async def _key_holder(self, ctx: NodeContext, cons: str | None) -> str | None:
        """Another existing MayaNode holding this node's consensus key (per the lock), or None."""
        if not cons:
            return None
        try:
            address = validator_address(consensus_pubkey_bytes(str(cons)))
        except (ChainKeyError, ValueError):
            return None
        locks = KeyLocks(ctx.runtime.kube.api_client, ctx.runtime.config.lock_namespace)
        read = await locks.read(address)
        me = f"{ctx.namespace}/{ctx.name}"
        if not read.view.holder or read.view.holder == me:
            return None
        namespace, _, name = read.view.holder.partition("/")
        exists = await ctx.runtime.kube.get_custom(naming.MAYANODE_PLURAL, namespace, name) is not None
        ok, holder = may_start_with_key(me, read.view, {read.view.holder} if exists else set())
        return None if ok else holder
