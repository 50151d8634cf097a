"""Crash-resume sweep: kill the operator (SIGKILL) right after its k-th API write, restart it, check invariants.

    scenario = Scenario(
        name="observe",
        setup=lambda run: run.seed_node(run.namespace),                 # the world before the operator
        steps=[Step(lambda run: run.apply(mayanode_body(run)),          # what the user does …
                    lambda run: run.condition("Ready")["status"] == "True")],   # … and what to wait for
        converged=lambda run: run.condition("Ready")["status"] == "True",
    )
    report = sweep(world, scenario, points=every(2))   # world: anything with .call(coro) and .sandbox
    assert report.ok, report.summary()
    report.covered                                     # crash points where the kill happened and all held

How one sweep runs:
1. A *reference* run: the scenario once, no crash, counting the operator's API writes (requests with
   its `User-Agent`, see `faults.is_operator_request`: create/update/patch/delete, and pod exec, which
   is how transactions are sent). N = writes until converged (+ `settle_seconds`).
2. For every chosen k in 1..N a fresh run in its own namespace(s): the operator is killed with SIGKILL
   as soon as the answer to its k-th write has been written to its socket, and started again at once
   (as a Deployment would), then the run must converge. A point whose run ends before the k-th write
   (runs are not bit-for-bit alike) is reported as not reached.
3. Invariants, watched for the whole run (not polled) and checked at the end:
   - converged (the scenario's predicate) within `converge_timeout`;
   - never two running mayanode processes with one consensus key (the mocknet's running processes,
     checked on every pod event) and no double sign recorded by the mocknet;
   - the mnemonic Secret is never absent (no DELETED event for it; present at the end);
   - no mayanode Deployment left at 0 replicas without a condition saying why (`WHY_ZERO_REPLICAS_TYPES`, `_REASONS`);
   - every transaction sent at most once: no (signer, argv) submitted again after it was accepted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ..api import naming
from . import kubeclient as kc
from .apiserver.handlers import request_info
from .faults import WRITE_VERBS, is_operator_request
from .harness import OperatorProcess, eventually

MAYANODES = kc.Resource(naming.GROUP, naming.VERSION, naming.MAYANODE_PLURAL, True, "MayaNode")
NODEBACKUPS = kc.Resource(naming.GROUP, naming.VERSION, naming.NODEBACKUP_PLURAL, True, "NodeBackup")
NODERESTORES = kc.Resource(naming.GROUP, naming.VERSION, naming.NODERESTORE_PLURAL, True, "NodeRestore")
CUSTOM = {"MayaNode": MAYANODES, "NodeBackup": NODEBACKUPS, "NodeRestore": NODERESTORES}

# A mayanode Deployment at 0 replicas is explained by one of these conditions being True …
WHY_ZERO_REPLICAS_TYPES = {"Suspended", "Upgrading", "Restoring", "RestoreInProgress"}
# … or by a condition (any status) with one of these reasons.
WHY_ZERO_REPLICAS_REASONS = {"Suspended", "RestoreInProgress", "Restoring", "UpgradeInProgress", "Upgrading",
                             "WorkloadsLocked", "StoppedForRestore", "StoppedForUpgrade"}


def is_counted_write(request: web.Request) -> bool:
    """A write by the operator: create/update/patch/delete, or a pod exec (a transaction, a file copy)."""
    info = request_info(request)
    if not is_operator_request(request):
        return False
    return info.verb in WRITE_VERBS or (info.verb == "connect" and info.subresource == "exec")


@dataclass(frozen=True)
class WriteRecord:
    n: int
    verb: str
    resource: str
    namespace: str
    name: str
    status: int

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"#{self.n} {self.verb} {self.resource} {where} → {self.status}"


class WriteCounter:
    """A request hook counting the operator's writes; armed, it calls `on_kth` once the k-th is answered."""

    def __init__(self, counted: Callable[[web.Request], bool] = is_counted_write) -> None:
        self.counted = counted
        self.writes: list[WriteRecord] = []
        self._armed: int | None = None
        self._on_kth: Callable[[WriteRecord], None] | None = None
        self._lock = threading.Lock()

    def arm(self, k: int | None, on_kth: Callable[[WriteRecord], None] | None = None) -> None:
        with self._lock:
            self._armed, self._on_kth = k, on_kth

    def reset(self) -> None:
        with self._lock:
            self.writes = []

    async def __call__(self, request: web.Request, call_next: Callable[[web.Request], Any]) -> web.StreamResponse:
        if not self.counted(request):
            return await call_next(request)
        response = await call_next(request)
        info = request_info(request)
        resource = info.resource + (f"/{info.subresource}" if info.subresource else "")
        with self._lock:
            record = WriteRecord(len(self.writes) + 1, info.verb, resource, info.namespace, info.name,
                                 response.status)
            self.writes.append(record)
            fire = self._on_kth if self._armed == record.n else None
            if fire is not None:
                self._armed = None
        if fire is not None:
            if isinstance(response, web.Response) and not response.prepared:
                try:                              # the answer leaves before the operator dies
                    await response.prepare(request)
                    await response.write_eof()
                except (ConnectionError, RuntimeError):
                    pass
            fire(record)
        return response


