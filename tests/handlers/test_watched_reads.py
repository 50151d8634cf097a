"""An idle MayaNode pass takes the node's workloads, its NodeRestores and NodeBackups from the last pass while the
watches show nothing changed in the namespace and the operator wrote nothing there; anything else is read again.
kopf's watches are played by hand here (`show`): what they would deliver, when they would deliver it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter

import pytest

from mayanode_operator.api import naming
from mayanode_operator.reconcile import facet_backup
from mayanode_operator.reconcile.mayanode import reconcile_mayanode
from mayanode_operator.sandbox.apiserver.handlers import request_info

from .backup_world import BackupWorld

NS = "watched-a"
KEPT_READS = {("get", "deployments"), ("list", "pods"), ("list", "noderestores"), ("list", "nodebackups")}


class Reads:
    """The operator's reads in one namespace, by (verb, resource)."""

    def __init__(self, namespace: str) -> None:
        self.namespace, self.seen = namespace, Counter()

    async def __call__(self, request, call_next):
        info = request_info(request)
        if info.namespace == self.namespace and info.verb in ("get", "list"):
            if (request.headers.get("User-Agent") or "").startswith("mayanode-operator/"):   # not the mocknet's
                self.seen[(info.verb, info.resource)] += 1
        return await call_next(request)


@pytest.fixture(scope="module")
def world():
    w = BackupWorld()
    w.runtime.watched.running = True          # as kopf's startup handler sets it
    try:
        yield w
    finally:
        w.close()


def show(world, namespace: str) -> None:
    """What kopf's watches deliver: every pod, Deployment and NodeRestore of the namespace as it is now."""
    store = world.sandbox.api.store

    async def deliver():
        for kind in ("pods", "deployments", naming.NODERESTORE_PLURAL):
            for obj in store.list(kind, namespace)["items"]:
                meta = obj["metadata"]
                world.runtime.watched.seen(kind, namespace, meta["name"], meta["resourceVersion"])
    world.call(deliver())


def reads_of_a_pass(world, namespace: str) -> Counter:
    reads = Reads(namespace)
    world.sandbox.api.add_request_hook(reads)
    try:
        world.call(reconcile_mayanode(world.runtime, namespace, namespace))
    finally:
        world.sandbox.api.remove_request_hook(reads)
    return reads.seen


def kept_reads_made(reads: Counter) -> set:
    return {read for read in reads if read in KEPT_READS}


@pytest.fixture(scope="module")
def node(world):
    node = world.seed(NS)
    world.mayanode(node)
    show(world, NS)
    first = reads_of_a_pass(world, NS)
    assert kept_reads_made(first) == KEPT_READS
    return node


def test_an_idle_pass_reads_only_its_mayanode(world, node):
    show(world, NS)
    before = world.get(naming.MAYANODE_PLURAL, NS, NS)["status"]
    reads = reads_of_a_pass(world, NS)
    assert reads == Counter({("get", "mayanodes"): 1})
    after = world.get(naming.MAYANODE_PLURAL, NS, NS)["status"]
    assert after["workloads"] == before["workloads"] and after["conditions"] == before["conditions"]
    assert after["phase"] == before["phase"] == "Running"


def test_a_change_is_read_again_once_the_watch_shows_it(world, node):
    store = world.sandbox.api.store
    pod = next(p for p in store.list("pods", NS)["items"] if p["metadata"]["name"].startswith("mayanode"))

    async def relabel():
        store.patch("pods", pod["metadata"]["name"], {"metadata": {"labels": {"touched": "yes"}}}, NS)
    world.call(relabel())
    assert kept_reads_made(reads_of_a_pass(world, NS)) == set()      # the event has not come yet
    show(world, NS)
    assert kept_reads_made(reads_of_a_pass(world, NS)) == KEPT_READS
    show(world, NS)
    assert kept_reads_made(reads_of_a_pass(world, NS)) == set()


def test_a_read_the_watch_has_not_shown_yet_is_not_kept(world, node):
    store = world.sandbox.api.store

    async def relabel():
        for deployment in store.list("deployments", NS)["items"]:
            store.patch("deployments", deployment["metadata"]["name"], {"metadata": {"labels": {"v": "2"}}}, NS)
    world.call(relabel())
    world.runtime.watched.changed(NS)           # an unrelated event: the namespace is read again…
    assert kept_reads_made(reads_of_a_pass(world, NS)) == KEPT_READS
    # …but the Deployments it read are newer than the watch has shown: not kept, read again
    assert ("get", "deployments") in reads_of_a_pass(world, NS)
    show(world, NS)
    reads_of_a_pass(world, NS)
    assert kept_reads_made(reads_of_a_pass(world, NS)) == set()


def test_the_operators_own_write_in_the_namespace_makes_the_next_pass_read_again(world, node):
    show(world, NS)
    reads_of_a_pass(world, NS)
    assert kept_reads_made(reads_of_a_pass(world, NS)) == set()
    world.call(asyncio.to_thread(world.runtime.kube.core.create_namespaced_config_map, NS,
                                 {"metadata": {"name": "unrelated"}}))      # the official client, in a thread
    assert kept_reads_made(reads_of_a_pass(world, NS)) == KEPT_READS
    show(world, NS)
    assert kept_reads_made(reads_of_a_pass(world, NS)) == set()
    world.call(world.runtime.kube.patch_configmap(NS, "unrelated", {"data": {"a": "b"}}))    # a merge patch on the loop
    assert kept_reads_made(reads_of_a_pass(world, NS)) == KEPT_READS


