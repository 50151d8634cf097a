"""Every crash point of every scenario: the full crash-resume sweep (the test suite samples a few).

    .venv/bin/python bench/crash_sweep.py [--scenarios OBSERVE,IP_AND_MIMIR] [--out bench/results]
    .venv/bin/python bench/crash_sweep.py --scenarios RESTORE,UPGRADE

Scenarios (tests/crash/scenarios.py): OBSERVE, OBSERVE_FULL, IP_AND_MIMIR, BACKUP, RESTORE, UPGRADE; `all`
for the five main ones. Each scenario runs in a world of its own, side by side; the summary of each sweep
(reference writes, one line per crash point) goes to stdout and to <out>/crash-<scenario>.txt.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT)]

from mayanode_operator.sandbox.crashsweep import Scenario, all_points, sweep  # noqa: E402
from mayanode_operator.sandbox.world import SandboxThread  # noqa: E402
from tests.crash import scenarios  # noqa: E402

MAIN = ["OBSERVE", "IP_AND_MIMIR", "BACKUP", "RESTORE", "UPGRADE"]


def run(name: str, out: Path) -> tuple[str, bool, int, int]:
    scenario = getattr(scenarios, name)
    with SandboxThread(block_interval=0.2, workdir=out / f"crash-{scenario.name}") as world:
        report = sweep(world, scenario, all_points, log_dir=out / f"crash-{scenario.name}" / "logs")
    text = report.summary()
    (out / f"crash-{scenario.name}.txt").write_text(text + "\n")
    print(text, flush=True)
    return scenario.name, report.ok, report.covered, len(report.points)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", default="OBSERVE,IP_AND_MIMIR")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = MAIN if args.scenarios == "all" else args.scenarios.split(",")
    unknown = [n for n in names if not isinstance(getattr(scenarios, n, None), Scenario)]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; see tests/crash/scenarios.py")
    with ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(lambda n: run(n, out), names))
    for name, ok, covered, tried in results:
        print(f"{name}: {'ok' if ok else 'FAILED'}: {covered} crash points covered of {tried}")
    return 0 if all(ok for _, ok, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
