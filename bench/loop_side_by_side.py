"""Two operators on the same fleet at the same time, one on uvloop and one on asyncio's own loop.

    .venv/bin/python bench/loop_side_by_side.py --size 300 --windows 4

Fleet runs differ from one another by about ten per cent on this machine, more than an event loop changes; side by
side, both operators see the same objects, the same node API and the same machine load in every window. Both run
with the height refresh off (no writes: the two would otherwise write the same status twice), cluster-wide, on the
emulated cluster of bench/fleet.py (10 seeded node namespaces). Printed: CPU seconds of each per 60 s window.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import fleet


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--windows", type=int, default=4, help="60 s idle windows")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="loops-"))
    with fleet.SandboxThread(block_interval=1.0, workdir=workdir) as world:
        sb = world.sandbox
        nodes = fleet.seed_namespaces(world, 10, "loops")
        procs = {}
        for loop in ("asyncio", "uvloop"):
            env = {"MAYANODE_OPERATOR_METRICS_PORT": str(fleet.free_port()), "MAYANODE_OPERATOR_EVENT_LOOP": loop,
                   "MAYANODE_OPERATOR_HEIGHT_REFRESH_SECONDS": "1000000000"}
            procs[loop] = fleet.Proc([sys.executable, "-m", "mayanode_operator.cli", "run",
                                      "--kubeconfig", str(sb.kubeconfig_path)], workdir / f"{loop}.log", env)
        try:
            bodies = [fleet.mayanode(i, nodes[i % len(nodes)]) for i in range(args.size)]
            world.call(fleet._create_all(sb.client, bodies), timeout=600)
            fleet._wait_ready(world, bodies, timeout=600)
            time.sleep(40)                                    # past the first passes' burst
            totals = dict.fromkeys(procs, 0.0)
            for window in range(args.windows):
                before = {name: p.cpu() for name, p in procs.items()}
                time.sleep(60)
                used = {name: p.cpu() - before[name] for name, p in procs.items()}
                for name, seconds in used.items():
                    totals[name] += seconds
                print(f"window {window + 1}: " + ", ".join(f"{name} {s:.2f} s" for name, s in used.items()), flush=True)
            print(f"{args.size} MayaNodes, {args.windows} × 60 s: uvloop / asyncio = "
                  f"{totals['uvloop']:.2f} / {totals['asyncio']:.2f} s ({totals['uvloop'] / totals['asyncio']:.2f})")
        finally:
            for p in procs.values():
                p.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
