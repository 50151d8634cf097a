"""Runs the operator: kopf's watches and the reconcile workers side by side."""

from __future__ import annotations

import asyncio
import logging
import threading

import kopf

from .api import naming
from .config import OperatorConfig
from .main import registry
from .reconcile.mayanode import reconcile_mayanode
from .reconcile.runtime import ObjectKey, Runtime

logger = logging.getLogger(__name__)

RECONCILERS = {
    naming.MAYANODE_PLURAL: reconcile_mayanode,
}


def make_worker(runtime: Runtime):
    async def work(key: ObjectKey) -> float | None:
        plural, namespace, name = key
        reconcile = RECONCILERS.get(plural)
        if reconcile is None:
            return None
        return await reconcile(runtime, namespace, name)
    return work


async def run_operator(config: OperatorConfig, stop_flag: asyncio.Event | threading.Event | None = None,
                       ready_flag: asyncio.Event | threading.Event | None = None) -> None:
    runtime = await Runtime.create(config)
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
        await runtime.close()
