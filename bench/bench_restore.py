"""Migration downtime: the operator's hand-off NodeRestore vs the fastest correct script of the manual runbook.

Both run on the same emulated cluster + mocknet (one SandboxThread), with the same node images and timings:

- operator: NodeBackup of node A, NodeRestore into the empty node B with `doubleSignGuard.oldNode: A`: verify,
  lock, scale B down, helper pods, files, Secrets, a helper on A's volume, then stop A, its pods gone, read its sign
  state, write the high-water mark (max of backup, B's volume, A's volume, chain tip), scale B up; and the same
  with `oldNode.proveSilentOnChain` (3 silent blocks on chain read from a third node before B starts);
- script: the runbook (seed 000_*) with the official client, in its fastest correct order: helper pods on B's
  PVCs, copy the key files in, delete the helpers, swap B's Secrets in place, then stop A (scale to 0 and wait
  until its pods are gone) and scale B up. It skips every check (no verification, no lock, no silence proof, the
  backup's stale sign state).

Downtime = A's mayanode process stopped → the first block signed by B's process (the mocknet records signatures
per block and the stop time of every process). Run: `.venv/bin/python bench/bench_restore.py [--runs 3] [--trace]`.

`--trace` prints, for every hand-off and script run, when (after A's stop) A's pods were seen gone, B was scaled
up, B's mayanode process started and B signed, and for the operator every request it made in between.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.stream import stream
from websocket import WebSocketConnectionClosedException

from mayanode_operator.api import naming
from mayanode_operator.backup import generate_identity
from mayanode_operator.sandbox.apiserver.handlers import request_info
from mayanode_operator.sandbox.harness import OperatorProcess, eventually
from mayanode_operator.sandbox.world import SandboxThread

BLOCK_INTERVAL = 0.2
SILENT_BLOCKS = 3
IDENTITY, RECIPIENT = generate_identity()
KEY_FILES = {
    "mayanode": (".mayanode", ["MAYAChain-ED25519", "config/node_key.json", "config/priv_validator_key.json",
                               "data/priv_validator_state.json", "keyring-file/"]),
    "bifrost": ("mayanode", ["localstate-", "MAYAChain-ED25519", "keyring-file/mayachain.info"]),
}


class StopClock:
    """Wraps the mocknet: when each mayanode instance stopped (wall clock, UTC)."""

    def __init__(self, net: Any) -> None:
        self.net, self.stopped = net, {}
        self._original = net.process_stopped

        def stopped(instance_id: str) -> int:
            process = net.processes.get(instance_id)
            if process is not None:
                self.stopped.setdefault(process.namespace, datetime.now(timezone.utc))
            return self._original(instance_id)
        net.process_stopped = stopped

    def first_signed_after(self, validator: str, moment: datetime) -> datetime | None:
        for block in list(self.net.blocks):
            if block.time > moment and validator in {s.validator_address for s in block.signatures}:
                return block.time
        return None


class Tracer:
    """Every request to the API server (its answer's end, who sent it) and every mayanode process start."""

    def __init__(self, sb: Any) -> None:
        self.requests: list[tuple[float, float, str, str]] = []      # start, end, sender, what
        self.started: dict[str, float] = {}
        net, original = sb.mocknet, sb.mocknet.process_started

        def started(namespace: str, instance_id: str, **kwargs: Any) -> None:
            self.started.setdefault(namespace, time.time())
            original(namespace, instance_id, **kwargs)
        net.process_started = started
        sb.api.add_request_hook(self.hook)

    async def hook(self, request: Any, call_next: Any) -> Any:
        info, began = request_info(request), time.time()
        response = await call_next(request)
        if info.verb == "watch" or not info.is_resource_request:
            return response
        agent = request.headers.get("User-Agent", "")
        sender = "operator" if agent.startswith("mayanode-operator/") else \
            "script" if agent.startswith("OpenAPI") else "exec" if info.subresource == "exec" else "cluster"
        what = f"{info.verb} {info.resource}{'/' + info.subresource if info.subresource else ''} " \
               f"{info.namespace}/{info.name}"
        if (info.verb, info.resource) == ("list", "pods") and getattr(response, "body", None):
            items = json.loads(response.body).get("items") or []
            what += f" ({sum(1 for p in items if p['metadata']['name'].split('-')[0] in ('mayanode', 'bifrost'))} " \
                    f"node pods)"
        self.requests.append((began, time.time(), sender, what))
        return response

    def report(self, clock: StopClock, old_ns: str, new_ns: str, validator: str, sender: str) -> None:
        stop = clock.stopped[old_ns].timestamp()
        signed = clock.first_signed_after(validator, clock.stopped[old_ns])
        gone = next((end for began, end, who, what in self.requests if began > stop and who == sender
                     and what.startswith(f"list pods {old_ns}/ (0 ")), None)
        up = next((began for began, _, who, what in self.requests if began > stop and who == sender
                   and what.startswith(f"patch deployments/scale {new_ns}/mayanode")), None)

        def at(moment: float | None) -> str:
            return f"+{moment - stop:.3f}" if moment is not None else "?"
        signed_at = signed.timestamp() if signed else None
        print(f"{sender} {old_ns} → {new_ns}: A's pods seen gone {at(gone)}, B scaled up {at(up)}, "
              f"B's process started {at(self.started.get(new_ns))}, B signed {at(signed_at)}")
        if sender == "operator" and gone is not None and up is not None:
            for began, end, who, what in self.requests:
                if gone <= began <= up and who in ("operator", "exec"):
                    print(f"    {at(began)} … {at(end)}  {what}")


def downtime(clock: StopClock, old_ns: str, validator: str, timeout: float = 60) -> float:
    stop = eventually(lambda: clock.stopped.get(old_ns), timeout=timeout, message=f"{old_ns} never stopped")
    signed = eventually(lambda: clock.first_signed_after(validator, stop), timeout=timeout,
                        message="the restored node never signed")
    return (signed - stop).total_seconds()


class Bench:
    def __init__(self, trace: bool = False) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-restore-"))
        self.world = SandboxThread(block_interval=BLOCK_INTERVAL, workdir=self.workdir).start()
        self.sb = self.world.sandbox
        self.clock = StopClock(self.sb.mocknet)
        self.tracer = self.world.call(self._tracer()) if trace else None
        api = k8s_config.new_client_from_config(config_file=str(self.world.kubeconfig_path))
        self.core, self.apps, self.custom = k8s.CoreV1Api(api), k8s.AppsV1Api(api), k8s.CustomObjectsApi(api)
        self.peer = self.seed("bench-peer")

    async def _tracer(self) -> Tracer:
        return Tracer(self.sb)         # on the sandbox's loop: the hook and the mocknet live there

    def seed(self, namespace: str, **kwargs: Any) -> Any:
        node = self.world.call(self.sb.seed_node(namespace, **kwargs))
        if kwargs.get("replicas", 1) and kwargs.get("with_keys", True):
            self.world.call(self.sb.wait_ready(namespace))
        return node

    def apply(self, plural: str, body: dict) -> None:
        self.custom.create_namespaced_custom_object(naming.GROUP, naming.VERSION, body["metadata"]["namespace"],
                                                    plural, body)

    def get(self, plural: str, namespace: str, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(naming.GROUP, naming.VERSION, namespace, plural, name)

    def mayanode(self, node: Any, namespace: str, name: str, **spec: Any) -> dict:
        url = f"{self.sb.mocknet.url}/ns/{namespace}"
        return {"apiVersion": naming.API_VERSION, "kind": "MayaNode", "metadata": {"name": name, "namespace": namespace},
                "spec": {"network": node.network, "nodeAddress": node.node_address,
                         "api": {"rest": url, "rpc": f"{url}/rpc", "timeoutSeconds": 2},
                         "observe": {"intervalSeconds": 30}, **spec}}

    # ---- the operator ------------------------------------------------------------------------
    def operator_run(self, i: int, chain_proof: bool = False) -> tuple[float, dict]:
        old_ns, new_ns = (f"oc-a{i}", f"oc-b{i}") if chain_proof else (f"op-a{i}", f"op-b{i}")
        old = self.seed(old_ns)
        self.seed(new_ns, identity=old.identity, with_keys=False, register=False, replicas=0)
        self.core.create_namespaced_secret(old_ns, {"metadata": {"name": "age-identity"},
                                                    "stringData": {"identity": IDENTITY}})
        location = {"secret": {}, "encryption": {"recipients": [RECIPIENT], "identitySecret": {"name": "age-identity"}}}
        self.apply(naming.MAYANODE_PLURAL, self.mayanode(old, old_ns, old_ns,
                                                         backup={"afterChurn": False, "location": location}))
        self.apply(naming.MAYANODE_PLURAL, self.mayanode(old, new_ns, "new"))
        self.apply(naming.NODEBACKUP_PLURAL, {
            "apiVersion": naming.API_VERSION, "kind": "NodeBackup", "metadata": {"name": "full", "namespace": old_ns},
            "spec": {"nodeRef": {"name": old_ns}, "restoreNamespaces": [new_ns]}})
        eventually(lambda: (self.get(naming.NODEBACKUP_PLURAL, old_ns, "full").get("status") or {}).get("phase")
                   == "Completed", timeout=60)
        self.apply(naming.NODERESTORE_PLURAL, {
            "apiVersion": naming.API_VERSION, "kind": "NodeRestore", "metadata": {"name": "move", "namespace": new_ns},
            "spec": {"backupRef": {"name": "full", "namespace": old_ns}, "nodeRef": {"name": "new"},
                     "doubleSignGuard": {"silentBlocks": SILENT_BLOCKS, "rpc": [self.peer.rpc_url],
                                         "oldNode": {"name": old_ns, "namespace": old_ns,
                                                     "proveSilentOnChain": chain_proof}}}})
        seconds = downtime(self.clock, old_ns, old.facts.validator_address)
        status = eventually(lambda: (s := self.get(naming.NODERESTORE_PLURAL, new_ns, "move").get("status") or {})
                            .get("phase") in ("Completed", "Failed") and s, timeout=60)
        assert status["phase"] == "Completed", status
        assert not self.sb.mocknet.double_signs
        if self.tracer is not None and not chain_proof:
            self.tracer.report(self.clock, old_ns, new_ns, old.facts.validator_address, "operator")
        return seconds, status

    # ---- the script --------------------------------------------------------------------------
    def script_run(self, i: int) -> float:
        old_ns, new_ns = f"sc-a{i}", f"sc-b{i}"
        old = self.seed(old_ns)
        self.seed(new_ns, identity=old.identity, with_keys=False, register=False, replicas=0)
        # "Create node backup": the key files and the mnemonic copied out beforehand (not timed).
        files = {claim: self._files(old_ns, claim, sub, prefixes) for claim, (sub, prefixes) in KEY_FILES.items()}
        mnemonic = self.core.read_namespaced_secret("mayanode-mnemonic", old_ns).data
        return self._runbook(old_ns, new_ns, files, mnemonic, old.facts.validator_address)

    def _files(self, namespace: str, claim: str, sub: str, prefixes: list[str]) -> bytes:
        tree = self.sb.kubelet.volume(namespace, claim)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for path, entry in tree.walk():
                rel = path[len(sub) + 1:]
                if entry.is_file and path.startswith(sub + "/") and any(rel.startswith(p) for p in prefixes):
                    info = tarfile.TarInfo(rel)
                    data = tree.read(path)
                    info.size, info.mode, info.uid, info.gid = len(data), entry.mode & 0o7777, entry.uid, entry.gid
                    tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    def _helper(self, namespace: str, claim: str) -> str:
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{claim}-recovery", "namespace": namespace},
                "spec": {"terminationGracePeriodSeconds": 0, "restartPolicy": "Never",
                         "containers": [{"name": "debugger", "image": "busybox",
                                         "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
                                         "volumeMounts": [{"mountPath": "/data", "name": "volume-to-debug"}]}],
                         "volumes": [{"name": "volume-to-debug", "persistentVolumeClaim": {"claimName": claim}}]}}
        self.core.create_namespaced_pod(namespace, body)
        return body["metadata"]["name"]

    def _exec(self, namespace: str, pod: str, command: list[str], stdin: bytes | None = None) -> None:
        """`kubectl cp` / `kubectl exec`: one exec over the websocket, stdin closed when written."""
        api = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(self.world.kubeconfig_path)))
        ws = stream(api.connect_get_namespaced_pod_exec, pod, namespace, command=command, container="debugger",
                    stdin=stdin is not None, stdout=True, stderr=True, tty=False, _preload_content=False,
                    binary=True)
        try:
            if stdin is not None:
                ws.write_stdin(stdin)
                if ws.subprotocol == "v5.channel.k8s.io":
                    ws.close_channel(0)
            while ws.is_open():
                ws.update(timeout=1)
        except (BrokenPipeError, ConnectionError, WebSocketConnectionClosedException):
            pass                                   # the server hung up after the command ended
        finally:
            ws.close()

    def _pods_gone(self, namespace: str, app: str) -> bool:
        return not self.core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/name={app}").items

    def _runbook(self, old_ns: str, new_ns: str, files: dict[str, bytes], mnemonic: dict, validator: str) -> float:
        helpers = {claim: self._helper(new_ns, claim) for claim in files}
        for name in helpers.values():
            while self.core.read_namespaced_pod(name, new_ns).status.phase != "Running":
                time.sleep(0.02)
        for claim, tar_bytes in files.items():
            sub = KEY_FILES[claim][0]
            self._exec(new_ns, helpers[claim], ["mkdir", "-p", f"/data/{sub}"])
            self._exec(new_ns, helpers[claim], ["tar", "-x", "-p", "-f", "-", "-C", f"/data/{sub}"], tar_bytes)
        for name in helpers.values():
            self.core.delete_namespaced_pod(name, new_ns, grace_period_seconds=0)
        secret = self.core.read_namespaced_secret("mayanode-mnemonic", new_ns)
        secret.data = dict(mnemonic)
        self.core.replace_namespaced_secret("mayanode-mnemonic", new_ns, secret)
        # Stop the old node and wait until its pods are gone; only then start the new one.
        for deployment in ("mayanode", "bifrost"):
            self.apps.patch_namespaced_deployment_scale(deployment, old_ns, {"spec": {"replicas": 0}})
        while not (self._pods_gone(old_ns, "mayanode") and self._pods_gone(old_ns, "bifrost")):
            time.sleep(0.02)
        for deployment in ("mayanode", "bifrost"):
            self.apps.patch_namespaced_deployment_scale(deployment, new_ns, {"spec": {"replicas": 1}})
        seconds = downtime(self.clock, old_ns, validator)
        assert not self.sb.mocknet.double_signs
        if self.tracer is not None:
            self.tracer.report(self.clock, old_ns, new_ns, validator, "script")
        return seconds

    def close(self) -> None:
        self.world.stop()


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f}s (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trace", action="store_true", help="print when each run's steps happened after A's stop")
    args = parser.parse_args(argv)
    bench = Bench(trace=args.trace)
    log = bench.workdir / "operator.log"
    operator = OperatorProcess(bench.world.kubeconfig_path, log).start()
    try:
        ops, statuses = [], []
        for i in range(args.runs):
            seconds, status = bench.operator_run(i)
            ops.append(seconds)
            statuses.append(status)
        chained = [bench.operator_run(i, chain_proof=True)[0] for i in range(args.runs)]
    finally:
        operator.stop()
    try:
        scripts = [bench.script_run(i) for i in range(args.runs)]
    finally:
        bench.close()
    proof = SILENT_BLOCKS * BLOCK_INTERVAL
    print(f"block interval {BLOCK_INTERVAL}s")
    print(f"script   (runbook, no checks):                  {summary(scripts)}")
    print(f"operator (hand-off, all checks):                {summary(ops)}")
    print(f"operator (hand-off + silentBlocks {SILENT_BLOCKS} on chain):  {summary(chained)} "
          f"(the proof alone: ≥ {proof:.2f}s)")
    print(f"operator status downtime (no ready pod on the new node): "
          f"{summary([float(s.get('downtimeSeconds') or 0) for s in statuses])}")
    if statistics.median(ops) > statistics.median(scripts):
        print("the operator's median downtime is above the script's")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
