"""Fleet-scale benchmark: the operator against a bare kopf operator, same objects, same run.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/fleet.py --sizes 1,100,1000 --idle 120 --samples 30 --out bench/results

For each fleet size N, in one emulated cluster (API server, kubelet, mocknet in this process):
- K = min(N, --namespaces) node-launcher namespaces are seeded (Deployments, pods, Secrets, PVCs, a
  registered node whose API the mocknet serves). N MayaNodes are spread over them round-robin, each
  naming its namespace's node: every reconcile is a full one (CR, two Deployments with their pods, the
  node API's six routes, NodeRestores) on a healthy node. Seeding 1,000 full namespaces would measure
  the emulated kubelet, not the operator; the operator's per-object work is the same either way.
  Each MayaNode reaches its node's API at addresses of its own (--node-hosts own), as each real node is a
  Service of its own: no connection is shared between nodes, and none outlives the node's 10 s idle timeout.
- The operator (`mayanode-operator run`, cluster-wide, defaults but the metrics port) and the bare kopf
  operator (bench/bare_kopf.py) run as child processes side by side.
- Measured: time until every MayaNode is Ready; then an idle window (--idle s): CPU seconds and peak
  RSS of each process (psutil), API requests of each by verb (a request hook on the API server, by
  User-Agent), reconciles (the operator's GETs of a named MayaNode: each pass starts with one), writes;
  then --samples spec changes one by one: time from the PATCH to status.observedGeneration matching.
- The same idle window is measured a second time with `MAYANODE_OPERATOR_HEIGHT_REFRESH_SECONDS` very
  large, to separate the periodic `status.chain.height` refresh (a designed write) from the rest, beside a fresh
  bare kopf: what a bare kopf costs when no status write comes back to it through its watches, and beside
  bench/polling_kopf.py: a kopf that only polls what an idle pass reads (the MayaNode, the six node-API routes),
  the floor under any operator that observes nodes by polling them.
Results: one JSON per size in --out, plots (PNG) of cost against fleet size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from mayanode_operator.api import naming  # noqa: E402
from mayanode_operator.sandbox import kubeclient as kc  # noqa: E402
from mayanode_operator.sandbox.apiserver.handlers import request_info  # noqa: E402
from mayanode_operator.sandbox.crashsweep import MAYANODES  # noqa: E402
from mayanode_operator.sandbox.world import SandboxThread  # noqa: E402


def client_of(request) -> str:                                     # noqa: ANN001
    agent = request.headers.get("User-Agent")
    info = request_info(request)
    if agent is None:
        return "operator" if info.subresource == "exec" else "other"
    if agent.startswith(("mayanode-operator/", "kopf/")):
        return "operator"
    if agent.startswith("bare-kopf/"):
        return "bare"
    if agent.startswith("polling-kopf/"):
        return "polling"
    return "other"


class RequestCounter:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()     # (client, verb, resource)
        self.lock = threading.Lock()

    async def __call__(self, request, call_next):                  # noqa: ANN001, ANN204
        info = request_info(request)
        key = (client_of(request), info.verb, info.resource + (f"/{info.subresource}" if info.subresource else "")
               + ("/<name>" if info.name and info.verb == "get" else ""))
        with self.lock:
            self.counts[key] += 1
        return await call_next(request)

    def snapshot(self) -> Counter[tuple[str, str, str]]:
        with self.lock:
            return Counter(self.counts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = open(log, "ab")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env.pop("KUBECONFIG", None)
        self.popen = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        self.ps = psutil.Process(self.popen.pid)
        self.peak_rss = 0

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system

    def rss(self) -> int:
        value = self.ps.memory_info().rss
        self.peak_rss = max(self.peak_rss, value)
        return value

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
        self.log.close()


def mayanode(i: int, node: Any, rest: str, rpc: str) -> dict[str, Any]:
    return {
        "apiVersion": naming.API_VERSION, "kind": "MayaNode",
        "metadata": {"name": f"mn-{i:04d}", "namespace": node.namespace},
        "spec": {"network": node.network, "nodeAddress": node.node_address, "version": node.version,
                 "api": {"rest": rest, "rpc": rpc, "timeoutSeconds": 5},
                 "observe": {"intervalSeconds": 30}},
    }


def mayanodes(world, n: int, nodes: list[Any], *, own_hosts: bool = True) -> list[dict[str, Any]]:  # noqa: ANN001
    """`n` MayaNodes spread over the seeded `nodes` round-robin. With `own_hosts`, each reaches its node's API at
    addresses of its own (REST 127.1.x.y, RPC 127.2.x.y, as each real node is a Service of its own): no MayaNode
    reuses another's connections, and the mocknet closes them after 10 s idle, as a node does."""
    mocknet = world.sandbox.mocknet
    bodies = []
    for i in range(n):
        node = nodes[i % len(nodes)]
        rest, rpc = node.rest_url, node.rpc_url
        if own_hosts:
            host = f"{(i + 1) >> 8}.{(i + 1) & 255}"
            rest = rest.replace(mocknet.url, world.call(mocknet.serve_at(f"127.1.{host}")), 1)
            rpc = rpc.replace(mocknet.url, world.call(mocknet.serve_at(f"127.2.{host}")), 1)
        bodies.append(mayanode(i, node, rest, rpc))
    return bodies


