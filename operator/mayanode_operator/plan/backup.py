"""The NodeBackup state machine. Pure: (spec, previous status, facts, now) → the next action and its status.

    (none) ──accept──▶ New ──start──▶ InProgress/Snapshotting ─▶ InProgress/Capturing ─▶ InProgress/Verifying
                        │                                         (imported: InProgress/Storing)        │
                        └──────────────▶ Failed ◀──────────── (deadline, critical item missing) ◀───────┤
                                                                                     Completed | PartiallyFailed

The current step lives in `status.phase`/`status.step`; every step is idempotent, so an operator that was
stopped anywhere resumes at that step. Capturing reads the volumes, encrypts, and writes the archive under a
key derived from the backup's namespace, name and uid: a retried write replaces the object nobody recorded yet,
never adds a second one. After the terminal phase the machine only watches the TTL (expiry deletes the stored
archive, the VolumeSnapshots and the NodeBackup itself, but waits while a NodeRestore in progress uses the backup)
and spec changes (re-verification). Deleting the NodeBackup itself is plan/backup_deletion.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from ..api.backup import NodeBackupSpec
from ..api.common import parse_duration
from .backup_deletion import BLOCKED_REQUEUE_SECONDS, STORE_RETRY_SECONDS, Usage, blocked, cleared
from .backup_items import CaptureVerdict
from .backup_verify import VerifyResult
from .conditions import Condition
from .events import EventSpec

FINISHED = ("Completed", "PartiallyFailed", "Failed")
CAPTURE_DEADLINE = timedelta(minutes=10)      # transient capture errors are retried this long after start
SNAPSHOT_DEADLINE = timedelta(minutes=10)     # VolumeSnapshots must be readyToUse by then
RETRY_SECONDS = 5.0
SNAPSHOT_POLL_SECONDS = 1.0
MAX_IDLE_REQUEUE = 3600.0


class Action(StrEnum):
    ACCEPT = "Accept"
    FAIL = "Fail"
    START = "Start"
    SNAPSHOT = "Snapshot"
    CAPTURE = "Capture"
    CHECK_IMPORTED = "CheckImported"
    VERIFY = "Verify"
    FINISH = "Finish"               # skip verification (disabled, or no identity)
    EXPIRE = "Expire"
    HOLD = "Hold"                   # expired, but a NodeRestore in progress uses the backup: not deleted yet
    REVERIFY = "Reverify"
    RESPEC = "Respec"               # a finished backup's spec changed: new TTL, verification off
    IDLE = "Idle"


@dataclass(frozen=True)
class BackupInputs:
    name: str
    namespace: str
    generation: int | None
    spec: NodeBackupSpec | None
    status: Mapping[str, Any]
    now: datetime
    spec_error: str | None = None
    node_found: bool = True
    node_error: str | None = None
    location: Mapping[str, Any] | None = None     # the effective location (spec, else the MayaNode's)
    location_error: str | None = None
    snapshots_enabled: bool = False
    usage: Usage = Usage()                        # NodeRestores in progress using it (looked up only when expiring)

    @property
    def phase(self) -> str | None:
        return self.status.get("phase")

    @property
    def step(self) -> str | None:
        return self.status.get("step")

    @property
    def has_identity(self) -> bool:
        encryption = (self.location or {}).get("encryption") or {}
        return bool((encryption.get("identitySecret") or {}).get("name"))

    @property
    def imported(self) -> bool:
        return self.spec is not None and self.spec.source is not None


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""
    message: str = ""
    requeue: float | None = 0.0


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=None)
    except ValueError:
        try:
            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).replace(tzinfo=None)
        except ValueError:
            return None


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def expires_at(spec: NodeBackupSpec | None, status: Mapping[str, Any]) -> datetime | None:
    """completedAt + spec.ttl (the TTL may change after completion, so it is recomputed every pass)."""
    if spec is None or not spec.ttl:
        return None
    completed = parse_time(status.get("completedAt"))
    return completed + parse_duration(spec.ttl) if completed else None


def decide(inputs: BackupInputs) -> Decision:
    """The next action. Every branch names why."""
    phase, now = inputs.phase, _naive(inputs.now)
    if phase in FINISHED:
        return _decide_finished(inputs, now)
    if inputs.spec is None:
        return Decision(Action.FAIL, "InvalidSpec", inputs.spec_error or "the spec is invalid")
    if phase is None:
        return Decision(Action.ACCEPT, "Accepted", f"backup of MayaNode {inputs.spec.node_ref.name} accepted")
    if phase == "New":
        if not inputs.node_found:
            return Decision(Action.FAIL, "NodeNotFound",
                            f"MayaNode {inputs.spec.node_ref.name} does not exist in namespace {inputs.namespace}")
        if inputs.node_error:
            return Decision(Action.FAIL, "InvalidNodeSpec",
                            f"MayaNode {inputs.spec.node_ref.name} has an invalid spec: {inputs.node_error}")
        if inputs.location is None:
            return Decision(Action.FAIL, "NoLocation",
                            "the backup has no spec.location and the MayaNode has no spec.backup.location")
        if inputs.location_error:
            return Decision(Action.FAIL, "InvalidLocation", inputs.location_error)
        return Decision(Action.START, "Started", "capture started")
    started = parse_time(inputs.status.get("startedAt")) or now
    step = inputs.step
    if step == "Snapshotting":
        if now - started > SNAPSHOT_DEADLINE:
            return Decision(Action.FAIL, "SnapshotTimeout",
                            f"the VolumeSnapshots were not readyToUse within {int(SNAPSHOT_DEADLINE.total_seconds())}s")
        return Decision(Action.SNAPSHOT, "Snapshotting", "waiting for the VolumeSnapshots")
    if step == "Storing" and inputs.imported:
        return Decision(Action.CHECK_IMPORTED, "CheckingImport", "checking the imported archive in the store")
    if step in ("Capturing", "Storing", None):
        return Decision(Action.CAPTURE, "Capturing", "capturing the node's identity")
    if step == "Verifying":
        spec = inputs.spec
        if not spec.verify:
            return Decision(Action.FINISH, "VerificationDisabled", "spec.verify is false")
        if not inputs.has_identity:
            return Decision(Action.FINISH, "NoIdentity",
                            "no identity Secret in the location's encryption: the archive cannot be decrypted here, "
                            "so it is not verified")
        return Decision(Action.VERIFY, "Verifying", "decrypting and checking the archive")
    return Decision(Action.FAIL, "UnknownStep", f"unknown step {step!r} in status")


def _decide_finished(inputs: BackupInputs, now: datetime) -> Decision:
    expiry = expires_at(inputs.spec, inputs.status)
    if expiry is not None and now >= expiry:
        if inputs.usage.blocks:
            return Decision(Action.HOLD, inputs.usage.reason, inputs.usage.message(
                f"the TTL {inputs.spec.ttl} ran out at {iso(expiry)}; expiry"), BLOCKED_REQUEUE_SECONDS)
        return Decision(Action.EXPIRE, "Expired", f"the TTL {inputs.spec.ttl} ran out at {iso(expiry)}")
    generation = inputs.generation
    if generation is not None and inputs.status.get("observedGeneration") != generation:
        if inputs.spec is not None and inputs.spec.verify and inputs.status.get("archive") and inputs.has_identity:
            return Decision(Action.REVERIFY, "Reverifying", "the spec changed: verifying the stored archive again")
        return Decision(Action.RESPEC, "SpecChanged", "the spec changed")
    if expiry is not None:
        return Decision(Action.IDLE, "WaitingForExpiry", "", min(MAX_IDLE_REQUEUE, (expiry - now).total_seconds() + 1))
    return Decision(Action.IDLE, "Done", "", None)


# --------------------------------------------------------------------------------------------------
# Status for each outcome
# --------------------------------------------------------------------------------------------------
@dataclass
class StepResult:
    status: dict[str, Any] = field(default_factory=dict)
    conditions: list[Condition] = field(default_factory=list)
    events: list[EventSpec] = field(default_factory=list)
    requeue: float | None = 0.0
    finished: bool = False


def accepted(inputs: BackupInputs) -> StepResult:
    node = inputs.spec.node_ref.name if inputs.spec else "?"
    return StepResult(
        status={"phase": "New", "observedGeneration": inputs.generation},
        conditions=[Condition("Completed", "False", "Pending", "the backup has not started yet")],
        events=[EventSpec("Normal", "Accepted", f"backup of MayaNode {node} accepted; capture starts next")],
    )


def started(inputs: BackupInputs) -> StepResult:
    if inputs.imported:
        step, what = "Storing", "checking the imported archive in the store"
    elif inputs.snapshots_enabled:
        step, what = "Snapshotting", "taking VolumeSnapshots of the PVCs, then capturing the identity files"
    else:
        step, what = "Capturing", "capturing the identity files and Secrets"
    return StepResult(
        status={"phase": "InProgress", "step": step, "startedAt": iso(inputs.now), "observedGeneration": inputs.generation},
        conditions=[Condition("Completed", "False", "InProgress", what)],
        events=[EventSpec("Normal", "Started", what)],
    )


def failed(inputs: BackupInputs, reason: str, message: str) -> StepResult:
    return StepResult(
        status={"phase": "Failed", "step": None, "completedAt": iso(inputs.now), "message": message[:1000],
                "observedGeneration": inputs.generation},
        conditions=[Condition("Completed", "False", reason, message[:2000])],
        events=[EventSpec("Warning", "Failed", f"{reason}: {message}"[:1000]
                          + _next_hint(reason, inputs))],
        requeue=None, finished=True,
    )


def _next_hint(reason: str, inputs: BackupInputs) -> str:
    node = inputs.spec.node_ref.name if inputs.spec else "the MayaNode"
    hints = {
        "NodeNotFound": f"; create MayaNode {node} or fix spec.nodeRef, then create a new NodeBackup",
        "NoLocation": "; set spec.location or the MayaNode's spec.backup.location, then create a new NodeBackup",
        "CriticalItemMissing": f"; check the pods of {node} and its Secrets, then create a new NodeBackup",
        "CaptureFailed": "; see `mayanode-operator backup describe` for the last error",
    }
    return hints.get(reason, "")


def transient_error(inputs: BackupInputs, what: str, message: str) -> StepResult:
    """A step failed in a way a retry may fix: retry until the deadline, then fail. Verification has a deadline of
    its own, from when the archive was stored: a slow capture does not shorten it."""
    status = inputs.status
    stored_at = parse_time((status.get("archive") or {}).get("storedAt")) if status.get("step") == "Verifying" else None
    started_at = stored_at or parse_time(status.get("startedAt")) or _naive(inputs.now)
    if _naive(inputs.now) - started_at > CAPTURE_DEADLINE:
        return failed(inputs, f"{what}Failed",
                      f"still failing after {int(CAPTURE_DEADLINE.total_seconds())}s: {message}")
    return StepResult(
        status={"message": f"retrying: {message}"[:1000]},
        conditions=[Condition("Completed", "False", f"{what}Retrying", message[:2000])],
        events=[EventSpec("Warning", f"{what}Retrying", message[:900])],
        requeue=RETRY_SECONDS,
    )


@dataclass(frozen=True)
class SnapshotView:
    component: str
    pvc: str
    name: str
    exists: bool
    ready: bool = False
    restore_size: str | None = None
    error: str | None = None


def snapshot_progress(inputs: BackupInputs, views: Sequence[SnapshotView]) -> tuple[list[SnapshotView], StepResult]:
    """Which VolumeSnapshots to create, and the status: Capturing once all are readyToUse (or failed: an
    error is recorded and the backup goes on; it ends PartiallyFailed)."""
    to_create = [v for v in views if not v.exists]
    infos = [{"component": v.component, "pvc": v.pvc, "name": v.name, "readyToUse": v.ready,
              **({"restoreSize": v.restore_size} if v.restore_size else {})} for v in views]
    errors = [v for v in views if v.error]
    pending = [v for v in views if not v.ready and not v.error]
    if pending:
        created = [EventSpec("Normal", "SnapshotRequested", f"VolumeSnapshot {v.name} of PVC {v.pvc} requested")
                   for v in to_create]
        return to_create, StepResult(status={"snapshots": infos}, events=created, requeue=SNAPSHOT_POLL_SECONDS)
    events = [EventSpec("Normal", "SnapshotsReady",
                        f"VolumeSnapshots ready: {', '.join(v.name for v in views if v.ready) or 'none'}")]
    status: dict[str, Any] = {"snapshots": infos, "step": "Capturing"}
    if errors:
        text = "; ".join(f"{v.name}: {v.error}" for v in errors)[:900]
        events = [EventSpec("Warning", "SnapshotFailed", text)]
        status["message"] = f"VolumeSnapshot failed: {text}"
    return [], StepResult(status=status, events=events)


def captured(inputs: BackupInputs, *, verdict: CaptureVerdict, items: Sequence[Mapping[str, Any]],
             missing: Sequence[Mapping[str, Any]], archive: Mapping[str, Any], node: Mapping[str, Any],
             snapshot_failed: bool = False) -> StepResult:
    """The archive is stored: record it and go on to verification."""
    message = verdict.message
    if snapshot_failed and inputs.status.get("message"):
        message = f"{message}; {inputs.status['message']}"
    return StepResult(
        status={"step": "Verifying", "items": list(items), "missing": list(missing) or None,
                "archive": dict(archive), "node": dict(node) or None, "message": message[:1000]},
        conditions=[Condition("Completed", "True", "ArchiveStored",
                              f"{len(items)} items, {archive.get('size')} bytes encrypted, stored at {archive.get('uri')}")],
        events=[EventSpec("Normal", "Stored", f"{len(items)} items encrypted to {len(archive.get('recipients') or [])} "
                                              f"recipient(s), {archive.get('size')} bytes, stored at {archive.get('uri')}")]
        + ([EventSpec("Warning", "ItemsMissing", verdict.message[:900])] if missing else []),
    )


def final_phase(inputs: BackupInputs) -> str:
    """Completed, or PartiallyFailed when an expected item or a VolumeSnapshot is missing."""
    status = inputs.status
    if status.get("missing"):
        return "PartiallyFailed"
    if any(not s.get("readyToUse") for s in status.get("snapshots") or []):
        return "PartiallyFailed"
    return "Completed"


def _verified_condition(result: VerifyResult | None, skip_reason: str, skip_message: str) -> Condition:
    if result is None:
        return Condition("Verified", "Unknown", skip_reason, skip_message)
    return Condition("Verified", result.status, result.reason, result.message[:2000])


def _verification_events(result: VerifyResult | None) -> list[EventSpec]:
    if result is None:
        return []
    if result.status == "True":
        return [EventSpec("Normal", "Verified", result.message[:900])]
    if result.status == "False":
        return [EventSpec("Warning", "VerificationFailed", f"{result.reason}: {result.message}"[:900])]
    return [EventSpec("Warning", "VerificationIncomplete", f"{result.reason}: {result.message}"[:900])]


def finished(inputs: BackupInputs, result: VerifyResult | None, skip_reason: str = "", skip_message: str = "") -> StepResult:
    phase = final_phase(inputs)
    expiry = expires_at(inputs.spec, {"completedAt": iso(inputs.now)})
    status = {"phase": phase, "step": None, "completedAt": iso(inputs.now),
              "expiresAt": iso(expiry) if expiry else None, "observedGeneration": inputs.generation}
    summary = f"{len(inputs.status.get('items') or [])} items stored at {(inputs.status.get('archive') or {}).get('uri')}"
    if phase == "PartiallyFailed":
        event = EventSpec("Warning", "PartiallyFailed", f"{summary}; {inputs.status.get('message') or ''}"[:1000])
    else:
        event = EventSpec("Normal", "Completed", summary[:1000])
    requeue = None
    if expiry is not None:
        requeue = min(MAX_IDLE_REQUEUE, max(0.0, (expiry - _naive(inputs.now)).total_seconds()) + 1)
    return StepResult(status=status, conditions=[_verified_condition(result, skip_reason, skip_message)],
                      events=_verification_events(result) + [event], requeue=requeue, finished=True)


def reverified(inputs: BackupInputs, result: VerifyResult) -> StepResult:
    expiry = expires_at(inputs.spec, inputs.status)
    return StepResult(
        status={"observedGeneration": inputs.generation, "expiresAt": iso(expiry) if expiry else None},
        conditions=[_verified_condition(result, "", ""), *cleared({"status": inputs.status}),
                    *_reverify_cleared(inputs)],
        events=_verification_events(result),
        requeue=min(MAX_IDLE_REQUEUE, (expiry - _naive(inputs.now)).total_seconds() + 1) if expiry else None,
        finished=True,
    )


def respecced(inputs: BackupInputs) -> StepResult:
    expiry = expires_at(inputs.spec, inputs.status)
    return StepResult(
        status={"observedGeneration": inputs.generation, "expiresAt": iso(expiry) if expiry else None},
        conditions=[*cleared({"status": inputs.status}), *_reverify_cleared(inputs)],
        requeue=min(MAX_IDLE_REQUEUE, max(0.0, (expiry - _naive(inputs.now)).total_seconds()) + 1) if expiry else None,
    )


REVERIFY_BLOCKED = "ReverifyBlocked"


def _reverify_cleared(inputs: BackupInputs) -> list[Condition]:
    return cleared({"status": inputs.status}, REVERIFY_BLOCKED, "SpecObserved", "the spec change was taken in")


def finished_step_failed(inputs: BackupInputs, action: Action, message: str) -> StepResult:
    """A finished backup's re-verification or expiry met an error (the identity Secret could not be read, the store
    refused a delete): the backup stays as it is — its phase, its archive, its last verification — and the step is
    tried again. A condition says why (ReverifyBlocked, or DeletionBlocked for an expiry), an event when that
    changes. The capture's deadline does not apply: what is finished cannot fail any more."""
    if action == Action.EXPIRE:
        what = ("the TTL ran out, but deleting the archive, its VolumeSnapshots or this NodeBackup failed: "
                f"{message}; retrying every {int(STORE_RETRY_SECONDS)}s (the backup is kept until then)")
        held = blocked({"status": inputs.status}, "DeleteFailed", what, STORE_RETRY_SECONDS, "ArchiveDeleteFailed")
    else:
        what = (f"verifying the stored archive again after the spec change failed: {message}; retrying every "
                f"{int(STORE_RETRY_SECONDS)}s (the last verification stands until then)")
        held = blocked({"status": inputs.status}, "ReverifyFailed", what, STORE_RETRY_SECONDS, "ReverifyFailed",
                       condition=REVERIFY_BLOCKED)
    # The spec change is not taken in until the step is done: the next pass decides the same step again.
    return StepResult(status={"observedGeneration": inputs.status.get("observedGeneration")},
                      conditions=held.conditions, events=held.events, requeue=held.requeue)


def expiring(inputs: BackupInputs, message: str) -> StepResult:
    return StepResult(
        conditions=[Condition("Expired", "True", "TTLExpired", message)],
        events=[EventSpec("Normal", "Expired", f"{message}: deleting the stored archive, its VolumeSnapshots and "
                                               f"this NodeBackup")],
        requeue=None,
    )


def expiry_held(inputs: BackupInputs, decision: Decision) -> StepResult:
    """The TTL ran out but a NodeRestore in progress uses the backup (or its NodeRestores cannot be read): keep
    everything, say so (DeletionBlocked; one event per new reason), look again soon."""
    held = blocked({"status": inputs.status}, decision.reason, decision.message, decision.requeue or 0.0)
    return StepResult(conditions=held.conditions, events=held.events, requeue=held.requeue)
