"""The baseline: a bare kopf operator watching the same five kinds as the operator, doing nothing with them.

    python bench/bare_kopf.py --kubeconfig PATH

Standalone, cluster-wide, one no-op `@kopf.on.event` per kind the operator watches (MayaNodes, NodeBackups,
NodeRestores, Deployments, pods; no finalizers, no annotations, no writes), `User-Agent: bare-kopf/…` so the benchmark can count its requests apart.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import aiohttp
import kopf
import yaml

GROUP, VERSION = "maya.nodeops.io", "v1alpha1"
registry = kopf.OperatorRegistry()
SERVER: dict[str, str] = {}


@kopf.on.login(registry=registry)
async def login(**_: object) -> kopf.AiohttpSession:
    session = aiohttp.ClientSession(headers={"User-Agent": f"bare-kopf/{kopf.__version__}"})
    return kopf.AiohttpSession(server=SERVER["url"], aiohttp_session=session)


# What the operator watches besides its own kinds (its pods and Deployments watches: mayanode_operator/main.py).
WORKLOAD_KINDS = (("apps", "v1", "deployments"), ("v1", "pods"))


def ignore_events(registry: kopf.OperatorRegistry, plurals: tuple[str, ...]) -> None:
    """Watch `plurals` of our group, and the workload kinds, with a no-op handler each (coroutines, as the
    operator's handlers are: kopf runs a plain function in its thread pool)."""
    for plural in plurals:
        @kopf.on.event(GROUP, VERSION, plural, registry=registry)
        async def seen(**_: object) -> None:
            """Nothing: the cost of watching the objects is what is measured."""
    for kind in WORKLOAD_KINDS:
        @kopf.on.event(*kind, id="workload", registry=registry)
        async def workload_seen(**_: object) -> None:
            """Nothing; not logged either, as the operator does not log its pod and Deployment events."""


class QuietWorkloads(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Handler 'workload' succeeded."


ignore_events(registry, ("mayanodes", "nodebackups", "noderestores"))


def run(registry: kopf.OperatorRegistry, server: dict[str, str]) -> None:
    """`--kubeconfig PATH`: its server's URL into `server["url"]` (for the login handler), then kopf, standalone and
    cluster-wide."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="uvloop, as `kopf run` picks when it is installed, or the standard library's")
    args = parser.parse_args()
    config = yaml.safe_load(open(args.kubeconfig))
    server["url"] = config["clusters"][0]["cluster"]["server"]
    logging.basicConfig(level=logging.INFO)          # as the operator logs: kopf says a line per handled event
    for handler in logging.getLogger().handlers:
        handler.addFilter(QuietWorkloads())
    factory = None
    if args.event_loop == "uvloop":
        import uvloop
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(kopf.operator(registry=registry, clusterwide=True, standalone=True))


if __name__ == "__main__":
    run(registry, SERVER)
