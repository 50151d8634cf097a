"""The upgrade rollout: a state machine kept in `status.upgrade`, and the fleet budget. Pure.

Steps (each idempotent; the step lives in status, so a restarted operator resumes exactly there):

    [PreUpgradeBackup] → [AcquireBudget] → Mayanode | StopOld (flag day) → MayanodeHealth
        → Bifrost → BifrostHealth → SetVersion → done
    any health step that fails → Rollback → Failed (Degraded)

A step is *entered* by writing it to status at the end of a pass; its side effect (an image patch,
a NodeBackup, a Lease write) is done in the following passes until it shows in the observation.
Nothing has changed on the node before Mayanode/StopOld, so until then the upgrade can still be
called off (target changed, a gate closed again). `set-version` is the one action that is not
idempotent: `versionAnnounced` is written to status before it is sent (a checkpoint, its message
`SET_VERSION_SENDING` until the answer replaces it), so it is not sent twice. A checkpoint whose answer
never reached the record (the operator stopped in between, or the checkpoint's own answer was lost) may
or may not have been sent: the chain decides. It is sent again only when the chain has not recorded
the version `SET_VERSION_CONFIRM_TIMEOUT` after the checkpoint, as a pending IP announcement or mimir
vote is, and never while the chain's record cannot be read (then it waits and says why).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from ..api.mayanode import MayaNodeSpec, NodeActionType, UpgradeGateName, UpgradeStep, UpgradeStrategy
from ..observe.snapshot import NodeApiObservation, WorkloadObservation
from ..plan.conditions import Condition
from ..plan.events import EventSpec
from . import versions
from .upgrade_gates import GateOutcome, first_blocking

G = UpgradeGateName
S = UpgradeStep

CRASH_LOOP_RESTARTS = 3          # a new container that restarted this often has failed, no need to wait longer
FAILING_WAIT_REASONS = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                        "CreateContainerConfigError", "CreateContainerError", "RunContainerError")
FLAG_DAY_GRACE_BLOCKS = 600      # a flag day this far behind the chain is an ordinary upgrade (gates apply)
FLAG_DAY_NEAR_BLOCKS = 50        # within this many blocks of a flag day, the chain height is recorded and watched
HISTORY_LIMIT = 20
ACTIVE_STEP_REQUEUE = 0.25       # seconds between passes while an image change is under way (pods, health)
STEP_ADVANCE_REQUEUE = 0.05      # a step was entered: do its side effect right away
NEAR_FLAG_DAY_REQUEUE = 1.0
SET_VERSION_SENDING = "sending set-version"     # the checkpoint's message; the send's answer replaces it
SET_VERSION_CONFIRM_TIMEOUT = timedelta(minutes=5)   # as external_ip/mimir_votes PENDING_TIMEOUT
SET_VERSION_CONFIRM_REQUEUE = 10.0               # seconds between looks at the chain meanwhile
PRE_CHANGE_STEPS = (S.PRE_UPGRADE_BACKUP, S.ACQUIRE_BUDGET)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> datetime | None:
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=timezone.utc)
    if not isinstance(text, str) or not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


# ==================================================================================================
# Fleet budget (a Lease per rollout group)
# ==================================================================================================
@dataclass(frozen=True)
class Holder:
    node: str                 # "namespace/name"
    version: str
    acquired: datetime
    renewed: datetime


@dataclass(frozen=True)
class CanaryRecord:
    version: str
    node: str
    result: str               # InProgress | Succeeded | Failed


@dataclass(frozen=True)
class BudgetState:
    holders: tuple[Holder, ...] = ()
    canaries: tuple[CanaryRecord, ...] = ()

    def holder(self, node: str) -> Holder | None:
        return next((h for h in self.holders if h.node == node), None)

    def canary(self, version: str) -> CanaryRecord | None:
        return next((c for c in self.canaries if c.version == version), None)


@dataclass(frozen=True)
class FleetMember:
    """Another MayaNode of the rollout group, as its status says."""

    node: str
    upgrading: bool                     # an upgrade past AcquireBudget is under way
    succeeded: tuple[str, ...] = ()     # versions it upgraded to successfully (from history)
    failed: tuple[str, ...] = ()        # versions whose upgrade failed or rolled back


@dataclass(frozen=True)
class BudgetDecision:
    kind: Literal["held", "acquire", "blocked"]
    gate: UpgradeGateName = G.ROLLOUT_BUDGET
    reason: str = ""
    message: str = ""
    new_state: BudgetState | None = None      # to write (None: nothing to write)


def live_holders(state: BudgetState, now: datetime, lease_seconds: float,
                 fleet: Mapping[str, FleetMember]) -> list[Holder]:
    """Holders that still count: renewed within the lease duration, or whose MayaNode says it is upgrading
    (an operator that was down longer than the lease must not free a slot that is still in use)."""
    alive = []
    for holder in state.holders:
        fresh = (now - holder.renewed).total_seconds() < lease_seconds
        member = fleet.get(holder.node)
        if fresh or (member is not None and member.upgrading):
            alive.append(holder)
    return alive


def plan_budget(state: BudgetState, *, me: str, version: str, max_concurrent: int, canary: bool, now: datetime,
                lease_seconds: float, fleet: Mapping[str, FleetMember]) -> BudgetDecision:
    """May `me` start upgrading to `version` now? Reclaims expired holders, renews its own slot.

    An own entry that was not renewed within the lease is not a slot this node holds: it may be a leftover
    (an upgrade that ended without releasing it) and others may have reclaimed it meanwhile; the node asks
    for a slot like any other, so the budget and the canary still apply."""
    mine = state.holder(me)
    if mine is not None and (now - mine.renewed).total_seconds() >= lease_seconds:
        mine = None
        state = replace(state, holders=tuple(h for h in state.holders if h.node != me))
    if mine is not None:
        renew = (now - mine.renewed).total_seconds() >= lease_seconds / 3 or mine.version != version
        new_state = None
        if renew:
            new_state = replace(state, holders=tuple(
                replace(h, renewed=now, version=version) if h.node == me else h for h in state.holders))
        return BudgetDecision("held", message="this node holds a rollout slot", new_state=new_state)
    alive = [h for h in live_holders(state, now, lease_seconds, fleet) if h.node != me]
    canaries = state.canaries
    if canary:
        record = state.canary(version)
        if record is not None and record.result == "InProgress" and record.node != me:
            member = fleet.get(record.node)
            if member is not None and version in member.succeeded:
                record = replace(record, result="Succeeded")
            elif member is not None and version in member.failed:
                record = replace(record, result="Failed")
        if record is None:
            canaries = (*[c for c in canaries if c.version != version], CanaryRecord(version, me, "InProgress"))
            canaries = canaries[-10:]
        elif record.result == "Failed" and record.node != me:
            return BudgetDecision("blocked", G.CANARY, "CanaryFailed",
                                  f"the canary {record.node} failed to upgrade to {version}: the rest of the group "
                                  "waits (change the target to try another version)")
        elif record.result == "InProgress" and record.node != me:
            return BudgetDecision("blocked", G.CANARY, "WaitingForCanary",
                                  f"waiting for the canary {record.node} to finish its upgrade to {version}")
        else:
            canaries = tuple(record if c.version == version else c for c in canaries)
    if len(alive) >= max_concurrent:
        names = ", ".join(sorted(h.node for h in alive))
        return BudgetDecision("blocked", G.ROLLOUT_BUDGET, "BudgetExhausted",
                              f"{len(alive)}/{max_concurrent} nodes of the rollout group are upgrading ({names})")
    holders = (*alive, Holder(me, version, now, now))
    return BudgetDecision("acquire", message="rollout slot free", new_state=BudgetState(tuple(holders), canaries))


def release_budget(state: BudgetState, *, me: str, version: str, result: str | None) -> BudgetState:
    """Drop `me` from the holders; as the canary of `version`, record how it went."""
    canaries = state.canaries
    if result is not None:
        canaries = tuple(replace(c, result=result) if c.version == version and c.node == me and
                         c.result == "InProgress" else c for c in canaries)
    return BudgetState(tuple(h for h in state.holders if h.node != me), canaries)


def renew_holder(state: BudgetState, *, me: str, version: str, now: datetime, lease_seconds: float) -> BudgetState:
    """Keep `me` a holder while its images change (re-added if someone removed it: it is committed)."""
    mine = state.holder(me)
    if mine is None:
        return replace(state, holders=(*state.holders, Holder(me, version, now, now)))
    if (now - mine.renewed).total_seconds() < lease_seconds / 3 and mine.version == version:
        return state
    return replace(state, holders=tuple(replace(h, renewed=now, version=version) if h.node == me else h
                                        for h in state.holders))


def budget_to_json(state: BudgetState) -> tuple[str, str]:
    holders = [{"node": h.node, "version": h.version, "acquired": iso(h.acquired), "renewed": iso(h.renewed)}
               for h in state.holders]
    canaries = [{"version": c.version, "node": c.node, "result": c.result} for c in state.canaries]
    return json.dumps(holders, sort_keys=True), json.dumps(canaries, sort_keys=True)


def budget_from_json(holders_text: str | None, canaries_text: str | None) -> BudgetState:
    """Tolerant: a Lease someone edited by hand gives an empty (not a crashing) state."""
    holders: list[Holder] = []
    canaries: list[CanaryRecord] = []
    try:
        for item in json.loads(holders_text or "[]"):
            acquired, renewed = parse_time(item.get("acquired")), parse_time(item.get("renewed"))
            if item.get("node") and acquired and renewed:
                holders.append(Holder(str(item["node"]), str(item.get("version") or ""), acquired, renewed))
    except (ValueError, TypeError, AttributeError):
        holders = []
    try:
        for item in json.loads(canaries_text or "[]"):
            if item.get("version") and item.get("node"):
                canaries.append(CanaryRecord(str(item["version"]), str(item["node"]),
                                             str(item.get("result") or "InProgress")))
    except (ValueError, TypeError, AttributeError):
        canaries = []
    return BudgetState(tuple(holders), tuple(canaries))


# ==================================================================================================
# Health of a step
# ==================================================================================================
@dataclass(frozen=True)
class Health:
    healthy: bool
    failed_fast: bool = False      # no point waiting for the deadline
    reason: str = ""               # CamelCase: CrashLoop, NotReady, NotSyncing, VersionMismatch, …
    message: str = ""


def workload_health(workload: WorkloadObservation, image: str) -> Health:
    """The Deployment runs `image` in exactly one ready pod and no old pod is left."""
    if not workload.exists:
        return Health(False, True, "DeploymentMissing", f"deployment {workload.name} not found")
    if workload.image != image:
        return Health(False, False, "ImageNotApplied", f"{workload.name} runs {workload.image}, not {image}")
    for pod in workload.pods:
        if pod.waiting_reason in FAILING_WAIT_REASONS and (
                pod.restarts >= CRASH_LOOP_RESTARTS or pod.waiting_reason != "CrashLoopBackOff"):
            reason = "CrashLoop" if pod.waiting_reason == "CrashLoopBackOff" else pod.waiting_reason
            return Health(False, pod.waiting_reason == "CrashLoopBackOff", reason,
                          f"pod {pod.name}: {pod.waiting_reason} (restarts {pod.restarts})")
    terminating = [p.name for p in workload.pods if p.terminating]
    if terminating:
        return Health(False, False, "OldPodStopping", f"waiting for {', '.join(terminating)} to stop")
    if workload.observed_generation < workload.generation:
        return Health(False, False, "NotReady", f"{workload.name}: the deployment controller has not seen the change yet")
    stale = [p.name for p in workload.pods if p.images and image not in p.images]
    if stale:
        return Health(False, False, "OldPodStopping", f"old pod {', '.join(stale)} still present")
    new_ready = [p for p in workload.pods if p.ready and (not p.images or image in p.images)]
    if workload.updated_replicas < 1 or workload.ready_replicas < 1 or not new_ready:
        return Health(False, False, "NotReady", f"{workload.name} has no ready pod of the new version yet")
    return Health(True, message=f"{workload.name} ready on {image}")


def mayanode_health(workload: WorkloadObservation, api: NodeApiObservation, image: str, version: str) -> Health:
    """Ready, the node API answers with querier == version, and it is not catching up."""
    pods = workload_health(workload, image)
    if not pods.healthy:
        return pods
    if not api.reachable:
        err = api.error_for("version") or api.error_for("status")
        return Health(False, False, "NotReady", f"node API unreachable: {err.message if err else 'no answer'}")
    querier = api.network.querier_version
    if querier is None or versions.compare(querier, version) != 0:
        return Health(False, False, "VersionMismatch", f"the node API reports version {querier}, expected {version}")
    if api.chain is None:
        return Health(False, False, "NotSyncing", "no RPC status from the node")
    if api.chain.catching_up:
        return Health(False, False, "NotSyncing", f"the node is catching up (height {api.chain.height})")
    return Health(True, message=f"mayanode {version} ready and in sync at height {api.chain.height}")


# ==================================================================================================
# Flag days
# ==================================================================================================
@dataclass(frozen=True)
class FlagDayView:
    target: str | None                 # what the node should run now
    flag_day_height: int | None        # the flag day that set it (None: spec.version)
    next_height: int | None            # the next flag day still ahead
    next_version: str | None
    effective_height: int | None
    known_height: int | None = None    # the highest height seen (what status.upgrade.lastHeight keeps)


def mayanode_halted(workload: WorkloadObservation, api: NodeApiObservation) -> bool:
    """The old binary stopped at a flag day: it panics there, so its pod is not ready or its API is gone."""
    return not api.reachable or (workload.exists and workload.desired_replicas > 0 and workload.ready_replicas < 1)


def highest_height(*heights: Any) -> int | None:
    """The highest of the heights on record (status.upgrade.lastHeight, status.chain.height); None if none is."""
    return max((h for h in heights if isinstance(h, int) and not isinstance(h, bool)), default=None)


def flag_day_view(spec: MayaNodeSpec, height: int | None, last_height: int | None, halted: bool,
                  in_flight: int | None = None) -> FlagDayView:
    """The version to run at the current height. The old binary halts at a flag day's height H having committed
    H-1, so a node seen at H-1 whose mayanode stopped has reached H.

    `height` is this pass's observation (None: the node API did not answer), `last_height` the highest height
    known from before (status.upgrade.lastHeight, status.chain.height): the known height is the highest of them,
    it never moves backwards. The +1 of a halted node is a conclusion of this pass, never a height seen, so it is
    not part of `known_height` (recording it would make the height creep by one at every pass). `in_flight`: the
    flag day of an upgrade under way (status.upgrade.current.flagDayHeight); that height was reached, whatever a
    stale or missing observation says, as long as the schedule still has it."""
    known = max((h for h in (height, last_height) if h is not None), default=None)
    effective = known + 1 if (known is not None and halted) else known
    if in_flight is not None and any(e.height == in_flight for e in spec.upgrade.height_schedule):
        effective = max(effective if effective is not None else in_flight, in_flight)
    target = spec.target_version(effective)
    reached = [e for e in spec.upgrade.height_schedule if effective is not None and e.height <= effective]
    entry = max(reached, key=lambda e: e.height) if reached else None
    upcoming = spec.next_flag_day(effective)
    flag_height = None
    if entry is not None and effective is not None and effective - entry.height <= FLAG_DAY_GRACE_BLOCKS:
        flag_height = entry.height
    return FlagDayView(target, flag_height, upcoming.height if upcoming else None,
                       upcoming.version if upcoming else None, effective, known)


def status_target_version(spec: MayaNodeSpec, height: int | None, status: Mapping[str, Any], halted: bool) -> str | None:
    """status.targetVersion: what the upgrade facet plans toward, from the same heights (this pass's, the last
    ones on record, a flag-day upgrade under way), so that a halted old binary at a flag day does not show the old
    version as the target."""
    upgrade = status.get("upgrade") or {}
    last_known = highest_height(upgrade.get("lastHeight"), (status.get("chain") or {}).get("height"))
    return flag_day_view(spec, height, last_known, halted,
                         in_flight=(upgrade.get("current") or {}).get("flagDayHeight")).target


def keeps_last_height(spec: MayaNodeSpec, known: int | None, next_flag_day: tuple[int, str] | None,
                      in_flight: int | None) -> bool:
    """Whether status.upgrade.lastHeight is kept: near a flag day ahead (the old binary halts there and stops
    answering, so the last height it answered with is what shows the flag day was reached), while a flag-day
    upgrade is under way, and within the grace after a flag day (a node API that stops answering then must not
    make a stale, lower status.chain.height look like the flag day was not reached)."""
    if known is None:
        return False
    if in_flight is not None:
        return True
    if next_flag_day is not None and next_flag_day[0] - known <= FLAG_DAY_NEAR_BLOCKS:
        return True
    return any(0 <= known + 1 - e.height <= FLAG_DAY_GRACE_BLOCKS for e in spec.upgrade.height_schedule)


# ==================================================================================================
# The rollout planner
# ==================================================================================================
@dataclass(frozen=True)
class BackupView:
    name: str
    exists: bool
    phase: str | None = None


@dataclass(frozen=True)
class Action:
    kind: Literal["CreateBackup", "SetImage", "SendSetVersion", "AcquireBudget", "RenewBudget", "ReleaseBudget"]
    deployment: str = ""
    container: str = ""
    image: str = ""
    backup_name: str = ""
    budget: BudgetState | None = None
    result: str | None = None            # ReleaseBudget: the canary's result


@dataclass(frozen=True)
class RolloutInputs:
    spec: MayaNodeSpec
    node: str                                    # "namespace/name"
    now: datetime
    mayanode: WorkloadObservation
    bifrost: WorkloadObservation
    api: NodeApiObservation
    previous: Mapping[str, Any] | None           # status.upgrade as stored
    target: str | None
    flag_day_height: int | None = None
    gates: Sequence[GateOutcome] = ()            # evaluated for `target` (not consulted once images changed)
    backup: BackupView | None = None             # the PreUpgrade NodeBackup, when one is asked for
    budget: BudgetDecision | None = None         # None: no rollout group (the node is its own group)
    announced_version: str | None = None         # the node account's version on chain
    locked: str | None = None                    # ctx.workloads_locked
    approval: str | None = None                  # a pending Upgrade node action id
    next_flag_day: tuple[int, str] | None = None
    last_height: int | None = None               # the highest height known (FlagDayView.known_height): kept in
                                                 # status near a flag day and while one is under way


@dataclass
class RolloutPlan:
    upgrade: dict[str, Any]                      # the whole `status.upgrade`
    actions: list[Action] = field(default_factory=list)
    checkpoint: bool = False                     # write `upgrade` to status before the actions (set-version)
    conditions: list[Condition] = field(default_factory=list)
    events: list[EventSpec] = field(default_factory=list)
    requeue_after: float | None = None


def pending_approval(spec: MayaNodeSpec, previous: Mapping[str, Any] | None,
                     done_ids: Sequence[str] = ()) -> str | None:
    """The first Upgrade node action not yet used by an upgrade (nor recorded as done by the nodeActions facet)."""
    used = set(done_ids)
    for item in (previous or {}).get("history") or []:
        if item.get("requestId"):
            used.add(item["requestId"])
    current = (previous or {}).get("current") or {}
    if current.get("requestId"):
        used.add(current["requestId"])
    for request in spec.node_actions:
        if request.action == NodeActionType.UPGRADE and request.id not in used:
            return request.id
    return None


def finished_request(previous: Mapping[str, Any] | None, upgrade: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """The Upgrade node action this pass used up, as (id, state, message); None when none was.

    A request is used up by the upgrade it started once that upgrade ends: its history entry carries the request
    (Succeeded, or Failed for a rollback or a failure). An upgrade called off before any change (a gate closed
    again, the target changed, a restore began) adds no history entry: the request stays pending and starts the
    upgrade when the gates pass again."""
    request = (((previous or {}).get("current")) or {}).get("requestId")
    if not request or upgrade.get("current") is not None:
        return None
    history = list(upgrade.get("history") or [])
    last = history[-1] if history else {}
    if last.get("requestId") != request or last in list((previous or {}).get("history") or []):
        return None
    state = "Succeeded" if last.get("result") == "Succeeded" else "Failed"
    return str(request), state, str(last.get("message") or "")[:500]


def backup_name(node_name: str, version: str, churn_height: int | None) -> str:
    """Deterministic, so creating it twice is harmless; a new churn (new key shares) asks for a new one."""
    base = f"{node_name}-preupgrade-{version.replace('.', '-').replace('+', '-').lower()}"
    if churn_height is not None:
        base += f"-c{churn_height}"
    return base[:253].rstrip("-.")


def plan_rollout(inp: RolloutInputs) -> RolloutPlan:
    prev = dict(inp.previous or {})
    history = list(prev.get("history") or [])
    current = dict(prev.get("current") or {}) or None
    base: dict[str, Any] = {"history": history or None, "nextFlagDay": None, "lastHeight": None}
    if inp.next_flag_day is not None:
        base["nextFlagDay"] = {"height": inp.next_flag_day[0], "version": inp.next_flag_day[1]}
    in_flight = (current or {}).get("flagDayHeight") or inp.flag_day_height
    if keeps_last_height(inp.spec, inp.last_height, inp.next_flag_day, in_flight):
        base["lastHeight"] = inp.last_height

    if current is not None:
        plan = _continue(inp, base, current, history)
    else:
        plan = _idle(inp, base, history, prev)
    if inp.next_flag_day is not None and inp.last_height is not None and \
            inp.next_flag_day[0] - inp.last_height <= FLAG_DAY_NEAR_BLOCKS:
        plan.requeue_after = min(plan.requeue_after or NEAR_FLAG_DAY_REQUEUE, NEAR_FLAG_DAY_REQUEUE)
    return plan


# --------------------------------------------------------------------------------------------------
# No upgrade under way
# --------------------------------------------------------------------------------------------------
def _idle(inp: RolloutInputs, base: dict[str, Any], history: list[dict[str, Any]],
          prev: Mapping[str, Any]) -> RolloutPlan:
    spec, target = inp.spec, inp.target
    if target is None:
        return _plan(base, "Idle", conditions=_not_blocked("ObserveOnly", "no target version: images are not managed"))
    image = spec.image_for(target)
    missing = [w.name for w in (inp.mayanode, inp.bifrost) if not w.exists]
    if missing:
        return _blocked(base, GateOutcome.block(G.VERSION_SANITY, "DeploymentMissing",
                                                f"deployment {', '.join(missing)} not found"), prev)
    if inp.mayanode.image == image and inp.bifrost.image == image:
        return _idle_up_to_date(inp, base, history, target)

    last = history[-1] if history else None
    if last and last.get("to") == target and last.get("result") in ("RolledBack", "Failed") and not inp.approval:
        return _failed_state(base, last, target)
    if last and last.get("result") == "Succeeded" and last.get("image") == image and not inp.approval:
        running = inp.mayanode.image if inp.mayanode.image != image else inp.bifrost.image
        return _blocked(base, GateOutcome.block(
            G.VERSION_SANITY, "ImageChangedExternally",
            f"the image was changed to {running} by someone else after the operator set {image}: not overwriting it "
            "(make the git source agree with spec.version, or add an Upgrade node action to apply it again)"), prev)

    if inp.locked:
        return _blocked(base, GateOutcome.block(G.WORKLOADS_LOCKED, "WorkloadsLocked",
                                                f"{inp.locked}: images are not changed meanwhile"), prev)
    blocking = first_blocking(inp.gates)
    if blocking is not None:
        return _blocked(base, blocking, prev, requeue=None)
    if spec.upgrade.strategy == UpgradeStrategy.MANUAL and not inp.flag_day_height and not inp.approval:
        return _blocked(base, GateOutcome.block(
            G.APPROVAL, "WaitingForApproval",
            f"every gate passes for {target}; strategy Manual: add a spec.nodeActions entry with action Upgrade to "
            "start"), prev)

    running = inp.mayanode.version or inp.api.network.querier_version
    first = S.PRE_UPGRADE_BACKUP if (spec.upgrade.gates.pre_upgrade_backup and not inp.flag_day_height) else \
        S.ACQUIRE_BUDGET
    current: dict[str, Any] = {
        "from": running, "to": target, "step": str(first), "startedAt": iso(inp.now), "stepStartedAt": iso(inp.now),
        "previousImages": {"mayanode": inp.mayanode.image, "bifrost": inp.bifrost.image},
        "flagDayHeight": inp.flag_day_height, "requestId": inp.approval,
        "backupName": inp.backup.name if (first == S.PRE_UPGRADE_BACKUP and inp.backup) else None,
    }
    why = f" (flag day at height {inp.flag_day_height})" if inp.flag_day_height else ""
    plan = _plan({**base, "current": _clean(current)}, "InProgress",
                 events=[EventSpec("Normal", "UpgradeStarted", f"upgrading {running} → {target}{why}: every gate passes")],
                 requeue=STEP_ADVANCE_REQUEUE)
    plan.conditions = _pre_change_conditions(current, "Starting", f"starting the upgrade to {target}")
    return plan


def _idle_up_to_date(inp: RolloutInputs, base: dict[str, Any], history: list[dict[str, Any]],
                     target: str) -> RolloutPlan:
    last = history[-1] if history else None
    if last and last.get("to") == target and last.get("result") == "Failed":
        return _failed_state(base, last, target)
    return _plan(base, "Idle", conditions=_not_blocked("UpToDate", f"mayanode and bifrost run {target}"))


def _failed_state(base: dict[str, Any], last: Mapping[str, Any], target: str) -> RolloutPlan:
    reason = last.get("reason") or "UpgradeFailed"
    message = (f"the upgrade to {target} {'was rolled back' if last.get('result') == 'RolledBack' else 'failed'}: "
               f"{last.get('message') or reason}; change spec.version or add an Upgrade node action to try again")
    return _plan(base, "Failed", conditions=[
        Condition("UpgradeBlocked", "False", "UpgradeFailed", message),
        Condition("Upgrading", "False", "UpgradeFailed", message),
        Condition("Degraded", "True", reason, message),
    ])


# --------------------------------------------------------------------------------------------------
# An upgrade under way
# --------------------------------------------------------------------------------------------------
def _continue(inp: RolloutInputs, base: dict[str, Any], current: dict[str, Any],
              history: list[dict[str, Any]]) -> RolloutPlan:
    step = _step(current.get("step"))
    to = str(current.get("to") or "")
    if step in PRE_CHANGE_STEPS:
        return _before_change(inp, base, current, step, to)
    if inp.locked:
        plan = _plan({**base, "current": current}, "InProgress")
        message = f"{inp.locked}: the upgrade to {to} is paused at step {step}"
        plan.conditions = [Condition("UpgradeBlocked", "True", "WorkloadsLocked", message),
                           Condition("Upgrading", "True", str(step), message),
                           Condition("Degraded", "False", "NotDegraded", "no failed upgrade")]
        plan.upgrade["gate"] = {"name": str(G.WORKLOADS_LOCKED), "reason": "WorkloadsLocked", "message": message}
        plan.requeue_after = 5.0
        return plan
    if step == S.ROLLBACK:
        return _rollback(inp, base, current, history)
    return _change(inp, base, current, history, step, to)


def _before_change(inp: RolloutInputs, base: dict[str, Any], current: dict[str, Any], step: UpgradeStep,
                   to: str) -> RolloutPlan:
    """Nothing changed on the node yet: the upgrade may still be called off."""
    release = [Action("ReleaseBudget", budget=None, result=None)] if step == S.ACQUIRE_BUDGET and inp.budget else []
    target_changed = inp.target != to and not flag_day_still_scheduled(inp.spec, current)
    if target_changed or inp.locked or (inp.spec.upgrade.strategy == UpgradeStrategy.MANUAL and
                                        not current.get("requestId") and not current.get("flagDayHeight")):
        why = (f"the target changed to {inp.target}" if target_changed else
               inp.locked or "strategy Manual without an Upgrade node action")
        plan = _plan(base, "Idle", actions=release,
                     events=[EventSpec("Normal", "UpgradeCancelled", f"upgrade to {to} called off before any change: {why}")],
                     requeue=STEP_ADVANCE_REQUEUE)
        return plan
    blocking = first_blocking(inp.gates)
    if blocking is not None and not current.get("flagDayHeight"):
        plan = _plan(base, "Idle", actions=release, requeue=STEP_ADVANCE_REQUEUE,
                     events=[EventSpec("Normal", "UpgradeCancelled",
                                       f"upgrade to {to} called off before any change: {blocking.message}")])
        return plan

    if step == S.PRE_UPGRADE_BACKUP:
        backup = inp.backup
        if backup is None:          # no longer asked for
            return _enter(base, current, S.ACQUIRE_BUDGET, inp.now)
        if current.get("backupName") != backup.name:
            current = {**current, "backupName": backup.name}
        if not backup.exists:
            plan = _waiting(base, current, GateOutcome.block(G.PRE_UPGRADE_BACKUP, "CreatingBackup",
                                                             f"creating the pre-upgrade NodeBackup {backup.name}"))
            plan.actions.append(Action("CreateBackup", backup_name=backup.name))
            plan.events.append(EventSpec("Normal", "PreUpgradeBackupRequested",
                                         f"created NodeBackup {backup.name} before upgrading to {to}"))
            plan.requeue_after = 2.0
            return plan
        if backup.phase == "Completed":
            return _enter(base, current, S.ACQUIRE_BUDGET, inp.now)
        if backup.phase in ("Failed", "PartiallyFailed"):
            return _waiting(base, current, GateOutcome.block(
                G.PRE_UPGRADE_BACKUP, "BackupFailed",
                f"the pre-upgrade NodeBackup {backup.name} is {backup.phase}; delete it to try again"), requeue=15.0)
        return _waiting(base, current, GateOutcome.block(
            G.PRE_UPGRADE_BACKUP, "WaitingForBackup",
            f"waiting for the pre-upgrade NodeBackup {backup.name} ({backup.phase or 'New'})"), requeue=2.0)

    # AcquireBudget
    first_change = S.STOP_OLD if current.get("flagDayHeight") else S.MAYANODE
    budget = inp.budget
    if budget is None or current.get("flagDayHeight"):
        return _enter(base, current, first_change, inp.now)
    if budget.kind == "held":
        plan = _enter(base, current, first_change, inp.now)
        if budget.new_state is not None:
            plan.actions.append(Action("RenewBudget", budget=budget.new_state))
        return plan
    if budget.kind == "acquire":
        plan = _waiting(base, current, GateOutcome.block(G.ROLLOUT_BUDGET, "AcquiringBudget", budget.message))
        plan.actions.append(Action("AcquireBudget", budget=budget.new_state))
        plan.requeue_after = STEP_ADVANCE_REQUEUE
        return plan
    return _waiting(base, current, GateOutcome.block(budget.gate, budget.reason, budget.message), requeue=3.0)


def flag_day_still_scheduled(spec: MayaNodeSpec, current: Mapping[str, Any]) -> bool:
    """An upgrade started because its flag day was reached, whose flag day the schedule still asks for: a lower
    height seen afterwards (a stale status.chain.height while the halted old binary does not answer) does not
    call it off. Only a schedule that no longer asks for it does."""
    height = current.get("flagDayHeight")
    if not isinstance(height, int) or isinstance(height, bool):
        return False
    return spec.target_version(height) == current.get("to") and \
        any(e.height == height for e in spec.upgrade.height_schedule)


def _change(inp: RolloutInputs, base: dict[str, Any], current: dict[str, Any], history: list[dict[str, Any]],
            step: UpgradeStep, to: str) -> RolloutPlan:
    spec = inp.spec
    image = spec.image_for(to)
    renew = _renewal(inp, current)

    if step in (S.STOP_OLD, S.MAYANODE):
        if inp.mayanode.image != image:
            return _busy(base, current, step, f"setting mayanode's image to {image}",
                         [*renew, Action("SetImage", spec.mayanode.deployment, spec.mayanode.container, image)],
                         events=[EventSpec("Normal", "ImageUpdated", f"mayanode → {image}")])
        if any(p.terminating for p in inp.mayanode.pods):
            return _busy(base, current, step, "waiting for the old mayanode pod to stop", renew)
        return _enter(base, current, S.MAYANODE_HEALTH, inp.now, deadline=_deadline(inp), actions=renew)

    if step == S.MAYANODE_HEALTH:
        health = mayanode_health(inp.mayanode, inp.api, image, to)
        if health.healthy:
            return _enter(base, current, S.BIFROST, inp.now, actions=renew)
        return _wait_health(inp, base, current, history, step, health, renew)

    if step == S.BIFROST:
        if inp.bifrost.image != image:
            return _busy(base, current, step, f"setting bifrost's image to {image}",
                         [*renew, Action("SetImage", spec.bifrost.deployment, spec.bifrost.container, image)],
                         events=[EventSpec("Normal", "ImageUpdated", f"bifrost → {image}")])
        return _enter(base, current, S.BIFROST_HEALTH, inp.now, deadline=_deadline(inp), actions=renew)

    if step == S.BIFROST_HEALTH:
        health = workload_health(inp.bifrost, image)
        if health.healthy:
            node = mayanode_health(inp.mayanode, inp.api, image, to)
            health = node if not node.healthy else health
        if health.healthy:
            return _enter(base, current, S.SET_VERSION, inp.now, actions=renew)
        return _wait_health(inp, base, current, history, step, health, renew)

    # SetVersion
    if versions.at_least(inp.announced_version, to):
        return _finish(inp, base, current, history, "Succeeded", None,
                       f"mayanode and bifrost run {to}; the chain already records version {inp.announced_version}",
                       image)
    if current.get("versionAnnounced") and current.get("message") != SET_VERSION_SENDING:
        return _finish(inp, base, current, history, "Succeeded", None,
                       f"mayanode and bifrost run {to}; {current.get('message') or 'set-version sent'}", image)
    if current.get("versionAnnounced"):
        # On record as being sent, its answer is not: it may or may not have reached the chain.
        waiting = _confirm_set_version(inp, base, current, to, renew)
        if waiting is not None:
            return waiting
        if inp.announced_version is None:
            return _set_version_unconfirmed(inp, base, current, to, renew)
    marked = {**current, "versionAnnounced": True, "message": SET_VERSION_SENDING, "stepStartedAt": iso(inp.now)}
    plan = _plan({**base, "current": marked}, "InProgress", actions=[*renew, Action("SendSetVersion")],
                 requeue=STEP_ADVANCE_REQUEUE)
    plan.checkpoint = True
    plan.conditions = _progress_conditions(marked, f"announcing version {to} (set-version)")
    return plan


def _confirm_set_version(inp: RolloutInputs, base: dict[str, Any], current: dict[str, Any], to: str,
                         renew: list[Action]) -> RolloutPlan | None:
    """A set-version on record as being sent whose answer is not: wait for the chain to record the version, until
    `SET_VERSION_CONFIRM_TIMEOUT` after the checkpoint; None when it is time to send it again."""
    since = parse_time(current.get("stepStartedAt"))
    if since is None:                                # no time on record: the wait starts now
        current = {**current, "stepStartedAt": iso(inp.now)}
        since = inp.now
    left = (since + SET_VERSION_CONFIRM_TIMEOUT - inp.now).total_seconds()
    if left <= 0:
        return None
    plan = _busy(base, current, S.SET_VERSION,
                 f"set-version was recorded as being sent at {iso(since)} but its answer never reached the "
                 f"record (the operator stopped in between, or the record's own answer was lost); waiting for "
                 f"the chain to record version {to}, sending it again at "
                 f"{iso(since + SET_VERSION_CONFIRM_TIMEOUT)} if it does not", renew)
    plan.requeue_after = max(1.0, min(left, SET_VERSION_CONFIRM_REQUEUE))
    return plan


def _renewal(inp: RolloutInputs, current: Mapping[str, Any]) -> list[Action]:
    """Keep the rollout slot while images change. A flag day holds none: the whole network switches at the height,
    the budget does not apply to it, and a slot taken there would stay behind after it."""
    if current.get("flagDayHeight") or inp.budget is None or inp.budget.kind != "held" or \
            inp.budget.new_state is None:
        return []
    return [Action("RenewBudget", budget=inp.budget.new_state)]


def _set_version_unconfirmed(inp: RolloutInputs, base: dict[str, Any], current: dict[str, Any], to: str,
                             renew: list[Action]) -> RolloutPlan:
    """The confirmation window is over but the chain's record of this node's version cannot be read: whether the
    first send reached the chain is unknown, so it is not sent again blind (as the external IP and mimir votes are
    not). The step stays, and goes on as soon as the record can be read."""
    since = current.get("stepStartedAt")
    if inp.spec.node_address:
        why, what = ("the node account could not be read (see NodeAPIReachable)",
                     "waiting for it to be readable again")
    else:
        why, what = ("spec.nodeAddress is not set", "set spec.nodeAddress so the operator can read it")
    message = (f"set-version for {to} was recorded as being sent at {since} but its answer never reached the record, "
               f"and the chain's record of this node's version cannot be read: {why}; not sending it again without "
               f"knowing whether the chain has it ({what})")
    plan = _plan({**base, "current": current}, "InProgress", actions=list(renew),
                 requeue=SET_VERSION_CONFIRM_REQUEUE)
    plan.conditions = [Condition("UpgradeBlocked", "True", "SetVersionUnconfirmed", message),
                       Condition("Upgrading", "True", str(S.SET_VERSION), message),
                       Condition("Degraded", "False", "NotDegraded", "no failed upgrade")]
    return plan


def _wait_health(inp: RolloutInputs, base: dict[str, Any], current: dict[str, Any], history: list[dict[str, Any]],
                 step: UpgradeStep, health: Health, renew: list[Action]) -> RolloutPlan:
    deadline = parse_time(current.get("deadline"))
    expired = deadline is not None and inp.now >= deadline
    if not (health.failed_fast or expired):
        return _busy(base, current, step, f"health check: {health.message}", renew)
    reason = "HealthTimeout" if expired and not health.failed_fast and health.reason == "NotReady" else health.reason
    which = "mayanode" if step == S.MAYANODE_HEALTH else "bifrost"
    message = f"{which} {current.get('to')} unhealthy: {health.message}" + (
        f" (health timeout {inp.spec.upgrade.health_timeout_seconds}s)" if expired else "")
    if not inp.spec.upgrade.rollback_on_failure:
        return _finish(inp, base, current, history, "Failed", reason,
                       message + "; rollbackOnFailure is false: left as it is", None)
    rolling = {**current, "reason": reason, "message": message}
    plan = _enter(base, rolling, S.ROLLBACK, inp.now, deadline=_deadline(inp), state="RollingBack",
                  actions=renew)
    plan.events.append(EventSpec("Warning", "UpgradeFailed", f"{message}: rolling back"))
    return plan


def _rollback(inp: RolloutInputs, base: dict[str, Any], current: dict[str, Any],
              history: list[dict[str, Any]]) -> RolloutPlan:
    spec = inp.spec
    prev = current.get("previousImages") or {}
    actions: list[Action] = []
    events: list[EventSpec] = []
    for which, workload, workspec in (("mayanode", inp.mayanode, spec.mayanode), ("bifrost", inp.bifrost, spec.bifrost)):
        want = prev.get(which)
        if want and workload.exists and workload.image != want:
            actions.append(Action("SetImage", workspec.deployment, workspec.container, want))
            events.append(EventSpec("Warning", "ImageRolledBack", f"{which} → {want}"))
    actions += _renewal(inp, current)
    why = f"{current.get('reason')}: {current.get('message')}"
    if actions:
        plan = _plan({**base, "current": current}, "RollingBack", actions=actions, events=events,
                     requeue=ACTIVE_STEP_REQUEUE)
        plan.conditions = _rollback_conditions(current, f"rolling back to the previous images ({why})")
        return plan
    old_version = str(current.get("from") or "")
    node = mayanode_health(inp.mayanode, inp.api, str(prev.get("mayanode") or ""), old_version) if old_version else \
        workload_health(inp.mayanode, str(prev.get("mayanode") or ""))
    bif = workload_health(inp.bifrost, str(prev.get("bifrost") or ""))
    deadline = parse_time(current.get("deadline"))
    if node.healthy and bif.healthy:
        return _finish(inp, base, current, history, "RolledBack", str(current.get("reason") or "UpgradeFailed"),
                       f"{current.get('message')}; rolled back to {old_version or prev.get('mayanode')}", None)
    if deadline is not None and inp.now >= deadline:
        bad = node if not node.healthy else bif
        return _finish(inp, base, current, history, "Failed", "RollbackFailed",
                       f"{current.get('message')}; the rollback is not healthy either: {bad.message}", None)
    plan = _plan({**base, "current": current}, "RollingBack", requeue=ACTIVE_STEP_REQUEUE)
    plan.conditions = _rollback_conditions(current, f"waiting for the previous version to be healthy ({why})")
    return plan


def _finish(inp: RolloutInputs, base: dict[str, Any], current: dict[str, Any], history: list[dict[str, Any]],
            result: str, reason: str | None, message: str, image: str | None) -> RolloutPlan:
    entry = _clean({
        "from": current.get("from"), "to": current.get("to"), "startedAt": current.get("startedAt"),
        "finishedAt": iso(inp.now), "result": result, "reason": reason, "message": message[:1000],
        "image": image, "requestId": current.get("requestId"),
    })
    new_history = (history + [entry])[-HISTORY_LIMIT:]
    actions: list[Action] = []
    if inp.budget is not None:
        # A flag day takes no slot, so its end says nothing of the canary; its release only drops an entry an
        # earlier operator may have left (a no-op otherwise), so that no later upgrade finds it "held".
        canary = None if current.get("flagDayHeight") else ("Succeeded" if result == "Succeeded" else "Failed")
        actions.append(Action("ReleaseBudget", result=canary))
    if result == "Succeeded":
        plan = _plan({**base, "history": new_history}, "Idle", actions=actions,
                     events=[EventSpec("Normal", "UpgradeSucceeded", message)])
        plan.conditions = _not_blocked("UpToDate", message)
        return plan
    plan = _failed_state({**base, "history": new_history}, entry, str(current.get("to")))
    plan.actions = actions
    plan.events.append(EventSpec("Warning", "RolledBack" if result == "RolledBack" else "UpgradeFailed", message))
    return plan


# --------------------------------------------------------------------------------------------------
# Small builders
# --------------------------------------------------------------------------------------------------
def _plan(upgrade: dict[str, Any], state: str, *, actions: list[Action] | None = None,
          events: list[EventSpec] | None = None, conditions: list[Condition] | None = None,
          requeue: float | None = None) -> RolloutPlan:
    body = {"state": state, "gate": None, "current": None, **{k: v for k, v in upgrade.items()}}
    body["state"] = state
    return RolloutPlan(body, list(actions or []), False, list(conditions or []), list(events or []), requeue)


def _not_blocked(reason: str, message: str) -> list[Condition]:
    return [Condition("UpgradeBlocked", "False", reason, message),
            Condition("Upgrading", "False", reason, message),
            Condition("Degraded", "False", "NotDegraded", "no failed upgrade")]


def _blocked(base: dict[str, Any], gate: GateOutcome, prev: Mapping[str, Any],
             requeue: float | None = None) -> RolloutPlan:
    message = f"{gate.gate}: {gate.message}"
    plan = _plan(base, "Blocked", conditions=[
        Condition("UpgradeBlocked", "True", gate.reason, message),
        Condition("Upgrading", "False", "Blocked", message),
        Condition("Degraded", "False", "NotDegraded", "no failed upgrade"),
    ], requeue=requeue)
    plan.upgrade["gate"] = {"name": str(gate.gate), "reason": gate.reason, "message": gate.message}
    old_gate = (prev or {}).get("gate") or {}
    if old_gate.get("name") != str(gate.gate) or old_gate.get("reason") != gate.reason:
        plan.events.append(EventSpec("Normal", "UpgradeBlocked", message))
    return plan


def _waiting(base: dict[str, Any], current: dict[str, Any], gate: GateOutcome,
             requeue: float | None = None) -> RolloutPlan:
    """A pre-change step waits (backup, budget): Blocked with the gate, the step kept in `current`."""
    plan = _blocked({**base, "current": current}, gate, {}, requeue=requeue)
    plan.events = []
    plan.upgrade["current"] = current
    return plan


def _enter(base: dict[str, Any], current: dict[str, Any], step: UpgradeStep, now: datetime, *,
           deadline: datetime | None = None, state: str = "InProgress",
           actions: list[Action] | None = None) -> RolloutPlan:
    entered = _clean({**current, "step": str(step), "stepStartedAt": iso(now),
                      "deadline": iso(deadline) if deadline else None})
    plan = _plan({**base, "current": entered}, state, actions=actions, requeue=STEP_ADVANCE_REQUEUE)
    if state == "RollingBack":
        plan.conditions = _rollback_conditions(entered, f"rolling back: {entered.get('message')}")
    elif step in PRE_CHANGE_STEPS:
        plan.conditions = _pre_change_conditions(entered, str(step), f"upgrade to {entered.get('to')}: {step}")
    else:
        plan.conditions = _progress_conditions(entered, f"upgrade to {entered.get('to')}: step {step}")
    return plan


def _busy(base: dict[str, Any], current: dict[str, Any], step: UpgradeStep, message: str,
          actions: list[Action], events: list[EventSpec] | None = None) -> RolloutPlan:
    plan = _plan({**base, "current": current}, "InProgress", actions=actions, events=events,
                 requeue=ACTIVE_STEP_REQUEUE)
    plan.conditions = _progress_conditions(current, f"upgrade to {current.get('to')}, step {step}: {message}")
    return plan


def _progress_conditions(current: Mapping[str, Any], message: str) -> list[Condition]:
    return [Condition("UpgradeBlocked", "False", "Upgrading", message),
            Condition("Upgrading", "True", str(current.get("step")), message),
            Condition("Degraded", "False", "NotDegraded", "no failed upgrade")]


def _pre_change_conditions(current: Mapping[str, Any], reason: str, message: str) -> list[Condition]:
    return [Condition("UpgradeBlocked", "False", reason, message),
            Condition("Upgrading", "False", reason, message),
            Condition("Degraded", "False", "NotDegraded", "no failed upgrade")]


def _rollback_conditions(current: Mapping[str, Any], message: str) -> list[Condition]:
    reason = str(current.get("reason") or "UpgradeFailed")
    return [Condition("UpgradeBlocked", "False", "RollingBack", message),
            Condition("Upgrading", "True", "Rollback", message),
            Condition("Degraded", "True", reason, message)]


def _deadline(inp: RolloutInputs) -> datetime:
    return inp.now + timedelta(seconds=inp.spec.upgrade.health_timeout_seconds)


def _step(value: Any) -> UpgradeStep:
    try:
        return UpgradeStep(value)
    except ValueError:
        return S.MAYANODE        # an unknown step (hand-edited status): redo the first change step, idempotently


def _clean(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v is not None}