def measure_window(seconds: float, procs: dict[str, Proc], counter: RequestCounter) -> dict[str, Any]:
    cpu0 = {name: p.cpu() for name, p in procs.items()}
    req0 = counter.snapshot()
    deadline = time.monotonic() + seconds
    rss_samples: dict[str, list[int]] = {name: [] for name in procs}
    while time.monotonic() < deadline:
        for name, p in procs.items():
            rss_samples[name].append(p.rss())
        time.sleep(1.0)
    cpu = {name: p.cpu() - cpu0[name] for name, p in procs.items()}
    requests = counter.snapshot() - req0
    out: dict[str, Any] = {"seconds": seconds}
    for name in procs:
        mine = {f"{verb} {res}": n for (client, verb, res), n in requests.items() if client == name}
        writes = sum(n for (client, verb, _), n in requests.items()
                     if client == name and verb in ("create", "update", "patch", "delete", "connect"))
        out[name] = {
            "cpu_seconds": round(cpu[name], 3),
            "cpu_seconds_per_120s": round(cpu[name] * 120 / seconds, 3),
            "rss_mib_max": round(max(rss_samples[name]) / 2**20, 1),
            "rss_mib_end": round(rss_samples[name][-1] / 2**20, 1),
            "requests": sum(mine.values()),
            "writes": writes,
            "by_verb": dict(sorted(mine.items(), key=lambda kv: -kv[1])),
        }
    reconciles = requests.get(("operator", "get", "mayanodes/<name>"), 0)
    out["operator"]["reconciles"] = reconciles
    out["operator"]["writes_per_reconcile"] = round(out["operator"]["writes"] / reconciles, 4) if reconciles else None
    return out


