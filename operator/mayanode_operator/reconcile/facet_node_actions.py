"""Facet `nodeActions`: one-shot requests (pause-chain, resume-chain, announce IP), each done at most once."""

from __future__ import annotations


from ..api.mayanode import ExternalIPSource
from ..plan.node_actions import (
    HANDLED,
    NodeActionInputs,
    NodeFacts,
    condition_for,
    pending_record,
    plan_node_actions,
    record_outcome,
    upsert_record,
)
from .node_tx import TransactionsFactory, chain_height, halts_of, kubernetes_transactions, node_signer

from .facets import FacetOutcome, NodeContext

STATUS_KEY = "nodeActions"
NODE_PAUSE_MIMIR = "NODEPAUSECHAINGLOBAL"


def node_facts(ctx: NodeContext) -> NodeFacts:
    account = ctx.observed.api.account
    network = ctx.status.get("network") or {}
    managed = ctx.spec.external_ip is not None and ctx.spec.external_ip.source != ExternalIPSource.NONE
    external = (ctx.status.get("externalIP") or {}) if managed else {}
    return NodeFacts(
        node_status=account.status if account else None,
        height=chain_height(ctx),
        node_pause_until=dict(ctx.observed.api.network.mimir).get(NODE_PAUSE_MIMIR, 0),
        last_churn_height=network.get("lastChurnHeight"),
        external_address=external.get("address"),
        registered_ip=(account.ip_address or None) if account else None,
        announcement_pending=(external.get("pending") or {}).get("address"),
    )


class NodeActionsFacet:
    name = "NodeActions"
    owns_status_keys = (STATUS_KEY,)

    def __init__(self, transactions: TransactionsFactory = kubernetes_transactions) -> None:
        self._transactions = transactions

    async def reconcile(self, ctx: NodeContext) -> FacetOutcome:

        requests = list(ctx.spec.node_actions)
        records = list(ctx.status.get(STATUS_KEY) or ctx.previous_status.get(STATUS_KEY) or [])
        if not requests and not records:
            return FacetOutcome()
        facts = node_facts(ctx)
        plan = plan_node_actions(NodeActionInputs(requests=requests, records=records, facts=facts,
                                                  halt_policy=ctx.spec.halt_policy, halts=halts_of(ctx),
                                                  now=ctx.now))
        records, condition, events = plan.records, plan.condition, list(plan.events)
        if plan.send is not None and plan.tx is not None:
            records = upsert_record(records, pending_record(plan.send, ctx.now, facts))
            await ctx.record_now({STATUS_KEY: records})
            outcome = await self._transactions(ctx.runtime).send(node_signer(ctx), plan.tx)
            records, sent_events = record_outcome(records, plan.send, plan.tx, outcome, ctx.now, facts)
            events += sent_events
            ours = [r for r in requests if r.action in HANDLED]
            done = {r.get("id") for r in records}
            condition = condition_for(ours, records, todo=[r for r in ours if r.id not in done])
        in_flight = any(r.get("state") == "Sent" for r in records)
        waiting = any(r.action in HANDLED and r.id not in {x.get("id") for x in records} for r in requests)
        return FacetOutcome(status={STATUS_KEY: records}, conditions=[condition] if condition else [],
                            events=events, requeue_after=3.0 if in_flight or waiting else None)

