"""Upgrade gates: each a pure function of plain values returning (passed, reason, message).

Every enabled gate must pass before the operator changes an image. The order of `evaluate_gates`
is the order a node operator reads them in: is the target sane, has the network moved, is the
node in a state to restart, is now a good time. The first gate that blocks is the one status names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from croniter import croniter

from ..api.mayanode import AdoptionMode, HaltAction, HaltPolicy, UpgradeGateName
from ..observe.snapshot import Halt
from . import versions
from .halt_policy import blocking_halts, describe as describe_halt

G = UpgradeGateName


@dataclass(frozen=True)
class GateOutcome:
    gate: UpgradeGateName
    passed: bool
    reason: str
    message: str

    @classmethod
    def ok(cls, gate: UpgradeGateName, message: str, reason: str = "Passed") -> GateOutcome:
        return cls(gate, True, reason, message)

    @classmethod
    def block(cls, gate: UpgradeGateName, reason: str, message: str) -> GateOutcome:
        return cls(gate, False, reason, message)


# --------------------------------------------------------------------------------------------------
# Version sanity (always on)
# --------------------------------------------------------------------------------------------------
def version_sanity(target: str | None, running: str | None, *, allow_downgrade: bool,
                   network_current: str | None) -> GateOutcome:
    """A valid step from the running version: the target parses, is no downgrade (unless allowed) and is not older
    than the network's major.minor (such a binary panics with "Unsupported Version")."""
    vt = versions.parse_version(target)
    if vt is None:
        return GateOutcome.block(G.VERSION_SANITY, "InvalidTarget", f"target version {target!r} is not a version")
    vr = versions.parse_version(running)
    if vr is None:
        return GateOutcome.block(G.VERSION_SANITY, "RunningVersionUnknown",
                                 f"the running version is unknown ({running!r}): the step to {target} cannot be "
                                 "checked; the mayanode image tag must carry a version")
    step = versions.step_between(str(running), str(target))
    if step == versions.Step.DOWNGRADE and not allow_downgrade:
        return GateOutcome.block(G.VERSION_SANITY, "DowngradeNotAllowed",
                                 f"{target} is older than the running {running}; set spec.upgrade.allowDowngrade "
                                 "to go back")
    vc = versions.parse_version(network_current)
    if vc is not None and vt.major_minor < vc.major_minor:
        return GateOutcome.block(G.VERSION_SANITY, "UnsupportedByNetwork",
                                 f"{target} is older than the network's version {network_current}: the binary would "
                                 "panic with \"Unsupported Version\"")
    return GateOutcome.ok(G.VERSION_SANITY, f"{running} → {target} ({step.value if step else 'unknown'} step)")


# --------------------------------------------------------------------------------------------------
# Network adoption
# --------------------------------------------------------------------------------------------------
def adoption(mode: AdoptionMode | str, target: str, *, network_next: str | None,
             active_versions: Sequence[str] | None, min_active_share: int) -> GateOutcome:
    """Next: the network's `next` (run by 2/3 of Active nodes) has reached the target. Share: at least
    `min_active_share` percent of Active nodes run the target or newer. None: no gate."""
    mode = AdoptionMode(mode)
    if mode == AdoptionMode.NONE:
        return GateOutcome.ok(G.ADOPTION, "adoption gate disabled (mode None)")
    if mode == AdoptionMode.NEXT:
        if network_next is None:
            return GateOutcome.block(G.ADOPTION, "NetworkVersionUnknown",
                                     "the network's next version is unknown (node API /mayachain/version)")
        if versions.at_least(network_next, target):
            return GateOutcome.ok(G.ADOPTION, f"network next version {network_next} ≥ {target}")
        return GateOutcome.block(G.ADOPTION, "WaitingForAdoption",
                                 f"network next version is {network_next}: waiting until 2/3 of Active nodes run "
                                 f"{target}")
    if active_versions is None:
        return GateOutcome.block(G.ADOPTION, "NetworkVersionUnknown",
                                 "the versions of the Active nodes are unknown (node API /mayachain/nodes)")
    count, total = versions.share_at_least(active_versions, target)
    if total == 0:
        return GateOutcome.block(G.ADOPTION, "NoActiveNodes", "no Active node on the network")
    percent = adoption_percent(count, total)
    if count * 100 >= min_active_share * total:
        return GateOutcome.ok(G.ADOPTION, f"{count}/{total} Active nodes ({percent}%) run {target} or newer")
    return GateOutcome.block(G.ADOPTION, "WaitingForAdoption",
                             f"{count}/{total} Active nodes ({percent}%) run {target} or newer; waiting for "
                             f"{min_active_share}%")


def adoption_percent(count: int, total: int) -> int:
    return (count * 100) // total if total else 0


