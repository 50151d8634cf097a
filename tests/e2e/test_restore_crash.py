"""Issue 4: the operator is SIGKILLed right after each API write of a NodeRestore in turn, and restarted.

A calibration restore counts the restore's writes (W) with the API server's request hook: status patches, scale
patches, helper pods, Secret writes and the lock Lease (Events are left out: a crash right after an Event leaves the
same state as a crash right before the next write). Then R wiped nodes are restored at once; run r is killed right
after each of its writes whose number n (counted across restarts) has n ≡ r (mod R), and the operator is restarted
after every kill, so together the runs crash after every write index 1..W (and the other runs are interrupted
wherever they are: extra crash points). Every run must converge to Completed with the identical files and Secrets,
the mnemonic Secret is never absent (no DELETE of it ever reaches the server), and at no instant do two mayanode
processes with one consensus key run (checked as each process starts; `mocknet.double_signs` stays empty).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import defaultdict
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from mayanode_operator.api import naming
from mayanode_operator.sandbox.apiserver.handlers import request_info

from .conftest import dump, eventually, require
from .test_restore import backed_up_many, identity_files, noderestore, secret_values

pytestmark = pytest.mark.timeout(600)
OPERATOR_AGENT = "mayanode-operator/"
TEST_AGENT = "restore-crash-test"
COUNTED = {"noderestores", "deployments", "pods", "secrets", "leases"}
RUNS = 4


class WriteCounter:
    """Counts the operator's writes per restore (by namespace; lock Leases by their key) and kills it at the k-th."""

    def __init__(self, operator: Any, lock_namespace: str = "default") -> None:
        self.operator = operator
        self.lock_namespace = lock_namespace
        self.counts: dict[str, int] = defaultdict(int)
        self.kill_residue: dict[str, int] = {}        # run → r: killed after writes n with n % RUNS == r
        self.kill_exact: dict[str, set[int]] = {}     # run → the write numbers to be killed after
        self.kill_on_complete: set[str] = set()       # runs killed right after the write that completes them
        self.killed_on_complete: set[str] = set()
        self.killed: dict[str, list[int]] = defaultdict(list)
        self.lease_owner: dict[str, str] = {}         # lease name → namespace
        self.writes: dict[str, list[str]] = defaultdict(list)
        self.mnemonic_deletes: list[str] = []
        self.lock = threading.Lock()

    async def __call__(self, request: Any, call_next: Any) -> Any:
        info = request_info(request)
        if info.is_write and os.environ.get("CRASH_DEBUG"):
            print("W", request.headers.get("User-Agent"), info.verb, info.resource, info.namespace, info.name)
        if info.is_write and info.resource == "secrets" and info.verb in ("delete", "deletecollection") \
                and info.name in ("mayanode-mnemonic", ""):
            self.mnemonic_deletes.append(f"{info.namespace}/{info.name} by {request.headers.get('User-Agent')}")
        run = await self._run_of(request, info)
        completing = False
        if run in self.kill_on_complete and info.resource == "noderestores" and info.subresource == "status":
            completing = ((await request.json()).get("status") or {}).get("phase") == "Completed"
        response = await call_next(request)
        if run is None or response.status >= 400:
            return response
        with self.lock:
            self.counts[run] += 1
            n = self.counts[run]
            self.writes[run].append(f"{info.verb} {info.resource}/{info.subresource} {info.name}")
            if completing and run not in self.killed_on_complete:
                self.killed_on_complete.add(run)
                self.killed[run].append(n)
                self._kill()
            elif (run in self.kill_residue and n % RUNS == self.kill_residue[run]) or n in self.kill_exact.get(run, ()):
                self.killed[run].append(n)
                self._kill()
        return response

    def _kill(self) -> None:
        proc = getattr(self.operator, "_proc", None)
        if proc is not None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def _run_of(self, request: Any, info: Any) -> str | None:
        if not info.is_write or info.resource not in COUNTED:
            return None
        if not str(request.headers.get("User-Agent") or "").startswith(OPERATOR_AGENT):
            return None
        if info.resource == "leases":
            name = info.name
            if not name:
                body = await request.json()
                name = (body.get("metadata") or {}).get("name", "")
            return self.lease_owner.get(name)
        return info.namespace if info.namespace in self.lease_owner.values() else None


