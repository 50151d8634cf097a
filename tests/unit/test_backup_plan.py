"""The NodeBackup state machine (pure): (spec, status, facts, now) → next action and status."""

from datetime import datetime, timedelta, timezone

import pytest

from mayanode_operator.api.backup import NodeBackupSpec
from mayanode_operator.plan import backup as plan
from mayanode_operator.plan.backup_items import CaptureVerdict
from mayanode_operator.plan.backup_verify import VerifyResult

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
LOCATION = {"secret": {}, "encryption": {"recipients": [RECIPIENT], "identitySecret": {"name": "age"}}}


def spec(**extra):
    return NodeBackupSpec.model_validate({"nodeRef": {"name": "node-a"}, **extra})


def inputs(status=None, *, now=NOW, generation=1, **kwargs):
    base = dict(name="b", namespace="ns", generation=generation, spec=spec(), status=status or {}, now=now,
                location=LOCATION)
    base.update(kwargs)
    return plan.BackupInputs(**base)


@pytest.mark.parametrize("status,kwargs,action,reason", [
    ({}, {}, plan.Action.ACCEPT, "Accepted"),
    ({"phase": "New"}, {}, plan.Action.START, "Started"),
    ({"phase": "New"}, {"node_found": False}, plan.Action.FAIL, "NodeNotFound"),
    ({"phase": "New"}, {"location": None}, plan.Action.FAIL, "NoLocation"),
    ({"phase": "New"}, {"location_error": "bad"}, plan.Action.FAIL, "InvalidLocation"),
    ({"phase": "New"}, {"node_error": "spec.x: bad"}, plan.Action.FAIL, "InvalidNodeSpec"),
    ({}, {"spec": None, "spec_error": "spec.ttl: bad"}, plan.Action.FAIL, "InvalidSpec"),
    ({"phase": "InProgress", "step": "Snapshotting", "startedAt": "2026-03-01T11:59:00Z"}, {},
     plan.Action.SNAPSHOT, "Snapshotting"),
    ({"phase": "InProgress", "step": "Snapshotting", "startedAt": "2026-03-01T11:00:00Z"}, {},
     plan.Action.FAIL, "SnapshotTimeout"),
    ({"phase": "InProgress", "step": "Capturing"}, {}, plan.Action.CAPTURE, "Capturing"),
    ({"phase": "InProgress", "step": "Storing"}, {}, plan.Action.CAPTURE, "Capturing"),
    ({"phase": "InProgress", "step": "Verifying"}, {}, plan.Action.VERIFY, "Verifying"),
    ({"phase": "InProgress", "step": "Verifying"}, {"spec": spec(verify=False)}, plan.Action.FINISH,
     "VerificationDisabled"),
    ({"phase": "InProgress", "step": "Verifying"},
     {"location": {"secret": {}, "encryption": {"recipients": [RECIPIENT]}}}, plan.Action.FINISH, "NoIdentity"),
    ({"phase": "Completed", "observedGeneration": 1}, {}, plan.Action.IDLE, "Done"),
    ({"phase": "Completed", "observedGeneration": 1, "archive": {"key": "k"}}, {"generation": 2},
     plan.Action.REVERIFY, "Reverifying"),
    ({"phase": "Failed", "observedGeneration": 1}, {"generation": 2}, plan.Action.RESPEC, "SpecChanged"),
    ({"phase": "Completed", "observedGeneration": 1, "completedAt": "2026-03-01T10:00:00Z"},
     {"spec": spec(ttl="1h")}, plan.Action.EXPIRE, "Expired"),
    ({"phase": "Completed", "observedGeneration": 1, "completedAt": "2026-03-01T11:30:00Z"},
     {"spec": spec(ttl="1h")}, plan.Action.IDLE, "WaitingForExpiry"),
])
def test_decide(status, kwargs, action, reason):
    decision = plan.decide(inputs(status, **kwargs))
    assert (decision.action, decision.reason) == (action, reason)


