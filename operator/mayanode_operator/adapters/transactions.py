"""Sends node transactions through the exec port, retrying only what may work on a retry.

Every transaction of the operator goes through `TransactionSender.send`. Callers record in status
that a transaction was sent *before* resending anything, so a resync never sends twice.
"""

from __future__ import annotations

import asyncio
import logging

from ..plan.transactions import TxOutcome, TxRequest, classify_tx, tx_command
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
            if outcome.kind != "transient":
                return outcome
        return outcome
