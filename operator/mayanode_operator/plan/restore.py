"""The NodeRestore state machine: which step is next, and the status each transition writes. Pure.

Steps, in order (the phase each belongs to in brackets):

    VerifyBackup, AcquireKeyLock                  [Verifying]     a failure here changes nothing
    ScaleDown                                     [ScalingDown]   previousReplicas recorded before scaling
    WriteFiles                                    [Writing]       key files and key shares through helper pods
    SwapSecrets (restoreSecrets)                  [SwappingSecrets] only the target's pods read them, and they are
                                                                  held at 0: done early, off the downtime's path
    StopOldNode (hand-off only), WaitKeySilent    [Guarding]      the old node stops only now: the slow, safe work
    (skipped when StopOldNode saw the stop and                    is done before, so the downtime is short
    passed the guard), WriteSignState, RemoveHelpers
    ScaleUp                                       [ScalingUp]
    WaitReady                                     [WaitingReady]
    AnnounceIP (when asked)                       [AnnouncingIP]  → Completed

A step is recorded with `startedAt` before it acts and `completedAt` when done; the next step starts only after.
A restarted operator finds the first step without `completedAt` and resumes it (a step that must happen once checks
the world before acting again). A Failed restore stays Failed until its spec changes (a new generation): then it
resumes at the failed step, or starts over when nothing had been touched.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

from ..api.restore import NodeRestoreSpec
from .conditions import Condition
from .events import EventSpec

VERIFY, LOCK, SCALE_DOWN, WRITE = "VerifyBackup", "AcquireKeyLock", "ScaleDown", "WriteFiles"
STOP_OLD, SILENT, SIGN_STATE, REMOVE_HELPERS = "StopOldNode", "WaitKeySilent", "WriteSignState", "RemoveHelpers"
SWAP, SCALE_UP, READY, ANNOUNCE = "SwapSecrets", "ScaleUp", "WaitReady", "AnnounceIP"

PHASE_OF = {
    VERIFY: "Verifying", LOCK: "Verifying", SCALE_DOWN: "ScalingDown", WRITE: "Writing",
    STOP_OLD: "Guarding", SILENT: "Guarding", SIGN_STATE: "Guarding", REMOVE_HELPERS: "Guarding",
    SWAP: "SwappingSecrets", SCALE_UP: "ScalingUp", READY: "WaitingReady", ANNOUNCE: "AnnouncingIP",
}
BEFORE_TOUCH = (VERIFY, LOCK)
FINISHED = ("Completed", "Failed")

# Events when a step completes (Normal) — reasons a program can match on.
DONE_REASON = {
    VERIFY: "BackupVerified", LOCK: "KeyLockAcquired", SCALE_DOWN: "ScaledDown", WRITE: "FilesWritten",
    STOP_OLD: "OldNodeStopped", SILENT: "KeySilent", SIGN_STATE: "SignStateWritten", REMOVE_HELPERS: "HelpersRemoved",
    SWAP: "SecretsSwapped", SCALE_UP: "ScaledUp", READY: "NodeReady", ANNOUNCE: "IPAnnounced",
}
START_REASON = {SCALE_DOWN: "ScalingDown", STOP_OLD: "StoppingOldNode", SWAP: "SwappingSecrets",
                SCALE_UP: "ScalingUp", ANNOUNCE: "AnnouncingIP"}


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_precise(moment: datetime) -> str:
    """With microseconds: step records feed the downtime measurement."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def steps_for(spec: NodeRestoreSpec, *, announce: bool) -> list[str]:
    steps = [VERIFY, LOCK, SCALE_DOWN, WRITE]
    if spec.restore_secrets:
        steps.append(SWAP)
    if spec.double_sign_guard.old_node is not None:
        steps.append(STOP_OLD)
    steps += [SILENT, SIGN_STATE, REMOVE_HELPERS, SCALE_UP, READY]
    if announce:
        steps.append(ANNOUNCE)
    return steps


