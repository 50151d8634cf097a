"""Crash-resume: the operator is SIGKILLed right after its k-th API write, restarted at once, and must
converge with every invariant held (see `mayanode_operator.sandbox.crashsweep`).

The suite samples crash points to stay within its time budget (the sweeps run side by side, one world
each); `python -m bench.crash_sweep` sweeps every k of every scenario (counts in bench/RESULTS.md).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from mayanode_operator.sandbox.crashsweep import around, every, sweep

from .scenarios import BACKUP, IP_AND_MIMIR, OBSERVE

pytestmark = pytest.mark.timeout(300)

SAMPLED = [
    # The observation story: a status patch and an event after each change.
    (OBSERVE, every(6), None, 2),
    # Killed right after recording a transaction as sent (before sending it), or right after sending it:
    # never sent twice, never forgotten (on chain, or on record as pending and resent after the timeout).
    (IP_AND_MIMIR, around("pods/exec"), 2, 2),
    # A backup killed mid-capture or mid-store: a retried capture rewrites its own object, never a second one.
    (BACKUP, every(4), 2, 2),
]


def test_scenarios_survive_a_crash_after_their_writes(make_world, tmp_path, record_property):
    worlds = [make_world() for _ in SAMPLED]
    with ThreadPoolExecutor(len(SAMPLED)) as pool:
        futures = [pool.submit(sweep, world, scenario, points, max_points=limit, log_dir=tmp_path / scenario.name)
                   for world, (scenario, points, limit, _) in zip(worlds, SAMPLED)]
        reports = [f.result() for f in futures]
    for report, (_, _, _, minimum) in zip(reports, SAMPLED):
        print(report.summary())
        record_property(f"crash_points_covered_{report.scenario}", report.covered)
        assert report.ok, report.summary()
        assert report.covered >= minimum, report.summary()
