"""The demo's story: each chapter acts like a node operator would, then waits for the operator's answer."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from ..api import naming
from ..sandbox.world import Sandbox, SeededNode
from .timeline import Timeline

NAMESPACE = "mayanode"


class StoryFailed(Exception):
    pass


@dataclass
class DemoContext:
    sandbox: Sandbox
    timeline: Timeline
    kubeconfig: Path
    custom: k8s.CustomObjectsApi
    core: k8s.CoreV1Api
    node: SeededNode | None = None

    async def get(self, plural: str, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        return await asyncio.to_thread(self.custom.get_namespaced_custom_object,
                                       naming.GROUP, naming.VERSION, namespace, plural, name)

    async def create(self, body: dict[str, Any]) -> None:
        plural = {"MayaNode": naming.MAYANODE_PLURAL, "NodeBackup": naming.NODEBACKUP_PLURAL,
                  "NodeRestore": naming.NODERESTORE_PLURAL}[body["kind"]]
        await asyncio.to_thread(self.custom.create_namespaced_custom_object, naming.GROUP, naming.VERSION,
                                body["metadata"]["namespace"], plural, body)

    async def wait(self, what: str, check: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = await check()
            except k8s.exceptions.ApiException:
                result = None
            if result:
                return result
            if time.monotonic() > deadline:
                raise StoryFailed(f"timed out after {timeout:g}s waiting for {what}")
            await asyncio.sleep(0.25)

    async def kubectl(self, *args: str) -> str:
        """Off the event loop: the emulated API server answering kubectl runs on this loop."""
        return await asyncio.to_thread(self._kubectl, *args)

    def _kubectl(self, *args: str) -> str:
        done = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, timeout=30)
        return done.stdout if done.returncode == 0 else f"(kubectl: {done.stderr.strip()})"


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (body.get("status") or {}).get("conditions") or [] if c.get("type") == type_), {})


def make_context(sandbox: Sandbox, timeline: Timeline) -> DemoContext:
    api_client = k8s_config.new_client_from_config(config_file=str(sandbox.kubeconfig_path))
    return DemoContext(sandbox, timeline, sandbox.kubeconfig_path, k8s.CustomObjectsApi(api_client),
                       k8s.CoreV1Api(api_client))


async def chapter_observe(ctx: DemoContext) -> None:
    ctx.timeline.chapter("A node, as node-launcher lays it out, and a MayaNode to watch over it")
    ctx.timeline.do(f"seed namespace {NAMESPACE}: Deployments mayanode/bifrost/gateway, PVCs, "
                    "mnemonic and password Secrets, key files")
    ctx.node = await ctx.sandbox.seed_node(NAMESPACE, ip_address="203.0.113.10")
    await ctx.sandbox.wait_ready(NAMESPACE)
    ctx.timeline.saw(f"node {ctx.node.node_address} is running and signing on the mocknet "
                     f"(height {ctx.sandbox.mocknet.height})")
    ctx.timeline.do("kubectl apply MayaNode mayanode (observe only)")
    await ctx.create({
        "apiVersion": naming.API_VERSION, "kind": "MayaNode",
        "metadata": {"name": "mayanode", "namespace": NAMESPACE},
        "spec": {"network": ctx.node.network, "nodeAddress": ctx.node.node_address, "version": ctx.node.version,
                 "api": {"rest": ctx.node.rest_url, "rpc": ctx.node.rpc_url}, "observe": {"intervalSeconds": 5}},
    })

    async def ready() -> dict[str, Any] | None:
        body = await ctx.get(naming.MAYANODE_PLURAL, "mayanode")
        return body if condition(body, "Ready").get("status") == "True" else None

    body = await ctx.wait("MayaNode Ready", ready)
    status = body["status"]
    ctx.timeline.saw(f"Ready: node {status['node']['status']}, height {status['chain']['height']}, "
                     f"version {status['version']}, network next {status['network']['nextVersion']}")
    ctx.timeline.block(await ctx.kubectl("get", "mn", "-n", NAMESPACE))

    ctx.timeline.do("the network halts BTC (mimir HALTBTCCHAIN)")
    ctx.sandbox.mocknet.set_mimir("HALTBTCCHAIN", 1)

    async def halted() -> dict[str, Any] | None:
        cond = condition(await ctx.get(naming.MAYANODE_PLURAL, "mayanode"), "NetworkHalted")
        return cond if cond.get("status") == "True" else None

    cond = await ctx.wait("NetworkHalted", halted)
    ctx.timeline.saw(f"condition NetworkHalted=True: {cond['message']}")
    ctx.sandbox.mocknet.set_mimir("HALTBTCCHAIN", 0)


CHAPTERS: list[Callable[[DemoContext], Awaitable[None]]] = [chapter_observe]