def run_size(n: int, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    workdir = out_dir / f"run-{n}"
    workdir.mkdir(parents=True, exist_ok=True)
    k = min(n, args.namespaces)
    result: dict[str, Any] = {"mayanodes": n, "namespaces": k, "node_hosts": args.node_hosts}
    with SandboxThread(block_interval=args.block_interval, workdir=workdir) as world:
        sb = world.sandbox
        counter = RequestCounter()
        world.call(_add_hook(sb.api, counter))
        t = time.monotonic()
        nodes = seed_namespaces(world, k, "fleet")
        result["seed_seconds"] = round(time.monotonic() - t, 1)

        kubeconfig = str(sb.kubeconfig_path)
        env = {"MAYANODE_OPERATOR_METRICS_PORT": str(free_port()), "MAYANODE_OPERATOR_EVENT_LOOP": args.event_loop}
        loop = ["--event-loop", args.event_loop]        # every process on the same event loop
        result["event_loop"] = args.event_loop
        procs = {
            "operator": Proc([sys.executable, "-m", "mayanode_operator.cli", "run", "--kubeconfig", kubeconfig],
                             workdir / "operator.log", env),
            "bare": Proc([sys.executable, str(ROOT / "bench" / "bare_kopf.py"), "--kubeconfig", kubeconfig, *loop],
                         workdir / "bare.log"),
        }
        try:
            time.sleep(3)
            result["rss_mib_before_objects"] = {name: round(p.rss() / 2**20, 1) for name, p in procs.items()}
            t = time.monotonic()
            bodies = mayanodes(world, n, nodes, own_hosts=args.node_hosts == "own")
            world.call(_create_all(sb.client, bodies), timeout=600)
            result["create_seconds"] = round(time.monotonic() - t, 1)
            ready = _wait_ready(world, bodies, timeout=args.converge_timeout)
            result["converge_seconds"] = round(time.monotonic() - t, 1)
            result["ready"] = ready
            time.sleep(args.settle)
            result["idle"] = measure_window(args.idle, procs, counter)
            result["spec_change_to_status"] = _spec_change_latency(world, bodies, args.samples)
        finally:
            for p in procs.values():
                p.stop()
        # The same idle window with the periodic height refresh turned off: what is left is unplanned.
        env_no_refresh = {**env, "MAYANODE_OPERATOR_HEIGHT_REFRESH_SECONDS": "1000000000",
                          "MAYANODE_OPERATOR_METRICS_PORT": str(free_port())}
        # A fresh bare kopf beside it: with no status writes to watch, what a bare kopf costs while nothing happens.
        # And a kopf that only polls what an idle pass reads (bench/polling_kopf.py): the floor under any poller.
        second = {
            "operator": Proc([sys.executable, "-m", "mayanode_operator.cli", "run", "--kubeconfig", kubeconfig],
                             workdir / "operator-norefresh.log", env_no_refresh),
            "bare": Proc([sys.executable, str(ROOT / "bench" / "bare_kopf.py"), "--kubeconfig", kubeconfig, *loop],
                         workdir / "bare-norefresh.log"),
            "polling": Proc([sys.executable, str(ROOT / "bench" / "polling_kopf.py"), "--kubeconfig", kubeconfig, *loop],
                            workdir / "polling.log"),
        }
        try:
            time.sleep(args.settle + min(30.0, args.restart_wait + n * 0.03))
            window = measure_window(args.idle, second, counter)
            result["idle_without_height_refresh"] = window["operator"]
            result["idle_without_height_refresh_bare"] = window["bare"]
            result["idle_without_height_refresh_polling"] = window["polling"]
        finally:
            for p in second.values():
                p.stop()
    op_idle, bare_idle = result["idle"]["operator"], result["idle"]["bare"]
    op_quiet, polling = result["idle_without_height_refresh"], result["idle_without_height_refresh_polling"]
    result["ratios"] = {
        "rss_max": round(op_idle["rss_mib_max"] / bare_idle["rss_mib_max"], 2),
        "cpu": round(op_idle["cpu_seconds"] / bare_idle["cpu_seconds"], 1) if bare_idle["cpu_seconds"] else None,
        "cpu_vs_polling": (round(op_quiet["cpu_seconds"] / polling["cpu_seconds"], 2)
                           if polling["cpu_seconds"] else None),
        "rss_max_vs_polling": round(op_quiet["rss_mib_max"] / polling["rss_mib_max"], 2),
    }
    (out_dir / f"fleet-{n}.json").write_text(json.dumps(result, indent=2))
    return result


async def _add_hook(api, hook) -> None:                            # noqa: ANN001
    api.add_request_hook(hook)


async def _create_all(client: kc.KubeClient, bodies: list[dict[str, Any]]) -> None:
    sem = asyncio.Semaphore(20)

    async def one(body: dict[str, Any]) -> None:
        async with sem:
            await client.create(MAYANODES, body, body["metadata"]["namespace"])

    await asyncio.gather(*(one(b) for b in bodies))


def _ready_count(world, bodies) -> int:                           # noqa: ANN001
    async def count() -> int:
        store = world.sandbox.api.store
        ready = 0
        for body in bodies:
            obj = store.get(naming.MAYANODE_PLURAL + "." + naming.GROUP, body["metadata"]["name"],
                            body["metadata"]["namespace"])
            status = obj.get("status") or {}
            if status.get("observedGeneration") == obj["metadata"]["generation"] and any(
                    c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []):
                ready += 1
        return ready
    return world.call(count())


def seed_namespaces(world, k: int, prefix: str) -> list[Any]:        # noqa: ANN001
    """`k` node-launcher namespaces `<prefix>-NN`, seeded, their node Ready."""
    nodes = [world.call(world.sandbox.seed_node(f"{prefix}-{j:02d}"), timeout=120) for j in range(k)]
    for node in nodes:
        world.call(world.sandbox.wait_ready(node.namespace, timeout=60), timeout=90)
    return nodes


def _wait_ready(world, bodies, timeout: float) -> int:            # noqa: ANN001
    deadline = time.monotonic() + timeout
    ready = 0
    while time.monotonic() < deadline:
        ready = _ready_count(world, bodies)
        if ready == len(bodies):
            break
        time.sleep(0.5)
    return ready


def _spec_change_latency(world, bodies, samples: int) -> dict[str, Any]:   # noqa: ANN001
    rng = random.Random(1)
    store = world.sandbox.api.store
    plural = naming.MAYANODE_PLURAL + "." + naming.GROUP
    latencies = []
    for _ in range(samples):
        body = rng.choice(bodies)
        name, ns = body["metadata"]["name"], body["metadata"]["namespace"]
        current = world.call(_get(store, plural, name, ns))
        interval = 31 if current["spec"]["observe"]["intervalSeconds"] == 30 else 30
        t0 = time.monotonic()
        updated = world.call(world.sandbox.client.patch(MAYANODES, name, {"spec": {"observe": {"intervalSeconds": interval}}}, ns))
        generation = updated["metadata"]["generation"]
        while time.monotonic() - t0 < 30:
            obj = world.call(_get(store, plural, name, ns))
            if (obj.get("status") or {}).get("observedGeneration") == generation:
                latencies.append(time.monotonic() - t0)
                break
            time.sleep(0.005)
        time.sleep(0.2)
    latencies.sort()
    if not latencies:
        return {"samples": 0}
    return {"samples": len(latencies), "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p95_ms": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] * 1000, 1),
            "max_ms": round(latencies[-1] * 1000, 1)}