def test_imported_backups_check_the_store_instead_of_capturing():
    imported = spec(reason="Imported", source={"key": "ns/n/imported-b.tar.age", "sha256": "a" * 64})
    started = plan.started(inputs({"phase": "New"}, spec=imported))
    assert started.status["step"] == "Storing"
    decision = plan.decide(inputs({"phase": "InProgress", "step": "Storing"}, spec=imported))
    assert decision.action == plan.Action.CHECK_IMPORTED


def test_start_records_step_time_and_an_event():
    result = plan.started(inputs({"phase": "New"}, snapshots_enabled=True))
    assert result.status == {"phase": "InProgress", "step": "Snapshotting", "startedAt": "2026-03-01T12:00:00Z",
                             "observedGeneration": 1}
    assert [e.reason for e in result.events] == ["Started"]


def test_transient_errors_retry_until_the_deadline():
    early = plan.transient_error(inputs({"phase": "InProgress", "startedAt": "2026-03-01T11:58:00Z"}), "Capture",
                                 "pod mayanode-x is not running")
    assert early.requeue == plan.RETRY_SECONDS and not early.finished
    assert early.conditions[0].reason == "CaptureRetrying"
    late = plan.transient_error(inputs({"phase": "InProgress", "startedAt": "2026-03-01T11:00:00Z"}), "Capture", "x")
    assert late.finished and late.status["phase"] == "Failed" and late.conditions[0].reason == "CaptureFailed"


def test_captured_then_finished_with_verification_and_expiry():
    archive = {"uri": "secret://ns/x", "size": 100, "recipients": [RECIPIENT], "key": "k", "sha256": "a" * 64}
    stored = plan.captured(inputs({"phase": "InProgress", "step": "Capturing"}),
                           verdict=CaptureVerdict("Completed", "AllItemsCaptured", "10 items captured"),
                           items=[{"name": "n"}], missing=[], archive=archive, node={"height": 5})
    assert stored.status["step"] == "Verifying" and stored.status["missing"] is None
    assert stored.conditions[0].reason == "ArchiveStored"
    status = {"phase": "InProgress", "step": "Verifying", "items": [{"name": "n"}], "archive": archive}
    done = plan.finished(inputs(status, spec=spec(ttl="2h")), VerifyResult("True", "Verified", "ok"))
    assert done.status["phase"] == "Completed" and done.status["step"] is None
    assert done.status["expiresAt"] == "2026-03-01T14:00:00Z"
    assert done.requeue == plan.MAX_IDLE_REQUEUE          # wakes at least hourly until expiry
    assert [c.type for c in done.conditions] == ["Verified"] and done.finished
    assert [e.reason for e in done.events] == ["Verified", "Completed"]


def test_missing_items_or_failed_snapshots_end_partially_failed():
    base = {"phase": "InProgress", "step": "Verifying"}
    assert plan.final_phase(inputs({**base, "missing": [{"path": "x"}]})) == "PartiallyFailed"
    assert plan.final_phase(inputs({**base, "snapshots": [{"readyToUse": False}]})) == "PartiallyFailed"
    assert plan.final_phase(inputs({**base, "snapshots": [{"readyToUse": True}]})) == "Completed"
    failed = plan.finished(inputs({**base, "missing": [{"path": "x"}]}), VerifyResult("False", "WrongIdentity", "m"))
    assert [e.reason for e in failed.events] == ["VerificationFailed", "PartiallyFailed"]


def test_snapshots_are_created_then_waited_for():
    views = [plan.SnapshotView("mayanode", "mayanode", "b-mayanode", False),
             plan.SnapshotView("bifrost", "bifrost", "b-bifrost", True, False)]
    create, result = plan.snapshot_progress(inputs({}), views)
    assert [v.name for v in create] == ["b-mayanode"] and result.requeue == plan.SNAPSHOT_POLL_SECONDS
    ready = [plan.SnapshotView("mayanode", "mayanode", "b-mayanode", True, True, "10Gi"),
             plan.SnapshotView("bifrost", "bifrost", "b-bifrost", True, False, None, "no class")]
    create, result = plan.snapshot_progress(inputs({}), ready)
    assert create == [] and result.status["step"] == "Capturing"
    assert result.status["snapshots"][0] == {"component": "mayanode", "pvc": "mayanode", "name": "b-mayanode",
                                             "readyToUse": True, "restoreSize": "10Gi"}
    assert [e.reason for e in result.events] == ["SnapshotFailed"]