# ------------------------------------------------------------------------------------------- scenarios

@dataclass
class Step:
    """A user action and what to wait for before the next one (both take the `SweepRun`)."""

    action: Callable[["SweepRun"], Any]
    until: Callable[["SweepRun"], Any] | None = None
    timeout: float = 40.0


@dataclass
class Scenario:
    name: str                                              # short: namespaces are "<name>-<k>"
    setup: Callable[["SweepRun"], Any]                     # seed the world; the operator is not running yet
    steps: Sequence[Step] = ()                             # run while the operator runs (and crashes)
    converged: Callable[["SweepRun"], Any] = lambda run: True
    extra_namespaces: Sequence[str] = ()                   # suffixes: "<name>-<k>-<suffix>" also watched
    invariants: Sequence[Callable[["SweepRun"], Iterable[str]]] = ()   # extra checks: yield violations
    note: Callable[["SweepRun"], str] | None = None         # a word on the end state, shown per point
    settle_seconds: float = 2.0                            # the reference run keeps counting this long
    converge_timeout: float = 45.0
    operator_env: dict[str, str] = field(default_factory=dict)


@dataclass
class PointResult:
    k: int
    reached: bool
    killed_after: str = ""
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)
    restarts: int = 0
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass
class SweepReport:
    scenario: str
    reference_writes: list[WriteRecord]
    points: list[PointResult]

    @property
    def covered(self) -> int:
        """Crash points where the operator was killed after its k-th write and every invariant held."""
        return sum(1 for p in self.points if p.reached and p.ok)

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.points) and any(p.reached for p in self.points)

    def summary(self) -> str:
        lines = [f"crash sweep {self.scenario!r}: {len(self.reference_writes)} operator writes in the reference run; "
                 f"{self.covered} crash points covered of {len(self.points)} tried"]
        lines += [f"  ref {w}" for w in self.reference_writes]
        for p in self.points:
            state = "ok" if p.ok else "FAILED"
            where = p.killed_after if p.reached else "(run ended before this write)"
            note = f" [{p.note}]" if p.note else ""
            lines.append(f"  k={p.k:<3} {state:<6} killed after {where}; converged in {p.seconds:.1f}s{note}")
            lines += [f"      ✗ {v}" for v in p.violations]
        return "\n".join(lines)


PointChooser = Callable[[Sequence[WriteRecord]], Iterable[int]]


def every(step: int = 1, first: int = 1) -> PointChooser:
    """Crash points 1, 1+step, …, plus the last write."""
    def choose(writes: Sequence[WriteRecord]) -> list[int]:
        n = len(writes)
        ks = list(range(first, n + 1, max(1, step)))
        if n and ks[-1:] != [n]:
            ks.append(n)
        return ks
    return choose


def all_points(writes: Sequence[WriteRecord]) -> list[int]:
    return list(range(1, len(writes) + 1))


def around(*resources: str, before: int = 1) -> PointChooser:
    """Each write to one of `resources` (e.g. "pods/exec": a transaction) and the `before` writes preceding it
    (e.g. the status patch that records a transaction as sent)."""
    def choose(writes: Sequence[WriteRecord]) -> list[int]:
        ks: set[int] = set()
        for w in writes:
            if w.resource in resources:
                ks.update(range(max(1, w.n - before), w.n + 1))
        return sorted(ks)
    return choose


