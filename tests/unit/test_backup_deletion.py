"""spec.deletionPolicy (pure): the finalizer only for Delete, what a deletion does, and the NodeRestore guard."""

from datetime import datetime, timedelta, timezone

import pytest

from mayanode_operator.api.backup import NodeBackupSpec
from mayanode_operator.api.mayanode import BackupPolicy
from mayanode_operator.main import watch_event_action
from mayanode_operator.plan import backup as plan
from mayanode_operator.plan.backup_deletion import (
    DELETE_FINALIZER,
    DeletionAction,
    DeletionInputs,
    Usage,
    archive_target,
    cleared,
    decide_deletion,
    finalizer_change,
    finalizer_patch,
    restore_namespaces,
    restores_using,
    store_key,
)
from mayanode_operator.plan.backup_policy import BackupSummary, NewBackup, PolicyInputs, new_backup_body, plan_policy


def backup(policy=None, *, finalizers=None, deleting=False, status=None, spec=None, rv="7"):
    meta = {"name": "b1", "namespace": "ns", "uid": "0123456789abcdef", "resourceVersion": rv}
    if finalizers is not None:
        meta["finalizers"] = finalizers
    if deleting:
        meta["deletionTimestamp"] = "2026-03-01T00:00:00Z"
    body_spec = {"nodeRef": {"name": "node-a"}, **(spec or {})}
    if policy:
        body_spec["deletionPolicy"] = policy
    return {"metadata": meta, "spec": body_spec, "status": status or {}}


STORED = {"phase": "Completed", "startedAt": "2026-03-01T00:00:00Z",
          "archive": {"key": "ns/node-a/b1-01234567.tar.age", "uri": "secret://ns/nodebackup-x"},
          "snapshots": [{"name": "b1-mayanode"}, {"name": "b1-bifrost"}]}


@pytest.mark.parametrize("policy,current,deleting,expected", [
    ("Delete", None, False, [DELETE_FINALIZER]),                         # added before anything is stored
    ("Delete", ["other/x"], False, ["other/x", DELETE_FINALIZER]),       # others' finalizers are kept
    ("Delete", [DELETE_FINALIZER], False, None),                         # already there: no write
    ("Retain", [DELETE_FINALIZER, "other/x"], False, ["other/x"]),       # switched to Retain: ours goes
    (None, None, False, None),                                           # default Retain: nothing on the object
    ("Retain", ["other/x"], False, None),
    ("Delete", None, True, None),                                        # never added to an object being deleted
    ("Retain", [DELETE_FINALIZER], True, None),                          # the deletion path removes it
])
def test_our_finalizer_only_with_delete(policy, current, deleting, expected):
    assert finalizer_change(backup(policy, finalizers=current, deleting=deleting)) == expected


