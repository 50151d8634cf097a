"""End-to-end fixtures: the real operator (a child process) against an API server.

Default: the emulated cluster (API server, simulated kubelet, mocknet) on loopback.
`--kube-config PATH`: a real API server; the mocknet still serves the node API locally.
`--nodes N`: an emulated cluster of N nodes (default 2), whose ReadWriteOnce volumes attach to one node at a time.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from mayanode_operator.api import naming
from mayanode_operator.sandbox.harness import OperatorProcess, eventually

from .world import EmulatedWorld, World, real_cluster_world


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kube-config", default=None, metavar="PATH",
                     help="run the end-to-end scenarios against the real cluster of this kubeconfig")
    parser.addoption("--nodes", default=2, type=int, metavar="N",
                     help="nodes of the emulated cluster (default 2; ReadWriteOnce volumes attach to one node at a time)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    kube_config = request.config.getoption("--kube-config")
    workdir = tmp_path_factory.mktemp("world")
    w: World = real_cluster_world(kube_config, workdir) if kube_config else \
        EmulatedWorld(workdir, nodes=request.config.getoption("--nodes"))
    w.start()
    try:
        yield w
    finally:
        w.stop()


def require(world: World, *capabilities: str) -> None:
    """Skip a scenario on a world (a real cluster) that cannot do what it needs, saying what."""
    missing = set(capabilities) - set(world.capabilities)
    if missing:
        pytest.skip(f"this cluster cannot provide: {', '.join(sorted(missing))} (see tests/e2e/world.py)")


@pytest.fixture(scope="session")
def operator(world: World, tmp_path_factory: pytest.TempPathFactory):
    # Votes made outside the operator are noticed within seconds, not the default ten minutes: the scenarios wait
    # seconds (their MayaNodes are observed every 5 s for the same reason).
    proc = OperatorProcess(world.kubeconfig_path, tmp_path_factory.mktemp("operator") / "operator.log",
                           extra_env={"MAYANODE_OPERATOR_MIMIR_RECHECK_SECONDS": "5"}).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def kube(world: World) -> "Kube":
    return Kube(world.kubeconfig_path)


class Kube:
    """The official client on the world's kubeconfig, for assertions and for applying resources."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        api_client = k8s_config.new_client_from_config(config_file=str(kubeconfig))
        self.core = k8s.CoreV1Api(api_client)
        self.apps = k8s.AppsV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)

    def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(naming.GROUP, naming.VERSION, namespace, plural, name)

    def mayanode(self, namespace: str, name: str) -> dict[str, Any]:
        return self.get_custom(naming.MAYANODE_PLURAL, namespace, name)

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        plural = {"MayaNode": naming.MAYANODE_PLURAL, "NodeBackup": naming.NODEBACKUP_PLURAL,
                  "NodeRestore": naming.NODERESTORE_PLURAL}[body["kind"]]
        meta = body["metadata"]
        return self.custom.create_namespaced_custom_object(naming.GROUP, naming.VERSION, meta["namespace"], plural, body)

    def patch_spec(self, plural: str, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(naming.GROUP, naming.VERSION, namespace, plural, name,
                                                          {"spec": spec})

    def events(self, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
        items = self.core.list_namespaced_event(namespace).items
        return [{"reason": e.reason, "message": e.message, "type": e.type, "name": e.involved_object.name}
                for e in items if name is None or e.involved_object.name == name]

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], input=stdin,
                              capture_output=True, text=True, check=check, timeout=60)


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (body.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return cond
    return {}


def mayanode_manifest(node: Any, name: str | None = None, **spec: Any) -> dict[str, Any]:
    """A MayaNode for a seeded node, its API pointed at the mocknet."""
    return {
        "apiVersion": naming.API_VERSION, "kind": "MayaNode",
        "metadata": {"name": name or node.namespace, "namespace": node.namespace},
        "spec": {
            "network": node.network, "nodeAddress": node.node_address, "version": node.version,
            "api": {"rest": node.rest_url, "rpc": node.rpc_url, "timeoutSeconds": 2},
            "observe": {"intervalSeconds": 5},
            **spec,
        },
    }


def dump(body: Any) -> str:
    return json.dumps(body, indent=1, default=str)[:4000]


__all__ = ["condition", "dump", "eventually", "mayanode_manifest", "require", "yaml"]
