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


NEW_NAMESPACE = "mayanode-new"
TARGET = "1.112.0"


async def _mayanode_condition(ctx: DemoContext, name: str, type_: str, status: str = "True",
                              namespace: str = NAMESPACE, timeout: float = 90.0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        cond = condition(await ctx.get(naming.MAYANODE_PLURAL, name, namespace), type_)
        return cond if cond.get("status") == status else None
    return await ctx.wait(f"{namespace}/{name} {type_}={status}", check, timeout)


async def _phase(ctx: DemoContext, plural: str, name: str, phases: tuple[str, ...], namespace: str = NAMESPACE,
                 timeout: float = 120.0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        body = await ctx.get(plural, name, namespace)
        phase = (body.get("status") or {}).get("phase")
        if phase in ("Failed",) and "Failed" not in phases:
            raise StoryFailed(f"{plural} {namespace}/{name} failed: {(body.get('status') or {}).get('message')}")
        return body if phase in phases else None
    return await ctx.wait(f"{plural} {namespace}/{name} {'|'.join(phases)}", check, timeout)


async def _patch_spec(ctx: DemoContext, name: str, spec: dict[str, Any], namespace: str = NAMESPACE) -> None:
    await asyncio.to_thread(ctx.custom.patch_namespaced_custom_object, naming.GROUP, naming.VERSION, namespace,
                            naming.MAYANODE_PLURAL, name, {"spec": spec})


async def chapter_backup(ctx: DemoContext) -> None:
    from ..backup.crypto import generate_identity

    ctx.timeline.chapter("Encrypted, verified backups, and a fresh one after every churn")
    identity, recipient = generate_identity()
    await asyncio.to_thread(ctx.core.create_namespaced_secret, NAMESPACE, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "backup-age-identity"},
        "stringData": {naming.DEFAULT_AGE_IDENTITY_KEY: identity}})
    ctx.timeline.do(f"age identity in Secret backup-age-identity; archives encrypted to {recipient[:16]}…")
    await _patch_spec(ctx, "mayanode", {"backup": {
        "afterChurn": True, "retention": {"count": 5},
        "location": {"secret": {}, "encryption": {"recipients": [recipient],
                                                  "identitySecret": {"name": "backup-age-identity"}}}}})
    ctx.timeline.do("kubectl apply NodeBackup first-backup")
    await ctx.create({"apiVersion": naming.API_VERSION, "kind": "NodeBackup",
                      "metadata": {"name": "first-backup", "namespace": NAMESPACE},
                      "spec": {"nodeRef": {"name": "mayanode"}, "reason": "Manual",
                               "restoreNamespaces": [NEW_NAMESPACE]}})
    body = await _phase(ctx, naming.NODEBACKUP_PLURAL, "first-backup", ("Completed",))
    archive = body["status"].get("archive") or {}
    ctx.timeline.saw(f"Completed: {len(body['status'].get('items') or [])} items, "
                     f"{archive.get('size')} bytes encrypted, sha256 {str(archive.get('sha256'))[:16]}…")

    async def verified() -> bool:
        return condition(await ctx.get(naming.NODEBACKUP_PLURAL, "first-backup"), "Verified").get("status") == "True"
    await ctx.wait("backup Verified", verified)
    ctx.timeline.saw("Verified: decrypted, every digest checked, consensus key matches the node account")

    ctx.timeline.do("the network churns: a new Asgard vault, new key shares in bifrost")
    ctx.sandbox.mocknet.churn()

    async def after_churn() -> str | None:
        items = (await asyncio.to_thread(ctx.custom.list_namespaced_custom_object, naming.GROUP, naming.VERSION,
                                         NAMESPACE, naming.NODEBACKUP_PLURAL))["items"]
        done = [b for b in items if (b.get("spec") or {}).get("reason") == "AfterChurn"
                and (b.get("status") or {}).get("phase") == "Completed"]
        return done[0]["metadata"]["name"] if done else None
    name = await ctx.wait("an automatic AfterChurn backup", after_churn, timeout=120)
    ctx.timeline.saw(f"NodeBackup {name} made automatically for the new vault")
    cond = await _mayanode_condition(ctx, "mayanode", "BackupFresh")
    ctx.timeline.saw(f"BackupFresh=True: {cond.get('message')}")
    ctx.timeline.block(await ctx.kubectl("get", "nbk", "-n", NAMESPACE))


