"""Facet `externalIP`: observe the address source, plan, then write ConfigMaps → announce → restart pods."""

from __future__ import annotations


from ..adapters.workloads import UnsafeWorkloadChange, Workloads
from ..api import naming
from ..api.mayanode import ExternalIPSource
from ..observe.gateway import (
    ANNOTATION_RECORDED,
    ANNOTATION_RESTART,
    ANNOTATION_WRITTEN_AT,
    ENV_NAME,
    Resolver,
    observe_external_ip,
    system_resolver,
)
from ..plan.conditions import Condition
from ..plan.events import EventSpec
from ..plan.external_ip import (
    CONDITION,
    ConfigMapWrite,
    DeploymentChange,
    ExternalIPInputs,
    plan_external_ip,
    record_outcome,
    record_sent,
)
from ..plan.external_ip import iso as _iso
from .node_tx import TransactionsFactory, chain_height, halts_of, kubernetes_transactions, node_signer

from .facets import FacetOutcome, NodeContext
from .runtime import TRANSIENT_ERRORS

STATUS_KEY = "externalIP"
PROGRESS_REQUEUE_SECONDS = 3.0       # look again soon while the chain or the pods catch up (about a block)


class ExternalIPFacet:
    name = "ExternalIP"
    owns_status_keys = (STATUS_KEY,)

    def __init__(self, transactions: TransactionsFactory = kubernetes_transactions,
                 resolver: Resolver = system_resolver) -> None:
        self._transactions = transactions
        self._resolver = resolver

    async def reconcile(self, ctx: NodeContext) -> FacetOutcome:

        spec = ctx.spec.external_ip
        if spec is None:
            return FacetOutcome()            # not managed: the core reports the registered IP
        account = ctx.observed.api.account
        registered = account.ip_address if account else None
        if spec.source == ExternalIPSource.NONE:
            return FacetOutcome(status={STATUS_KEY: {"address": registered or None, "source": "None"}
                                        if registered else {"source": "None"}})

        namespace = ctx.namespace
        observed = await observe_external_ip(
            ctx.runtime.kube, namespace,
            service=spec.service.name if spec.source == ExternalIPSource.SERVICE else None,
            config_maps=spec.config_maps,
            deployments=[ctx.spec.mayanode.deployment, ctx.spec.bifrost.deployment],
            resolve_timeout=float(ctx.spec.api.timeout_seconds), resolver=self._resolver, known=ctx.observed.objects)
        previous_condition = next((c for c in ctx.previous_status.get("conditions") or ()
                                   if c.get("type") == CONDITION), None)
        plan = plan_external_ip(ExternalIPInputs(
            spec=spec, observed=observed, registered_ip=registered, account_expected=bool(ctx.spec.node_address),
            previous=ctx.previous_status.get(STATUS_KEY), previous_condition=previous_condition,
            halt_policy=ctx.spec.halt_policy, halts=halts_of(ctx), now=ctx.now, height=chain_height(ctx),
            workloads_locked=ctx.workloads_locked))

        status, condition, events = dict(plan.status), plan.condition, list(plan.events)
        address = plan.address.address
        if plan.config_map_writes and address:
            await self._write_config_maps(ctx, plan.config_map_writes)
            names = ", ".join(w.name for w in plan.config_map_writes)
            events.append(EventSpec("Normal", "ExternalIPWritten", f"wrote {address} to ConfigMap(s) {names}"))

        if plan.announce is not None:
            status = record_sent(status, plan.announce, now=ctx.now, height=chain_height(ctx),
                                 attempts=plan.attempts, note=plan.resend_note)
            await ctx.record_now({STATUS_KEY: status})
            outcome = await self._transactions(ctx.runtime).send(node_signer(ctx), plan.announce)
            status, condition, sent_events = record_outcome(status, plan.announce, outcome, now=ctx.now)
            events += sent_events

        if plan.deployment_changes and address:
            try:
                refused = await self._change_deployments(ctx, address, plan.deployment_changes, events)
            except TRANSIENT_ERRORS as err:
                # What the send taught this pass (sent, or certainly not) must reach the status all the same: an
                # exception here would leave the record saying "sent" for a transaction that did not go out.
                if plan.announce is None:
                    raise
                refused = None
                condition = Condition(CONDITION, "False", "RestartFailed",
                                      f"restarting the pods for {address} failed ({type(err).__name__}); retrying")
            if refused:
                condition = Condition(CONDITION, "False", "RestartRefused", refused)
                events.append(EventSpec("Warning", "ActionRefused", refused))

        requeue = None
        if condition is not None and condition.status != "True":
            requeue = 10.0
        if plan.config_map_writes or plan.restarts or status.get("pending"):
            requeue = PROGRESS_REQUEUE_SECONDS
        return FacetOutcome(status={STATUS_KEY: status}, conditions=[condition] if condition else [],
                            events=events, requeue_after=requeue)

    async def _write_config_maps(self, ctx: NodeContext, writes: tuple[ConfigMapWrite, ...]) -> None:
        kube = ctx.runtime.kube
        for write in writes:
            annotations = {ANNOTATION_WRITTEN_AT: _iso(ctx.runtime.now())}
            if write.create:
                await kube.create_configmap(ctx.namespace, {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": write.name, "namespace": ctx.namespace, "annotations": annotations,
                                 "labels": {naming.LABEL_MANAGED_BY: naming.FIELD_MANAGER,
                                            naming.LABEL_NODE: ctx.name}},
                    "data": {naming.EXTERNAL_IP_KEY: write.value},
                })
            else:
                await kube.patch_configmap(ctx.namespace, write.name, {
                    "metadata": {"annotations": annotations}, "data": {naming.EXTERNAL_IP_KEY: write.value}})

    async def _change_deployments(self, ctx: NodeContext, address: str, changes: tuple[DeploymentChange, ...],
                                  events: list[EventSpec]) -> str | None:
        """Restart (or only record) each Deployment; the reason a restart was refused, if one was."""
        workloads = Workloads(ctx.runtime.kube)
        record = {ANNOTATION_RECORDED: address}
        for change in changes:
            if not change.restart:
                await workloads.annotate(ctx.namespace, change.deployment, record)
                continue
            env: dict[str, dict[str, str]] = {c: {ENV_NAME: v} for c, v in change.env}
            try:
                await workloads.restart(ctx.namespace, change.deployment, template_annotations={
                    ANNOTATION_RESTART: address}, annotations=record, env=env or None)
            except UnsafeWorkloadChange as err:
                return f"not restarting deployment {change.deployment} for EXTERNAL_IP {address}: {err}"
            events.append(EventSpec("Normal", "PodsRestarted", f"restarting deployment {change.deployment} so "
                                    f"EXTERNAL_IP is {address}: {change.reason}"))
        return None
