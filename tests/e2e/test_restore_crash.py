"""Issue 4: the operator is SIGKILLed right after each API write of a NodeRestore in turn, and restarted.

The restore's writes are counted with the API server's request hook: status patches, scale patches, helper pods,
Secret writes and the lock Lease (Events are left out: a crash right after an Event leaves the same state as a crash
right before the next write). Every run restores a wiped node in its own namespace with its own operator process
(watching only that namespace, its consensus-key Lease there too), so a kill in one run never disturbs another.

- Calibration: CALIBRATIONS runs are never killed. W is the number of writes of the shortest one, up to and including
  the write that sets phase Completed: its writes 1..W are the uninterrupted write sequence. (Runs are not bit-for-bit
  alike: a wait may see one progress write more or fewer, so the shortest one's indices are those the other runs
  reach too.) W is measured here, so the test follows any change to the restore's steps or their writes.
- Crash runs: the run for k is killed right after its own k-th write, counted from its NodeRestore's creation while
  its operator has never died (its *first pass*, an undisturbed restore up to there), its operator restarted at once,
  and the run left to converge. The calibration runs in the first round next to the runs for k = 1..FIRST_TARGETS;
  the next round takes the rest of 1..W (the last TAIL indices with two runs each), plus one run killed right after
  the write that completes it, whatever its number. An index not reached (its run completed before its k-th write)
  is tried again, with two runs, in one more round.
- Coverage is asserted: the set of first-pass indices killed after equals {1..W}.
- Every run converges to Completed with the identical files and Secrets, the mnemonic Secret is never absent (no
  DELETE of it ever reaches the server), and at no instant do two mayanode processes with one consensus key run
  (checked as each process starts; `mocknet.double_signs` stays empty). No helper pod's wait runs out (a second
  helper beside the one a killed pass left starting would wait for the volume for 120 s).

That is about 2·W operator starts: each is a child of a fork server that has imported the operator already (the same
`mayanode-operator run` in a process of its own, SIGKILLed like any other), which saves ~1.5 s of CPU per start.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from mayanode_operator import operator_loop
from mayanode_operator.api import naming
from mayanode_operator.sandbox.apiserver.handlers import request_info

from .conftest import dump, eventually, mayanode_manifest, require
from .test_restore import IDENTITY, create_secret, identity_files, location, nodebackup, noderestore, secret_values

pytestmark = pytest.mark.timeout(600)
OPERATOR_AGENT = "mayanode-operator/"
TEST_AGENT = "restore-crash-test"
COUNTED = {"noderestores", "deployments", "pods", "secrets", "leases"}
CALIBRATION = "calibration"      # a run's target: never killed
COMPLETION = "completion"        # a run's target: killed right after the write that completes it
CALIBRATIONS = 3
FIRST_TARGETS = 16               # the crash runs next to the calibration in the first round: k = 1..16
TAIL = 2                         # the last TAIL indices get two runs each the first time they are tried
ATTEMPTS = 2                     # rounds in which an index is tried
# What the fork server imports with this module, once for every operator start (the kubernetes client imports its
# API classes on first use).
_PRELOADED = (operator_loop, k8s.CoreV1Api, k8s.AppsV1Api, k8s.CustomObjectsApi, k8s.CoordinationV1Api, k8s.ApiClient)


def _operator_main(argv: list[str], env: dict[str, str], log_path: str) -> None:
    """In the forked child: `mayanode-operator run …` with its own environment, its output in its log."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    os.environ.pop("KUBECONFIG", None)
    os.environ.update(env)
    from mayanode_operator import cli

    code = 1
    try:
        code = cli.main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class ForkedOperator:
    """The operator for one namespace (its lock Leases there too), as `OperatorProcess` runs it, in a child of a
    fork server that has imported this module (so the operator and the kubernetes client) once."""

    def __init__(self, kubeconfig: Path, log_path: Path, namespace: str) -> None:
        self.argv = ["run", "--kubeconfig", str(kubeconfig), "--log-format", "json", "--namespace", namespace]
        self.env = {"MAYANODE_OPERATOR_METRICS_PORT": "0", "MAYANODE_OPERATOR_LOCK_NAMESPACE": namespace,
                    "MAYANODE_OPERATOR_ROLLOUT_NAMESPACE": namespace}
        self.log_path = log_path
        self._proc: Any = None

    def start(self) -> "ForkedOperator":
        context = multiprocessing.get_context("forkserver")
        self._proc = context.Process(target=_operator_main, args=(self.argv, self.env, str(self.log_path)),
                                     daemon=True, name=f"operator-{self.argv[-1]}")
        self._proc.start()
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def kill(self) -> int | None:
        if self._proc is None:
            return None
        self._proc.kill()
        self._proc.join()
        code, self._proc = self._proc.exitcode, None
        return code

    def terminate(self) -> None:
        if self._proc is not None:
            self._proc.terminate()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, as a Deployment rollout would; SIGKILL if it does not exit in time."""
        if self._proc is None:
            return None
        self._proc.terminate()
        self._proc.join(timeout)
        return self.kill()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Run:
    namespace: str
    target: int | str                         # k: killed right after the k-th write of its first pass; or the above
    operator: ForkedOperator
    armed: bool = False                       # its writes are counted from its NodeRestore's creation
    clean: bool = True                        # its operator has not died since the NodeRestore was created
    writes: list[str] = field(default_factory=list)     # every counted write, across restarts
    completed_at: int | None = None           # the number of the write that set phase Completed
    killed_after: int | None = None
    restarts: int = 0
    restarted_at: float = 0.0
    seconds: float | None = None              # from its NodeRestore's creation to its completion as seen
    unexpected_exits: list[str] = field(default_factory=list)
    files: Any = None
    secrets: Any = None


class CrashHook:
    """Counts each run's writes (by namespace) and SIGKILLs its operator right after the write its target names,
    before the answer leaves: the write is stored, the operator never learns that it was."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.mnemonic_deletes: list[str] = []
        self.lock = threading.Lock()

    async def __call__(self, request: Any, call_next: Any) -> Any:
        info = request_info(request)
        if info.is_write and info.resource == "secrets" and info.verb in ("delete", "deletecollection") \
                and info.name in (naming.DEFAULT_MNEMONIC_SECRET, ""):
            self.mnemonic_deletes.append(f"{info.namespace}/{info.name} by {request.headers.get('User-Agent')}")
        run = self.runs.get(info.namespace)
        if run is None or not run.armed or not info.is_write or info.resource not in COUNTED \
                or not str(request.headers.get("User-Agent") or "").startswith(OPERATOR_AGENT):
            return await call_next(request)
        what = " ".join(filter(None, (info.verb, info.resource + (f"/{info.subresource}" if info.subresource else ""),
                                      info.name if info.resource != "pods" else "")))    # helper pods: made-up names
        completing = False
        if info.resource == "noderestores" and info.subresource == "status":
            body = await request.json()
            status = (body.get("status") if isinstance(body, dict) else None) or {}
            completing = status.get("phase") == "Completed"
            what += f" [{','.join(sorted(status))}]" + (f" phase={status['phase']}" if "phase" in status else "")
        response = await call_next(request)
        if response.status >= 400:
            return response
        with self.lock:
            run.writes.append(what)
            n = len(run.writes)
            if completing and run.completed_at is None:
                run.completed_at = n
            if run.clean and (run.target == n or (run.target == COMPLETION and completing)):
                run.killed_after, run.clean = n, False
                try:
                    os.kill(run.operator.pid, signal.SIGKILL)
                except (ProcessLookupError, TypeError):
                    pass
        return response


