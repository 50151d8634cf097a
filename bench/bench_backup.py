"""NodeBackup create → Completed, for the default key set, with the real operator process.

On the emulated cluster and mocknet: one seeded node (a member of the current Asgard vault, so its key
share is part of the set), the in-cluster Secret store, an identity Secret so every backup is also
verified. Each run creates a NodeBackup and polls it until `status.phase` is Completed; the time is taken
on the client from just before the create to the first read that shows Completed (with Verified True).

Two cases: the node running (files read through exec into its containers) and the node scaled to 0
(files read through helper pods on its PVCs, created and deleted each run).

    .venv/bin/python bench/bench_backup.py --runs 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from mayanode_operator.api import naming
from mayanode_operator.backup import generate_identity
from mayanode_operator.sandbox.harness import OperatorProcess, eventually
from mayanode_operator.sandbox.world import SandboxThread


async def _churn(net: Any) -> None:
    net.churn()
    await net.settle()


def setup(world: SandboxThread, custom: Any, core: Any, namespace: str, recipient: str, identity: str,
          replicas: int) -> None:
    node = world.call(world.sandbox.seed_node(namespace, replicas=replicas))
    if replicas:
        world.call(world.sandbox.wait_ready(namespace))
    core.create_namespaced_secret(namespace, {"metadata": {"name": "age-identity"}, "stringData": {"identity": identity}})
    location = {"secret": {}, "encryption": {"recipients": [recipient], "identitySecret": {"name": "age-identity"}}}
    custom.create_namespaced_custom_object(naming.GROUP, naming.VERSION, namespace, naming.MAYANODE_PLURAL, {
        "apiVersion": naming.API_VERSION, "kind": "MayaNode", "metadata": {"name": namespace, "namespace": namespace},
        "spec": {"network": node.network, "nodeAddress": node.node_address,
                 "api": {"rest": node.rest_url, "rpc": node.rpc_url, "timeoutSeconds": 2},
                 "observe": {"intervalSeconds": 30}, "backup": {"afterChurn": False, "location": location}}})


def one_run(custom: Any, namespace: str, name: str) -> tuple[float, dict[str, Any]]:
    body = {"apiVersion": naming.API_VERSION, "kind": "NodeBackup", "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeRef": {"name": namespace}}}
    start = time.monotonic()
    custom.create_namespaced_custom_object(naming.GROUP, naming.VERSION, namespace, naming.NODEBACKUP_PLURAL, body)

    def completed():
        got = custom.get_namespaced_custom_object(naming.GROUP, naming.VERSION, namespace, naming.NODEBACKUP_PLURAL,
                                                  name)
        status = got.get("status") or {}
        if status.get("phase") in ("PartiallyFailed", "Failed"):
            raise SystemExit(f"{namespace}/{name} ended {status.get('phase')}: {status.get('message')}")
        return got if status.get("phase") == "Completed" else None

    done = eventually(completed, timeout=60, interval=0.01)
    return time.monotonic() - start, done


def summary(label: str, samples: list[float], items: int, size: int) -> str:
    ordered = sorted(samples)
    p90 = ordered[max(0, int(round(0.9 * len(ordered))) - 1)]
    return (f"| {label} | {len(samples)} | {items} | {size} | {ordered[0] * 1000:.0f} | "
            f"{statistics.median(ordered) * 1000:.0f} | {p90 * 1000:.0f} | {ordered[-1] * 1000:.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    identity, recipient = generate_identity()
    world = SandboxThread(block_interval=0.2, workdir=workdir).start()
    operator = OperatorProcess(world.kubeconfig_path, workdir / "operator.log",
                               extra_env={"MAYANODE_OPERATOR_METRICS_PORT": "0"}).start()
    rows = []
    try:
        api = k8s_config.new_client_from_config(config_file=str(world.kubeconfig_path))
        custom, core = k8s.CustomObjectsApi(api), k8s.CoreV1Api(api)
        setup(world, custom, core, "bench-running", recipient, identity, replicas=1)
        setup(world, custom, core, "bench-stopped", recipient, identity, replicas=0)
        world.call(_churn(world.sandbox.mocknet))
        for namespace, label in (("bench-running", "running node (exec into containers)"),
                                 ("bench-stopped", "scaled to 0 (helper pods on the PVCs)")):
            one_run(custom, namespace, "warmup")
            samples, last = [], {}
            for i in range(args.runs):
                seconds, last = one_run(custom, namespace, f"run-{i}")
                samples.append(seconds)
            status = last["status"]
            verified = next(c for c in status["conditions"] if c["type"] == "Verified")
            # A stopped node's own API is down: the archive is checked, the chain part cannot be asked then.
            assert verified["status"] == "True" or verified["reason"] == "ChainUnavailable", verified
            rows.append(summary(label, samples, len(status["items"]), status["archive"]["size"]))
    finally:
        operator.stop()
        world.stop()
    print("| case | runs | items | archive bytes | min ms | median ms | p90 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
