"""A hand-off migration on a cluster of two nodes, where a ReadWriteOnce volume is attached to one node at a time (the
simulated kubelet refuses to start a pod on another node while the volume's pods run, as a real cluster does): the
helper that reads the old node's sign state while it still runs must be placed on the node that mounts its volume."""

from __future__ import annotations

import json

import pytest

from mayanode_operator.api import naming
from mayanode_operator.sandbox.apiserver.handlers import request_info

from .backup_world import BackupWorld
from .test_noderestore import drive_in, handoff_world

NODES = ("node-a", "node-b")


@pytest.fixture(scope="module")
def world():
    w = BackupWorld(kubelet_options={"node_names": NODES})
    try:
        yield w
    finally:
        w.close()


def test_the_old_nodes_helper_runs_on_the_node_that_mounts_its_volume(world):
    peer = world.seed("hrn-peer")
    old, old_ns, new_ns = handoff_world(world, peer, "n")
    mayanode = [p for p in world.pods(old_ns, "app.kubernetes.io/name=mayanode")
                if not p["metadata"].get("deletionTimestamp")][0]
    mounting = mayanode["spec"]["nodeName"]
    created: list[dict] = []

    async def hook(request, call_next):
        info = request_info(request)
        if (info.verb, info.resource, info.namespace) == ("create", "pods", old_ns):
            created.append(json.loads(await request.read()))
        return await call_next(request)
    world.sandbox.api.add_request_hook(hook)
    try:
        status = drive_in(world, new_ns, "move")
    finally:
        world.sandbox.api.remove_request_hook(hook)
    assert status["phase"] == "Completed", status
    assert status["guard"]["method"] == "HandOff"
    (helper,) = [p for p in created if p["metadata"].get("generateName", "").startswith("restore-mayanode-")]
    assert helper["spec"]["nodeName"] == mounting
    assert "multi-attach" not in {event for _, event, ns, _ in world.sandbox.kubelet.journal if ns == old_ns}
    assert not world.sandbox.mocknet.double_signs
    nodes = {p["spec"]["nodeName"] for ns in (old_ns, new_ns) for p in world.pods(ns)}
    assert nodes == set(NODES)                       # the pods did spread: the placement was not a given
    assert world.get(naming.NODERESTORE_PLURAL, new_ns, "move")["status"]["phase"] == "Completed"