def test_crash_after_every_write_converges(world, operator, kube, tmp_path):
    require(world, "volumes", "kubelet", "exec", "hooks")
    started = time.monotonic()
    peer_rpc = kube.mayanode("restore-peer", "restore-peer")["spec"]["api"]["rpc"] \
        if _exists(kube, "restore-peer") else world.seed_node("crash-peer").rpc_url
    hook = CrashHook()
    violations: list[str] = []
    original = world.mocknet.process_started

    def guarded_start(namespace: str, instance_id: str, **kwargs: Any) -> None:
        original(namespace, instance_id, **kwargs)
        started = world.mocknet.processes[instance_id]
        for other in list(world.mocknet.processes.values()):
            if other.instance_id != instance_id and other.validator_address == started.validator_address:
                violations.append(f"{instance_id} and {other.instance_id} run validator {other.validator_address}")

    test_client = k8s_config.new_client_from_config(config_file=str(world.kubeconfig_path))
    test_client.user_agent = TEST_AGENT
    custom = k8s.CustomObjectsApi(test_client)
    multiprocessing.get_context("forkserver").set_forkserver_preload([__name__])
    multiprocessing.forkserver.ensure_running()     # it imports this module while the first nodes are seeded
    operator.stop()            # each run has its own operator: the cluster-wide one would reconcile it too
    world.mocknet.process_started = guarded_start
    world.sandbox.api.add_request_hook(hook)
    runs: list[Run] = []
    rounds: list[str] = []
    try:
        batch: list[int | str] = [*[CALIBRATION] * CALIBRATIONS, *range(1, FIRST_TARGETS + 1)]
        total = 0
        tried: dict[int, int] = {}
        while batch:
            t0 = time.monotonic()
            this, times = run_round(world, kube, custom, hook, tmp_path, peer_rpc, len(rounds), batch)
            runs += this
            rounds.append(f"round {len(rounds)}: {len(batch)} runs, {time.monotonic() - t0:.0f}s ({times}): {batch}")
            if not total:
                lengths = [run.completed_at for run in this if run.target == CALIBRATION]
                assert None not in lengths, [run.writes for run in this if run.target == CALIBRATION]
                total = min(lengths)
                assert 15 <= total <= 120, this[0].writes
            for k in {k for k in batch if isinstance(k, int)}:
                tried[k] = tried.get(k, 0) + 1
            covered = {run.killed_after for run in runs if isinstance(run.target, int) and run.killed_after}
            todo = [k for k in range(1, total + 1) if k not in covered and tried.get(k, 0) < ATTEMPTS]
            batch = [k for k in todo for _ in range(2 if tried.get(k) or k > total - TAIL else 1)]
            if not any(run.target == COMPLETION for run in runs):
                batch.append(COMPLETION)

        expected = set(range(1, total + 1))
        covered = {run.killed_after for run in runs
                   if isinstance(run.target, int) and run.killed_after and run.killed_after <= total}
        report = coverage_report(runs, total, rounds, time.monotonic() - started)
        print("\n" + report)
        assert covered == expected, \
            f"killed after writes {sorted(covered)}; never after {sorted(expected - covered)}\n{report}"
        assert any(run.target == COMPLETION and run.killed_after == run.completed_at for run in runs), report
        assert not [run.unexpected_exits for run in runs if run.unexpected_exits], report
        assert not hook.mnemonic_deletes, hook.mnemonic_deletes
        # A restart reuses the helper its dead pass started, and helpers go where the node's pod holds the volume: no
        # step waits out a helper that cannot attach (a ReadWriteOnce volume is attached to one node at a time).
        stuck = [f"{run.namespace}: {line[:300]}" for run in runs for line in run.operator.log_text().splitlines()
                 if "did not run within" in line]
        assert not stuck, "\n".join(stuck)
        assert not violations, violations
        assert not world.mocknet.double_signs, world.mocknet.double_signs
    finally:
        world.mocknet.process_started = original
        world.sandbox.api.remove_request_hook(hook)
        stop_all(runs)
        server = getattr(multiprocessing.forkserver, "_forkserver", None)
        if server is not None and hasattr(server, "_stop"):
            server._stop()
        multiprocessing.get_context("forkserver").set_forkserver_preload([])
        operator.start()


