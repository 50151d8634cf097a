"""Semantically wrong resources and misbehaving dependencies: each ends in a condition with a clear
reason, and the operator keeps running. (What the schema refuses is tests/e2e/test_resources_refused.py.)

A case is a row of `CASES`: how to set it up, which object ends with which condition reason. To add
one: write a `setup(ctx)` that creates what the case needs in `ctx.namespace`, and add a `Case`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from mayanode_operator.api import naming
from mayanode_operator.backup.crypto import generate_identity
from mayanode_operator.sandbox import kubeclient as kc
from mayanode_operator.sandbox.crashsweep import CUSTOM
from mayanode_operator.sandbox.harness import OperatorProcess, eventually
from mayanode_operator.sandbox.identity import NodeIdentity
from mayanode_operator.sandbox.world import SandboxThread

pytestmark = pytest.mark.timeout(180)

# Valid JSON of the wrong shape, per route family, as a broken proxy or another service would answer.
WRONG_SHAPES: dict[str, Callable[[str], Any]] = {
    "list": lambda route: [],
    "null": lambda route: None,
    "scalars": lambda route: {"result": "ok", "current": {"v": 1}, "node_address": ["x"], "status": 7},
    "types": lambda route: {"result": {"sync_info": {"latest_block_height": "tall", "catching_up": "maybe"}}}
    if route.startswith("rpc") else {"current": [], "node_address": {"a": 1}, "status": None},
}


class WrongShapeServer:
    """`/{variant}/mayachain/…` and `/{variant}/rpc/…` answer 200 with JSON of the wrong shape."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        async def serve(request: web.Request) -> web.Response:
            variant, route = request.match_info["variant"], request.match_info["route"]
            return web.json_response(WRONG_SHAPES[variant](route))

        app = web.Application()
        app.router.add_get("/{variant}/{route:.*}", serve)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"      # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Ctx:
    world: Any
    namespace: str
    shapes: WrongShapeServer

    def call(self, coro: Any) -> Any:
        return self.world.call(coro, timeout=60)

    def seed(self, **kwargs: Any) -> Any:
        node = self.call(self.world.sandbox.seed_node(self.namespace, **kwargs))
        self.call(self.world.sandbox.wait_ready(self.namespace))
        return node

    def create(self, body: dict[str, Any]) -> None:
        self.call(self.world.sandbox.client.create(CUSTOM[body["kind"]], body, self.namespace))

    def mayanode(self, node: Any, **spec: Any) -> dict[str, Any]:
        body = {"apiVersion": naming.API_VERSION, "kind": "MayaNode",
                "metadata": {"name": "node", "namespace": self.namespace},
                "spec": {"network": node.network, "nodeAddress": node.node_address, "version": node.version,
                         "api": {"rest": node.rest_url, "rpc": node.rpc_url, "timeoutSeconds": 2},
                         "observe": {"intervalSeconds": 5}}}
        body["spec"].update(spec)
        self.create(body)
        return body

    def custom(self, kind: str, name: str, spec: dict[str, Any]) -> None:
        self.create({"apiVersion": naming.API_VERSION, "kind": kind,
                     "metadata": {"name": name, "namespace": self.namespace}, "spec": spec})


def secret_location(recipient: str, identity_secret: str | None = None) -> dict[str, Any]:
    encryption: dict[str, Any] = {"recipients": [recipient]}
    if identity_secret:
        encryption["identitySecret"] = {"name": identity_secret, "key": "identity"}
    return {"secret": {}, "encryption": encryption}


def wrong_node(ctx: Ctx) -> None:
    ctx.mayanode(ctx.seed(), nodeAddress=NodeIdentity.from_seed("nobody-runs-this").node_address)


