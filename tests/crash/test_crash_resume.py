"""Crash-resume: the operator is SIGKILLed right after its k-th API write, restarted at once, and must
converge with every invariant held (see `mayanode_operator.sandbox.crashsweep`).

The suite samples crash points to stay within its time budget (the sweeps run side by side, one world
each); `python -m bench.crash_sweep` sweeps every k of every scenario (counts in bench/RESULTS.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from mayanode_operator.sandbox.crashsweep import PointChooser, SweepReport, WriteRecord, around, every, sweep

from .scenarios import BACKUP, IP_AND_MIMIR, OBSERVE, RESTORE, UPGRADE

pytestmark = pytest.mark.timeout(300)


def at_fractions(*fractions: float) -> PointChooser:
    """Crash points at these fractions of the reference run's writes: where a scenario is, whatever its steps are
    called and however many writes each makes (the restore's steps are being reordered)."""
    def choose(writes: Sequence[WriteRecord]) -> list[int]:
        return sorted({max(1, min(len(writes), round(f * len(writes)))) for f in fractions}) if writes else []
    return choose


SAMPLED = [
    # The observation story: a status patch and an event after each change.
    (OBSERVE, every(6), None, 2),
    # Killed right after recording a transaction as sent (before sending it), or right after sending it:
    # never sent twice, never forgotten (on chain, or on record as pending and resent after the timeout).
    (IP_AND_MIMIR, around("pods/exec"), 2, 2),
    # A backup killed mid-capture or mid-store: a retried capture rewrites its own object, never a second one.
    (BACKUP, every(4), 2, 2),
    # A restore killed halfway (its node scaled down, its files written, its Secrets being replaced in place): it
    # finishes with the identical files and Secrets, the mnemonic Secret never absent, never two signers. One point:
    # each run backs a node up first, so a restore's run costs twice another's (the full sweep has every point).
    (RESTORE, at_fractions(0.5), None, 1),
    # An upgrade killed while mayanode's image changes, then while bifrost's does: never two mayanode pods, one
    # set-version (the points around set-version are in the full sweep, bench/crash_sweep.py).
    (UPGRADE, at_fractions(0.25, 0.6), None, 2),
]


def timed_sweep(*args: Any, **kwargs: Any) -> tuple[SweepReport, float]:
    started = time.monotonic()
    return sweep(*args, **kwargs), time.monotonic() - started


def test_scenarios_survive_a_crash_after_their_writes(make_world, tmp_path, record_property):
    worlds = [make_world() for _ in SAMPLED]
    with ThreadPoolExecutor(len(SAMPLED)) as pool:
        futures = [pool.submit(timed_sweep, world, scenario, points, max_points=limit,
                               log_dir=tmp_path / scenario.name)
                   for world, (scenario, points, limit, _) in zip(worlds, SAMPLED)]
        results = [f.result() for f in futures]
    for report, seconds in results:                  # every summary first: one failure does not hide the others
        print(f"{report.summary()}\n  ({seconds:.0f} s)")
        record_property(f"crash_points_covered_{report.scenario}", report.covered)
    for (report, _), (_, _, _, minimum) in zip(results, SAMPLED):
        assert report.ok, report.summary()
        assert report.covered >= minimum, report.summary()