def test_a_mayanode_status_write_changes_nothing_a_pass_keeps(world, node):
    show(world, NS)
    reads_of_a_pass(world, NS)
    world.call(world.runtime.kube.patch_custom_status(naming.MAYANODE_PLURAL, NS, NS, {"probe": None}))
    assert kept_reads_made(reads_of_a_pass(world, NS)) == set()


def test_a_new_noderestore_holds_the_node_at_the_next_pass_once_the_watch_shows_it(world, node):
    show(world, NS)
    reads_of_a_pass(world, NS)
    store = world.sandbox.api.store
    restore = {"apiVersion": naming.API_VERSION, "kind": "NodeRestore",
               "metadata": {"name": "r-held", "namespace": NS},
               "spec": {"nodeRef": {"name": NS}, "backupRef": {"name": "nope"}}}

    async def create():               # a person's kubectl apply, not the operator
        store.create(naming.NODERESTORE_PLURAL, restore, namespace=NS)
    world.call(create())
    show(world, NS)
    world.call(reconcile_mayanode(world.runtime, NS, NS))
    status = world.get(naming.MAYANODE_PLURAL, NS, NS)["status"]
    assert status["replicas"]["reason"] == "RestoreInProgress", status["replicas"]

    async def delete():
        store.delete(naming.NODERESTORE_PLURAL, "r-held", NS)
    world.call(delete())
    world.runtime.watched.seen(naming.NODERESTORE_PLURAL, NS, "r-held", "", deleted=True)
    world.call(reconcile_mayanode(world.runtime, NS, NS))
    status = world.get(naming.MAYANODE_PLURAL, NS, NS)["status"]
    assert status["replicas"].get("reason") != "RestoreInProgress", status["replicas"]


def test_the_backup_policy_creates_or_prunes_only_on_a_list_read_now(world, node, monkeypatch):
    """A kept list may still hold a NodeBackup someone just deleted (its event not here yet): pruning on it could
    delete one backup too many. The facet plans on the kept summaries, and when the plan acts it lists again."""
    real_plan, seen = facet_backup.plan_policy, []

    def plan_that_prunes(inputs):
        seen.append(inputs.backups)
        return dataclasses.replace(real_plan(inputs), delete=[("someone-elses", "test")])
    show(world, NS)
    reads_of_a_pass(world, NS)
    assert kept_reads_made(reads_of_a_pass(world, NS)) == set()           # idle: the kept summaries
    monkeypatch.setattr(facet_backup, "plan_policy", plan_that_prunes)
    reads = reads_of_a_pass(world, NS)
    assert kept_reads_made(reads) == {("list", "nodebackups")}           # it acts: the list is read again
    assert len(seen) >= 2                                               # planned on what was kept, then on the read


def relabel_deployments(world, namespace: str, labels: dict) -> None:
    store = world.sandbox.api.store

    async def relabel():
        for deployment in store.list("deployments", namespace)["items"]:
            store.patch("deployments", deployment["metadata"]["name"], {"metadata": {"labels": labels}}, namespace)
    world.call(relabel())


def not_watched_events(world, namespace: str) -> list[dict]:
    return [e for e in world.events(namespace, namespace) if e["reason"] == "WorkloadsNotWatched"]


def test_a_node_the_workload_selector_does_not_pick_is_read_at_every_pass_and_told_once(world):
    """The watches see only what the workload selector picks. A node whose Deployments, or the pods they select,
    are not all picked could change unseen: its workloads are read at every pass, and an event says why, once."""
    namespace = "watched-unpicked"
    world.mayanode(world.seed(namespace))
    watched = world.runtime.watched
    default = watched.workload_selector
    watched.workload_selector = "tier=validator"
    try:
        for _ in range(3):
            show(world, namespace)                    # the selector is checked, not only what the watch showed
            assert kept_reads_made(reads_of_a_pass(world, namespace)) >= {("get", "deployments"), ("list", "pods")}
        [event] = not_watched_events(world, namespace)
        assert event["type"] == "Warning"
        assert "mayanode" in event["message"] and "bifrost" in event["message"] and "tier=validator" in event["message"]

        # The Deployments now carry the label, but the pods they select need not: still read, nothing more said.
        relabel_deployments(world, namespace, {"tier": "validator"})
        for _ in range(2):
            show(world, namespace)
            assert ("list", "pods") in reads_of_a_pass(world, namespace)
        assert len(not_watched_events(world, namespace)) == 1

        # A selector that picks them: kept again; one that stops picking them later is told again.
        watched.workload_selector = "app.kubernetes.io/name"
        show(world, namespace)
        reads_of_a_pass(world, namespace)
        assert kept_reads_made(reads_of_a_pass(world, namespace)) == set()
        watched.workload_selector = "tier=validator"
        watched.changed(namespace)
        reads_of_a_pass(world, namespace)
        assert len(not_watched_events(world, namespace)) == 2
    finally:
        watched.workload_selector = default