def union(*choosers: PointChooser) -> PointChooser:
    def choose(writes: Sequence[WriteRecord]) -> list[int]:
        return sorted({k for chooser in choosers for k in chooser(writes)})
    return choose


# ------------------------------------------------------------------------------------------- one run

class Watchers:
    """In-process watches of the run's namespaces: pods (key uniqueness) and the mnemonic Secret."""

    def __init__(self, world: Any, namespaces: Sequence[str]) -> None:
        self.world = world
        self.namespaces = list(namespaces)
        self.violations: list[str] = []
        self.max_processes_per_key = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._watches: list[Any] = []

    def start(self) -> "Watchers":
        self.world.call(self._start())
        return self

    async def _start(self) -> None:
        store = self.world.sandbox.api.store
        for ns in self.namespaces:
            for resource, handler in (("pods", self._on_pod), ("secrets", self._on_secret)):
                watch = store.watch(resource, ns)
                self._watches.append(watch)
                self._tasks.append(asyncio.ensure_future(self._consume(watch, handler)))

    async def _consume(self, watch: Any, handler: Callable[[dict[str, Any]], None]) -> None:
        async for event in watch:
            handler(event)

    def _on_pod(self, event: dict[str, Any]) -> None:
        by_key: dict[str, list[str]] = {}
        for proc in self.world.sandbox.mocknet.running_processes():
            by_key.setdefault(proc.cons_pubkey_b64, []).append(f"{proc.namespace}/{proc.instance_id}")
        for key, procs in by_key.items():
            self.max_processes_per_key = max(self.max_processes_per_key, len(procs))
            if len(procs) > 1:
                self._violate(f"two mayanode processes run with one consensus key: {sorted(procs)}")

    def _on_secret(self, event: dict[str, Any]) -> None:
        meta = event["object"]["metadata"]
        if event["type"] == "DELETED" and meta["name"] == naming.DEFAULT_MNEMONIC_SECRET:
            self._violate(f"the mnemonic Secret {meta['namespace']}/{meta['name']} was deleted")

    def _violate(self, message: str) -> None:
        if message not in self.violations:
            self.violations.append(message)

    def stop(self) -> None:
        async def stop() -> None:
            for watch in self._watches:
                watch.close()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.world.call(stop())


class SweepRun:
    """What scenario callables get: the world, the run's namespace(s) and a small client (not the operator's)."""

    def __init__(self, world: Any, namespace: str, extra: Sequence[str] = ()) -> None:
        self.world = world
        self.namespace = namespace
        self.namespaces = [namespace, *(f"{namespace}-{suffix}" for suffix in extra)]
        self.data: dict[str, Any] = {}                     # for scenario callables to share values

    @property
    def sandbox(self) -> Any:
        return self.world.sandbox

    @property
    def mocknet(self) -> Any:
        return self.world.sandbox.mocknet

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        return self.world.call(coro, timeout=timeout)

    def seed_node(self, namespace: str | None = None, wait_ready: bool = True, **kwargs: Any) -> Any:
        ns = namespace or self.namespace
        node = self.call(self.sandbox.seed_node(ns, **kwargs))
        if wait_ready and kwargs.get("replicas", 1):
            self.call(self.sandbox.wait_ready(ns))
        self.data.setdefault("nodes", {})[ns] = node
        return node

    # --- a client for the scenario's own reads and writes (the sandbox's: never counted) ---------
    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        resource = CUSTOM.get(body["kind"])
        if resource is None:
            raise ValueError(f"apply() takes the operator's kinds; got {body['kind']}")
        return self.call(self.sandbox.client.create(resource, body, body["metadata"]["namespace"]))

    def get(self, kind: str, name: str | None = None, namespace: str | None = None) -> dict[str, Any] | None:
        return self.call(self.sandbox.client.get(CUSTOM[kind], name or self.namespace, namespace or self.namespace))

    def patch_spec(self, kind: str, spec: dict[str, Any], name: str | None = None,
                   namespace: str | None = None) -> dict[str, Any]:
        return self.call(self.sandbox.client.patch(CUSTOM[kind], name or self.namespace, {"spec": spec},
                                                   namespace or self.namespace))

    def condition(self, type_: str, kind: str = "MayaNode", name: str | None = None) -> dict[str, Any]:
        body = self.get(kind, name) or {}
        for cond in (body.get("status") or {}).get("conditions") or []:
            if cond.get("type") == type_:
                return cond
        return {}

    def deployment(self, name: str = "mayanode", namespace: str | None = None) -> dict[str, Any] | None:
        return self.call(self.sandbox.client.get(kc.DEPLOYMENTS, name, namespace or self.namespace))