def test_ttl_can_change_after_completion():
    status = {"phase": "Completed", "observedGeneration": 1, "completedAt": "2026-03-01T11:00:00Z"}
    assert plan.expires_at(spec(ttl="30m"), status) == datetime(2026, 3, 1, 11, 30)
    assert plan.expires_at(spec(), status) is None
    later = inputs(status, spec=spec(ttl="30m"), generation=2, now=NOW - timedelta(hours=1))
    assert plan.respecced(later).status["expiresAt"] == "2026-03-01T11:30:00Z"


def test_verification_has_its_own_deadline_from_when_the_archive_was_stored():
    slow_capture = {"phase": "InProgress", "step": "Verifying", "startedAt": "2026-03-01T11:00:00Z",
                    "archive": {"key": "k", "storedAt": "2026-03-01T11:58:00Z"}}
    retry = plan.transient_error(inputs(slow_capture), "Step", "503 Service Unavailable")
    assert not retry.finished and retry.conditions[0].reason == "StepRetrying"
    stale = {**slow_capture, "archive": {"key": "k", "storedAt": "2026-03-01T11:40:00Z"}}
    assert plan.transient_error(inputs(stale), "Step", "x").status["phase"] == "Failed"
    capturing = {**slow_capture, "step": "Capturing"}           # storedAt of no account before verification
    assert plan.transient_error(inputs(capturing), "Capture", "x").status["phase"] == "Failed"


FINISHED = {"phase": "Completed", "observedGeneration": 1, "completedAt": "2026-03-01T10:00:00Z",
            "archive": {"key": "k"}}


@pytest.mark.parametrize("action,condition,reason,event", [
    (plan.Action.REVERIFY, "ReverifyBlocked", "ReverifyFailed", "ReverifyFailed"),
    (plan.Action.EXPIRE, "DeletionBlocked", "DeleteFailed", "ArchiveDeleteFailed"),
])
def test_a_finished_backup_keeps_its_phase_whatever_its_step_meets(action, condition, reason, event):
    result = plan.finished_step_failed(inputs(FINISHED, generation=2), action, "503 Service Unavailable")
    assert "phase" not in result.status and "completedAt" not in result.status and not result.finished
    assert result.status == {"observedGeneration": 1}           # the step is decided again at the next pass
    assert [(c.type, c.status, c.reason) for c in result.conditions] == [(condition, "True", reason)]
    assert "503 Service Unavailable" in result.conditions[0].message
    assert [e.reason for e in result.events] == [event]
    assert result.requeue == 30.0
    told = {**FINISHED, "conditions": [{"type": condition, "status": "True", "reason": reason,
                                        "message": result.conditions[0].message}]}
    assert plan.finished_step_failed(inputs(told, generation=2), action, "503 Service Unavailable").events == []


def test_a_blocked_reverification_clears_when_done_or_no_longer_asked_for():
    blocked = {**FINISHED, "conditions": [{"type": "ReverifyBlocked", "status": "True", "reason": "ReverifyFailed",
                                           "message": "m"}]}
    done = plan.reverified(inputs(blocked, generation=2), VerifyResult("True", "Verified", "ok"))
    assert ("ReverifyBlocked", "False", "SpecObserved") in [(c.type, c.status, c.reason) for c in done.conditions]
    respecced = plan.respecced(inputs(blocked, generation=2, spec=spec(verify=False)))
    assert [(c.type, c.status) for c in respecced.conditions] == [("ReverifyBlocked", "False")]
    assert plan.respecced(inputs(FINISHED, generation=2)).conditions == []
