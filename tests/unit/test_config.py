"""Operator settings that are derived, not just read."""

from __future__ import annotations

import pytest

from mayanode_operator.config import KOPF_WATCHED_KINDS, OperatorConfig


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
