"""bench/pass_cost.py replays an idle pass (no psutil needed): it runs, and the replayed passes write nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_pass_cost_replays_idle_passes():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "pass_cost.py"), "--passes", "20"],
                          check=True, timeout=110, capture_output=True, text=True)
    assert re.search(r"replaying 6 node-API answers", done.stdout)
    assert re.search(r"ms of CPU per pass .*, 0 status writes", done.stdout)