# --------------------------------------------------------------------------------------------------
# Reading the recorded steps
# --------------------------------------------------------------------------------------------------
def step_record(status: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    return next((s for s in status.get("steps") or () if s.get("name") == name), None)


def step_done(status: Mapping[str, Any], name: str) -> bool:
    record = step_record(status, name)
    return bool(record and record.get("completedAt"))


def step_started_at(status: Mapping[str, Any], name: str) -> datetime | None:
    record = step_record(status, name)
    return parse_time(record.get("startedAt")) if record else None


def deadline_passed(status: Mapping[str, Any], name: str, seconds: float, now: datetime) -> bool:
    started = step_started_at(status, name)
    return started is not None and (now - started).total_seconds() > seconds


def node_is_down(status: Mapping[str, Any]) -> bool:
    """The restore scaled the node down (or may have: ScaleDown started) and has not brought it back."""
    return step_record(status, SCALE_DOWN) is not None and not step_done(status, SCALE_UP)


def scale_down_left_node_down(previous: Mapping[str, Any] | None, current: Mapping[str, int | None]) -> bool:
    """A ScaleDown that failed: did it scale anything? `previous` is status.previousReplicas (recorded before the
    first scale; absent: nothing was scaled), `current` the Deployments' spec.replicas now (None: not known). A
    component that ran before and is at 0 now was scaled by this restore; an unknown one counts as scaled."""
    if not previous:
        return False
    for component, before in previous.items():
        if not before:
            continue                       # already at 0 before the restore: not this restore's doing
        now = current.get(component)
        if now is None or int(now) == 0:
            return True
    return False


# --------------------------------------------------------------------------------------------------
# Several NodeRestores of one MayaNode: one at a time touches it
# --------------------------------------------------------------------------------------------------
def restore_engaged(status: Mapping[str, Any]) -> bool:
    """The restore has started changing its node (ScaleDown recorded): it cannot step back."""
    return step_record(status, SCALE_DOWN) is not None


def restore_precedence(restore: Mapping[str, Any]) -> tuple[int, str, str]:
    """Which of several unfinished NodeRestores of one MayaNode goes first: one that already changes the node, then
    the oldest (creationTimestamp), then by name (two created in the same second) — the same answer wherever it is
    computed (the restores themselves, the MayaNode's reconcile)."""
    meta = restore.get("metadata") or {}
    return (0 if restore_engaged(restore.get("status") or {}) else 1, str(meta.get("creationTimestamp") or ""),
            str(meta.get("name") or ""))


def unfinished_restores(node_name: str, restores: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The NodeRestores of MayaNode `node_name` that have not finished, the one that goes first first. One deleted
    before it started does not count (it will never act)."""
    out = []
    for restore in restores:
        meta, spec, status = restore.get("metadata") or {}, restore.get("spec") or {}, restore.get("status") or {}
        if (spec.get("nodeRef") or {}).get("name") != node_name or status.get("phase") in FINISHED:
            continue
        if meta.get("deletionTimestamp") and not status.get("phase"):
            continue
        out.append(restore)
    return sorted(out, key=restore_precedence)


def active_restore(node_name: str, restores: Sequence[Mapping[str, Any]]) -> str | None:
    """The NodeRestore that controls the node's workloads now (the first unfinished one), if any."""
    unfinished = unfinished_restores(node_name, restores)
    return str((unfinished[0].get("metadata") or {}).get("name")) if unfinished else None


def restore_ahead(name: str, node_name: str, restores: Sequence[Mapping[str, Any]]) -> str | None:
    """Another NodeRestore of the same MayaNode that goes before `name` (None: `name` goes first, or no other has
    unfinished business with the node). For a finished `name` (a Failed one asked to resume): any unfinished one."""
    active = active_restore(node_name, restores)
    return active if active is not None and active != name else None


# --------------------------------------------------------------------------------------------------
# The decision
# --------------------------------------------------------------------------------------------------
class Action(StrEnum):
    ACCEPT = "Accept"              # first sight: phase Pending
    WAIT_HALT = "WaitHalt"         # a halt the node's haltPolicy.restore names holds it back (before anything)
    WAIT_RESTORE = "WaitRestore"   # another NodeRestore of the same MayaNode goes first (before anything)
    STEP = "Step"                  # run (or resume) `step`
    COMPLETE = "Complete"          # every step is done
    FAIL = "Fail"                  # cannot go on (spec invalid, node gone)
    REARM = "Rearm"                # Failed, and the spec changed since: resume
    IDLE = "Idle"                  # finished: nothing to do, ever


@dataclass(frozen=True)
class RestoreInputs:
    spec: NodeRestoreSpec | None
    status: Mapping[str, Any]
    generation: int | None
    now: datetime
    announce: bool = False
    halt: str | None = None            # what holds the restore back (None: go ahead)
    node_found: bool = True
    spec_error: str | None = None
    ahead: str | None = None           # another NodeRestore of the same MayaNode that goes first (restore_ahead)


@dataclass(frozen=True)
class Decision:
    action: Action
    step: str | None = None
    resume: bool = False               # the step was started before (by an earlier pass or operator)
    reason: str = ""
    message: str = ""


def decide(inputs: RestoreInputs) -> Decision:
    status = inputs.status
    phase = status.get("phase")
    if phase == "Completed":
        return Decision(Action.IDLE, reason="Completed", message="the restore is complete; re-applying does nothing")
    if phase == "Failed":
        if inputs.generation is not None and inputs.generation != status.get("observedGeneration") \
                and inputs.spec is not None:
            if inputs.ahead:
                # Resumed, it would change the node under the other restore's hands: it stays Failed until that one
                # has finished.
                return Decision(Action.WAIT_RESTORE, step=status.get("failedStep"), reason="WaitingForRestore",
                                message=f"the spec changed after the failure, but NodeRestore {inputs.ahead} of the "
                                        f"same MayaNode has not finished: this one resumes at "
                                        f"{status.get('failedStep')} only after it")
            return Decision(Action.REARM, reason="SpecChanged",
                            message=f"the spec changed after the failure: resuming at {status.get('failedStep')}")
        return Decision(Action.IDLE, reason="Failed", message=str(status.get("message") or ""))
    if inputs.spec is None:
        return Decision(Action.FAIL, step=status.get("step") or VERIFY, reason="InvalidSpec",
                        message=inputs.spec_error or "the spec is invalid")
    if not phase:
        return Decision(Action.ACCEPT, reason="Accepted", message="restore accepted")
    order = steps_for(inputs.spec, announce=inputs.announce)
    # A hand-off whose stop the operator saw for itself passed the guard at StopOldNode: no silent blocks to wait for.
    skipped = {SILENT} if guard_passed_at(status) == STOP_OLD else set()
    pending = [s for s in order if not step_done(status, s) and s not in skipped]
    if not pending:
        return Decision(Action.COMPLETE, reason="Completed", message="every step is done")
    step = pending[0]
    started = step_record(status, step) is not None
    if not inputs.node_found:
        return Decision(Action.FAIL, step=step, reason="NodeNotFound",
                        message="the MayaNode named in spec.nodeRef does not exist")
    if inputs.ahead:
        if not restore_engaged(status):
            return Decision(Action.WAIT_RESTORE, step=step, reason="WaitingForRestore",
                            message=f"waiting for NodeRestore {inputs.ahead} of the same MayaNode to finish: one "
                                    f"restore at a time changes a node (nothing was touched yet)")
        # Both changed the node (created in the same second, or before restores waited for each other): the one that
        # goes first carries on, this one stops touching it.
        return Decision(Action.FAIL, step=step, reason="ConcurrentRestore",
                        message=f"NodeRestore {inputs.ahead} of the same MayaNode is restoring it too and goes first: "
                                f"this one stopped at {step} and changes nothing more")
    if step == VERIFY and not started and inputs.halt:
        return Decision(Action.WAIT_HALT, step=step, reason="WaitingForHalt", message=inputs.halt)
    return Decision(Action.STEP, step=step, resume=started, reason="Next", message=step)


# --------------------------------------------------------------------------------------------------
# Which halts the restore obeys
# --------------------------------------------------------------------------------------------------
def api_reachable(node: Mapping[str, Any]) -> bool:
    conditions = ((node.get("status") or {}).get("conditions")) or ()
    return any(c.get("type") == "NodeAPIReachable" and c.get("status") == "True" for c in conditions)


def halts_of(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((((node.get("status") or {}).get("network")) or {}).get("halts") or ())


def restore_halts(target: Mapping[str, Any], peers: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], str]:
    """The network halts a restore obeys, and where they come from (empty: the target's own, current view).

    The node being restored is often down, so its own status may be stale: then a MayaNode of the same network whose
    node API answers is asked instead (the first by namespace/name, so the answer does not flap); with none, the
    target's last observation is used, and the message says so."""
    if api_reachable(target):
        return halts_of(target), ""
    network = (target.get("spec") or {}).get("network")
    me = ((target.get("metadata") or {}).get("namespace"), (target.get("metadata") or {}).get("name"))
    live = sorted((p for p in peers if (p.get("spec") or {}).get("network") == network and api_reachable(p)
                   and ((p.get("metadata") or {}).get("namespace"), (p.get("metadata") or {}).get("name")) != me),
                  key=lambda p: ((p.get("metadata") or {}).get("namespace", ""), (p.get("metadata") or {}).get("name", "")))
    if live:
        meta = live[0].get("metadata") or {}
        return halts_of(live[0]), (f"as MayaNode {meta.get('namespace')}/{meta.get('name')} sees the network (this "
                                   f"node's API does not answer)")
    return halts_of(target), ("as this node last saw the network before its API stopped answering; no other MayaNode "
                              f"of {network} answers")


# --------------------------------------------------------------------------------------------------
# Transitions (each returns the new status; the reconcile writes the difference)
# --------------------------------------------------------------------------------------------------
def _copy(status: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(status))


def _set_step(new: dict[str, Any], name: str, **fields: Any) -> None:
    steps = [dict(s) for s in new.get("steps") or ()]
    for record in steps:
        if record.get("name") == name:
            record.update({k: v for k, v in fields.items() if v is not None})
            break
    else:
        steps.append({"name": name, **{k: v for k, v in fields.items() if v is not None}})
    new["steps"] = steps


def accepted(status: Mapping[str, Any], now: datetime, generation: int | None, message: str) -> dict[str, Any]:
    new = _copy(status)
    new.update({"phase": "Pending", "observedGeneration": generation, "startedAt": iso(now), "message": message})
    return new


def waiting(status: Mapping[str, Any], message: str, generation: int | None) -> dict[str, Any]:
    new = _copy(status)
    new.update({"message": message, "observedGeneration": generation})
    return new


def begin(status: Mapping[str, Any], step: str, now: datetime, message: str | None = None,
          **extra: Any) -> dict[str, Any]:
    """`step` starts (recorded before it acts). A step already started keeps its first startedAt."""
    new = _copy(status)
    if step_record(new, step) is None:
        _set_step(new, step, startedAt=iso_precise(now), message=message)
    elif message:
        _set_step(new, step, message=message)
    new.update({"phase": PHASE_OF[step], "step": step, **extra})
    if message:
        new["message"] = message
    return new


def complete(status: Mapping[str, Any], step: str, now: datetime, message: str, **extra: Any) -> dict[str, Any]:
    new = begin(status, step, now)
    _set_step(new, step, completedAt=iso_precise(now), message=message)
    new.update({"message": message, **extra})
    return new


def progress(status: Mapping[str, Any], step: str, now: datetime, message: str, **extra: Any) -> dict[str, Any]:
    """A waiting step says where it is (the step record and the top-level message)."""
    return begin(status, step, now, message, **extra)


def failed(status: Mapping[str, Any], step: str, now: datetime, reason: str, message: str,
           next_action: str, generation: int | None, **extra: Any) -> dict[str, Any]:
    new = begin(status, step, now) if step in PHASE_OF else _copy(status)
    if step in PHASE_OF:
        _set_step(new, step, message=f"{reason}: {message}")
    new.update({"phase": "Failed", "failedStep": step, "message": f"{reason}: {message}", "nextAction": next_action,
                "nodeLeftDown": node_is_down(new), "completedAt": iso(now), "observedGeneration": generation,
                **extra})
    return new


def rearmed(status: Mapping[str, Any], now: datetime, generation: int | None) -> dict[str, Any]:
    """Resume a Failed restore after a spec change: from the failed step, or from the start when nothing was
    touched (VerifyBackup and AcquireKeyLock run again: the world may have changed)."""
    new = _copy(status)
    failed_step = str(new.get("failedStep") or VERIFY)
    if failed_step in BEFORE_TOUCH or not step_record(new, SCALE_DOWN):
        new["steps"] = []
        new["phase"], new["step"] = "Pending", None
    else:
        new["steps"] = [s for s in new.get("steps") or () if s.get("name") != failed_step]
        new["phase"], new["step"] = PHASE_OF.get(failed_step, "Pending"), failed_step
    guard = dict(new.get("guard") or {})
    guard.pop("lockHolder", None)
    new.update({"guard": guard or None, "failedStep": None, "nextAction": None, "nodeLeftDown": None,
                "completedAt": None, "observedGeneration": generation,
                "message": f"resumed after a spec change at {failed_step}"})
    return new


def completed(status: Mapping[str, Any], now: datetime, generation: int | None) -> dict[str, Any]:
    new = _copy(status)
    down = new.get("downtimeSeconds")
    summary = "restore completed" + (f"; the node was down {down:.1f}s" if isinstance(down, (int, float)) else "")
    new.update({"phase": "Completed", "step": None, "completedAt": iso(now), "message": summary,
                "observedGeneration": generation})
    return new


# --------------------------------------------------------------------------------------------------
# Conditions and events
# --------------------------------------------------------------------------------------------------
def conditions_for(status: Mapping[str, Any]) -> list[Condition]:
    phase = status.get("phase")
    failed_step = status.get("failedStep")
    message = str(status.get("message") or "")
    reason = message.split(":", 1)[0] if phase == "Failed" and ":" in message else ""
    out: list[Condition] = []
    verify = step_record(status, VERIFY)
    if step_done(status, VERIFY):
        out.append(Condition("Verified", "True", "BackupVerified", str(verify.get("message") or "")))
    elif phase == "Failed" and failed_step == VERIFY:
        out.append(Condition("Verified", "False", reason or "VerificationFailed", message))
    else:
        out.append(Condition("Verified", "Unknown", "NotYetVerified", "the backup is verified before anything else"))
    guard = status.get("guard") or {}
    guard_step = guard_passed_at(status)
    if guard_step is not None:
        out.append(Condition("Guarded", "True", str(guard.get("method") or "Silent"),
                             str((step_record(status, guard_step) or {}).get("message") or "")))
    elif phase == "Failed" and failed_step in (LOCK, STOP_OLD, SILENT):
        out.append(Condition("Guarded", "False", reason or "GuardFailed", message))
    else:
        out.append(Condition("Guarded", "Unknown", "NotYetGuarded",
                             "the old key must be proven silent (or the old node acknowledged destroyed)"))
    down = bool(status.get("nodeLeftDown")) if phase == "Failed" else node_is_down(status)
    if down:
        out.append(Condition("ScaledDown", "True", "NodeHeldDown" if phase == "Failed" else "Restoring",
                             "mayanode and bifrost are at 0 replicas" + (
                                 ": the restore failed, see nextAction" if phase == "Failed" else
                                 " while the restore runs")))
    else:
        out.append(Condition("ScaledDown", "False", "NotScaledDown" if not step_done(status, SCALE_UP) else
                             "ScaledBackUp", "the node runs at its usual replicas"))
    if phase == "Completed":
        out.append(Condition("Completed", "True", "RestoreCompleted", message))
    else:
        out.append(Condition("Completed", "False", "InProgress" if phase != "Failed" else "RestoreFailed", message))
    if phase == "Failed":
        out.append(Condition("Failed", "True", reason or "RestoreFailed",
                             f"{message}. Next: {status.get('nextAction') or ''}"))
    else:
        out.append(Condition("Failed", "False", "NoFailure", ""))
    return out


def guard_passed_at(status: Mapping[str, Any]) -> str | None:
    """The step at which the double-sign guard passed: WaitKeySilent, or StopOldNode for a hand-off that proves the
    stop itself (its guard evidence carries `passedAt`)."""
    if step_done(status, SILENT):
        return SILENT
    if step_done(status, STOP_OLD) and (status.get("guard") or {}).get("passedAt"):
        return STOP_OLD
    return None


def step_done_event(step: str, message: str) -> EventSpec:
    return EventSpec("Normal", DONE_REASON.get(step, step), message)


def step_start_event(step: str, message: str) -> EventSpec | None:
    reason = START_REASON.get(step)
    return EventSpec("Normal", reason, message) if reason else None


def failure_event(status: Mapping[str, Any]) -> EventSpec:
    message = str(status.get("message") or "")
    reason = message.split(":", 1)[0] if ":" in message else "RestoreFailed"
    prefix = "the node is LEFT SCALED DOWN (0 replicas). " if status.get("nodeLeftDown") else "nothing was changed. "
    return EventSpec("Warning", reason or "RestoreFailed",
                     f"{message}; {prefix}Next: {status.get('nextAction') or ''}")


# --------------------------------------------------------------------------------------------------
# What a person should do after a failure
# --------------------------------------------------------------------------------------------------
def next_action(step: str, *, namespace: str, restore: str, node: str, spec: NodeRestoreSpec | None,
                node_down: bool, cons_pub_key: str | None = None, deployments: Sequence[str] = ("mayanode", "bifrost"),
                reason: str = "") -> str:
    if step == READY:
        return (f"the restored node {namespace}/{node} did not become Ready: check its pods "
                f"(`kubectl -n {namespace} get pods`, logs). Raising spec.timeouts.readySeconds resumes the wait")
    if step == ANNOUNCE:
        return (f"the node {namespace}/{node} runs; announce its IP with a node action "
                f"(spec.nodeActions: [{{id: ..., action: AnnounceIP}}]) on the MayaNode")
    if not node_down:
        return (f"nothing was changed on MayaNode {namespace}/{node}. Fix the cause above, then "
                f"`kubectl -n {namespace} delete noderestore {restore}` and apply it again")
    key = f" with consensus key {cons_pub_key}" if cons_pub_key else ""
    give_up = (f"to give up instead, once you are sure no other node signs{key}: "
               f"`kubectl -n {namespace} scale deployment {' '.join(deployments)} --replicas=1` and delete the "
               f"NodeRestore")
    if step in (STOP_OLD, SILENT):
        old = spec.double_sign_guard.old_node if spec else None
        stop = (f"stop the old node (MayaNode {old.namespace or namespace}/{old.name}: set its spec.suspend: true) "
                if old else "stop the old node so its key falls silent ")
        return (f"the node {namespace}/{node} stays at 0 replicas. Either {stop}and raise "
                f"spec.timeouts.guardSeconds, or, if the old node is destroyed, set "
                f"spec.doubleSignGuard.oldNodeDestroyed {{acknowledged: true, reason: ...}}: changing the spec resumes "
                f"the restore at {step}; {give_up}")
    return (f"the node {namespace}/{node} stays at 0 replicas with the restore stopped at {step}. Fix the cause "
            f"above, then change this NodeRestore's spec (e.g. raise a timeout) to resume at {step}; {give_up}")