def failing_api(mode: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        node = ctx.seed()
        ctx.world.sandbox.mocknet.fail(ctx.namespace, mode)
        ctx.mayanode(node)
    return setup


def wrong_shapes(variant: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        node = ctx.seed()
        base = f"{ctx.shapes.url}/{variant}"
        ctx.mayanode(node, api={"rest": base, "rpc": f"{base}/rpc", "timeoutSeconds": 2})
    return setup


def downgrade(ctx: Ctx) -> None:
    node = ctx.seed(version="1.111.0")
    ctx.mayanode(node, version="1.110.0")


def backup_of_unknown_node(ctx: Ctx) -> None:
    ctx.call(ctx.world.sandbox.client.create(kc.NAMESPACES, {"metadata": {"name": ctx.namespace}}))
    ctx.custom("NodeBackup", "bk", {"nodeRef": {"name": "no-such-node"}, "reason": "Manual",
                                    "location": secret_location(generate_identity()[1])})


def backup_to_unreachable_s3(ctx: Ctx) -> None:
    ctx.mayanode(ctx.seed())
    ctx.call(ctx.world.sandbox.client.create(kc.SECRETS, {"metadata": {"name": "s3-creds"}, "stringData": {
        "AWS_ACCESS_KEY_ID": "AKIABENCHMARK0001", "AWS_SECRET_ACCESS_KEY": "secret-key-of-the-test-0001"}},
        ctx.namespace))
    location = {"s3": {"endpoint": f"http://127.0.0.1:{closed_port()}", "bucket": "nowhere", "region": "us-east-1",
                       "forcePathStyle": True, "credentialsSecret": {"name": "s3-creds"}},
                "encryption": {"recipients": [generate_identity()[1]]}}
    ctx.custom("NodeBackup", "bk", {"nodeRef": {"name": "node"}, "reason": "Manual", "location": location})


def restore_of_unknown_backup(ctx: Ctx) -> None:
    ctx.mayanode(ctx.seed())
    ctx.custom("NodeRestore", "rs", {"backupRef": {"name": "no-such-backup"}, "nodeRef": {"name": "node"},
                                     "doubleSignGuard": {"silentBlocks": 3}})


def identity_missing(ctx: Ctx) -> None:
    ctx.mayanode(ctx.seed())
    ctx.custom("NodeBackup", "bk", {"nodeRef": {"name": "node"}, "reason": "Manual",
                                    "location": secret_location(generate_identity()[1], "no-such-identity")})


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Ctx], None]
    kind: str
    name: str
    reasons: frozenset[str]            # any condition of the object with one of these reasons


CASES = [
    Case("wrong-node", wrong_node, "MayaNode", "node", frozenset({"NodeAccountNotFound"})),
    Case("api-garbage", failing_api("garbage"), "MayaNode", "node", frozenset({"InvalidResponse"})),
    Case("api-huge", failing_api("huge"), "MayaNode", "node", frozenset({"TooLarge"})),
    Case("api-deeply-nested", failing_api("nested"), "MayaNode", "node", frozenset({"InvalidResponse"})),
    *[Case(f"api-shape-{v}", wrong_shapes(v), "MayaNode", "node", frozenset({"InvalidResponse"}))
      for v in WRONG_SHAPES],
    Case("downgrade", downgrade, "MayaNode", "node", frozenset({"DowngradeNotAllowed"})),
    Case("backup-unknown-node", backup_of_unknown_node, "NodeBackup", "bk", frozenset({"NodeNotFound"})),
    Case("backup-s3-unreachable", backup_to_unreachable_s3, "NodeBackup", "bk",
         frozenset({"Unreachable", "StoreUnavailable", "StoreRetrying"})),
    Case("backup-identity-missing", identity_missing, "NodeBackup", "bk", frozenset({"IdentityNotFound"})),
    Case("restore-unknown-backup", restore_of_unknown_backup, "NodeRestore", "rs", frozenset({"BackupNotFound"})),
]


@pytest.fixture(scope="module")
def bad_world(tmp_path_factory):
    with SandboxThread(block_interval=0.2, workdir=tmp_path_factory.mktemp("badinput-world")) as world:
        shapes = WrongShapeServer()
        world.call(shapes.start())
        operator = OperatorProcess(world.sandbox.kubeconfig_path, tmp_path_factory.mktemp("op") / "operator.log",
                                   extra_env={"MAYANODE_OPERATOR_METRICS_PORT": "0"}).start()
        try:
            yield world, shapes, operator
        finally:
            operator.stop()
            world.call(shapes.stop())


@pytest.fixture(scope="module")
def outcomes(bad_world):
    """Every case set up at once (they are independent), then each awaited in its test."""
    world, shapes, operator = bad_world
    for case in CASES:
        case.setup(Ctx(world, f"bad-{case.id}", shapes))
    return world, operator


def _conditions(world, case: Case) -> list[dict[str, Any]]:
    body = world.call(world.sandbox.client.get(CUSTOM[case.kind], case.name, f"bad-{case.id}")) or {}
    return list((body.get("status") or {}).get("conditions") or [])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_ends_in_a_clear_condition(case, outcomes):
    world, operator = outcomes

    def reported():
        found = [c for c in _conditions(world, case) if c.get("reason") in case.reasons]
        assert found, _conditions(world, case)
        return found[0]

    cond = eventually(reported, timeout=45, interval=0.3,
                      message=lambda: f"{case.id}: no condition with {sorted(case.reasons)}: "
                                      f"{_conditions(world, case)}; log tail:\n" + operator.log_text()[-2000:])
    assert cond["message"] and len(cond["message"]) < 1200 and "Traceback" not in cond["message"], cond
    assert operator.running
    # Handled as a condition, not as a reconcile that keeps failing with an exception.
    key = f"'{naming.MAYANODE_PLURAL}', 'bad-{case.id}', " if case.kind == "MayaNode" else None
    if key:
        assert f"reconcile of ({key}" not in operator.log_text(), case.id
