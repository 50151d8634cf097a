"""A finished NodeBackup meets errors (the API server, the store) when it is verified again or expires, and its
MayaNode's retention meets a store that refuses deletes: nothing is marked Failed, nothing is lost, a condition says
why and the step is tried again. Also: a stored archive is verified where it was written."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from kubernetes.client.exceptions import ApiException

from mayanode_operator.api import naming
from mayanode_operator.backup.stores import StoreError, StoreReason
from mayanode_operator.backup.stores.secret import SecretStore
from mayanode_operator.reconcile import nodebackup
from mayanode_operator.reconcile.mayanode import reconcile_mayanode

from .backup_world import condition

NS = "hb-fin"


@pytest.fixture(scope="module")
def node(world):
    return world.member_node(NS)


def reasons(world, name):
    return [e["reason"] for e in world.events(NS, name)]


async def unavailable(*args, **kwargs):
    raise ApiException(status=503, reason="Service Unavailable")


async def access_denied(self, key):
    raise StoreError(StoreReason.ACCESS_DENIED, "deleting: access denied by the bucket policy")


def test_a_transient_error_while_verifying_again_leaves_the_backup_completed(world, node, monkeypatch):
    world.nodebackup(NS, "reverify", NS)
    body = world.drive(NS, "reverify")
    assert body["status"]["phase"] == "Completed" and condition(body, "Verified")["status"] == "True"
    completed_at, generation = body["status"]["completedAt"], body["status"]["observedGeneration"]
    # Long after the capture's 10-minute deadline, a spec change asks for a new verification; the API server
    # answers 503 to the identity Secret's read.
    world.clock = datetime.now(timezone.utc) + timedelta(minutes=30)
    try:
        world.patch_spec(naming.NODEBACKUP_PLURAL, NS, "reverify", {"restoreNamespaces": ["elsewhere"]})
        monkeypatch.setattr(nodebackup, "read_identity", unavailable)
        assert world.step(NS, "reverify") == 30.0
        held = world.backup(NS, "reverify")
        assert held["status"]["phase"] == "Completed" and held["status"]["completedAt"] == completed_at
        assert held["status"]["observedGeneration"] == generation          # the change is not taken in yet
        assert condition(held, "Verified")["status"] == "True"              # the last verification stands
        blocked = condition(held, "ReverifyBlocked")
        assert (blocked["status"], blocked["reason"]) == ("True", "ReverifyFailed")
        assert "503" in blocked["message"] and "retrying every 30s" in blocked["message"]
        assert world.step(NS, "reverify") == 30.0                          # the same failure: no second event
        assert reasons(world, "reverify").count("ReverifyFailed") == 1
        monkeypatch.undo()
        world.step(NS, "reverify")
    finally:
        world.clock = None
    done = world.backup(NS, "reverify")
    assert done["status"]["phase"] == "Completed"
    assert done["status"]["observedGeneration"] == done["metadata"]["generation"]
    assert condition(done, "Verified")["status"] == "True"
    assert (condition(done, "ReverifyBlocked")["status"], condition(done, "ReverifyBlocked")["reason"]) == \
        ("False", "SpecObserved")


def test_a_store_refusing_the_expiry_delete_keeps_the_backup_and_says_why(world, node, monkeypatch):
    world.nodebackup(NS, "expires", NS, ttl="1h")
    body = world.drive(NS, "expires")
    key = body["status"]["archive"]["key"]
    world.clock = datetime.now(timezone.utc) + timedelta(hours=2)
    try:
        monkeypatch.setattr(SecretStore, "delete", access_denied)
        assert world.step(NS, "expires") == 30.0
        held = world.backup(NS, "expires")
        assert held["status"]["phase"] == "Completed"
        assert held["status"]["expiresAt"] == body["status"]["expiresAt"]   # the TTL is not pushed out
        blocked = condition(held, "DeletionBlocked")
        assert (blocked["status"], blocked["reason"]) == ("True", "DeleteFailed")
        assert "AccessDenied" in blocked["message"]
        assert "ArchiveDeleteFailed" in reasons(world, "expires")
        monkeypatch.undo()
        assert world.call(world.call(nodebackup.open_store(world.runtime, world.location(), NS)).exists(key))
        assert world.step(NS, "expires") is None
    finally:
        world.clock = None
    assert world.backup(NS, "expires") is None


def test_verifying_again_reads_the_archive_where_it_was_written(world, node):
    world.nodebackup(NS, "moved", NS)
    body = world.drive(NS, "moved")
    assert condition(body, "Verified")["status"] == "True"
    moved = world.location(secret={"namePrefix": "another-store"})
    world.patch_spec(naming.MAYANODE_PLURAL, NS, NS, {"backup": {"afterChurn": False, "location": moved}})
    try:
        world.patch_spec(naming.NODEBACKUP_PLURAL, NS, "moved", {"restoreNamespaces": ["elsewhere"]})
        again = world.drive(NS, "moved")
    finally:
        world.patch_spec(naming.MAYANODE_PLURAL, NS, NS, {"backup": {"afterChurn": False,
                                                                     "location": world.location()}})
    verified = condition(again, "Verified")
    assert (verified["status"], verified["reason"]) == ("True", "Verified"), verified["message"]
    assert again["status"]["observedGeneration"] == again["metadata"]["generation"]


def test_the_archive_records_when_it_was_stored(world, node):
    world.nodebackup(NS, "stamped", NS)
    body = world.drive(NS, "stamped")
    stored = datetime.fromisoformat(body["status"]["archive"]["storedAt"].replace("Z", "+00:00"))
    started = datetime.fromisoformat(body["status"]["startedAt"].replace("Z", "+00:00"))
    assert started <= stored


PRUNE_NS = "hb-prune"


def test_a_store_refusing_a_prune_keeps_the_backup_and_the_node_reconciled(world, monkeypatch):
    seeded = world.seed(PRUNE_NS)
    world.mayanode(seeded, backup={"afterChurn": True, "location": world.location(), "retention": {"count": 1}})
    world.call(reconcile_mayanode(world.runtime, PRUNE_NS, PRUNE_NS))
    for _ in range(2):                                  # two churns: two policy backups, retention keeps one
        world.call(lambda: world.sandbox.mocknet.churn())
        world.call(world.sandbox.mocknet.settle())
        world.call(reconcile_mayanode(world.runtime, PRUNE_NS, PRUNE_NS))
        for body in world.call(world.runtime.kube.list_custom(naming.NODEBACKUP_PLURAL, PRUNE_NS)):
            if (body.get("status") or {}).get("phase") is None:
                world.drive(PRUNE_NS, body["metadata"]["name"])

    def names():
        return sorted(b["metadata"]["name"] for b in
                      world.call(world.runtime.kube.list_custom(naming.NODEBACKUP_PLURAL, PRUNE_NS)))

    before = names()
    assert len(before) == 2
    monkeypatch.setattr(SecretStore, "delete", access_denied)
    world.call(reconcile_mayanode(world.runtime, PRUNE_NS, PRUNE_NS))     # does not raise
    assert names() == before                                              # nothing pruned, nothing lost
    node = world.get(naming.MAYANODE_PLURAL, PRUNE_NS, PRUNE_NS)
    health = condition(node, "BackupHealthy")
    assert (health["status"], health["reason"]) == ("False", "PruneFailed")
    pruned = [name for name in before if f"NodeBackup {name} (AccessDenied" in health["message"]]
    assert len(pruned) == 1, health["message"]
    assert node["status"]["backup"]                                       # the facet's status was written
    assert node["status"]["observedGeneration"] == node["metadata"]["generation"]
    world.call(reconcile_mayanode(world.runtime, PRUNE_NS, PRUNE_NS))
    assert [e["reason"] for e in world.events(PRUNE_NS, PRUNE_NS)].count("PruneFailed") == 1
    monkeypatch.undo()
    world.call(reconcile_mayanode(world.runtime, PRUNE_NS, PRUNE_NS))
    assert names() == [name for name in before if name not in pruned]
    health = condition(world.get(naming.MAYANODE_PLURAL, PRUNE_NS, PRUNE_NS), "BackupHealthy")
    assert (health["status"], health["reason"]) == ("True", "Reconciled")
