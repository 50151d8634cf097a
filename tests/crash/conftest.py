"""Worlds of their own for the crash sweeps: they run (and kill) their own operator processes.

A sweep counts every write the operator makes, so two sweeps at once need two worlds.
"""

from __future__ import annotations

import contextlib

import pytest

from mayanode_operator.sandbox.world import SandboxThread


@pytest.fixture(scope="module")
def make_world(tmp_path_factory: pytest.TempPathFactory):
    """`make_world()` → a new emulated world (API server, kubelet, mocknet), stopped after the module."""
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(
            SandboxThread(block_interval=0.2, workdir=tmp_path_factory.mktemp("crash-world")))
