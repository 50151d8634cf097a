"""The fault suite's own world (its operators are started per scenario, under faults)."""

from __future__ import annotations

import pytest

from mayanode_operator.sandbox.faults import FaultInjector
from mayanode_operator.sandbox.world import SandboxThread


@pytest.fixture(scope="module")
def fault_world(tmp_path_factory: pytest.TempPathFactory):
    with SandboxThread(block_interval=0.2, workdir=tmp_path_factory.mktemp("fault-world")) as world:
        yield world


@pytest.fixture
def injector(fault_world):
    faults = FaultInjector(seed=8)
    fault_world.call(_install(faults, fault_world))
    yield faults
    fault_world.call(_uninstall(faults))


async def _install(faults: FaultInjector, world) -> None:
    faults.install(world.sandbox.api)


async def _uninstall(faults: FaultInjector) -> None:
    faults.uninstall()