def test_crash_after_every_write_converges(world, operator, kube):
    require(world, "volumes", "kubelet")
    peer_rpc = kube.mayanode("restore-peer", "restore-peer")["spec"]["api"]["rpc"] \
        if _exists(kube, "restore-peer") else None
    if peer_rpc is None:
        peer = world.seed_node("crash-peer")
        peer_rpc = peer.rpc_url
    counter = WriteCounter(operator)
    world.sandbox.api.add_request_hook(counter)
    violations: list[str] = []
    original = world.mocknet.process_started

    def guarded_start(namespace: str, instance_id: str, **kwargs: Any) -> None:
        original(namespace, instance_id, **kwargs)
        started = world.mocknet.processes[instance_id]
        for other in list(world.mocknet.processes.values()):
            if other.instance_id != instance_id and other.validator_address == started.validator_address:
                violations.append(f"{instance_id} and {other.instance_id} run validator {other.validator_address}")

    world.mocknet.process_started = guarded_start
    test_client = k8s_config.new_client_from_config(config_file=str(world.kubeconfig_path))
    test_client.user_agent = TEST_AGENT
    custom = k8s.CustomObjectsApi(test_client)
    try:
        # Calibration: one undisturbed restore counts the writes.
        (cal,) = prepare(world, kube, operator, counter, ["crash-cal"], peer_rpc)
        start_restores(custom, {"crash-cal": None}, peer_rpc)
        wait_completed(kube, operator, ["crash-cal"], counter)
        total = counter.counts["crash-cal"]
        assert 15 <= total <= 120, counter.writes["crash-cal"]

        names = [f"crash-{r}" for r in range(RUNS)]
        prepare(world, kube, operator, counter, names, peer_rpc)
        for r, ns in enumerate(names):
            counter.kill_residue[ns] = r
        start_restores(custom, {ns: None for ns in names}, peer_rpc)
        restarts = wait_completed(kube, operator, names, counter, restart=True, timeout=400)
        # Write indices the disturbed runs did not reach (they make fewer progress writes): one run each.
        # The last write (the one that completes the restore) by its content: the runs' write counts vary a little.
        missing = sorted(set(range(1, total)) - {n for ns in names for n in counter.killed[ns]}) + ["last"]
        extra = [f"crash-x{k}" for k in missing]
        if extra:
            prepare(world, kube, operator, counter, extra, peer_rpc)
            for k, ns in zip(missing, extra):
                if k == "last":
                    counter.kill_on_complete.add(ns)
                else:
                    counter.kill_exact[ns] = {k}
            start_restores(custom, {ns: None for ns in extra}, peer_rpc)
            restarts += wait_completed(kube, operator, extra, counter, restart=True, timeout=200)
            names += extra
        for ns in names:
            status = kube.get_custom(naming.NODERESTORE_PLURAL, ns, "back")["status"]
            assert status["phase"] == "Completed", dump(status)
            assert identity_files(world, ns) == prepared_files[ns], ns
            assert secret_values(kube, ns) == prepared_secrets[ns], ns
        # A run makes a few progress writes more or fewer than another (how many blocks each silence poll sees):
        # every index every run reaches, plus the completing write, must have been a crash point.
        shortest = min(counter.counts[ns] for ns in ["crash-cal", *names])
        covered = {n for ns in names for n in counter.killed[ns]}
        assert counter.killed_on_complete, "no run was killed right after its completing write"
        print(f"\ncrash points: after each write 1..{shortest - 1} and after the completing write (the undisturbed "
              f"restore makes {total} writes), {sum(len(v) for v in counter.killed.values())} kills, "
              f"{restarts} restarts; writes per run: {dict(counter.counts)}")
        assert set(range(1, shortest)) <= covered, (sorted(covered), shortest)
        assert not counter.mnemonic_deletes, counter.mnemonic_deletes
        assert not violations, violations
        assert not world.mocknet.double_signs, world.mocknet.double_signs
    finally:
        world.mocknet.process_started = original
        world.sandbox.api.remove_request_hook(counter)
        if not operator.running:
            operator.kill()
            operator.start()


def _exists(kube, ns: str) -> bool:
    try:
        kube.mayanode(ns, ns)
        return True
    except Exception:      # noqa: BLE001
        return False


prepared_files: dict[str, Any] = {}
prepared_secrets: dict[str, Any] = {}


def prepare(world, kube, operator, counter, namespaces, peer_rpc) -> list[str]:
    """Back each node up, remember its files and Secrets, then wipe its volumes and blank its Secrets."""
    nodes = backed_up_many(world, kube, operator, namespaces)
    for ns, node in nodes.items():
        prepared_files[ns], prepared_secrets[ns] = identity_files(world, ns), secret_values(kube, ns)
        counter.lease_owner["consensus-" + node.facts.validator_address.lower()] = ns
    for ns in namespaces:
        for deployment in ("mayanode", "bifrost"):
            kube.apps.patch_namespaced_deployment_scale(deployment, ns, {"spec": {"replicas": 0}})
    eventually(lambda: not any(world.mocknet.running_processes(ns) for ns in namespaces), timeout=30)
    for ns in namespaces:
        for claim in ("mayanode", "bifrost"):
            world.kubelet.volume(ns, claim).wipe()
        kube.core.patch_namespaced_secret("mayanode-mnemonic", ns, {"data": {"mnemonic": ""}})
        for deployment in ("mayanode", "bifrost"):
            kube.apps.patch_namespaced_deployment_scale(deployment, ns, {"spec": {"replicas": 1}})
    return list(namespaces)


def start_restores(custom, namespaces: dict[str, Any], peer_rpc: str) -> None:
    for ns in namespaces:
        # Generous timeouts: the operator is dead for a while after each kill, and that time counts.
        body = noderestore(ns, "back", ns, "full", guard={"rpc": [peer_rpc]},
                           timeouts={"guardSeconds": 600, "readySeconds": 600, "scaleDownSeconds": 600})
        custom.create_namespaced_custom_object(naming.GROUP, naming.VERSION, ns, naming.NODERESTORE_PLURAL, body)


def wait_completed(kube, operator, namespaces, counter, *, restart: bool = False, timeout: float = 90) -> int:
    restarts = 0
    deadline = time.monotonic() + timeout
    pending = set(namespaces)
    while pending:
        if restart and not operator.running:
            operator.kill()
            operator.start()
            restarts += 1
        for ns in sorted(pending):
            status = kube.get_custom(naming.NODERESTORE_PLURAL, ns, "back").get("status") or {}
            if status.get("phase") == "Completed":
                pending.discard(ns)
            elif status.get("phase") == "Failed":
                raise AssertionError(f"{ns} failed: {dump(status)}\n{counter.writes[ns]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not completed: {sorted(pending)}\n" + operator.log_text()[-3000:])
        time.sleep(0.1)
    return restarts
