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
