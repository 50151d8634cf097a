"""Invalid MayaNode/NodeBackup/NodeRestore resources are refused by the API server, as kubectl shows it."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "crds" / "examples"
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))
VALID = sorted(EXAMPLES.glob("*.yaml"))


def expected_fragments(path: Path) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in path.read_text().splitlines() if line.startswith("# expect:")]


@pytest.fixture(scope="module")
def examples_namespace(kube):
    """Every namespace the examples name."""
    names = {line.split(":", 1)[1].strip() for path in INVALID + VALID
             for line in path.read_text().splitlines() if line.strip().startswith("namespace:")}
    for name in sorted(names):
        kube.kubectl("create", "namespace", name, check=False)
    return names


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_resource_is_refused_with_the_crd_message(path, kube, examples_namespace):
    # Server-side apply, as GitOps tools apply: the API server alone decides.
    result = kube.kubectl("apply", "--server-side", "-f", str(path), check=False)
    assert result.returncode != 0, f"{path.name} was accepted"
    for fragment in expected_fragments(path):
        assert fragment in result.stderr, f"{path.name}: {fragment!r} not in {result.stderr!r}"


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_examples_are_accepted_server_side(path, kube, examples_namespace):
    result = kube.kubectl("apply", "--server-side", "--dry-run=server", "-f", str(path), check=False)
    assert result.returncode == 0, result.stderr
