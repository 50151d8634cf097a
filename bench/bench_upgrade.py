"""The operator's overhead per node in a fleet upgrade.

A fleet of N MayaNodes in one rollout group (budget 1) moves from 1.111.0 to 1.112.0 on the emulated
cluster and mocknet, with the real operator process. A request hook on the API server timestamps,
per node, the image patches and the moments the new mayanode and bifrost pods turn Ready. What
the kubelet needs (image patch → new pod Ready) is the pod restart, what the health gate waits
for is the node API answering the new version in sync; the rest is the operator's overhead:

    overhead(node) = finished − started − Σ (pod Ready − image patch)

`started` is when the node's upgrade began (its first status write with `upgrade.current`, or for
all but the first node, when the previous node released the budget), `finished` when its history
says Succeeded.

    .venv/bin/python bench/bench_upgrade.py --nodes 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from mayanode_operator.api import naming
from mayanode_operator.sandbox.apiserver.handlers import request_info
from mayanode_operator.sandbox.harness import OperatorProcess, eventually
from mayanode_operator.sandbox.world import SandboxThread

OLD, NEW = "1.111.0", "1.112.0"


class Timeline:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: dict[str, list[tuple[float, str, str]]] = defaultdict(list)   # ns → (t, what, detail)

    def add(self, ns: str, what: str, detail: str = "") -> None:
        with self.lock:
            self.events[ns].append((time.monotonic(), what, detail))

    async def __call__(self, request: Any, call_next: Any) -> Any:
        info = request_info(request)
        body = await request.read() if info.verb in ("patch", "update") else b""
        response = await call_next(request)
        if response.status >= 300 or not info.namespace.startswith("bench-"):
            return response
        ns = info.namespace
        if info.resource == "deployments" and info.verb == "patch" and b"image" in body:
            self.add(ns, "image", info.name)
        elif info.resource == "pods" and info.subresource == "status":
            try:
                pod = json.loads(response.text)
            except (ValueError, TypeError):
                return response
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (pod.get("status") or {}).get("conditions") or [])
            images = [c.get("image", "") for c in (pod.get("spec") or {}).get("containers") or []]
            app = ((pod.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/name", "")
            if ready and any(i.endswith(NEW) for i in images):
                self.add(ns, "ready", app)
        elif info.resource == "mayanodes" and info.subresource == "status":
            try:
                upgrade = (json.loads(response.text).get("status") or {}).get("upgrade") or {}
            except (ValueError, TypeError):
                return response
            if upgrade.get("current"):
                self.add(ns, "current", upgrade["current"].get("step", ""))
            if any(h.get("result") == "Succeeded" and h.get("to") == NEW for h in upgrade.get("history") or []):
                self.add(ns, "succeeded")
        return response


def first(events: list[tuple[float, str, str]], what: str, detail: str | None = None, after: float = 0.0) -> float:
    return next(t for t, w, d in events if w == what and (detail is None or d == detail) and t >= after)


def run(nodes: int, workdir: Path) -> dict[str, Any]:
    world = SandboxThread(block_interval=0.2, workdir=workdir)
    world.start()
    timeline = Timeline()
    world.sandbox.api.add_request_hook(timeline)
    operator = OperatorProcess(world.kubeconfig_path, workdir / "operator.log").start()
    try:
        api = k8s_config.new_client_from_config(config_file=str(world.kubeconfig_path))
        custom = k8s.CustomObjectsApi(api)
        names = [f"bench-{i}" for i in range(nodes)]
        for ns in names:
            node = world.call(world.sandbox.seed_node(ns, version=OLD, status="Standby"))
            world.call(world.sandbox.wait_ready(ns))
            custom.create_namespaced_custom_object(naming.GROUP, naming.VERSION, ns, naming.MAYANODE_PLURAL, {
                "apiVersion": naming.API_VERSION, "kind": "MayaNode", "metadata": {"name": ns, "namespace": ns},
                "spec": {"network": node.network, "nodeAddress": node.node_address, "version": OLD,
                         "api": {"rest": node.rest_url, "rpc": node.rpc_url, "timeoutSeconds": 2},
                         "observe": {"intervalSeconds": 5},
                         "upgrade": {"gates": {"adoption": {"mode": "None"}},
                                     "rollout": {"group": "bench", "maxConcurrent": 1}}}})

        def observed(ns: str) -> bool:
            body = custom.get_namespaced_custom_object(naming.GROUP, naming.VERSION, ns, naming.MAYANODE_PLURAL, ns)
            return ((body.get("status") or {}).get("upgrade") or {}).get("state") == "Idle"
        for ns in names:
            eventually(lambda ns=ns: observed(ns), timeout=60)

        t0 = time.monotonic()
        for ns in names:
            custom.patch_namespaced_custom_object(naming.GROUP, naming.VERSION, ns, naming.MAYANODE_PLURAL, ns,
                                                  {"spec": {"version": NEW}})

        def all_done() -> bool:
            with timeline.lock:
                return all(any(w == "succeeded" for _, w, _ in timeline.events[ns]) for ns in names)
        eventually(all_done, timeout=60 + 30 * nodes, interval=0.2,
                   message=lambda: operator.log_text()[-2000:])
        total = time.monotonic() - t0
    finally:
        operator.stop()
        world.stop()

    per_node = []
    with timeline.lock:
        finishes = sorted((first(ev, "succeeded"), ns) for ns, ev in timeline.events.items())
        previous_finish = t0
        for finish, ns in finishes:
            ev = timeline.events[ns]
            began = max(previous_finish, first(ev, "current"))
            intrinsic = 0.0
            for deployment in ("mayanode", "bifrost"):
                patched = first(ev, "image", deployment)
                intrinsic += first(ev, "ready", deployment, after=patched) - patched
            wall = finish - began
            per_node.append({"node": ns, "wall_s": round(wall, 3), "pod_restart_and_health_s": round(intrinsic, 3),
                             "overhead_s": round(wall - intrinsic, 3)})
            previous_finish = finish
    overheads = [p["overhead_s"] for p in per_node]
    return {"nodes": nodes, "total_s": round(total, 2), "per_node": per_node,
            "overhead_mean_s": round(statistics.mean(overheads), 3), "overhead_max_s": round(max(overheads), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the raw result as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-upgrade-") as tmp:
        result = run(args.nodes, Path(tmp))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{'node':<10} {'wall s':>8} {'pod restart + health s':>24} {'overhead s':>11}")
        for p in result["per_node"]:
            print(f"{p['node']:<10} {p['wall_s']:>8.2f} {p['pod_restart_and_health_s']:>24.2f} {p['overhead_s']:>11.2f}")
        print(f"fleet of {result['nodes']}, budget 1: {result['total_s']:.1f} s in all; overhead per node "
              f"mean {result['overhead_mean_s']:.2f} s, max {result['overhead_max_s']:.2f} s (goal ≤ 2 s)")
    return 0 if result["overhead_max_s"] <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
