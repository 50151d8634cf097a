"""How a facet reaches a node's transactions: the signer from the spec, the sender over the exec API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..adapters.exec import KubernetesExec
from ..adapters.transactions import NodeSigner, NodeTransactions, TransactionSender

TransactionsFactory = Callable[[Any], NodeTransactions]      # runtime → NodeTransactions


def kubernetes_transactions(runtime: Any) -> NodeTransactions:
    return NodeTransactions(runtime.kube, TransactionSender(KubernetesExec(runtime.kube.api_client)))


def node_signer(ctx: Any) -> NodeSigner:
    spec = ctx.spec
    return NodeSigner(namespace=ctx.namespace, deployment=spec.mayanode.deployment, container=spec.mayanode.container,
                      password_secret=spec.secrets.password.name, password_key=spec.secrets.password.key,
                      signer_name=spec.signer_name, chain_id=spec.effective_chain_id(), node=ctx.name)


def halts_of(ctx: Any) -> tuple[Any, ...]:
    """The halts in effect, as the core put them in this pass's status."""
    return tuple((ctx.status.get("network") or {}).get("halts") or ())


def chain_height(ctx: Any) -> int | None:
    chain = ctx.observed.api.chain
    return chain.height if chain else None