def coverage_report(runs: list[Run], total: int, rounds: list[str], seconds: float) -> str:
    calibrations = [run for run in runs if run.target == CALIBRATION]
    shortest = min(calibrations, key=lambda run: run.completed_at or 0)
    lines = [f"W={total}: the calibration runs made {[run.completed_at for run in calibrations]} writes; "
             f"(in {[round(run.seconds or 0) for run in calibrations]} s); the shortest one's:", *(f"  {i:>3} {w}" for i, w in enumerate(shortest.writes[:total], 1))]
    for run in runs:
        if run.target == CALIBRATION:
            continue
        if run.killed_after is None:
            lines.append(f"  k={run.target}: not reached, {run.namespace} completed at write {run.completed_at}")
            continue
        what = run.writes[run.killed_after - 1]
        same = run.killed_after <= total and what == shortest.writes[run.killed_after - 1]
        lines.append(f"  k={run.target}: {run.namespace} killed after write {run.killed_after} "
                     f"{'(as in the calibration)' if same else what}; completed at write {run.completed_at}, "
                     f"{run.restarts} restart(s), {run.seconds or 0:.0f}s")
    return "\n".join([*lines, *rounds, f"{len(runs)} runs, {seconds:.0f}s"])


def run_round(world, kube, custom, hook: CrashHook, tmp_path: Path, peer_rpc: str, round_no: int,
              targets: list[int | str]) -> tuple[list[Run], str]:
    """A wiped node per target, all restored at once (each by its own operator, restarted at once when killed);
    each must complete with its files and Secrets as they were. Its namespaces are deleted at the end."""
    runs = []
    for i, target in enumerate(targets):
        ns = f"crash-{round_no}-{i}"
        runs.append(Run(ns, target, ForkedOperator(world.kubeconfig_path, tmp_path / f"{ns}.log", ns)))
    times = [time.monotonic()]
    try:
        prepare(world, kube, runs)
        times.append(time.monotonic())
        for run in runs:
            hook.runs[run.namespace] = run
            run.armed = True
            body = noderestore(run.namespace, "back", run.namespace, "full", guard={"rpc": [peer_rpc]},
                               timeouts={"guardSeconds": 600, "readySeconds": 600, "scaleDownSeconds": 600})
            custom.create_namespaced_custom_object(naming.GROUP, naming.VERSION, run.namespace,
                                                   naming.NODERESTORE_PLURAL, body)
        wait_completed(kube, runs, timeout=300)
        times.append(time.monotonic())
        for run in runs:
            status = kube.get_custom(naming.NODERESTORE_PLURAL, run.namespace, "back")["status"]
            assert status["phase"] == "Completed", dump(status)
            assert identity_files(world, run.namespace) == run.files, run.namespace
            assert secret_values(kube, run.namespace) == run.secrets, run.namespace
    finally:
        stop_all(runs)
        for run in runs:
            hook.runs.pop(run.namespace, None)
    for run in runs:
        kube.core.delete_namespace(run.namespace)
    times.append(time.monotonic())
    return runs, ", ".join(f"{what} {b - a:.0f}s" for what, a, b in
                           zip(("seed and back up", "restore", "check and stop"), times, times[1:]))