async def chapter_migrate(ctx: DemoContext) -> None:
    ctx.timeline.chapter("Migrating the node to a new namespace, with the double-sign guard")
    ctx.timeline.do(f"seed {NEW_NAMESPACE}: a new, empty node (no keys yet) and its MayaNode")
    new = await ctx.sandbox.seed_node(NEW_NAMESPACE, with_keys=False, register=False, replicas=0)
    await ctx.create({
        "apiVersion": naming.API_VERSION, "kind": "MayaNode",
        "metadata": {"name": "mayanode", "namespace": NEW_NAMESPACE},
        "spec": {"network": new.network, "nodeAddress": ctx.node.node_address, "version": ctx.node.version,
                 "api": {"rest": ctx.sandbox.mocknet.rest_url(NEW_NAMESPACE),
                         "rpc": ctx.sandbox.mocknet.rpc_url(NEW_NAMESPACE)},
                 "observe": {"intervalSeconds": 5}},
    })
    ctx.timeline.do("kubectl apply NodeRestore migrate: backup first-backup, hand-off from mayanode/mayanode, "
                    "blocks read from a public full node")
    await ctx.create({
        "apiVersion": naming.API_VERSION, "kind": "NodeRestore",
        "metadata": {"name": "migrate", "namespace": NEW_NAMESPACE},
        "spec": {"backupRef": {"name": "first-backup", "namespace": NAMESPACE}, "nodeRef": {"name": "mayanode"},
                 "doubleSignGuard": {"silentBlocks": 3, "rpc": [ctx.sandbox.mocknet.public_rpc_url],
                                     "oldNode": {"name": "mayanode", "namespace": NAMESPACE}}},
    })
    seen: set[str] = set()

    async def progress() -> dict[str, Any] | None:
        body = await ctx.get(naming.NODERESTORE_PLURAL, "migrate", NEW_NAMESPACE)
        status = body.get("status") or {}
        for step in status.get("steps") or []:
            if step.get("completedAt") and step["name"] not in seen:
                seen.add(step["name"])
                ctx.timeline.note(f"  step {step['name']}: {step.get('message') or 'done'}")
        if status.get("phase") == "Failed":
            raise StoryFailed(f"restore failed: {status.get('message')} — {status.get('nextAction')}")
        return body if status.get("phase") == "Completed" else None
    body = await ctx.wait("the restore to complete", progress, timeout=180)
    status = body["status"]
    ctx.timeline.saw(f"Completed: downtime {status.get('downtimeSeconds', 0):.1f}s, guard "
                     f"{(status.get('guard') or {}).get('method')}, sign state from "
                     f"{(status.get('highWaterMark') or {}).get('source')}")
    await _mayanode_condition(ctx, "mayanode", "Ready", namespace=NEW_NAMESPACE)
    doubles = ctx.sandbox.mocknet.double_signs
    ctx.timeline.saw(f"the node signs from {NEW_NAMESPACE}; double signs on the mocknet: {len(doubles)}")
    if doubles:
        raise StoryFailed("a double sign was recorded")


async def chapter_ip(ctx: DemoContext) -> None:
    ctx.timeline.chapter("The new load balancer's IP, written and announced on chain once")
    await _patch_spec(ctx, "mayanode", {"externalIP": {"source": "Service", "announce": True}}, NEW_NAMESPACE)
    cond = await _mayanode_condition(ctx, "mayanode", "ExternalIPAssigned", namespace=NEW_NAMESPACE)
    sent = [tx for tx in ctx.sandbox.mocknet.transactions if tx.argv[:1] == ["set-ip-address"]]
    ctx.timeline.saw(f"ExternalIPAssigned: {cond.get('message')} ({len(sent)} set-ip-address sent)")


async def chapter_upgrade(ctx: DemoContext) -> None:
    ctx.timeline.chapter(f"A version-gated upgrade to {TARGET}")
    await _patch_spec(ctx, "mayanode", {"version": TARGET, "upgrade": {"strategy": "Auto"}}, NEW_NAMESPACE)
    cond = await _mayanode_condition(ctx, "mayanode", "UpgradeBlocked", namespace=NEW_NAMESPACE)
    ctx.timeline.saw(f"UpgradeBlocked: {cond.get('reason')}: {cond.get('message')}")
    ctx.timeline.do(f"2/3 of the active set now run {TARGET}")
    ctx.sandbox.mocknet.set_network_versions({ctx.node.version: 1, TARGET: 5})

    async def upgraded() -> dict[str, Any] | None:
        body = await ctx.get(naming.MAYANODE_PLURAL, "mayanode", NEW_NAMESPACE)
        history = ((body.get("status") or {}).get("upgrade") or {}).get("history") or []
        done = [h for h in history if h.get("to") == TARGET]
        if done and done[-1].get("result") not in (None, "Succeeded"):
            raise StoryFailed(f"upgrade to {TARGET} ended {done[-1].get('result')}: {done[-1].get('message')}")
        return body if done else None
    await ctx.wait(f"the upgrade to {TARGET} to finish", upgraded, timeout=180)
    await _mayanode_condition(ctx, "mayanode", "Ready", namespace=NEW_NAMESPACE)
    sent = [tx for tx in ctx.sandbox.mocknet.transactions if tx.argv[:1] == ["set-version"]]
    ctx.timeline.saw(f"mayanode then bifrost run {TARGET}, healthy; set-version sent {len(sent)} time(s)")
    ctx.timeline.block(await ctx.kubectl("get", "mn", "-A", "-o", "wide"))


CHAPTERS: list[Callable[[DemoContext], Awaitable[None]]] = [
    chapter_observe, chapter_backup, chapter_migrate, chapter_ip, chapter_upgrade,
]
