"""Operator settings that are derived, not just read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import mayanode_operator
from mayanode_operator.config import DEFAULT_WORKLOAD_SELECTOR, KOPF_WATCHED_KINDS, OperatorConfig


@pytest.mark.parametrize("namespaces, configured, expected", [
    ([], 10, 10),                                  # cluster-wide: 5 watches + kopf's own fit in the default
    (["a"], 10, 10),
    (["a", "b"], 10, 14),                          # 10 namespaced watches would take the whole default pool
    (["a", "b", "c", "d", "e"], 10, 29),           # 25 namespaced watches would starve a pool of 10
    (["a", "b", "c", "d", "e"], 64, 64),           # a larger configured pool is kept
])
def test_kopf_pool_always_holds_every_watch(namespaces, configured, expected):
    config = OperatorConfig(namespaces=namespaces, max_connections=configured)
    assert config.kopf_connection_limit() == expected
    assert config.kopf_connection_limit() >= KOPF_WATCHED_KINDS * max(1, len(namespaces)) + 1


@pytest.mark.parametrize("namespaces", [[], ["a"], ["a", "b", "c"], [f"ns-{i}" for i in range(20)]])
def test_with_peering_the_pool_also_holds_the_peering_watches(namespaces):
    config = OperatorConfig(namespaces=namespaces, max_connections=1, peering="mayanode-operator")
    assert config.kopf_connection_limit() >= (KOPF_WATCHED_KINDS + 1) * max(1, len(namespaces)) + 1


def test_every_setting_is_used_somewhere():
    """A setting nothing reads would be accepted from the environment and silently ignored."""
    package = Path(mayanode_operator.__file__).parent
    sources = "\n".join(path.read_text() for path in package.rglob("*.py") if path.name != "config.py")
    own = (package / "config.py").read_text()
    for name in OperatorConfig.model_fields:
        assert re.search(rf"\.{name}\b|\"{name}\"", sources) or f"self.{name}" in own, name


def test_the_pool_counts_every_kind_the_handlers_watch():
    from mayanode_operator.main import registry
    watched = {(handler.selector.group, handler.selector.any_name) for handler in registry._watching.get_all_handlers()}
    assert len(watched) == KOPF_WATCHED_KINDS, sorted(watched)


def test_the_event_loop_is_uvloop_unless_configured_otherwise(monkeypatch):
    assert OperatorConfig().event_loop == "uvloop"
    monkeypatch.setenv("MAYANODE_OPERATOR_EVENT_LOOP", "asyncio")
    assert OperatorConfig.from_env().event_loop == "asyncio"
    monkeypatch.setenv("MAYANODE_OPERATOR_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="event_loop"):
        OperatorConfig.from_env()


@pytest.mark.parametrize("configured, expected_module", [("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_the_operator_runs_on_the_configured_loop(configured, expected_module):
    import asyncio

    from mayanode_operator.operator_loop import run_until_done

    seen = []

    async def main():
        seen.append(type(asyncio.get_running_loop()).__module__)
        await asyncio.to_thread(lambda: None)          # the official client's calls run in threads beside it

    run_until_done(main(), configured)
    assert seen and seen[0].split(".")[0] == expected_module


def test_without_uvloop_installed_the_standard_loop_is_used_and_said(monkeypatch, caplog):
    import sys

    from mayanode_operator.operator_loop import loop_factory

    monkeypatch.setitem(sys.modules, "uvloop", None)   # what `import uvloop` meets where it is not installed
    assert loop_factory("uvloop") is None
    assert "uvloop is not installed" in caplog.text


def test_the_workload_selector_is_node_launchers_unless_configured(monkeypatch):
    assert OperatorConfig().workload_selector == DEFAULT_WORKLOAD_SELECTOR
    monkeypatch.setenv("MAYANODE_OPERATOR_WORKLOAD_SELECTOR", "")
    assert OperatorConfig.from_env().workload_selector == ""
    assert OperatorConfig.from_env(workload_selector=" tier=validator ").workload_selector == "tier=validator"


def test_the_workload_selector_reaches_kopfs_pod_and_deployment_watches_only():
    import kopf
    from kopf import Resource

    from mayanode_operator.api import naming
    from mayanode_operator.settings import apply_settings

    pods, deployments = Resource("", "v1", "pods", kind="Pod"), Resource("apps", "v1", "deployments", kind="Deployment")
    mayanodes = Resource(naming.GROUP, naming.VERSION, naming.MAYANODE_PLURAL, kind="MayaNode")
    settings = kopf.OperatorSettings()
    apply_settings(settings, OperatorConfig(workload_selector="tier=validator"))
    selectors = settings.watching.label_selectors
    assert selectors.collect(pods) == selectors.collect(deployments) == ["tier=validator"]
    assert selectors.collect(mayanodes) == []
    settings = kopf.OperatorSettings()
    apply_settings(settings, OperatorConfig(workload_selector=""))
    assert settings.watching.label_selectors.collect(pods) == []


def test_a_bad_setting_is_one_line_at_the_command_line_naming_where_it_is_set(monkeypatch, capsys):
    from mayanode_operator.cli import main

    monkeypatch.setenv("MAYANODE_OPERATOR_HEIGHT_REFRESH_SECONDS", "-1")
    assert main(["run", "--workload-selector", "app in ()", "--workers", "0"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert sorted(lines) == [
        "mayanode-operator: invalid height_refresh_seconds (MAYANODE_OPERATOR_HEIGHT_REFRESH_SECONDS): "
        "Input should be greater than or equal to 0",
        "mayanode-operator: invalid workers (MAYANODE_OPERATOR_WORKERS or --workers): "
        "Input should be greater than or equal to 1",
        "mayanode-operator: invalid workload_selector (MAYANODE_OPERATOR_WORKLOAD_SELECTOR or --workload-selector): "
        "unable to parse requirement: for 'in', 'notin' operators, values set can't be empty",
    ]