def test_the_finalizer_patch_is_guarded_by_the_resource_version():
    ops = finalizer_patch(backup("Delete", rv="42"), [DELETE_FINALIZER])
    assert ops == [{"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
                   {"op": "add", "path": "/metadata/finalizers", "value": [DELETE_FINALIZER]}]


def restore(name, phase, ref, namespace="ns", deleting=False):
    meta = {"name": name, "namespace": namespace}
    if deleting:
        meta["deletionTimestamp"] = "2026-03-01T00:00:00Z"
    return {"metadata": meta, "spec": {"backupRef": ref}, "status": {"phase": phase} if phase else {}}


def test_restores_in_progress_that_use_the_backup():
    restores = [
        restore("r-writing", "Writing", {"name": "b1"}),
        restore("r-new", None, {"name": "b1"}),                                     # not started yet: it will
        restore("r-done", "Completed", {"name": "b1"}),
        restore("r-failed", "Failed", {"name": "b1"}),
        restore("r-other", "Writing", {"name": "b2"}),
        restore("r-gone", "Writing", {"name": "b1"}, deleting=True),
        restore("r-cross", "Guarding", {"name": "b1", "namespace": "ns"}, namespace="ns-new"),
        restore("r-cross-other", "Guarding", {"name": "b1"}, namespace="ns-new"),     # means ns-new/b1
    ]
    assert restores_using("ns", "b1", restores) == ("ns-new/r-cross (Guarding)", "ns/r-new (Pending)",
                                                    "ns/r-writing (Writing)")


def test_restores_are_looked_for_where_they_may_use_the_backup():
    body = backup(spec={"restoreNamespaces": ["z", "ns", "a"]})
    assert restore_namespaces(body) == ["ns", "a", "z"]


def test_archive_target_recorded_imported_interrupted_or_nothing():
    assert archive_target(backup(status=STORED)).key == "ns/node-a/b1-01234567.tar.age"
    assert archive_target(backup(status=STORED)).snapshots == ("b1-mayanode", "b1-bifrost")
    imported = archive_target(backup(spec={"source": {"key": "ns/node-a/imported-b1-abc.tar.age"}}))
    assert (imported.key, imported.recorded) == ("ns/node-a/imported-b1-abc.tar.age", True)
    interrupted = archive_target(backup(status={"phase": "InProgress", "startedAt": "2026-03-01T00:00:00Z"}))
    assert (interrupted.key, interrupted.recorded) == (store_key("ns", "node-a", "b1", "0123456789abcdef"), False)
    assert archive_target(backup(status={"phase": "Failed"})).key is None


def decide(body, usage=Usage(), location_known=True, store_error=None):
    return decide_deletion(DeletionInputs(body, usage, location_known, store_error))


def test_delete_policy_deletes_the_archive_and_snapshots():
    decision = decide(backup("Delete", finalizers=[DELETE_FINALIZER], deleting=True, status=STORED))
    assert decision.action == DeletionAction.DELETE_DATA
    assert "secret://ns/nodebackup-x" in decision.message and "b1-mayanode" in decision.message
    assert [e.reason for e in decision.events] == ["ArchiveDeleted"]


def test_switched_to_retain_before_the_deletion_keeps_the_archive():
    decision = decide(backup("Retain", finalizers=[DELETE_FINALIZER], deleting=True, status=STORED))
    assert decision.action == DeletionAction.RELEASE and decision.reason == "Retained"


def test_nothing_stored_releases_at_once():
    decision = decide(backup("Delete", finalizers=[DELETE_FINALIZER], deleting=True, status={"phase": "Failed"}))
    assert decision.action == DeletionAction.RELEASE and decision.reason == "NothingStored"


def test_a_restore_in_progress_blocks_with_a_condition_and_one_event():
    body = backup("Delete", finalizers=[DELETE_FINALIZER], deleting=True, status=STORED)
    usage = Usage(restores=("ns/r1 (Writing)",))
    first = decide(body, usage)
    assert first.action == DeletionAction.BLOCK and first.requeue
    assert [(c.type, c.status, c.reason) for c in first.conditions] == [("DeletionBlocked", "True",
                                                                         "RestoreInProgress")]
    assert "ns/r1" in first.message and [e.reason for e in first.events] == ["DeletionBlocked"]
    # the next pass, the same condition recorded: no second event
    body["status"] = {**STORED, "conditions": [{"type": "DeletionBlocked", "status": "True",
                                                "reason": first.reason, "message": first.message}]}
    again = decide(body, usage)
    assert again.action == DeletionAction.BLOCK and again.events == []


def test_restores_that_cannot_be_read_also_block():
    body = backup("Delete", finalizers=[DELETE_FINALIZER], deleting=True, status=STORED)
    decision = decide(body, Usage(unchecked=("ns-new: HTTP 403",)))
    assert decision.action == DeletionAction.BLOCK and decision.reason == "RestoresUnknown"
    assert "restoreNamespaces" in decision.message


def test_store_errors_and_unknown_locations_block_and_say_how_to_give_up():
    body = backup("Delete", finalizers=[DELETE_FINALIZER], deleting=True, status=STORED)
    failed = decide(body, store_error="Unreachable: s3://b/ at http://minio:9000")
    assert failed.action == DeletionAction.BLOCK and failed.reason == "StoreError"
    assert DELETE_FINALIZER in failed.message and [e.reason for e in failed.events] == ["ArchiveDeleteFailed"]
    lost = decide(body, location_known=False)
    assert lost.action == DeletionAction.BLOCK and lost.reason == "LocationUnknown"
    never = decide(backup("Delete", finalizers=[DELETE_FINALIZER], deleting=True,
                          status={"phase": "InProgress", "startedAt": "2026-03-01T00:00:00Z"}), location_known=False)
    assert never.action == DeletionAction.RELEASE and [e.reason for e in never.events] == ["ArchiveNotDeleted"]


def test_cleared_only_when_it_was_blocked():
    assert cleared(backup(status=STORED)) == []
    blocked = backup(status={**STORED, "conditions": [{"type": "DeletionBlocked", "status": "True"}]})
    assert [(c.status, c.reason) for c in cleared(blocked)] == [("False", "NotDeleting")]


# --------------------------------------------------------------------------------------------------
# TTL expiry and retention follow the same rules
# --------------------------------------------------------------------------------------------------
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
IN_USE = Usage(restores=("ns/r1 (Writing)",))


def expired_inputs(usage=Usage(), conditions=()):
    status = {"phase": "Completed", "completedAt": "2026-03-01T00:00:00Z", "observedGeneration": 1,
              "archive": {"key": "k"}, "conditions": list(conditions)}
    return plan.BackupInputs(name="b1", namespace="ns", generation=1,
                             spec=NodeBackupSpec.model_validate({"nodeRef": {"name": "node-a"}, "ttl": "1h"}),
                             status=status, now=NOW, usage=usage)


def test_expiry_waits_while_a_restore_uses_the_backup():
    assert plan.decide(expired_inputs()).action == plan.Action.EXPIRE
    held = plan.decide(expired_inputs(IN_USE))
    assert held.action == plan.Action.HOLD and held.requeue and "ns/r1" in held.message
    result = plan.expiry_held(expired_inputs(IN_USE), held)
    assert [(c.type, c.status, c.reason) for c in result.conditions] == [("DeletionBlocked", "True",
                                                                          "RestoreInProgress")]
    assert [e.reason for e in result.events] == ["DeletionBlocked"] and result.status == {}
    recorded = [{"type": "DeletionBlocked", "status": "True", "reason": held.reason, "message": held.message}]
    assert plan.expiry_held(expired_inputs(IN_USE, recorded), held).events == []      # one event, not one a pass


def test_a_longer_ttl_clears_deletion_blocked():
    inputs = expired_inputs(conditions=[{"type": "DeletionBlocked", "status": "True"}])
    assert [(c.type, c.status) for c in plan.respecced(inputs).conditions] == [("DeletionBlocked", "False")]


def policy_backup(name, hours, deletion="Delete"):
    moment = NOW - timedelta(hours=hours)
    return BackupSummary(name=name, reason="Scheduled", phase="Completed", created=moment, completed=moment,
                         verified="True", policy=True, deletion_policy=deletion)


def retention(backups, in_use=None, previous=None):
    pol = BackupPolicy.model_validate({"location": {"secret": {}, "encryption": {"recipients": [RECIPIENT]}},
                                       "afterChurn": False, "retention": {"count": 1}})
    return plan_policy(PolicyInputs(node="node-a", policy=pol, now=NOW, previous=previous or {},
                                    backups=tuple(backups), in_use=in_use or {}))


def test_retention_follows_each_backups_deletion_policy():
    result = retention([policy_backup("new", 1), policy_backup("old-delete", 5),
                        policy_backup("old-retain", 6, "Retain")])
    assert sorted(name for name, _ in result.delete) == ["old-delete", "old-retain"]
    assert result.retain_archive == {"old-retain"}
    pruned = {e.message.split()[2]: e.message for e in result.events if e.reason == "BackupPruned"}
    assert "with its archive" in pruned["old-delete"] and "keeping its archive" in pruned["old-retain"]


def test_retention_never_prunes_a_backup_a_restore_uses():
    result = retention([policy_backup("new", 1), policy_backup("old", 5)], in_use={"old": IN_USE})
    assert result.delete == []
    deferred = [e for e in result.events if e.reason == "BackupPruneDeferred"]
    assert len(deferred) == 1 and "ns/r1" in deferred[0].message and deferred[0].type == "Warning"
    assert result.status["pruneDeferred"] == ["old"]


def test_a_deferred_prune_is_said_once_then_done_when_the_restore_ends():
    backups = [policy_backup("new", 1), policy_backup("old", 5)]
    first = retention(backups, in_use={"old": IN_USE})
    again = retention(backups, in_use={"old": IN_USE}, previous=first.status)
    assert again.delete == [] and again.status["pruneDeferred"] == ["old"]
    assert not [e for e in again.events if e.reason == "BackupPruneDeferred"]      # no event at every pass
    done = retention(backups, previous=again.status)
    assert [name for name, _ in done.delete] == ["old"] and done.status["pruneDeferred"] is None


def test_policy_backups_are_made_with_delete():
    pol = BackupPolicy.model_validate({"location": {"secret": {}, "encryption": {"recipients": [RECIPIENT]}}})
    body = new_backup_body("ns", "node-a", pol, NewBackup("node-a-scheduled-1", "Scheduled", "cron"))
    assert body["spec"]["deletionPolicy"] == "Delete"
    assert NodeBackupSpec.model_validate({"nodeRef": {"name": "x"}}).deletion_policy == "Retain"


@pytest.mark.parametrize("finalizer_list,deleting,action", [
    ([DELETE_FINALIZER], True, "reconcile"),      # a deletion waiting for us: even with generation == observed
    (["other/x"], True, "ignore"),                # someone else's finalizer: not ours to act on
    ([DELETE_FINALIZER], False, "ignore"),        # our own finalizer write coming back
])
def test_watch_events_of_a_deletion_that_waits_for_us(finalizer_list, deleting, action):
    body = backup("Delete", finalizers=finalizer_list, deleting=deleting)
    body["metadata"]["generation"] = 2
    body["status"] = {"observedGeneration": 2}
    assert watch_event_action("MODIFIED", body) == action
