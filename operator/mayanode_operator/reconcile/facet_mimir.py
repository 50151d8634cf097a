"""Facet `mimir`: this node's votes on chain → the smallest set of `mimir` transactions → status."""

from __future__ import annotations

from collections.abc import Mapping

from ..observe.nodeapi import EndpointFailure
from ..observe.votes import fetch_node_votes
from ..plan.conditions import Condition
from ..plan.mimir_votes import (
    CONDITION, MimirInputs, VotesLook, desired_votes, outcome_condition, plan_mimir, record_outcome, record_sent,
    votes_due,
)
from .facets import FacetOutcome, NodeContext
from .node_tx import TransactionsFactory, halts_of, kubernetes_transactions, node_signer

STATUS_KEY = "mimir"


async def own_votes(ctx: NodeContext) -> Mapping[str, int]:
    """This node's votes on chain: read, or the last read's while they are settled (plan/mimir_votes.votes_due)."""
    key = (ctx.namespace, ctx.name)
    last = ctx.runtime.votes_looks.get(key)
    if not votes_due(last, ctx.spec.mimir, ctx.previous_status.get(STATUS_KEY), ctx.now,
                     ctx.runtime.config.mimir_recheck_seconds):
        return last.own
    own = await fetch_node_votes(ctx.runtime.http, ctx.spec.rest_url(ctx.namespace), str(ctx.spec.node_address),
                                 float(ctx.spec.api.timeout_seconds))
    ctx.runtime.votes_looks[key] = VotesLook(ctx.now, desired_votes(ctx.spec.mimir), own)
    return own


class MimirFacet:
    name = "Mimir"
    owns_status_keys = (STATUS_KEY,)

    def __init__(self, transactions: TransactionsFactory = kubernetes_transactions) -> None:
        self._transactions = transactions

    async def reconcile(self, ctx: NodeContext) -> FacetOutcome:

        spec, previous = ctx.spec.mimir, ctx.previous_status.get(STATUS_KEY)
        if spec is None and not previous:
            return FacetOutcome()
        own, failure = None, None
        if spec is not None and ctx.spec.node_address:
            try:
                own = await own_votes(ctx)
            except EndpointFailure as err:
                failure = err
        plan = plan_mimir(MimirInputs(spec=spec, node_address=ctx.spec.node_address, own_votes=own,
                                      previous=previous, halt_policy=ctx.spec.halt_policy, halts=halts_of(ctx),
                                      now=ctx.now))
        condition, events = plan.condition, list(plan.events)
        if failure is not None:
            condition = Condition(CONDITION, "Unknown", "MimirUnavailable", failure.message)
        status = plan.status
        if plan.votes and status is not None:
            status = record_sent(status, plan.votes, ctx.now)
            await ctx.record_now({STATUS_KEY: status})
            transactions = self._transactions(ctx.runtime)
            for vote in plan.votes:
                outcome = await transactions.send(node_signer(ctx), vote.request)
                status, sent_events = record_outcome(status, vote, outcome, ctx.now)
                events += sent_events
            condition = outcome_condition(status, plan.votes)
        requeue = 3.0 if status and status.get("pending") else (15.0 if failure else None)
        return FacetOutcome(status={STATUS_KEY: status} if status is not None else {},
                            conditions=[condition] if condition else [], events=events, requeue_after=requeue)
