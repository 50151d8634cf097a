"""The baseline: a bare kopf operator watching the same three kinds, doing nothing with them.

    python bench/bare_kopf.py --kubeconfig PATH

Standalone, cluster-wide, one no-op `@kopf.on.event` per kind (no finalizers, no annotations, no
writes), `User-Agent: bare-kopf/…` so the benchmark can count its requests apart.
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


for plural in ("mayanodes", "nodebackups", "noderestores"):
    @kopf.on.event(GROUP, VERSION, plural, registry=registry)
    def seen(**_: object) -> None:
        """Nothing: the cost of watching and caching the objects is what is measured."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    args = parser.parse_args()
    config = yaml.safe_load(open(args.kubeconfig))
    SERVER["url"] = config["clusters"][0]["cluster"]["server"]
    logging.basicConfig(level=logging.INFO)          # as the operator logs: kopf says a line per handled event
    asyncio.run(kopf.operator(registry=registry, clusterwide=True, standalone=True))


if __name__ == "__main__":
    main()
