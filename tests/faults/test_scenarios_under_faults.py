"""The main scenarios with the control plane misbehaving: conflicts, throttling, 500s, lost answers, slow
answers, dropped and ended watch streams, failing execs. Each must converge with the crash sweep's
invariants held (no double signing, mnemonic never absent, no transaction accepted twice)."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from mayanode_operator.sandbox.crashsweep import run_once

from ..crash.scenarios import BACKUP, IP_AND_MIMIR_ALL_SENT, OBSERVE, RESTORE, UPGRADE

pytestmark = pytest.mark.timeout(240)

# Per request. A reconcile makes about ten API calls, and a failed one backs off 1, 2, 4 … s: these rates
# fail a good share of passes without making convergence a matter of minutes.
API_FAULTS = dict(conflict=0.15, throttle=0.05, retry_after=1, error=0.05, lost_answer=0.1, slow=0.1,
                  slow_seconds=0.3, watch_drop=0.3, watch_end=0.3, watch_max_seconds=3.0)
EXEC_FAULTS = dict(exec_error=0.25, exec_exit=0.25)


def test_main_scenarios_converge_under_faults(fault_world, injector, tmp_path):
    """Observation, and the IP announcement with mimir votes (transactions through exec), side by side."""
    injector.set(**API_FAULTS, **EXEC_FAULTS)
    # Whatever the dice say, every kind of fault happens at least once: status writes meet a conflict and a
    # lost answer, a transaction's exec fails, a watch is cut and another ended.
    injector.force("conflict", resource="mayanodes/status").force("lost_answer", resource="mayanodes/status")
    for fault in ("exec_error", "throttle", "error", "slow", "watch_drop", "watch_end"):
        injector.force(fault)
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(run_once, fault_world, scenario, f"faults-{name}", log_dir=tmp_path)
                   for name, scenario in (("observe", OBSERVE), ("tx", IP_AND_MIMIR_ALL_SENT))}
        results = {name: future.result()[0] for name, future in futures.items()}
    injector.set()
    print(dict(injector.counts), results["tx"].note)
    for name, result in results.items():
        assert result.ok, f"{name}:\n" + "\n".join(result.violations)
    assert {"conflict", "lost_answer", "exec_error", "throttle", "error", "watch_drop", "watch_end", "slow"} <= \
        set(injector.counts), injector.counts
    assert injector.total >= 20, injector.counts


def test_a_backup_converges_under_faults(fault_world, injector, tmp_path):
    """A verified backup (tar streams through exec, a Secret store) while the API server and exec misbehave."""
    injector.set(**API_FAULTS, **EXEC_FAULTS)
    injector.force("conflict", resource="nodebackups/status").force("lost_answer", resource="nodebackups/status")
    injector.force("exec_error")
    result = run_once(fault_world, BACKUP, "faults-backup", log_dir=tmp_path)[0]
    injector.set()
    print(dict(injector.counts))
    assert result.ok, "\n".join(result.violations)
    assert {"conflict", "lost_answer", "exec_error"} <= set(injector.counts), injector.counts


# A restore's steps are long: WriteFiles reads the archive, starts helper pods and runs a dozen execs, and any failure
# starts it over. At the rates above most attempts fail (WriteFiles alone retried for 45 s and more); these, about a
# third of them per request, fail a good share of a restore's step attempts as the rates above do a reconcile's.
LONG_STEP_FAULTS = dict(API_FAULTS, conflict=0.05, throttle=0.02, error=0.02, lost_answer=0.04, slow=0.05,
                        exec_error=0.1, exec_exit=0.1)


def test_a_restore_and_an_upgrade_converge_under_faults(fault_world, injector, tmp_path):
    """A restore (helper pods, exec tar streams, Secrets replaced in place, the key lock, the silence guard) and a
    gated upgrade (image patches, health checks, set-version through exec), side by side, while the API server and
    exec misbehave. The faults start once the restore's node is backed up and wiped (a backup under faults is the
    test above), before either scenario's operator starts."""
    injector.set()
    faults_on = threading.Event()

    def restore_setup(run):
        try:
            RESTORE.setup(run)
            injector.set(**LONG_STEP_FAULTS)
            # Whatever the dice say: a restore's status write meets a conflict and a lost answer, so does a Secret it
            # replaces in place (the retry finds the value already there), the upgrade's status write a conflict, an
            # exec fails, and every other kind of fault happens at least once.
            for fault, resource in (("conflict", "noderestores/status"), ("lost_answer", "noderestores/status"),
                                    ("lost_answer", "secrets"), ("conflict", "mayanodes/status"), ("exec_error", None),
                                    ("throttle", None), ("error", None), ("slow", None), ("watch_drop", None),
                                    ("watch_end", None)):
                injector.force(fault, resource=resource)
        finally:
            faults_on.set()

    def upgrade_setup(run):
        UPGRADE.setup(run)
        assert faults_on.wait(180), "the restore's setup did not finish"

    scenarios = {"restore": dataclasses.replace(RESTORE, setup=restore_setup),
                 "upgrade": dataclasses.replace(UPGRADE, setup=upgrade_setup)}
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(run_once, fault_world, scenario, f"faults-{name}", log_dir=tmp_path)
                   for name, scenario in scenarios.items()}
        results = {name: future.result()[0] for name, future in futures.items()}
    injector.set()
    print(dict(injector.counts), {name: round(result.seconds, 1) for name, result in results.items()},
          results["upgrade"].note)
    for name, result in results.items():
        assert result.ok, f"{name}:\n" + "\n".join(result.violations)
    assert {"conflict", "lost_answer", "exec_error", "throttle", "error", "watch_drop", "watch_end", "slow"} <= \
        set(injector.counts), injector.counts
    hit = {(fault, resource) for fault, _, resource, namespace, _ in injector.log if namespace == "faults-restore"}
    assert {("conflict", "noderestores/status"), ("lost_answer", "noderestores/status"),
            ("lost_answer", "secrets")} <= hit, sorted(hit)
