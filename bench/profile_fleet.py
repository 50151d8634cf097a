"""Where the operator's CPU goes on an idle fleet: py-spy samples it while N MayaNodes are reconciled.

    .venv/bin/pip install py-spy==0.4.1
    .venv/bin/python bench/profile_fleet.py --size 300 --seconds 60 --out bench/results

Writes <out>/profile-<N>.txt: the share of samples (all threads, idle ones excluded) spent under each
part of a reconcile (kube reads in the official client, the node API, pydantic, planning, logging, kopf).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fleet  # noqa: E402

# (label, substring of a frame "function (file)") — the first match from the top of a stack wins.
PARTS = [
    ("kube API reads: kubernetes client in threads", "kubernetes/client"),
    ("kube API reads: urllib3", "urllib3/"),
    ("kube API reads: aiohttp on the event loop", "adapters/kube.py"),
    ("node API: aiohttp client", "observe/nodeapi.py"),
    ("status planning", "plan/"),
    ("pydantic validation", "pydantic"),
    ("facets", "reconcile/facet"),
    ("logging", "logging/"),
    ("kopf watch streams and handlers", "kopf/"),
    # On uvloop the loop's own work (system calls, callbacks) is C code under asyncio's runner frame.
    ("event loop", "asyncio/"),
]


def classify(stack: str) -> str:
    for label, needle in PARTS:
        if needle in stack:
            return label
    return "other"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--out", default=str(fleet.ROOT / "bench" / "results"))
    parser.add_argument("--keep-raw", action="store_true", help="keep py-spy's raw stacks (profile-N.raw)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with fleet.SandboxThread(block_interval=1.0, workdir=out / f"profile-{args.size}") as world:
        sb = world.sandbox
        k = min(args.size, 10)
        nodes = fleet.seed_namespaces(world, k, "prof")
        op = fleet.Proc([sys.executable, "-m", "mayanode_operator.cli", "run", "--kubeconfig", str(sb.kubeconfig_path)],
                        out / f"profile-{args.size}" / "operator.log", {"MAYANODE_OPERATOR_METRICS_PORT": "0"})
        try:
            bodies = fleet.mayanodes(world, args.size, nodes)
            world.call(fleet._create_all(sb.client, bodies), timeout=600)
            fleet._wait_ready(world, bodies, timeout=600)
            time.sleep(40)
            raw = out / f"profile-{args.size}.raw"
            subprocess.run([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(op.popen.pid),
                            "--duration", str(args.seconds), "--rate", "100", "--format", "raw", "--nonblocking",
                            "--output", str(raw)], check=True, capture_output=True)
        finally:
            op.stop()
    parts: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        leaf = frames[-1] if frames else ""
        if any(idle in leaf for idle in ("select (", "wait (threading", "_worker (concurrent", "epoll", "sleep (")):
            continue                                  # a waiting thread, not work
        parts[classify(stack)] += int(count)
        functions[leaf] += int(count)
    total = sum(parts.values()) or 1
    lines = [f"py-spy, {args.size} MayaNodes, {args.seconds}s of idle reconciles, {total} busy samples at 100 Hz"]
    lines += [f"{100 * n / total:5.1f}%  {label}" for label, n in parts.most_common()]
    lines += ["", "hottest leaf frames:"] + [f"{100 * n / total:5.1f}%  {f}" for f, n in functions.most_common(15)]
    (out / f"profile-{args.size}.txt").write_text("\n".join(lines) + "\n")
    if not args.keep_raw:
        raw.unlink()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
