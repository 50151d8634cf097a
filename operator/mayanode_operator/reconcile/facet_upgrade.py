"""MayaNode facet `upgrade`: status.upgrade; UpgradeBlocked, Upgrading, Degraded.

observe: the target (spec.version or a flag day reached), what the gates need beyond the core's
observation (Active nodes' versions for adoption mode Share, Asgard vaults for a migration under
way, the PreUpgrade NodeBackup, the rollout group's Lease and the other MayaNodes of the group)
→ plan (plan/upgrade_gates.py, plan/upgrade_rollout.py) → apply in order: NodeBackup create,
Lease writes (optimistic), image patches through adapters/workloads.py, set-version through
the node's transactions (recorded as sent before it is sent).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from .. import metrics
from ..adapters.leases import LeaseConflict, RolloutLeases
from ..adapters.workloads import UnsafeWorkloadChange, Workloads
from ..api import naming
from ..api.mayanode import AdoptionMode, NodeActionType, UpgradeStep
from ..observe.nodeapi import EndpointFailure, fetch_json
from ..plan.conditions import Condition
from ..plan.events import EventSpec
from ..plan.mayanode_status import network_height as plan_network_height
from ..plan.node_actions import upsert_record
from ..plan.patches import without_nulls
from ..plan.transactions import TxRequest, may_have_been_broadcast
from ..plan.upgrade_gates import GateInputs, Window, evaluate_gates, seconds_until_window
from ..plan.upgrade_rollout import (
    PRE_CHANGE_STEPS,
    BackupView,
    BudgetDecision,
    FleetMember,
    RolloutInputs,
    RolloutPlan,
    backup_name,
    finished_request,
    flag_day_view,
    highest_height,
    iso,
    mayanode_halted,
    pending_approval,
    plan_budget,
    plan_rollout,
    release_budget,
    renew_holder,
)
from .facets import FacetOutcome, NodeContext
from .node_tx import TransactionsFactory, kubernetes_transactions, node_signer

logger = logging.getLogger(__name__)

LEASE_SECONDS = 120
ROLLOUT_GROUP_LABEL = f"{naming.GROUP}/rollout-group"
CHANGE_STEPS = (UpgradeStep.STOP_OLD, UpgradeStep.MAYANODE, UpgradeStep.MAYANODE_HEALTH, UpgradeStep.BIFROST,
                UpgradeStep.BIFROST_HEALTH, UpgradeStep.ROLLBACK)


def rollout_group(body: Mapping[str, Any]) -> str | None:
    """The field `spec.upgrade.rollout.group`, else the label maya.nodeops.io/rollout-group; None: its own group."""
    spec = body.get("spec") or {}
    group = (((spec.get("upgrade") or {}).get("rollout") or {}).get("group"))
    return group or ((body.get("metadata") or {}).get("labels") or {}).get(ROLLOUT_GROUP_LABEL) or None


def fleet_member(body: Mapping[str, Any]) -> FleetMember:
    meta, upgrade = body.get("metadata") or {}, (body.get("status") or {}).get("upgrade") or {}
    step = (upgrade.get("current") or {}).get("step")
    history = upgrade.get("history") or []
    return FleetMember(
        node=f"{meta.get('namespace')}/{meta.get('name')}",
        upgrading=step in {str(s) for s in CHANGE_STEPS},
        succeeded=tuple(str(h.get("to")) for h in history if h.get("result") == "Succeeded"),
        failed=tuple(str(h.get("to")) for h in history if h.get("result") in ("RolledBack", "Failed")),
    )


def waiting_for_budget(body: Mapping[str, Any]) -> bool:
    current = ((body.get("status") or {}).get("upgrade") or {}).get("current") or {}
    return current.get("step") == str(UpgradeStep.ACQUIRE_BUDGET)


class UpgradeFacet:
    name = "Upgrade"
    owns_status_keys = ("upgrade",)

    def __init__(self, transactions: TransactionsFactory = kubernetes_transactions,
                 leases: Callable[[Any], RolloutLeases] | None = None,
                 workloads: Callable[[Any], Workloads] | None = None) -> None:
        self._transactions = transactions
        self._leases = leases or (lambda runtime: RolloutLeases(
            runtime.kube.api_client, getattr(runtime.config, "rollout_namespace", "default"), LEASE_SECONDS))
        self._workloads = workloads or (lambda runtime: Workloads(runtime.kube))

    async def reconcile(self, ctx: NodeContext) -> FacetOutcome:
        spec = ctx.spec
        previous = dict(ctx.previous_status.get("upgrade") or {})
        current = previous.get("current") or None
        if spec.observe_only and current is None and not previous:
            return FacetOutcome()
        me = f"{ctx.namespace}/{ctx.name}"
        observed = ctx.observed
        chain = observed.api.chain
        height = chain.height if chain else None
        last_known = highest_height(previous.get("lastHeight"), (ctx.status.get("chain") or {}).get("height"))
        view = flag_day_view(spec, height, last_known, mayanode_halted(observed.mayanode, observed.api),
                             in_flight=(current or {}).get("flagDayHeight"))
        target = view.target
        image = spec.image_for(target) if target else None
        up_to_date = image is not None and observed.mayanode.image == image and observed.bifrost.image == image
        step = UpgradeStep(current["step"]) if current and current.get("step") in set(UpgradeStep) else None
        flag_day = view.flag_day_height if not up_to_date else None

        group = rollout_group(ctx.body)
        needs_gates = target is not None and not up_to_date and (current is None or step in PRE_CHANGE_STEPS)
        fleet: dict[str, FleetMember] = {}
        self_waiting: list[tuple[str, str]] = []
        network_height = None
        leases = self._leases(ctx.runtime) if group else None
        lease = None
        if group and (needs_gates or current is not None):
            fleet_bodies = await self._fleet(ctx, group)
            fleet = {m.node: m for m in (fleet_member(b) for b in fleet_bodies)}
            self_waiting = [(b["metadata"]["namespace"], b["metadata"]["name"]) for b in fleet_bodies
                            if waiting_for_budget(b) and f"{b['metadata']['namespace']}/{b['metadata']['name']}" != me]
            heights = [((b.get("status") or {}).get("chain") or {}).get("height") for b in fleet_bodies
                       if (b.get("spec") or {}).get("network") == str(spec.network)]
            network_height = max((h for h in heights if isinstance(h, int)), default=None)
            if current is not None:
                lease = await leases.read(group)
        gates = await self._gates(ctx, target, flag_day, network_height) if needs_gates else []

        backup = None
        if spec.upgrade.gates.pre_upgrade_backup and spec.backup is not None and target and not flag_day and \
                (current is None or step == UpgradeStep.PRE_UPGRADE_BACKUP):
            churn = (ctx.status.get("network") or {}).get("lastChurnHeight")
            name = (current or {}).get("backupName") or backup_name(ctx.name, target, churn)
            body = await ctx.runtime.kube.get_custom(naming.NODEBACKUP_PLURAL, ctx.namespace, name)
            backup = BackupView(name, body is not None and not (body.get("metadata") or {}).get("deletionTimestamp"),
                                ((body or {}).get("status") or {}).get("phase"))

        budget: BudgetDecision | None = None
        version_for_budget = (current or {}).get("to") or target
        if group and lease is not None and version_for_budget:
            if step == UpgradeStep.ACQUIRE_BUDGET:
                budget = plan_budget(lease.state, me=me, version=version_for_budget,
                                     max_concurrent=spec.upgrade.rollout.max_concurrent,
                                     canary=spec.upgrade.rollout.canary, now=ctx.now, lease_seconds=LEASE_SECONDS,
                                     fleet=fleet)
            else:
                renewed = renew_holder(lease.state, me=me, version=version_for_budget, now=ctx.now,
                                       lease_seconds=LEASE_SECONDS)
                budget = BudgetDecision("held", new_state=renewed if renewed != lease.state else None)

        done_ids = [r.get("id") for r in _node_action_records_so_far(ctx) if r.get("id")]
        approval = pending_approval(spec, previous, done_ids)
        announced = (observed.api.account.version if observed.api.account else None) or \
            (ctx.status.get("node") or {}).get("version")
        plan = plan_rollout(RolloutInputs(
            spec=spec, node=me, now=ctx.now, mayanode=observed.mayanode, bifrost=observed.bifrost, api=observed.api,
            previous=previous, target=target, flag_day_height=flag_day, gates=gates, backup=backup, budget=budget,
            announced_version=announced, locked=ctx.workloads_locked, approval=approval,
            next_flag_day=(view.next_height, view.next_version) if view.next_height and view.next_version else None,
            last_height=view.known_height,
        ))
        await self._apply(ctx, plan, group, leases, lease, me)
        if any(a.kind == "ReleaseBudget" for a in plan.actions):
            for namespace, name in self_waiting:           # hand the slot over now, not at their next poll
                ctx.runtime.queue.add((naming.MAYANODE_PLURAL, namespace, name), delay=0.05)

        status: dict[str, Any] = {"upgrade": without_nulls(plan.upgrade)}
        records = self._node_action_records(ctx, spec, previous, plan, approval, up_to_date, target)
        if records is not None:
            status["nodeActions"] = records
        requeue = plan.requeue_after
        if plan.upgrade.get("state") == "Blocked" and (plan.upgrade.get("gate") or {}).get("name") == \
                "MaintenanceWindow":
            wait = seconds_until_window([Window(w.schedule, w.duration_minutes)
                                         for w in spec.upgrade.gates.maintenance_windows], ctx.now)
            if wait is not None:
                requeue = min(requeue or wait + 1, wait + 1)
        record_finished_upgrades(ctx, previous, plan.upgrade)
        return FacetOutcome(status=status, conditions=plan.conditions, events=plan.events, requeue_after=requeue)

    # ---- observe ---------------------------------------------------------------------------------
    async def _fleet(self, ctx: NodeContext, group: str) -> list[dict[str, Any]]:
        kube = ctx.runtime.kube
        namespaces = list(getattr(ctx.runtime.config, "namespaces", []) or [])
        if namespaces:
            bodies = [b for ns in namespaces for b in await kube.list_custom(naming.MAYANODE_PLURAL, ns)]
        else:
            response = await asyncio.to_thread(kube.custom.list_cluster_custom_object, naming.GROUP, naming.VERSION,
                                               naming.MAYANODE_PLURAL, _preload_content=False)
            bodies = list((json.loads(response.data) if response.data else {}).get("items") or [])
        return [b for b in bodies if rollout_group(b) == group]

    async def _gates(self, ctx: NodeContext, target: str | None, flag_day: int | None,
                     network_height: int | None) -> list:
        spec, observed = ctx.spec, ctx.observed
        gates_spec = spec.upgrade.gates
        api, network = observed.api, (ctx.status.get("network") or {})
        account = api.account
        rest = spec.rest_url(ctx.namespace)
        timeout = float(spec.api.timeout_seconds)
        active_versions = None
        if gates_spec.adoption.mode == AdoptionMode.SHARE and not flag_day:
            active_versions = await _active_versions(ctx, rest, timeout)
        churn_in_progress = None
        node_status = account.status if account else (ctx.status.get("node") or {}).get("status")
        if node_status == "Active" and gates_spec.churn.avoid_while_active and not flag_day:
            churn_in_progress = await _migration_under_way(ctx, rest, timeout)
        chain = api.chain
        # The network's height as observed in this pass (spec.api.networkRpc), else the last one on record.
        chain_network_height = plan_network_height(chain, api.network_rpc)
        if chain_network_height is None:
            chain_network_height = (ctx.status.get("chain") or {}).get("networkHeight")
        heights = [h for h in (network_height, chain_network_height) if isinstance(h, int)]
        return evaluate_gates(GateInputs(
            target=str(target), running=observed.mayanode.version or api.network.querier_version,
            allow_downgrade=spec.upgrade.allow_downgrade,
            network_current=api.network.current_version or network.get("currentVersion"),
            network_next=api.network.next_version or network.get("nextVersion"),
            active_versions=active_versions, adoption_mode=gates_spec.adoption.mode,
            min_active_share=gates_spec.adoption.min_active_share,
            catching_up=chain.catching_up if chain else None, height=chain.height if chain else None,
            network_height=max(heights) if heights else None, max_height_lag=gates_spec.sync.max_height_lag,
            node_status=node_status, avoid_while_active=gates_spec.churn.avoid_while_active,
            only_when_standby=gates_spec.churn.only_when_standby,
            within_blocks_after_churn=gates_spec.churn.within_blocks_after_churn,
            last_churn_height=network.get("lastChurnHeight"), churn_in_progress=churn_in_progress,
            halt_policy=spec.halt_policy, halts=tuple(network.get("halts") or ()),
            windows=tuple(Window(w.schedule, w.duration_minutes) for w in gates_spec.maintenance_windows),
            now=ctx.now, flag_day=flag_day is not None,
        ))

    # ---- apply -----------------------------------------------------------------------------------
    async def _apply(self, ctx: NodeContext, plan: RolloutPlan, group: str | None, leases: RolloutLeases | None,
                     lease: Any, me: str) -> None:
        if plan.checkpoint:
            await ctx.record_now({"upgrade": without_nulls(plan.upgrade)})
        current = plan.upgrade.get("current") or (ctx.previous_status.get("upgrade") or {}).get("current") or {}
        version = str(current.get("to") or "")
        for action in plan.actions:
            if action.kind == "CreateBackup":
                await self._create_backup(ctx, action.backup_name, version)
            elif action.kind == "SetImage":
                try:
                    await self._workloads(ctx.runtime).set_image(ctx.namespace, action.deployment, action.container,
                                                                 action.image)
                except UnsafeWorkloadChange as err:
                    plan.conditions = [c for c in plan.conditions if c.type != "UpgradeBlocked"] + [
                        Condition("UpgradeBlocked", "True", "UnsafeWorkloadChange", str(err))]
                    plan.events = [EventSpec("Warning", "UpgradeRefused", str(err))]
                    plan.requeue_after = 30.0
                    return
            elif action.kind == "SendSetVersion":
                await self._send_set_version(ctx, plan)
            elif leases is not None and group is not None:
                await self._budget_action(ctx, plan, action, leases, lease, group, me, version)

    async def _budget_action(self, ctx: NodeContext, plan: RolloutPlan, action: Any, leases: RolloutLeases,
                             lease: Any, group: str, me: str, version: str) -> None:
        if action.kind == "AcquireBudget" and action.budget is not None:
            try:
                await leases.write(group, action.budget, lease.resource_version if lease else None, ctx.now)
            except LeaseConflict:
                plan.requeue_after = 0.2          # someone else decided meanwhile: decide again on fresh data
        elif action.kind == "RenewBudget":
            await leases.update(group, lambda s: renew_holder(s, me=me, version=version, now=ctx.now,
                                                              lease_seconds=LEASE_SECONDS), ctx.now)
        elif action.kind == "ReleaseBudget":
            await leases.update(group, lambda s: release_budget(s, me=me, version=version, result=action.result),
                                ctx.now)

    async def _create_backup(self, ctx: NodeContext, name: str, version: str) -> None:
        from ..plan.backup_policy import NewBackup, new_backup_body

        if ctx.spec.backup is None:
            return
        body = new_backup_body(ctx.namespace, ctx.name, ctx.spec.backup,
                               NewBackup(name, "PreUpgrade", f"before upgrading to {version}"))
        try:
            await asyncio.to_thread(ctx.runtime.kube.custom.create_namespaced_custom_object, naming.GROUP,
                                    naming.VERSION, ctx.namespace, naming.NODEBACKUP_PLURAL, body,
                                    _preload_content=False)
        except ApiException as err:
            if err.status != 409:            # created by an earlier pass that did not get to write status
                raise

    async def _send_set_version(self, ctx: NodeContext, plan: RolloutPlan) -> None:
        current = plan.upgrade["current"]
        outcome = await self._transactions(ctx.runtime).send(node_signer(ctx), TxRequest("set-version"))
        if outcome.ok:
            current["message"] = f"set-version sent (txhash {outcome.txhash})"
            plan.events.append(EventSpec("Normal", "VersionAnnounced",
                                         f"set-version sent for {current.get('to')} (txhash {outcome.txhash})"))
        elif outcome.kind == "transient" and not may_have_been_broadcast(outcome):
            current.pop("versionAnnounced", None)   # certainly not on chain: it may be sent again
            current["message"] = f"set-version not sent: {outcome.message}"
            plan.requeue_after = 5.0
            await ctx.record_now({"upgrade": without_nulls(plan.upgrade)})
        else:
            current["message"] = f"set-version answer: {outcome.message}"
            plan.events.append(EventSpec("Warning", "SetVersionFailed",
                                         f"set-version for {current.get('to')}: {outcome.message} (not sent again)"))

    # ---- node actions ----------------------------------------------------------------------------
    @staticmethod
    def _node_action_records(ctx: NodeContext, spec: Any, previous: Mapping[str, Any], plan: RolloutPlan,
                             approval: str | None, up_to_date: bool, target: str | None) -> list[dict] | None:
        """Upgrade requests are recorded in status.nodeActions once an upgrade used them (or had nothing to do)."""
        records = _node_action_records_so_far(ctx)
        changed = False
        finished = finished_request(previous, plan.upgrade)
        if finished is not None:
            request, state, message = finished
            records = upsert_record(records, {"id": request, "action": NodeActionType.UPGRADE.value, "state": state,
                                              "at": iso(ctx.now), "message": message})
            changed = True
        if approval and up_to_date and plan.upgrade.get("current") is None:
            records = upsert_record(records, {"id": approval, "action": NodeActionType.UPGRADE.value,
                                              "state": "Skipped", "at": iso(ctx.now),
                                              "message": f"mayanode and bifrost already run {target}"})
            changed = True
        return records if changed else None


def _node_action_records_so_far(ctx: NodeContext) -> list[dict[str, Any]]:
    """status.nodeActions as the NodeActions facet left it in this pass; as stored when that facet wrote nothing (it
    had nothing to do, or it failed): the list is written whole, so starting from nothing would drop its records."""
    if "nodeActions" in ctx.status:
        return list(ctx.status.get("nodeActions") or [])
    return list(ctx.previous_status.get("nodeActions") or [])


def record_finished_upgrades(ctx: NodeContext, previous: Mapping[str, Any], upgrade: Mapping[str, Any]) -> None:
    """Count each upgrade once, when its history entry first appears."""
    def key(entry: Mapping[str, Any]) -> tuple[Any, ...]:
        return entry.get("from"), entry.get("to"), entry.get("startedAt")

    seen = {key(entry) for entry in previous.get("history") or []}
    for entry in upgrade.get("history") or []:
        if key(entry) in seen:
            continue
        started, finished = _when(entry.get("startedAt")), _when(entry.get("finishedAt"))
        metrics.record_upgrade(ctx.namespace, ctx.name, result=str(entry.get("result")),
                               duration_seconds=(finished - started).total_seconds() if started and finished else None)


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


async def _active_versions(ctx: NodeContext, rest: str, timeout: float) -> tuple[str, ...] | None:
    try:
        doc = await fetch_json(ctx.runtime.http, f"{rest}/mayachain/nodes", timeout)
    except EndpointFailure:
        return None
    if not isinstance(doc, list):
        return None
    return tuple(str(n.get("version") or "") for n in doc if isinstance(n, dict) and n.get("status") == "Active")


async def _migration_under_way(ctx: NodeContext, rest: str, timeout: float) -> bool | None:
    """A retiring Asgard vault means funds are being migrated to the new vault: the churn is not over."""
    try:
        doc = await fetch_json(ctx.runtime.http, f"{rest}/mayachain/vaults/asgard", timeout)
    except EndpointFailure:
        return None
    if not isinstance(doc, list):
        return None
    return any(isinstance(v, dict) and v.get("status") == "RetiringVault" for v in doc)
