"""Sends node transactions through the exec port, retrying only what certainly did not reach the chain.

Every transaction of the operator goes through `TransactionSender.send`. Callers record in status
that a transaction was sent *before* resending anything, so a resync never sends twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from .. import metrics
from ..plan.transactions import TxOutcome, TxRequest, classify_tx, may_have_been_broadcast, tx_command
from .exec import ExecError, ExecPort

logger = logging.getLogger(__name__)


class TransactionSender:
    def __init__(self, exec_port: ExecPort, retry_delays: tuple[float, ...] = (1.0, 3.0)) -> None:
        self._exec = exec_port
        self._retry_delays = retry_delays

    async def send(self, *, namespace: str, pod: str, container: str, request: TxRequest,
                   password: str, signer_name: str, chain_id: str) -> TxOutcome:
        command = tx_command(request, signer_name, chain_id)
        outcome = TxOutcome("transient", None, None, "", "not sent")
        for attempt, delay in enumerate((0.0, *self._retry_delays)):
            if delay:
                await asyncio.sleep(delay)
            try:
                result = await self._exec.run(namespace, pod, container, command,
                                              stdin=(password + "\n").encode(), timeout=60)
            except ExecError as err:
                outcome = TxOutcome("transient", None, None, "", str(err))
            else:
                outcome = classify_tx(result.exit_code, result.stdout, result.stderr)
            logger.info("transaction %s in %s/%s: %s (%s), attempt %d",
                        request.subcommand, namespace, pod, outcome.kind, outcome.message, attempt + 1)
            if outcome.kind != "transient" or may_have_been_broadcast(outcome):
                return outcome          # done, or perhaps on its way: sending again could sign it twice
        return outcome


@dataclass(frozen=True)
class NodeSigner:
    """Where and as whom a node's transactions are signed (no secret here: the password is read when sending)."""

    namespace: str
    deployment: str
    container: str
    password_secret: str
    password_key: str
    signer_name: str
    chain_id: str
    node: str = ""          # the MayaNode, for metrics


class NodeTransactions:
    """A node's transactions: run in the mayanode container of a ready pod, with the keyring password read from
    its Secret just before sending and given on stdin only."""

    def __init__(self, kube: Any, sender: TransactionSender) -> None:
        self._kube = kube
        self._sender = sender

    async def send(self, signer: NodeSigner, request: TxRequest) -> TxOutcome:
        # Until the exec starts, a failure means "not sent" (an outcome, so the caller may send it again), not an
        # exception that would leave the transaction on record as sent.
        try:
            pod = await self._ready_pod(signer)
            secret = None if pod is None else await self._kube.read_secret(signer.namespace, signer.password_secret)
        except (ApiException, urllib3.exceptions.HTTPError, OSError, TimeoutError) as err:
            status = f" (HTTP {err.status})" if isinstance(err, ApiException) else ""
            logger.info("transaction %s in %s: not sent, its pod or password Secret could not be read: %s%s",
                        request.subcommand, signer.namespace, type(err).__name__, status)
            return TxOutcome("transient", None, None, "", f"not sent: reading its pod and password Secret failed: "
                                                          f"{type(err).__name__}{status}")
        if pod is None:
            logger.info("transaction %s in %s: not sent, no ready pod of deployment %s", request.subcommand,
                        signer.namespace, signer.deployment)
            return TxOutcome("transient", None, None, "",
                             f"not sent: no ready pod of deployment {signer.deployment} to run it in")
        if secret is None or signer.password_key not in secret:
            return TxOutcome("failed", None, None, "",
                             f"not sent: password Secret {signer.password_secret} (key {signer.password_key}) not found")
        password = secret[signer.password_key].decode("utf-8").rstrip("\n")
        outcome = await self._sender.send(namespace=signer.namespace, pod=pod, container=signer.container,
                                          request=request, password=password, signer_name=signer.signer_name,
                                          chain_id=signer.chain_id)
        metrics.record_transaction(signer.namespace, signer.node or signer.deployment, request.subcommand,
                                   outcome.kind)
        return outcome

    async def _ready_pod(self, signer: NodeSigner) -> str | None:
        deployment = await self._kube.get_deployment(signer.namespace, signer.deployment)
        labels = (((deployment or {}).get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not labels:
            return None
        for pod in await self._kube.list_pods(signer.namespace, labels):
            meta, status = pod.get("metadata") or {}, pod.get("status") or {}
            if meta.get("deletionTimestamp") or status.get("phase") != "Running":
                continue
            ready = {c.get("name"): bool(c.get("ready")) for c in status.get("containerStatuses") or []}
            if ready.get(signer.container):
                return str(meta.get("name"))
        return None
