"""bench/fleet.py runs end to end on a tiny fleet (the real numbers are in bench/RESULTS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("psutil", reason="bench extra not installed: pip install -e '.[bench]'")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_fleet_bench_runs_on_a_tiny_fleet(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "bench" / "fleet.py"), "--sizes", "2", "--idle", "2", "--settle", "1",
                    "--samples", "2", "--restart-wait", "1", "--no-plot", "--out", str(tmp_path)],
                   check=True, timeout=110, capture_output=True)
    result = json.loads((tmp_path / "fleet-2.json").read_text())
    assert result["ready"] == 2 and result["spec_change_to_status"]["samples"] == 2
    assert result["node_hosts"] == "own"            # each MayaNode at node-API addresses of its own
    assert result["idle"]["operator"]["rss_mib_max"] > 0 and result["idle"]["bare"]["rss_mib_max"] > 0
    assert result["idle_without_height_refresh_polling"]["rss_mib_max"] > 0      # the polling baseline ran beside it
