"""A sandbox (API server, kubelet, mocknet) in a thread and a real Runtime on its loop, for driving the
NodeBackup reconcile and the backup facet step by step."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from mayanode_operator.api import naming
from mayanode_operator.backup import generate_identity
from mayanode_operator.config import OperatorConfig
from mayanode_operator.reconcile.nodebackup import reconcile_nodebackup
from mayanode_operator.reconcile.runtime import Runtime
from mayanode_operator.sandbox.world import SandboxThread


class BackupWorld:
    def __init__(self, **sandbox: Any) -> None:
        self.thread = SandboxThread(block_interval=0.2, **sandbox).start()
        self.sandbox = self.thread.sandbox
        self.runtime: Runtime = self.call(Runtime.create(OperatorConfig(kubeconfig=str(self.thread.kubeconfig_path))))
        self.identity, self.recipient = generate_identity()
        self.clock: datetime | None = None
        self.runtime.now = self._now

    def _now(self) -> datetime:
        return self.clock or datetime.now(timezone.utc)

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        return self.thread.call(coro, timeout=timeout)

    def close(self) -> None:
        self.call(self.runtime.close())
        self.thread.stop()

    # --- objects ------------------------------------------------------------------------------
    def seed(self, namespace: str, **kwargs: Any):
        node = self.call(self.sandbox.seed_node(namespace, **kwargs))
        if kwargs.get("replicas", 1):
            self.call(self.sandbox.wait_ready(namespace))
        self.create_secret(namespace, "age-identity", {"identity": self.identity})
        return node

    def member_node(self, namespace: str):
        """A seeded node, made a member of the current vault by a churn, whose MayaNode backs up to the in-cluster
        store without a policy."""
        seeded = self.seed(namespace)
        self.call(lambda: self.sandbox.mocknet.churn())
        self.call(self.sandbox.mocknet.settle())
        self.mayanode(seeded, backup={"afterChurn": False, "location": self.location()})
        return seeded

    def create_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        body = {"metadata": {"name": name, "namespace": namespace}, "stringData": data}
        self.call(asyncio.to_thread(self.runtime.kube.core.create_namespaced_secret, namespace, body))

    def location(self, identity_secret: str | None = "age-identity", **store: Any) -> dict[str, Any]:
        encryption: dict[str, Any] = {"recipients": [self.recipient]}
        if identity_secret:
            encryption["identitySecret"] = {"name": identity_secret}
        return {**(store or {"secret": {}}), "encryption": encryption}

    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.call(asyncio.to_thread(self.runtime.kube.custom.create_namespaced_custom_object, naming.GROUP,
                                           naming.VERSION, body["metadata"]["namespace"], plural, body))

    def mayanode(self, node: Any, name: str | None = None, **spec: Any) -> dict[str, Any]:
        body = {"apiVersion": naming.API_VERSION, "kind": "MayaNode",
                "metadata": {"name": name or node.namespace, "namespace": node.namespace},
                "spec": {"network": node.network, "nodeAddress": node.node_address,
                         "api": {"rest": node.rest_url, "rpc": node.rpc_url, "timeoutSeconds": 2}, **spec}}
        return self.create(naming.MAYANODE_PLURAL, body)

    def nodebackup(self, namespace: str, name: str, node: str, **spec: Any) -> dict[str, Any]:
        body = {"apiVersion": naming.API_VERSION, "kind": "NodeBackup",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"nodeRef": {"name": node}, **spec}}
        return self.create(naming.NODEBACKUP_PLURAL, body)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.call(self.runtime.kube.get_custom(plural, namespace, name))

    def backup(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(naming.NODEBACKUP_PLURAL, namespace, name)

    def patch_spec(self, plural: str, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.call(asyncio.to_thread(self.runtime.kube.custom.patch_namespaced_custom_object, naming.GROUP,
                                    naming.VERSION, namespace, plural, name, {"spec": spec}))

    # --- driving ------------------------------------------------------------------------------
    def step(self, namespace: str, name: str) -> float | None:
        return self.call(reconcile_nodebackup(self.runtime, namespace, name))

    def drive(self, namespace: str, name: str, max_steps: int = 12) -> dict[str, Any] | None:
        """Reconcile until the state machine waits for nothing (or the object is gone)."""
        for _ in range(max_steps):
            delay = self.step(namespace, name)
            if delay is None or delay > 60:
                break
            if delay > 0:
                self.call(asyncio.sleep(min(delay, 1.0)))
        return self.backup(namespace, name)

    def events(self, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
        items = self.call(asyncio.to_thread(self.runtime.kube.core.list_namespaced_event, namespace)).items
        return [{"reason": e.reason, "message": e.message, "type": e.type, "name": e.involved_object.name}
                for e in items if name is None or e.involved_object.name == name]

    def pods(self, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        return self.call(self.sandbox.pods(namespace, selector))

    def secrets(self, namespace: str) -> list[Any]:
        return self.call(asyncio.to_thread(self.runtime.kube.core.list_namespaced_secret, namespace)).items


def condition(body: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((body or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return {}
