"""Fixtures of the packaging tests: the helm runner and rendered charts, cached per session."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from .tools import CHART, ToolUnavailable, helm_binary


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return helm_binary()
    except ToolUnavailable as err:
        pytest.fail(str(err), pytrace=False)


RELEASE, NAMESPACE = "mno", "operators"
Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def run_helm(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Runner:
    home = tmp_path_factory.mktemp("helm-home")
    env = {"HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data"), "PATH": "/usr/bin:/bin", "HOME": str(home)}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, env=env)
        if check and result.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}",
                        pytrace=False)
        return result
    return run


def set_args(values: dict[str, str]) -> list[str]:
    args: list[str] = []
    for key, value in values.items():
        args += ["--set-json" if value.startswith(("[", "{", '"')) else "--set", f"{key}={value}"]
    return args


@pytest.fixture(scope="session")
def render(run_helm: Runner) -> Callable[..., list[dict[str, Any]]]:
    """`helm template` of the chart with `--set` values (a dict of dotted keys), parsed; cached."""
    cache: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}

    def rendered(values: dict[str, str] | None = None) -> list[dict[str, Any]]:
        key = tuple(sorted((values or {}).items()))
        if key not in cache:
            out = run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *set_args(dict(key))).stdout
            cache[key] = [doc for doc in yaml.safe_load_all(out) if doc]
        return cache[key]
    return rendered
