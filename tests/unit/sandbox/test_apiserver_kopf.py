"""A real kopf operator runs its whole lifecycle against the emulated API server."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import kopf
import pytest

from mayanode_operator.sandbox.apiserver import EmulatedApiServer, request_info

GROUP, VERSION, PLURAL = "kopftest.example.com", "v1", "gadgets"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP, "scope": "Namespaced",
        "names": {"kind": "Gadget", "plural": PLURAL, "singular": "gadget"},
        "versions": [{
            "name": VERSION, "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            }}},
        }],
    },
}


async def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@pytest.mark.timeout(60)
async def test_kopf_operator_lifecycle(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    server = EmulatedApiServer()
    await server.start()
    writes: list[str] = []

    async def record_writes(request, call_next):          # the request-hook seam, used as an observer
        response = await call_next(request)
        if request_info(request).is_write:
            writes.append(f"{request.method} {request.path} {response.status}")
        return response

    server.add_request_hook(record_writes)
    calls: dict[str, list[int]] = {"create": [], "update": [], "delete": []}
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: object) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=server.url, insecure=True)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: object) -> None:
        settings.posting.level = logging.DEBUG
        settings.watching.server_timeout = 10
        settings.persistence.finalizer = "kopftest.example.com/finalizer"

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="created")
    def created(spec: kopf.Spec, body: kopf.Body, **_: object) -> dict[str, object]:
        calls["create"].append(spec["size"])
        kopf.info(body, reason="Created", message="made it")
        return {"size": spec["size"]}

    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry, field="spec")
    def updated(spec: kopf.Spec, patch: kopf.Patch, **_: object) -> None:
        calls["update"].append(spec["size"])
        patch.status["seen"] = spec["size"]

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def deleted(spec: kopf.Spec, **_: object) -> None:
        calls["delete"].append(spec["size"])

    store = server.store
    store.create("customresourcedefinitions", CRD)
    store.create("namespaces", {"metadata": {"name": "ops"}})
    stop = asyncio.Event()
    operator = asyncio.create_task(kopf.operator(registry=registry, standalone=True, clusterwide=True,
                                                 stop_flag=stop))
    try:
        await asyncio.sleep(0.5)               # let kopf discover and start its watch
        store.create(PLURAL + "." + GROUP, {"metadata": {"name": "g1"}, "spec": {"size": 1}}, "ops")
        await _wait_for(lambda: calls["create"] and
                        store.get(PLURAL + "." + GROUP, "g1", "ops").get("status", {}).get("created") == {"size": 1})
        obj = store.get(PLURAL + "." + GROUP, "g1", "ops")
        assert obj["metadata"]["finalizers"] == ["kopftest.example.com/finalizer"]
        assert obj["metadata"]["generation"] == 1

        store.patch(PLURAL + "." + GROUP, "g1", {"spec": {"size": 2}}, "ops")
        await _wait_for(lambda: store.get(PLURAL + "." + GROUP, "g1", "ops").get("status", {}).get("seen") == 2)
        assert store.get(PLURAL + "." + GROUP, "g1", "ops")["metadata"]["generation"] == 2

        store.delete(PLURAL + "." + GROUP, "g1", "ops")
        await _wait_for(lambda: not store.exists(PLURAL + "." + GROUP, "g1", "ops"))
        await asyncio.sleep(0.5)               # nothing more may run
        assert calls == {"create": [1], "update": [2], "delete": [2]}
        events = store.items("events", "ops")
        assert any(e["involvedObject"]["name"] == "g1" for e in events), "kopf posts core v1 events"
        assert all(not w.endswith((" 409", " 422", " 500")) for w in writes), writes
    finally:
        stop.set()
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(operator, 10)
        await server.stop()
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not problems, [r.getMessage() for r in problems]
