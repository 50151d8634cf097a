"""`mayanode-operator status` and `describe` against a running operator."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import condition, eventually, mayanode_manifest

NS = "cli-a"


@pytest.fixture(scope="module")
def ready_node(world, operator, kube):
    node = world.seed_node(NS)
    kube.apply(mayanode_manifest(node))
    eventually(lambda: condition(kube.mayanode(NS, NS), "Ready").get("status") == "True", timeout=30)
    return node


def cli(world, *args):
    return subprocess.run([sys.executable, "-m", "mayanode_operator.cli", *args,
                           "--kubeconfig", str(world.kubeconfig_path)], capture_output=True, text=True, timeout=60)


def test_status_table(ready_node, world):
    done = cli(world, "status", "-n", NS)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()[:2]
    assert header.split()[:5] == ["NAMESPACE", "NAME", "PHASE", "READY", "NODE"]
    assert row.split()[:6] == [NS, NS, "Running", "True", "Active", "1.111.0"]


def test_describe_mayanode(ready_node, world):
    done = cli(world, "describe", "mn", NS, "-n", NS)
    assert done.returncode == 0, done.stderr
    assert "Phase:      Running" in done.stdout and "Ready" in done.stdout


def test_describe_missing_object_is_a_clear_error(world):
    done = cli(world, "describe", "nrs", "nope", "-n", NS)
    assert done.returncode == 1 and "noderestores" in done.stderr and "404" in done.stderr