def check_final_invariants(run: SweepRun) -> list[str]:
    violations: list[str] = []
    net = run.mocknet
    mine = set(run.namespaces)
    for ds in net.double_signs:
        violations.append(f"double sign at height {ds.height} by {ds.validator_address}: {ds.instances}")
    accepted: dict[tuple[str, tuple[str, ...]], int] = {}
    for tx in net.transactions:
        if tx.namespace not in mine:
            continue
        key = (tx.signer, tuple(tx.argv))
        if key in accepted:
            violations.append(f"transaction sent again after it was accepted: {' '.join(tx.argv)[:200]} "
                              f"(first at height {accepted[key]}, again at {tx.submitted_height})")
        elif tx.result.ok:
            accepted[key] = tx.submitted_height
    for ns in run.namespaces:
        secret = run.call(run.sandbox.client.get(kc.SECRETS, naming.DEFAULT_MNEMONIC_SECRET, ns))
        seeded = ns in (run.data.get("nodes") or {})
        if seeded and secret is None:
            violations.append(f"the mnemonic Secret {ns}/{naming.DEFAULT_MNEMONIC_SECRET} is absent at the end")
        deployment = run.deployment("mayanode", ns)
        if deployment is None or (deployment.get("spec") or {}).get("replicas", 1) != 0:
            continue
        if (run.data.get("seeded_zero") or set()) & {ns}:
            continue
        nodes = (run.call(run.sandbox.client.list(MAYANODES, ns)) or {}).get("items") or []
        why = [c for n in nodes for c in (n.get("status") or {}).get("conditions") or []
               if (c.get("type") in WHY_ZERO_REPLICAS_TYPES and c.get("status") == "True")
               or c.get("reason") in WHY_ZERO_REPLICAS_REASONS]
        if not why:
            violations.append(f"{ns}/mayanode is at 0 replicas and no MayaNode condition says why")
    return violations


def _wait(check: Callable[[], Any], timeout: float, what: str) -> None:
    eventually(lambda: check(), timeout=timeout, interval=0.2, message=what)


class _OperatorExited(Exception):
    pass


class _Supervisor:
    """Restarts the operator after the trigger killed it, as a Deployment's ReplicaSet would."""

    def __init__(self, make: Callable[[], OperatorProcess]) -> None:
        self._make = make
        self.proc = make().start()
        self.restarts = 0
        self.exits: list[int | None] = []
        self._killed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="crash-supervisor", daemon=True)
        self._thread.start()

    def kill_now(self, _record: WriteRecord) -> None:
        """Called from the API server's loop: SIGKILL at once, the restart happens in our thread."""
        pid = self.proc.pid
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._killed.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._killed.wait(0.1):
                self._killed.clear()
                self.proc.kill()
                self.proc = self._make().start()
                self.restarts += 1
            elif not self.proc.running and not self._stop.is_set():
                self.exits.append(self.proc.kill())          # it died by itself: restart, and say so
                self.proc = self._make().start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.proc.stop()


