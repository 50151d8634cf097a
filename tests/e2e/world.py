"""The world an end-to-end scenario runs in: seeded node namespaces, a mocknet, a kubeconfig."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar

from mayanode_operator.sandbox.kubelet import NODE_NAME
from mayanode_operator.sandbox.world import SandboxThread, SeededNode

T = TypeVar("T")


# What a world can do beyond the Kubernetes API itself:
#   exec     — exec into the node's containers reaches real files (tar, find)
#   kubelet  — the simulated kubelet runs the pods (image behaviours, LB addresses, instant pods)
#   volumes  — PVC contents can be read and written directly by the test
#   images   — a changed image tag starts a "binary" of that version
#   tx       — `mayanode tx` inside the container reaches the mocknet
#   hooks    — the test sees (and may hold or fail) every request the API server answers
EMULATED = frozenset({"exec", "kubelet", "volumes", "images", "tx", "hooks"})


class World(Protocol):
    kubeconfig_path: Path
    mocknet: Any
    capabilities: frozenset[str]

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def call(self, coro: Coroutine[Any, Any, T]) -> T: ...
    def seed_node(self, namespace: str, **kwargs: Any) -> SeededNode: ...


class EmulatedWorld:
    """API server, simulated kubelet and mocknet on loopback, in a background thread."""

    capabilities = EMULATED

    def __init__(self, workdir: Path, block_interval: float = 0.2, nodes: int = 1) -> None:
        names = [NODE_NAME, *(f"{NODE_NAME}-{i}" for i in range(2, nodes + 1))]
        self._thread = SandboxThread(block_interval=block_interval, workdir=workdir,
                                     kubelet_options={"node_names": names})

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    @property
    def kubeconfig_path(self) -> Path:
        return self._thread.kubeconfig_path

    @property
    def sandbox(self):
        return self._thread.sandbox

    @property
    def mocknet(self):
        return self._thread.sandbox.mocknet

    @property
    def kubelet(self):
        return self._thread.sandbox.kubelet

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return self._thread.call(coro, timeout=timeout)

    def seed_node(self, namespace: str, wait_ready: bool = True, **kwargs: Any) -> SeededNode:
        node = self.call(self.sandbox.seed_node(namespace, **kwargs))
        if wait_ready and kwargs.get("replicas", 1):
            self.call(self.sandbox.wait_ready(namespace))
        return node


def real_cluster_world(kube_config: str, workdir: Path) -> World:
    from .real_world import RealClusterWorld

    return RealClusterWorld(Path(kube_config), workdir)