# --------------------------------------------------------------------------------------------------
# Node synced
# --------------------------------------------------------------------------------------------------
def synced(*, catching_up: bool | None, height: int | None, network_height: int | None,
           max_height_lag: int) -> GateOutcome:
    """The node is not catching up and at most `max_height_lag` blocks behind the network (when that is known)."""
    if catching_up is None or height is None:
        return GateOutcome.block(G.SYNC, "SyncUnknown", "the node's sync state is unknown (RPC /status)")
    if catching_up:
        return GateOutcome.block(G.SYNC, "CatchingUp", f"the node is catching up (height {height})")
    if network_height is not None and network_height - height > max_height_lag:
        return GateOutcome.block(G.SYNC, "HeightLag",
                                 f"the node is {network_height - height} blocks behind the network "
                                 f"(height {height}, network {network_height}; at most {max_height_lag})")
    return GateOutcome.ok(G.SYNC, f"in sync at height {height}")


# --------------------------------------------------------------------------------------------------
# Churn awareness
# --------------------------------------------------------------------------------------------------
def churn(*, node_status: str | None, avoid_while_active: bool, only_when_standby: bool,
          within_blocks_after_churn: int | None, height: int | None, last_churn_height: int | None,
          churn_in_progress: bool | None) -> GateOutcome:
    """Not while the node is Active during a churn (keygen, vault migration); optionally only while not Active, or
    only within K blocks after the last churn."""
    active = node_status == "Active"
    if only_when_standby and active:
        return GateOutcome.block(G.CHURN, "NodeActive",
                                 "the node is Active and spec.upgrade.gates.churn.onlyWhenStandby is set: waiting "
                                 "until it leaves the active set")
    if avoid_while_active and active:
        if churn_in_progress is None:
            return GateOutcome.block(G.CHURN, "ChurnStateUnknown",
                                     "the node is Active and whether a churn is under way is unknown "
                                     "(node API /mayachain/vaults/asgard)")
        if churn_in_progress:
            return GateOutcome.block(G.CHURN, "ChurnInProgress",
                                     "the node is Active and a churn is under way (vault migration): a restart now "
                                     "costs slash points")
    if within_blocks_after_churn is not None:
        if height is None or last_churn_height is None:
            return GateOutcome.block(G.CHURN, "LastChurnUnknown",
                                     f"upgrades start only within {within_blocks_after_churn} blocks after a churn, "
                                     "and the last churn height is unknown")
        since = height - last_churn_height
        if since > within_blocks_after_churn:
            return GateOutcome.block(G.CHURN, "OutsideChurnWindow",
                                     f"{since} blocks since the churn at {last_churn_height}; upgrades start only "
                                     f"within {within_blocks_after_churn} blocks after a churn")
    return GateOutcome.ok(G.CHURN, f"node status {node_status or 'unknown'}, no churn in the way")


# --------------------------------------------------------------------------------------------------
# Halts
# --------------------------------------------------------------------------------------------------
def halts(policy: HaltPolicy, in_effect: Iterable[Halt | dict] | None) -> GateOutcome:
    """The halts that `spec.haltPolicy.upgrade` lists hold the upgrade back."""
    blocking = blocking_halts(policy, HaltAction.UPGRADE, in_effect)
    if blocking:
        more = f" and {len(blocking) - 1} more" if len(blocking) > 1 else ""
        return GateOutcome.block(G.HALTS, "NetworkHalted",
                                 f"{describe_halt(blocking[0])}{more} is in effect and spec.haltPolicy.upgrade lists "
                                 f"{blocking[0].kind}")
    return GateOutcome.ok(G.HALTS, "no halt listed in spec.haltPolicy.upgrade is in effect")


# --------------------------------------------------------------------------------------------------
# Maintenance windows
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    schedule: str
    duration_minutes: int


def window_open(window: Window, now: datetime) -> tuple[bool, datetime, datetime]:
    """(open now, when the current/last opening started, when the next opening starts)."""
    now = _utc(now)
    # croniter's get_prev is strict: a window opening exactly now counts, so ask from just after now.
    probe = now + timedelta(microseconds=1)
    last = croniter(window.schedule, probe).get_prev(datetime)
    upcoming = croniter(window.schedule, now).get_next(datetime)
    return last <= now < last + timedelta(minutes=window.duration_minutes), last, upcoming


def maintenance_window(windows: Sequence[Window], now: datetime) -> GateOutcome:
    """Upgrades start only inside one of the windows (cron in UTC + duration); no window: any time."""
    if not windows:
        return GateOutcome.ok(G.MAINTENANCE_WINDOW, "no maintenance window configured")
    next_opening: datetime | None = None
    for window in windows:
        is_open, last, upcoming = window_open(window, now)
        if is_open:
            closes = last + timedelta(minutes=window.duration_minutes)
            return GateOutcome.ok(G.MAINTENANCE_WINDOW,
                                  f"inside the window {window.schedule!r} until {_stamp(closes)}")
        next_opening = upcoming if next_opening is None else min(next_opening, upcoming)
    return GateOutcome.block(G.MAINTENANCE_WINDOW, "OutsideMaintenanceWindow",
                             f"outside every maintenance window; the next opens at {_stamp(next_opening)}")