def stop_all(runs: list[Run], timeout: float = 1.0) -> None:
    """SIGTERM to every operator at once, SIGKILL to those still running after `timeout`."""
    for run in runs:
        run.operator.terminate()
    deadline = time.monotonic() + timeout
    for run in runs:
        run.operator.stop(max(0.0, deadline - time.monotonic()))


def prepare(world, kube, runs: list[Run]) -> None:
    """Seed and back up each node (its operator running), remember its files and Secrets, then wipe its volumes and
    blank its mnemonic."""
    namespaces = [run.namespace for run in runs]
    nodes = {ns: world.seed_node(ns, wait_ready=False) for ns in namespaces}
    for run in runs:
        run.operator.start()
    for ns, seeded in nodes.items():
        world.call(world.sandbox.wait_ready(ns, timeout=60), timeout=90)
        create_secret(kube, ns, "age-identity", {"identity": IDENTITY})
        kube.apply(mayanode_manifest(seeded, backup={"afterChurn": False, "location": location()}))
        kube.apply(nodebackup(ns, "full", ns))
    for run in runs:
        ns = run.namespace
        eventually(lambda: (kube.get_custom(naming.NODEBACKUP_PLURAL, ns, "full").get("status") or {})
                   .get("phase") == "Completed", timeout=120, interval=0.3,
                   message=lambda: dump(kube.get_custom(naming.NODEBACKUP_PLURAL, ns, "full").get("status"))
                   + "\n" + run.operator.log_text()[-2000:])
    for run in runs:
        run.files, run.secrets = identity_files(world, run.namespace), secret_values(kube, run.namespace)
        assert run.files and len(run.secrets) == 2, run.namespace
    for ns in namespaces:
        for deployment in ("mayanode", "bifrost"):
            kube.apps.patch_namespaced_deployment_scale(deployment, ns, {"spec": {"replicas": 0}})
    eventually(lambda: not any(world.mocknet.running_processes(ns) for ns in namespaces), timeout=60)
    for ns in namespaces:
        for claim in ("mayanode", "bifrost"):
            world.kubelet.volume(ns, claim).wipe()
        kube.core.patch_namespaced_secret(naming.DEFAULT_MNEMONIC_SECRET, ns, {"data": {"mnemonic": ""}})
        for deployment in ("mayanode", "bifrost"):
            kube.apps.patch_namespaced_deployment_scale(deployment, ns, {"spec": {"replicas": 1}})


