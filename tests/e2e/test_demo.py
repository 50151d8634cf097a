"""The README's first command: `mayanode-operator demo` tells the whole story and exits 0."""

from __future__ import annotations

import subprocess
import sys


def test_demo_completes_the_story(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mayanode_operator.cli", "demo", "--workdir", str(tmp_path / "demo")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "The story completed" in done.stdout
    assert "NODE-STATUS" in done.stdout                  # the kubectl table was shown
    assert (tmp_path / "demo" / "kubeconfig").exists()
    log = (tmp_path / "demo" / "operator.log").read_text()
    node = [line for line in done.stdout.splitlines() if "is running and signing" in line]
    assert node, done.stdout
    assert "Traceback" not in log, log[-3000:]