def run_once(world: Any, scenario: Scenario, namespace: str, counter: WriteCounter | None = None, *,
             k: int | None = None, log_dir: str | Path, operator_args: Sequence[str] = (),
             on_converged: Callable[[SweepRun], Any] | None = None) -> tuple[PointResult, SweepRun]:
    """One run of a scenario in `namespace` with every invariant checked (the fault suite uses it as is);
    with `counter` (installed as a request hook) and `k`, the operator dies after its k-th write."""
    log_dir = Path(log_dir)
    run = SweepRun(world, namespace, scenario.extra_namespaces)
    run.data["log_path"] = Path(log_dir) / f"{namespace}.log"
    scenario.setup(run)
    watchers = Watchers(world, run.namespaces).start()
    if counter is not None:
        counter.reset()
    env = {"MAYANODE_OPERATOR_METRICS_PORT": "0", "MAYANODE_OPERATOR_LOCK_NAMESPACE": namespace,
           "MAYANODE_OPERATOR_ROLLOUT_NAMESPACE": namespace, **scenario.operator_env}
    log_path = log_dir / f"{namespace}.log"

    def make() -> OperatorProcess:
        return OperatorProcess(world.sandbox.kubeconfig_path, log_path, namespaces=tuple(run.namespaces),
                               extra_env=env, extra_args=tuple(operator_args))

    result = PointResult(k=k or 0, reached=k is None)
    supervisor: _Supervisor | None = None
    started = time.monotonic()
    try:
        supervisor = _Supervisor(make)
        if k is not None and counter is not None:
            def killed(record: WriteRecord) -> None:
                result.reached, result.killed_after = True, str(record)
                supervisor.kill_now(record)
            counter.arm(k, killed)
        def alive(check: Callable[[SweepRun], Any]) -> Callable[[], Any]:
            def probe() -> Any:
                if supervisor.exits:
                    raise _OperatorExited(f"the operator exited by itself with code {supervisor.exits[0]}")
                return check(run)
            return probe

        for step in scenario.steps:
            step.action(run)
            if step.until is not None:
                _wait(alive(step.until), step.timeout, f"{scenario.name}: step not done")
        _wait(alive(scenario.converged), scenario.converge_timeout, f"{scenario.name}: not converged")
        result.seconds = time.monotonic() - started
        if on_converged is not None:
            on_converged(run)                  # the operator still runs (e.g. read its metrics)
        if k is None:
            time.sleep(scenario.settle_seconds)
        else:
            time.sleep(0.5)
    except (AssertionError, _OperatorExited) as err:
        tail = log_path.read_text(errors="replace")[-1500:] if log_path.exists() else ""
        result.violations.append(f"{err}; operator log tail:\n{tail}")
    finally:
        if counter is not None:
            counter.arm(None)
        if supervisor is not None:
            result.restarts = supervisor.restarts
            supervisor.stop()
        watchers.stop()
    result.violations += watchers.violations
    result.violations += check_final_invariants(run)
    for check in scenario.invariants:
        result.violations += list(check(run))
    if scenario.note is not None:
        result.note = scenario.note(run)
    if k is not None and result.reached and result.restarts < 1:
        result.violations.append("the operator was killed but not restarted")
    return result, run


def run_namespaces(scenario: Scenario, namespace: str) -> list[str]:
    return [namespace, *(f"{namespace}-{suffix}" for suffix in scenario.extra_namespaces)]


def _cleanup(world: Any, namespaces: Sequence[str]) -> None:
    """Delete a finished run's namespaces so its pods stop (the next runs do not pay for them)."""
    for ns in namespaces:
        try:
            world.call(world.sandbox.client.delete(kc.NAMESPACES, ns))
        except kc.ApiError:
            pass


def sweep(world: Any, scenario: Scenario, points: PointChooser = all_points, *,
          log_dir: str | Path | None = None, max_points: int | None = None,
          operator_args: Sequence[str] = ()) -> SweepReport:
    """The reference run, then one crash run per chosen k (see the module docstring)."""
    logs = Path(log_dir or tempfile.mkdtemp(prefix=f"crashsweep-{scenario.name}-"))
    logs.mkdir(parents=True, exist_ok=True)
    counter = WriteCounter()
    world.sandbox.api.add_request_hook(counter)
    try:
        reference, _ = run_once(world, scenario, f"{scenario.name}-ref", counter, k=None, log_dir=logs,
                                operator_args=operator_args)
        writes = list(counter.writes)
        results = [reference] if reference.violations else []
        if reference.violations:
            return SweepReport(scenario.name, writes, results)
        _cleanup(world, run_namespaces(scenario, f"{scenario.name}-ref"))
        ks = list(points(writes))
        if max_points is not None:
            ks = ks[:max_points]
        for k in ks:
            result, _ = run_once(world, scenario, f"{scenario.name}-{k}", counter, k=k, log_dir=logs,
                                 operator_args=operator_args)
            results.append(result)
            _cleanup(world, run_namespaces(scenario, f"{scenario.name}-{k}"))
        return SweepReport(scenario.name, writes, results)
    finally:
        world.sandbox.api.remove_request_hook(counter)


__all__ = ["PointResult", "Scenario", "Step", "SweepReport", "SweepRun", "WriteCounter", "WriteRecord",
           "all_points", "around", "union", "check_final_invariants", "every", "is_counted_write", "run_once", "sweep"]
