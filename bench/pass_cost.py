"""The operator's own CPU per idle MayaNode pass, without the requests: what the fleet benchmark cannot separate.

    .venv/bin/python bench/pass_cost.py --passes 3000             # add --profile for cProfile's top functions

One node of the emulated cluster and mocknet is reconciled until its passes are idle; then the answers of its
last pass (the MayaNode from the API server, the six node-API routes, as bytes) are replayed to
`reconcile_mayanode` and the passes timed on the process's CPU clock. What is left is the pass's own work:
decoding and validating the answers, planning, the facets, the status writer, the metrics. Every request of a
pass is on top (about 0.1 ms each on this machine: `bench/request_cost.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from mayanode_operator.api import naming  # noqa: E402
from mayanode_operator.config import OperatorConfig  # noqa: E402
from mayanode_operator.observe import nodeapi  # noqa: E402
from mayanode_operator.reconcile.mayanode import reconcile_mayanode  # noqa: E402
from mayanode_operator.reconcile.runtime import Runtime  # noqa: E402
from mayanode_operator.sandbox.world import SandboxThread  # noqa: E402

NS = "pass-cost"
WATCHED = ("pods", "deployments", naming.NODERESTORE_PLURAL, naming.NODEBACKUP_PLURAL)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--passes", type=int, default=3000)
    parser.add_argument("--profile", action="store_true", help="print cProfile's 40 costliest functions")
    args = parser.parse_args()
    world = SandboxThread(block_interval=1.0).start()
    try:
        sandbox = world.sandbox
        node = world.call(sandbox.seed_node(NS), timeout=120)
        world.call(sandbox.wait_ready(NS), timeout=60)
        runtime: Runtime = world.call(Runtime.create(OperatorConfig(kubeconfig=str(world.kubeconfig_path))))
        runtime.watched.running = True
        body = {"apiVersion": naming.API_VERSION, "kind": "MayaNode", "metadata": {"name": NS, "namespace": NS},
                "spec": {"network": node.network, "nodeAddress": node.node_address,
                         "api": {"rest": node.rest_url, "rpc": node.rpc_url}}}
        world.call(asyncio.to_thread(runtime.kube.custom.create_namespaced_custom_object, naming.GROUP,
                                     naming.VERSION, NS, naming.MAYANODE_PLURAL, body))

        async def watches_show_everything() -> None:
            for kind in WATCHED:
                for obj in sandbox.api.store.list(kind, NS)["items"]:
                    meta = obj["metadata"]
                    runtime.watched.seen(kind, NS, meta["name"], meta["resourceVersion"])

        for _ in range(3):                                  # until the pass is idle: status written, reads kept
            world.call(reconcile_mayanode(runtime, NS, NS))
            world.call(watches_show_everything())
        answers = world.call(record_answers(runtime))
        print(f"replaying {len(answers)} node-API answers ({sum(map(len, answers.values()))} bytes) and the "
              f"MayaNode; {args.passes} passes", flush=True)
        writes = world.call(replay(runtime, answers))
        world.call(passes(runtime, 200))
        cpu, wall = time.process_time(), time.perf_counter()
        world.call(passes(runtime, args.passes), timeout=600)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"{cpu / args.passes * 1e3:.3f} ms of CPU per pass ({wall / args.passes * 1e3:.3f} ms wall), "
              f"{len(writes)} status writes")
        if args.profile:
            profile = cProfile.Profile()

            async def profiled() -> None:
                profile.enable()
                await passes(runtime, args.passes)
                profile.disable()
            world.call(profiled(), timeout=600)
            pstats.Stats(profile).sort_stats("tottime").print_stats(40)
        world.call(runtime.close())
    finally:
        world.stop()
    return 0


async def record_answers(runtime: Runtime) -> dict[str, bytes]:
    answers: dict[str, bytes] = {}
    fetch = nodeapi.fetch_body

    async def recording(session: Any, url: str, timeout: float) -> bytes:
        answers[url] = await fetch(session, url, timeout)
        return answers[url]
    nodeapi.fetch_body = recording
    try:
        await reconcile_mayanode(runtime, NS, NS)
    finally:
        nodeapi.fetch_body = fetch
    return answers


async def replay(runtime: Runtime, answers: dict[str, bytes]) -> list[Any]:
    """From now on the pass's requests are answered from memory; the answers are new bytes objects each time, as
    they would be off the wire. Returns the list that collects status writes (none expected: the pass is idle)."""
    mayanode = json.dumps(await runtime.kube.get_custom(naming.MAYANODE_PLURAL, NS, NS)).encode()
    writes: list[Any] = []

    async def get_custom(plural: str, namespace: str, name: str) -> dict[str, Any]:
        return json.loads(mayanode)

    async def patch_custom_status(*args: Any) -> dict[str, Any]:
        writes.append(args)
        return {}

    async def fetch_body(session: Any, url: str, timeout: float) -> bytes:
        return bytes(bytearray(answers[url]))

    runtime.kube.get_custom = get_custom                    # type: ignore[method-assign]
    runtime.kube.patch_custom_status = patch_custom_status  # type: ignore[method-assign]
    nodeapi.fetch_body = fetch_body
    return writes


async def passes(runtime: Runtime, count: int) -> None:
    for _ in range(count):
        await reconcile_mayanode(runtime, NS, NS)


if __name__ == "__main__":
    raise SystemExit(main())