async def _get(store, plural, name, ns):                           # noqa: ANN001, ANN202
    return store.get(plural, name, ns)


def plot(results: list[dict[str, Any]], out_dir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["mayanodes"] for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    ax.plot(sizes, [r["idle"]["operator"]["rss_mib_max"] for r in results], "o-", label="mayanode-operator")
    ax.plot(sizes, [r["idle"]["bare"]["rss_mib_max"] for r in results], "s--", label="bare kopf")
    ax.set_title("peak RSS while idle (MiB)")
    ax = axes[1]
    ax.plot(sizes, [r["idle"]["operator"]["cpu_seconds_per_120s"] for r in results], "o-", label="mayanode-operator")
    ax.plot(sizes, [r["idle_without_height_refresh"]["cpu_seconds_per_120s"] for r in results], "^-",
            label="mayanode-operator, no height refresh")
    ax.plot(sizes, [r["idle"]["bare"]["cpu_seconds_per_120s"] for r in results], "s--", label="bare kopf")
    if all("idle_without_height_refresh_bare" in r for r in results):
        ax.plot(sizes, [r["idle_without_height_refresh_bare"]["cpu_seconds_per_120s"] for r in results], "v:",
                label="bare kopf, no status writes to watch")
    if all("idle_without_height_refresh_polling" in r for r in results):
        ax.plot(sizes, [r["idle_without_height_refresh_polling"]["cpu_seconds_per_120s"] for r in results], "d-.",
                label="kopf polling what an idle pass reads")
    ax.set_title("CPU seconds per 120 s idle")
    ax = axes[2]
    ax.plot(sizes, [r["idle"]["operator"]["requests"] * 120 / r["idle"]["seconds"] for r in results], "o-",
            label="API requests / 120 s")
    ax.plot(sizes, [r["idle"]["operator"]["writes"] * 120 / r["idle"]["seconds"] for r in results], "x-",
            label="API writes / 120 s")
    ax.plot(sizes, [r["idle_without_height_refresh"]["writes"] * 120 / r["idle"]["seconds"] for r in results], "^-",
            label="API writes / 120 s, no height refresh")
    ax.set_title("operator API traffic while idle")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("MayaNodes")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "fleet-cost.png", dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,100,1000")
    parser.add_argument("--idle", type=float, default=120.0, help="seconds of the idle window")
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--samples", type=int, default=30, help="spec changes timed per size")
    parser.add_argument("--namespaces", type=int, default=10, help="seeded node namespaces at most")
    parser.add_argument("--block-interval", type=float, default=1.0)
    parser.add_argument("--converge-timeout", type=float, default=600.0)
    parser.add_argument("--restart-wait", type=float, default=5.0,
                        help="seconds for the restarted operator's first passes before its idle window")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--node-hosts", choices=("own", "shared"), default="own",
                        help="own: each MayaNode's node API at addresses of its own, as in a real fleet (default); "
                             "shared: all at the mocknet's one address, sharing connections")
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="the event loop of the operator and both baselines")
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        result = run_size(n, args, out_dir)
        results.append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "idle"} | {
            "idle": {who: {key: val for key, val in data.items() if key != "by_verb"}
                     for who, data in result["idle"].items() if isinstance(data, dict)}}, indent=1), flush=True)
    (out_dir / "fleet.json").write_text(json.dumps(results, indent=2))
    if not args.no_plot and len(results) > 1:
        plot(results, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