def wait_completed(kube, runs: list[Run], *, timeout: float, settle: float = 2.0) -> None:
    """Restart each killed operator at once (as its Deployment would) until every restore is Completed, and the
    operator of a run killed after its completing write has run `settle` seconds again."""
    started = time.monotonic()
    deadline = started + timeout
    pending = {run.namespace: run for run in runs}
    next_poll = 0.0
    while pending:
        for run in runs:
            if not run.operator.running:
                if run.killed_after is None or run.restarts:
                    run.unexpected_exits.append(f"{run.namespace}: the operator exited by itself:\n"
                                                + run.operator.log_text()[-2000:])
                    run.clean = False
                    if len(run.unexpected_exits) >= 3:
                        raise AssertionError("\n".join(run.unexpected_exits))
                run.operator.kill()
                run.operator.start()
                run.restarts += 1
                run.restarted_at = time.monotonic()
        if time.monotonic() >= next_poll:
            next_poll = time.monotonic() + 0.3
            items = kube.custom.list_cluster_custom_object(naming.GROUP, naming.VERSION,
                                                           naming.NODERESTORE_PLURAL)["items"]
            phases = {item["metadata"]["namespace"]: (item.get("status") or {}) for item in items}
            for ns, run in sorted(pending.items()):
                status = phases.get(ns) or {}
                if status.get("phase") == "Completed" and (
                        run.killed_after is None or (run.restarts and time.monotonic() > run.restarted_at + settle)):
                    del pending[ns]
                    run.seconds = time.monotonic() - started
                elif status.get("phase") == "Failed":
                    raise AssertionError(f"{ns} (killed after write {run.killed_after}) failed: {dump(status)}\n"
                                         + "\n".join(run.writes))
        if time.monotonic() > deadline:
            raise AssertionError("not completed: " + ", ".join(
                f"{ns} (killed after write {run.killed_after} of {run.writes})" for ns, run in sorted(pending.items()))
                + "\n" + next(iter(pending.values())).operator.log_text()[-3000:])
        time.sleep(0.05)


def _exists(kube, ns: str) -> bool:
    try:
        kube.mayanode(ns, ns)
        return True
    except Exception:      # noqa: BLE001
        return False
