"""Operator settings that are derived, not just read."""

from __future__ import annotations

import pytest

from mayanode_operator.config import OperatorConfig


@pytest.mark.parametrize("namespaces, configured, expected", [
    ([], 10, 10),                                  # cluster-wide: 3 watches + kopf's own fit in the default
    (["a"], 10, 10),
    (["a", "b", "c", "d", "e"], 10, 19),           # 15 namespaced watches would starve a pool of 10
    (["a", "b", "c", "d", "e"], 64, 64),           # a larger configured pool is kept
])
def test_kopf_pool_always_holds_every_watch(namespaces, configured, expected):
    config = OperatorConfig(namespaces=namespaces, max_connections=configured)
    assert config.kopf_connection_limit() == expected
    assert config.kopf_connection_limit() >= 3 * max(1, len(namespaces)) + 1
