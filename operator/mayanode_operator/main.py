"""kopf handlers: each one wires an event to the work queue or to a login; nothing decides here."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import kopf

from .adapters.kube import bearer_authorization, watch_session_options
from .api import naming
from .plan.backup_deletion import DELETE_FINALIZER
from .reconcile.runtime import Runtime
from .settings import DEPLOYMENTS, PODS, apply_settings

registry = kopf.OperatorRegistry()
logger = logging.getLogger(__name__)


def watch_event_action(event_type: str | None, body: Any) -> str:
    """Reconcile on first sight, on spec changes and on a deletion that waits for our finalizer (a NodeBackup with
    deletionPolicy Delete); our own status writes must not loop back."""
    if event_type == "DELETED":
        return "forget"
    if event_type in (None, "ADDED"):
        return "reconcile"
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp") and DELETE_FINALIZER in (meta.get("finalizers") or ()):
        return "reconcile"
    generation = (body.get("metadata") or {}).get("generation")
    observed = (body.get("status") or {}).get("observedGeneration")
    return "reconcile" if generation != observed else "ignore"
WATCHED_PLURALS = (naming.MAYANODE_PLURAL, naming.NODEBACKUP_PLURAL, naming.NODERESTORE_PLURAL)


@kopf.on.startup(registry=registry)
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Apply the operator's kopf settings; from now on, the watches below tell the runtime what changes."""
    apply_settings(settings, memo.runtime.config)
    memo.runtime.watched.running = True


@kopf.on.login(registry=registry)
async def login(memo: kopf.Memo, **_: Any) -> kopf.AiohttpSession:
    """Log in with the same credentials as the operator's own client, on a capped connection pool. kopf logs in again
    when the API server answers 401: the token is read through the client's refresh hook (a rotated service-account
    token file, an exec plugin's expired token), never reused from the last login."""
    runtime: Runtime = memo.runtime
    cfg = runtime.kube.api_client.configuration
    token = await asyncio.to_thread(bearer_authorization, cfg)
    scheme, _, value = (token or "").partition(" ")
    info = kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
        scheme=scheme if value else ("Bearer" if token else None),
        token=value or token,
        username=cfg.username or None,
        password=cfg.password or None,
    )
    proxy, problems = watch_session_options(cfg)
    for problem in problems:
        logger.warning("kubeconfig: %s", problem)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=runtime.config.kopf_connection_limit(), ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        proxy=proxy,
    )
    return kopf.AiohttpSession(server=info.server, aiohttp_session=session)


def _seen(memo: kopf.Memo, kind: str, event: dict[str, Any], body: kopf.Body) -> None:
    meta = body.get("metadata") or {}
    memo.runtime.watched.seen(kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""),
                              str(meta.get("resourceVersion") or ""), deleted=event.get("type") == "DELETED")


# The event handlers are coroutines so that kopf calls them on the event loop: a plain function would run in
# kopf's thread pool (a thread hop per watch event), and the work queue, like asyncio, is not thread-safe.
def _enqueue(memo: kopf.Memo, plural: str, event: dict[str, Any], body: kopf.Body) -> None:
    runtime: Runtime = memo.runtime
    key = (plural, body.metadata.namespace, body.metadata.name)
    match watch_event_action(event.get("type"), body):
        case "forget":
            runtime.queue.forget(key)
        case "reconcile":
            runtime.queue.add(key)


@kopf.on.event(naming.GROUP, naming.VERSION, naming.MAYANODE_PLURAL, registry=registry)
async def mayanode_event(event: dict[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Every watch event of a MayaNode queues a reconcile (no finalizer, no annotations written); a deletion also
    drops what the runtime remembers of it (no pass runs to find it gone)."""
    if event.get("type") == "DELETED":
        memo.runtime.forget_mayanode(body.metadata.namespace, body.metadata.name, body.metadata.uid)
    _enqueue(memo, naming.MAYANODE_PLURAL, event, body)


@kopf.on.event(naming.GROUP, naming.VERSION, naming.NODEBACKUP_PLURAL, registry=registry)
async def nodebackup_event(event: dict[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Every watch event of a NodeBackup queues a step of its state machine (no kopf finalizer; ours only with
    deletionPolicy Delete)."""
    _seen(memo, naming.NODEBACKUP_PLURAL, event, body)
    _enqueue(memo, naming.NODEBACKUP_PLURAL, event, body)


@kopf.on.event(naming.GROUP, naming.VERSION, naming.NODERESTORE_PLURAL, registry=registry)
async def noderestore_event(event: dict[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Every watch event of a NodeRestore queues a step of its state machine (no finalizer written)."""
    _seen(memo, naming.NODERESTORE_PLURAL, event, body)
    _enqueue(memo, naming.NODERESTORE_PLURAL, event, body)


# Watched only to know when what a pass read of a namespace changes (reconcile/watched.py), and only those the
# workload selector picks (settings.py); nothing is written to these objects and their events are not logged
# (`logs.QUIET_KOPF_HANDLERS`).
@kopf.on.event(*DEPLOYMENTS, registry=registry)
async def deployment_event(event: dict[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A Deployment changed: what passes read of its namespace is read again."""
    _seen(memo, "deployments", event, body)


@kopf.on.event(*PODS, registry=registry)
async def pod_event(event: dict[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A pod changed: what passes read of its namespace is read again."""
    _seen(memo, "pods", event, body)


@kopf.on.probe(id="queue", registry=registry)
def queue_depth(memo: kopf.Memo, **_: Any) -> int:
    """Liveness detail: how many objects wait for a reconcile."""
    return len(memo.runtime.queue)
