"""Two operators on the same fleet at the same time, differing only in their environment.

    .venv/bin/python bench/side_by_side.py --size 300 --windows 3 \
        --a MAYANODE_OPERATOR_EVENT_LOOP=asyncio --b MAYANODE_OPERATOR_EVENT_LOOP=uvloop
    git worktree add /tmp/before HEAD~1 && .venv/bin/python bench/side_by_side.py --a PYTHONPATH=/tmp/before/operator

Settings are MAYANODE_OPERATOR_* variables, or PYTHONPATH: the operator package of another checkout (two versions
of the code).

Fleet runs differ from one another by about ten per cent on this machine, more than most changes do; side by side,
both operators see the same objects, the same node API and the same machine load in every window. Both run with the
height refresh off (no writes: the two would otherwise write the same status twice), cluster-wide, on the emulated
cluster of bench/fleet.py (10 seeded node namespaces, each MayaNode at node-API addresses of its own). Printed: CPU
seconds of each per 60 s window, and b / a over all windows, and each one's peak RSS.

`--other-pods N` adds what a real cluster holds beside the nodes: N pods of other workloads, half in the node
namespaces (a node-launcher namespace also runs the gateway, midgard and the chain daemons), half in namespaces
of their own, bound to a node the emulated kubelet does not run; `--other-pod-updates R` changes R of them a
second (a new annotation, as a status update makes a new resourceVersion). E.g. the workload selector:

    .venv/bin/python bench/side_by_side.py --size 300 --windows 3 --other-pods 3000 --other-pod-updates 20 \
        --a MAYANODE_OPERATOR_WORKLOAD_SELECTOR=
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import fleet


def environment(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not (name.startswith("MAYANODE_OPERATOR_") or name == "PYTHONPATH"):
            raise SystemExit(f"expected MAYANODE_OPERATOR_NAME=value or PYTHONPATH=dir, got {pair!r}")
        env[name] = value
    return env


def other_pods(world, count: int, node_namespaces: list[str]) -> list[tuple[str, str]]:  # noqa: ANN001
    """`count` pods of other workloads: half in the node namespaces, half in ten namespaces of their own."""
    store = world.sandbox.api.store
    own = [f"other-{j:02d}" for j in range(10)]
    made = []

    async def create() -> None:
        for namespace in own:
            store.create("namespaces", {"metadata": {"name": namespace}})
        for i in range(count):
            pool = node_namespaces if i % 2 == 0 else own
            namespace, name = pool[(i // 2) % len(pool)], f"app-{i:05d}"
            store.create("pods", {"metadata": {"name": name, "labels": {"app.kubernetes.io/name": f"app-{i % 50}"}},
                                  "spec": {"nodeName": "elsewhere",
                                           "containers": [{"name": "main", "image": "busybox:1.36"}]}}, namespace)
            made.append((namespace, name))
    world.call(create(), timeout=600)
    return made


def update_some(world, pods: list[tuple[str, str]], count: int, rng: random.Random) -> None:  # noqa: ANN001
    store = world.sandbox.api.store

    async def update() -> None:
        for namespace, name in rng.sample(pods, min(count, len(pods))):
            store.patch("pods", name, {"metadata": {"annotations": {"beat": str(rng.random())}}}, namespace)
    world.call(update())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--windows", type=int, default=4, help="60 s idle windows")
    parser.add_argument("--a", nargs="*", default=[], metavar="NAME=VALUE", help="the first operator's settings")
    parser.add_argument("--b", nargs="*", default=[], metavar="NAME=VALUE", help="the second operator's settings")
    parser.add_argument("--other-pods", type=int, default=0, help="pods of other workloads in the cluster")
    parser.add_argument("--other-pod-updates", type=int, default=0, help="of those, changed per second")
    args = parser.parse_args()
    settings = {"a": environment(args.a), "b": environment(args.b)}
    for name, env in settings.items():
        print(f"{name}: {' '.join(f'{k}={v}' for k, v in env.items()) or '(defaults)'}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="side-by-side-"))
    with fleet.SandboxThread(block_interval=1.0, workdir=workdir) as world:
        sb = world.sandbox
        nodes = fleet.seed_namespaces(world, 10, "sides")
        others = other_pods(world, args.other_pods, [node.namespace for node in nodes])
        rng = random.Random(1)
        procs = {}
        for name, env in settings.items():
            env = {"MAYANODE_OPERATOR_METRICS_PORT": str(fleet.free_port()),
                   "MAYANODE_OPERATOR_HEIGHT_REFRESH_SECONDS": "1000000000", **env}
            procs[name] = fleet.Proc([sys.executable, "-m", "mayanode_operator.cli", "run",
                                      "--kubeconfig", str(sb.kubeconfig_path)], workdir / f"{name}.log", env)
        try:
            bodies = fleet.mayanodes(world, args.size, nodes)
            world.call(fleet._create_all(sb.client, bodies), timeout=600)
            fleet._wait_ready(world, bodies, timeout=600)
            time.sleep(40)                                    # past the first passes' burst
            totals = dict.fromkeys(procs, 0.0)
            for window in range(args.windows):
                before = {name: p.cpu() for name, p in procs.items()}
                end = time.monotonic() + 60
                while (left := end - time.monotonic()) > 0:
                    if others and args.other_pod_updates:
                        update_some(world, others, args.other_pod_updates, rng)
                    for p in procs.values():
                        p.rss()
                    time.sleep(min(1.0, left))
                used = {name: p.cpu() - before[name] for name, p in procs.items()}
                for name, seconds in used.items():
                    totals[name] += seconds
                print(f"window {window + 1}: " + ", ".join(f"{name} {s:.2f} s" for name, s in used.items()), flush=True)
            print(f"{args.size} MayaNodes, {args.other_pods} other pods ({args.other_pod_updates} changed a second), "
                  f"{args.windows} × 60 s: b / a = {totals['b']:.2f} / {totals['a']:.2f} s "
                  f"({totals['b'] / totals['a']:.2f}); peak RSS b / a = {procs['b'].peak_rss / 2**20:.1f} / "
                  f"{procs['a'].peak_rss / 2**20:.1f} MiB")
        finally:
            for p in procs.values():
                p.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
