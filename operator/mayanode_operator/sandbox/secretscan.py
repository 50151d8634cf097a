"""Secret hygiene: collect everything that leaves the operator and search it for the seeded secrets.

    recorder = OutboundRecorder().install(sandbox.api)      # what the operator sends to the API server
    ...                                                     # run scenarios (operator with --metrics-port)
    outputs = collect_outputs(sandbox, log_paths=[operator.log_path], metrics_url=..., recorder=recorder)
    leaks = SecretScanner(identity_secrets(node.identity) + [Secret("age identity", age_key)]).scan(outputs)
    assert not leaks, "\\n".join(map(str, leaks))

What is collected (each becomes one named text):
- the operator's log files (JSON lines: messages, exception messages and tracebacks);
- every Event in the cluster (reason, message, and the rest of the object);
- every MayaNode, NodeBackup and NodeRestore: status, metadata (annotations, labels) — the spec is the
  user's and is left out;
- every ConfigMap (a secret in a ConfigMap is a leak whoever wrote it);
- what the operator sent to the API server: paths with their queries (an exec's argv travels there) and
  request bodies, except bodies written to Secrets (writing the mnemonic Secret is the operator's job);
- the metrics text, when a metrics URL is given.

What is searched: the mnemonic (whole, and any 4 consecutive words), the keyring password, the consensus
and p2p private keys (64-byte form and the 32-byte seed, as standard/URL-safe base64 and lower/upper hex),
and any extra secret given (an age identity, S3 keys).
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from ..api import naming
from .apiserver.handlers import request_info
from .faults import is_operator_request

CUSTOM_KINDS = (f"{naming.MAYANODE_PLURAL}.{naming.GROUP}", f"{naming.NODEBACKUP_PLURAL}.{naming.GROUP}",
                f"{naming.NODERESTORE_PLURAL}.{naming.GROUP}")
MNEMONIC_WINDOW = 4


@dataclass(frozen=True)
class Secret:
    label: str
    value: str

    def __repr__(self) -> str:                       # a failing assertion must not print the secret itself
        return f"Secret({self.label!r}, <{len(self.value)} chars>)"


@dataclass(frozen=True)
class Leak:
    secret: str          # the label, never the value
    source: str
    context: str         # the text around the hit with the secret itself masked

    def __str__(self) -> str:
        return f"{self.secret} found in {self.source}: …{self.context}…"


def byte_forms(label: str, raw: bytes) -> list[Secret]:
    return [Secret(f"{label} (base64)", base64.b64encode(raw).decode()),
            Secret(f"{label} (base64url)", base64.urlsafe_b64encode(raw).decode().rstrip("=")),
            Secret(f"{label} (hex)", raw.hex()),
            Secret(f"{label} (HEX)", raw.hex().upper())]


def identity_secrets(identity: Any) -> list[Secret]:
    """Every secret of a sandbox `NodeIdentity` in the forms it could leak in."""
    secrets = [Secret("mnemonic", identity.mnemonic), Secret("keyring password", identity.password)]
    words = identity.mnemonic.split()
    for i in range(len(words) - MNEMONIC_WINDOW + 1):
        secrets.append(Secret(f"mnemonic words {i + 1}-{i + MNEMONIC_WINDOW}",
                              " ".join(words[i:i + MNEMONIC_WINDOW])))
    for label, key in (("consensus private key", identity.consensus_private_key),
                       ("p2p private key", identity.node_private_key)):
        secrets += byte_forms(label, key)
        secrets += byte_forms(f"{label} seed", key[:32])
    return secrets


class SecretScanner:
    def __init__(self, secrets: Iterable[Secret]) -> None:
        self.secrets = [s for s in secrets if len(s.value) >= 8]

    def scan_text(self, source: str, text: str) -> list[Leak]:
        leaks = []
        for secret in self.secrets:
            at = text.find(secret.value)
            if at >= 0:
                before = text[max(0, at - 60):at]
                after = text[at + len(secret.value):at + len(secret.value) + 60]
                leaks.append(Leak(secret.label, source, f"{before}<{secret.label}>{after}"))
        return leaks

    def scan(self, outputs: Mapping[str, str]) -> list[Leak]:
        return [leak for source, text in outputs.items() for leak in self.scan_text(source, text)]


class OutboundRecorder:
    """A request hook keeping what the operator sends: method, path and query, body (not Secret bodies)."""

    def __init__(self) -> None:
        self.entries: list[str] = []
        self._lock = threading.Lock()

    def install(self, server: Any) -> "OutboundRecorder":
        server.add_request_hook(self)
        return self

    async def __call__(self, request: web.Request, call_next: Any) -> web.StreamResponse:
        if is_operator_request(request):
            info = request_info(request)
            body = b""
            if request.can_read_body and info.resource != "secrets":
                body = await request.read()
            with self._lock:
                self.entries.append(f"{request.method} {request.path_qs} {body.decode('utf-8', 'replace')}")
        return await call_next(request)

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.entries)


def _store_texts(store: Any) -> dict[str, str]:
    texts: dict[str, str] = {}
    events = store.items("events")
    texts["events"] = "\n".join(json.dumps(e, sort_keys=True) for e in events)
    for resource in CUSTOM_KINDS:
        try:
            items = store.items(resource)
        except Exception:                                  # the CRD is not installed in this world
            continue
        texts[f"{resource} status+metadata"] = "\n".join(
            json.dumps({"metadata": i.get("metadata"), "status": i.get("status")}, sort_keys=True) for i in items)
    texts["configmaps"] = "\n".join(json.dumps(c, sort_keys=True) for c in store.items("configmaps"))
    return texts


def collect_outputs(world: Any, *, log_paths: Sequence[str | Path] = (), metrics_url: str | None = None,
                    recorder: OutboundRecorder | None = None) -> dict[str, str]:
    """Everything that left the operator, by source (see the module docstring). `world`: has `.sandbox`."""
    store = world.sandbox.api.store

    async def read_store() -> dict[str, str]:
        return _store_texts(store)

    outputs = dict(world.call(read_store()))
    for path in log_paths:
        outputs[f"log {Path(path).name}"] = Path(path).read_text(errors="replace") if Path(path).exists() else ""
    if recorder is not None:
        outputs["requests sent by the operator"] = recorder.text()
    if metrics_url:
        with urllib.request.urlopen(metrics_url, timeout=10) as response:     # noqa: S310 (loopback)
            outputs["metrics"] = response.read().decode("utf-8", "replace")
    return outputs


__all__ = ["Leak", "OutboundRecorder", "Secret", "SecretScanner", "byte_forms", "collect_outputs",
           "identity_secrets"]
