"""Runs the operator: kopf's watches and the reconcile workers side by side."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import kopf

from . import metrics
from .api import naming
from .config import OperatorConfig
from .main import registry
from .reconcile.mayanode import reconcile_mayanode
from .reconcile.nodebackup import reconcile_nodebackup
from .reconcile.noderestore import reconcile_noderestore
from .reconcile.runtime import ObjectKey, Runtime

logger = logging.getLogger(__name__)

RECONCILERS = {
    naming.MAYANODE_PLURAL: reconcile_mayanode,
    naming.NODEBACKUP_PLURAL: reconcile_nodebackup,
    naming.NODERESTORE_PLURAL: reconcile_noderestore,
}


def make_worker(runtime: Runtime):
    async def work(key: ObjectKey) -> float | None:
        plural, namespace, name = key
        reconcile = RECONCILERS.get(plural)
        if reconcile is None:
            return None
        with metrics.track_reconcile(plural):
            delay = await reconcile(runtime, namespace, name)
        if delay is None:
            metrics.forget_object(plural, namespace, name)
        return delay
    return work


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop to run on: uvloop when asked for and installed (it is not on Windows), else the standard one."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            logger.warning("uvloop is not installed: running on the standard asyncio event loop")
            return None
        return uvloop.new_event_loop
    return None


def run_until_done(main: Coroutine[Any, Any, None], event_loop: str) -> None:
    with asyncio.Runner(loop_factory=loop_factory(event_loop)) as runner:
        runner.run(main)


async def run_operator(config: OperatorConfig, stop_flag: asyncio.Event | threading.Event | None = None,
                       ready_flag: asyncio.Event | threading.Event | None = None) -> None:
    runtime = await Runtime.create(config)
    metrics.bind_queue(runtime.queue)
    runtime.queue.on_forget = metrics.forget_key
    metrics_server = metrics.serve(config.metrics_port)
    workers = asyncio.create_task(runtime.queue.run(make_worker(runtime), concurrency=config.workers))
    try:
        await kopf.operator(
            registry=registry,
            memo=kopf.Memo(runtime=runtime),
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            standalone=config.peering is None,
            peering_name=config.peering,
            liveness_endpoint=config.liveness_endpoint,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        workers.cancel()
        await asyncio.gather(workers, return_exceptions=True)
        if metrics_server is not None:
            metrics_server.stop()
        await runtime.close()
