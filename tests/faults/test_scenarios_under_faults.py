"""The main scenarios with the control plane misbehaving: conflicts, throttling, 500s, lost answers, slow
answers, dropped and ended watch streams, failing execs. Each must converge with the crash sweep's
invariants held (no double signing, mnemonic never absent, no transaction accepted twice)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from mayanode_operator.sandbox.crashsweep import run_once

from ..crash.scenarios import BACKUP, IP_AND_MIMIR, OBSERVE

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
                   for name, scenario in (("observe", OBSERVE), ("tx", IP_AND_MIMIR))}
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
