"""Node transactions (`mayanode tx mayachain …`): the command line and the meaning of an answer. Pure."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

TxKind = Literal["ok", "transient", "failed"]

# Errors that a later retry of the same transaction can fix.
TRANSIENT_PATTERNS = (
    re.compile(r"account sequence mismatch", re.I),
    re.compile(r"incorrect account sequence", re.I),
    re.compile(r"mempool is full", re.I),
    re.compile(r"tx already exists in cache", re.I),
    re.compile(r"connection refused", re.I),
    re.compile(r"(timed out|deadline exceeded|timeout)", re.I),
    re.compile(r"post failed", re.I),
    # The container runtime could not start the command at all (container restarting or stopped).
    re.compile(r"OCI runtime exec failed|unable to start container process|container not running", re.I),
)
TRANSIENT_CODES = {32, 19, 20}   # sequence mismatch, tx in mempool cache, mempool full


@dataclass(frozen=True)
class TxRequest:
    subcommand: str                       # set-ip-address | set-version | mimir | pause-chain | resume-chain | set-node-keys
    args: tuple[str, ...] = ()

    def describe(self) -> str:
        return " ".join((self.subcommand, *self.args))


@dataclass(frozen=True)
class TxOutcome:
    kind: TxKind
    code: int | None
    txhash: str | None
    raw_log: str
    message: str

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


def tx_command(request: TxRequest, signer_name: str, chain_id: str) -> list[str]:
    """The argv run in the mayanode container; the keyring password goes on stdin, never here.

    An argument that starts with `-` (a mimir vote of -1) would be read as a flag by the CLI's flag
    parser, so such arguments follow a `--` after the flags."""
    flags = ["--from", signer_name, "--keyring-backend", "file", "--chain-id", chain_id, "--yes", "--output", "json"]
    if any(arg.startswith("-") for arg in request.args):
        return ["mayanode", "tx", "mayachain", request.subcommand, *flags, "--", *request.args]
    return ["mayanode", "tx", "mayachain", request.subcommand, *request.args, *flags]


def classify_tx(exit_code: int, stdout: bytes, stderr: bytes) -> TxOutcome:
    """Read the CLI's JSON answer (or its error text) and say whether it worked, may work later, or failed."""
    doc = _first_json_object(stdout)
    text = (stderr.decode("utf-8", "replace") + " " + stdout.decode("utf-8", "replace")).strip()
    code = _int_or_none(doc.get("code")) if doc else None
    raw_log = str(doc.get("raw_log") or "") if doc else ""
    txhash = str(doc.get("txhash")) if doc and doc.get("txhash") else None
    if exit_code == 0 and doc is not None and (code or 0) == 0:
        return TxOutcome("ok", 0, txhash, raw_log, f"accepted, txhash {txhash}")
    detail = raw_log or text or f"exit code {exit_code}"
    if code in TRANSIENT_CODES or any(p.search(detail) for p in TRANSIENT_PATTERNS):
        return TxOutcome("transient", code, txhash, raw_log, _short(detail))
    return TxOutcome("failed", code, txhash, raw_log, _short(detail))


def _first_json_object(stdout: bytes) -> dict | None:
    for line in stdout.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(doc, dict):
                return doc
    return None


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


CODE_TX_IN_MEMPOOL_CACHE = 19
# The command never ran (the exec was refused at its upgrade, the runtime could not start it), or the CLI could
# not reach its node: nothing was broadcast.
_NOT_BROADCAST = re.compile(r"connection refused|post failed|not sent|no ready pod|password secret|\) refused: HTTP "
                            r"|OCI runtime exec failed|unable to start container process|container not running", re.I)


def may_have_been_broadcast(outcome: TxOutcome) -> bool:
    """False only when the answer shows the chain did not take the transaction: refused by the CLI or at CheckTx
    (a code other than "already in the mempool cache"), or never sent. A lost connection or a timeout is unknown,
    so True: a one-shot action must then wait for its effect, never send again."""
    if outcome.kind == "ok":
        return True
    if outcome.kind == "failed":
        return False
    if outcome.code is not None:
        return outcome.code == CODE_TX_IN_MEMPOOL_CACHE
    return not _NOT_BROADCAST.search(outcome.message)