def seconds_until_window(windows: Sequence[Window], now: datetime) -> float | None:
    """When the next window opens (None: no window, or one is open now)."""
    if not windows:
        return None
    best: float | None = None
    for window in windows:
        is_open, _, upcoming = window_open(window, now)
        if is_open:
            return None
        wait = (upcoming - _utc(now)).total_seconds()
        best = wait if best is None else min(best, wait)
    return best


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _stamp(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "unknown"


# --------------------------------------------------------------------------------------------------
# Pre-upgrade backup
# --------------------------------------------------------------------------------------------------
BACKUP_FAILED_PHASES = ("Failed", "PartiallyFailed")


def pre_upgrade_backup(*, enabled: bool, name: str | None, exists: bool, phase: str | None) -> GateOutcome:
    """A NodeBackup (reason PreUpgrade) created for this upgrade must be Completed."""
    if not enabled:
        return GateOutcome.ok(G.PRE_UPGRADE_BACKUP, "no pre-upgrade backup asked for")
    if not name or not exists:
        return GateOutcome.block(G.PRE_UPGRADE_BACKUP, "BackupNotCreated",
                                 f"creating the pre-upgrade NodeBackup {name or ''}".rstrip())
    if phase == "Completed":
        return GateOutcome.ok(G.PRE_UPGRADE_BACKUP, f"NodeBackup {name} is Completed")
    if phase in BACKUP_FAILED_PHASES:
        return GateOutcome.block(G.PRE_UPGRADE_BACKUP, "BackupFailed",
                                 f"the pre-upgrade NodeBackup {name} is {phase}; delete it to try again")
    return GateOutcome.block(G.PRE_UPGRADE_BACKUP, "WaitingForBackup",
                             f"waiting for the pre-upgrade NodeBackup {name} ({phase or 'New'})")


# --------------------------------------------------------------------------------------------------
# All gates
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GateInputs:
    """Everything the gates read, already resolved from spec, observation and status."""

    target: str
    running: str | None
    allow_downgrade: bool = False
    network_current: str | None = None
    network_next: str | None = None
    active_versions: tuple[str, ...] | None = None
    adoption_mode: AdoptionMode = AdoptionMode.NEXT
    min_active_share: int = 67
    catching_up: bool | None = None
    height: int | None = None
    network_height: int | None = None
    max_height_lag: int = 10
    node_status: str | None = None
    avoid_while_active: bool = True
    only_when_standby: bool = False
    within_blocks_after_churn: int | None = None
    last_churn_height: int | None = None
    churn_in_progress: bool | None = None
    halt_policy: HaltPolicy = field(default_factory=HaltPolicy)
    halts: tuple[Halt, ...] = ()
    windows: tuple[Window, ...] = ()
    now: datetime = datetime(1970, 1, 1, tzinfo=timezone.utc)
    flag_day: bool = False          # a height-based switch: the network halts for it, the node cannot wait


# Gates a flag day skips: the whole network stops at the height and waits for the new binary.
FLAG_DAY_SKIPS = (G.ADOPTION, G.SYNC, G.CHURN, G.HALTS, G.MAINTENANCE_WINDOW)


def evaluate_gates(inputs: GateInputs) -> list[GateOutcome]:
    """Every gate's outcome, in order (the pre-upgrade backup gate is evaluated by the rollout, which owns it)."""
    outcomes = [version_sanity(inputs.target, inputs.running, allow_downgrade=inputs.allow_downgrade,
                               network_current=inputs.network_current)]
    if inputs.flag_day:
        return outcomes
    outcomes += [
        adoption(inputs.adoption_mode, inputs.target, network_next=inputs.network_next,
                 active_versions=inputs.active_versions, min_active_share=inputs.min_active_share),
        synced(catching_up=inputs.catching_up, height=inputs.height, network_height=inputs.network_height,
               max_height_lag=inputs.max_height_lag),
        churn(node_status=inputs.node_status, avoid_while_active=inputs.avoid_while_active,
              only_when_standby=inputs.only_when_standby, within_blocks_after_churn=inputs.within_blocks_after_churn,
              height=inputs.height, last_churn_height=inputs.last_churn_height,
              churn_in_progress=inputs.churn_in_progress),
        halts(inputs.halt_policy, inputs.halts),
        maintenance_window(inputs.windows, inputs.now),
    ]
    return outcomes


def first_blocking(outcomes: Iterable[GateOutcome]) -> GateOutcome | None:
    return next((o for o in outcomes if not o.passed), None)
