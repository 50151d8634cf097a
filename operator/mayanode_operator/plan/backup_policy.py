"""MayaNode `spec.backup`: when to create NodeBackups, which to prune, and `status.backup`. Pure.

- Schedule (cron, UTC): the latest schedule time at or before `now` that is later than
  `status.backup.lastScheduledAt` creates one NodeBackup named after that time. Times missed while the
  operator was down collapse into that one (a missed time is never made up twice). The first time a
  schedule is seen only records the latest past time: the first backup is at the next one.
- After churn: when the node is a member of an Asgard vault (or bifrost holds a `localstate-<vault>.json`)
  that no backup of this node covers yet, one NodeBackup named after that vault is created. One per vault:
  `status.backup.lastAfterChurnVault` remembers it, so a failed one is not retried in a loop.
- One policy backup at a time; none while a NodeRestore holds the node's workloads.
- Retention (policy-created backups only; Manual and Imported ones are left alone): keep the newest
  `count` good ones (Completed and not failing verification), drop failed ones older than the newest good
  one, drop anything older than `maxAge` — but never the newest good backup, and not while a NodeRestore in
  progress uses it. Dropping follows the backup's `spec.deletionPolicy`: the archive goes with it on Delete
  (what the policy creates), stays in the store on Retain.
- `BackupFresh`: the newest good backup (of any reason) was captured after the last churn, i.e. it holds
  the current vault's key shares.
- Key shares in bifrost are looked for (an exec running `find`) when something says they may have changed: the
  first time, bifrost's pods, the current vault or the node's `signer_membership` differ from the last look, or
  the last look is KEY_SHARES_RECHECK_SECONDS old. Not at every pass: a key share appears at a churn, days apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from croniter import croniter

from ..api.mayanode import BackupPolicy
from .backup import iso, parse_time
from .backup_deletion import DELETE, RETAIN, Usage
from .backup_items import vault_of_key_share
from .conditions import Condition
from .events import EventSpec

FINISHED = ("Completed", "PartiallyFailed", "Failed")
KEY_SHARES_RECHECK_SECONDS = 600.0
POLICY_REASONS = ("Scheduled", "AfterChurn")
IN_PROGRESS_POLL_SECONDS = 5.0


@dataclass(frozen=True)
class BackupSummary:
    """One NodeBackup of this node, as the policy sees it."""

    name: str
    reason: str
    phase: str | None
    created: datetime | None
    completed: datetime | None = None
    verified: str | None = None          # the Verified condition's status
    vault_pub_key: str | None = None     # status.node.vaultPubKey
    height: int | None = None            # status.node.height
    key_share_vaults: tuple[str, ...] = ()
    policy: bool = False                 # created by this policy (label)
    deletion_policy: str = RETAIN        # spec.deletionPolicy

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    @property
    def good(self) -> bool:
        return self.phase == "Completed" and self.verified != "False"

    @property
    def covers(self) -> set[str]:
        vaults = set(self.key_share_vaults)
        if self.vault_pub_key:
            vaults.add(self.vault_pub_key)
        return vaults


@dataclass(frozen=True)
class VaultView:
    pub_key: str
    height: int | None
    member: bool | None          # None: unknown (node account not observed)


@dataclass(frozen=True)
class PolicyInputs:
    node: str
    policy: BackupPolicy | None
    now: datetime
    previous: Mapping[str, Any]                  # status.backup as stored
    backups: tuple[BackupSummary, ...]
    vault: VaultView | None = None
    local_key_shares: tuple[str, ...] | None = None   # localstate-*.json names in bifrost (None: not observed)
    workloads_locked: str | None = None
    in_use: Mapping[str, Usage] = field(default_factory=dict)   # backup name → NodeRestores in progress using it


@dataclass(frozen=True)
class NewBackup:
    name: str
    reason: str
    detail: str


@dataclass
class PolicyPlan:
    create: list[NewBackup] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)       # (name, why)
    retain_archive: set[str] = field(default_factory=set)             # deleted without their archive (Retain)
    prune_deferred: list[str] = field(default_factory=list)           # due, but a NodeRestore in progress uses them
    status: dict[str, Any] | None = None
    conditions: list[Condition] = field(default_factory=list)
    events: list[EventSpec] = field(default_factory=list)
    requeue: float | None = None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _short(name: str, limit: int = 40) -> str:
    return name[:limit].rstrip("-.") or "node"


def scheduled_name(node: str, tick: datetime) -> str:
    return f"{_short(node)}-scheduled-{tick:%Y%m%d%H%M}"


def after_churn_name(node: str, vault: str) -> str:
    return f"{_short(node)}-churn-{hashlib.sha256(vault.encode()).hexdigest()[:10]}"


def previous_tick(schedule: str, now: datetime) -> datetime:
    """The latest schedule time at or before `now` (UTC)."""
    base = _aware(now).astimezone(timezone.utc) + timedelta(microseconds=1)
    return croniter(schedule, base).get_prev(datetime)


def next_tick(schedule: str, now: datetime) -> datetime:
    return croniter(schedule, _aware(now).astimezone(timezone.utc)).get_next(datetime)


def summarize(body: Mapping[str, Any]) -> BackupSummary:
    """A NodeBackup body → what the policy needs of it."""
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    verified = next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Verified"), None)
    shares = tuple(sorted({v for item in status.get("items") or []
                           if item.get("component") == "bifrost" and (v := vault_of_key_share(str(item.get("path"))))}))
    node = status.get("node") or {}
    labels = meta.get("labels") or {}
    return BackupSummary(
        name=str(meta.get("name")), reason=str(spec.get("reason") or "Manual"), phase=status.get("phase"),
        created=parse_time(meta.get("creationTimestamp")), completed=parse_time(status.get("completedAt")),
        verified=verified, vault_pub_key=node.get("vaultPubKey"), height=node.get("height"),
        key_share_vaults=shares, policy=labels.get(POLICY_LABEL) == "true",
        deletion_policy=DELETE if spec.get("deletionPolicy") == DELETE else RETAIN,
    )


POLICY_LABEL = "maya.nodeops.io/backup-policy"


def _naive(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=None) if moment is not None else None


def _order(b: BackupSummary, vault: str | None = None) -> tuple[datetime, bool, int, datetime, str]:
    """Newest first by completion; among equally new ones, the one holding the current vault's shares, then the
    higher capture height."""
    return (_naive(b.completed or b.created) or datetime.min, bool(vault and vault in b.covers), b.height or 0,
            _naive(b.created) or datetime.min, b.name)


@dataclass(frozen=True)
class KeyShareSignals:
    """What changes when bifrost may hold new key shares. None: not observed in this pass (no news)."""

    bifrost_pods: tuple[str, ...]
    vault: str | None
    signer_membership: tuple[str, ...] | None


@dataclass(frozen=True)
class KeyShareLook:
    """The key shares found in bifrost, and what was true when they were looked for."""

    signals: KeyShareSignals
    at: datetime
    shares: tuple[str, ...]


def key_share_signals(observed: KeyShareSignals, last: KeyShareLook | None) -> KeyShareSignals:
    """This pass's signals, the last look's where this pass did not observe them (a failed node-API read is no
    reason to look again)."""
    if last is None:
        return observed
    return KeyShareSignals(
        observed.bifrost_pods,
        observed.vault if observed.vault is not None else last.signals.vault,
        observed.signer_membership if observed.signer_membership is not None else last.signals.signer_membership,
    )


def key_shares_due(last: KeyShareLook | None, signals: KeyShareSignals, now: datetime) -> bool:
    """Whether to look for key shares in bifrost again, or to plan with the last look's."""
    if last is None or last.signals != signals:
        return True
    return (_aware(now) - _aware(last.at)).total_seconds() >= KEY_SHARES_RECHECK_SECONDS


def plan_policy(inputs: PolicyInputs) -> PolicyPlan:
    plan = PolicyPlan()
    previous = dict(inputs.previous or {})
    status: dict[str, Any] = {
        "lastScheduledAt": previous.get("lastScheduledAt"),
        "lastAfterChurnVault": previous.get("lastAfterChurnVault"),
    }
    current = inputs.vault.pub_key if inputs.vault else None
    newest_good = max((b for b in inputs.backups if b.good), key=lambda b: _order(b, current), default=None)
    running = sorted(b.name for b in inputs.backups if b.policy and not b.finished)
    policy = inputs.policy

    if policy is not None:
        _schedule(inputs, policy, status, running, plan)
        _after_churn(inputs, policy, status, running, plan)
        _retention(inputs, policy, newest_good, plan)
    if plan.create:
        running = running or [plan.create[0].name]
    status["inProgress"] = running[0] if running else None
    status["pruneDeferred"] = sorted(plan.prune_deferred) or None
    status["lastSuccessful"] = {
        "name": newest_good.name,
        "completedAt": iso(newest_good.completed) if newest_good.completed else None,
        "vaultPubKey": newest_good.vault_pub_key,
        "height": newest_good.height,
    } if newest_good else None
    fresh = _freshness(inputs, newest_good, [b for b in inputs.backups if b.good])
    status["fresh"] = None if fresh.status == "Unknown" else fresh.status == "True"
    if policy is None and not inputs.backups and not previous:
        return PolicyPlan()            # nothing to say about a node without backups or a policy
    plan.conditions.append(fresh)
    was_fresh = previous.get("fresh")
    if was_fresh is True and status["fresh"] is False:
        plan.events.append(EventSpec("Warning", "BackupStale", fresh.message))
    if policy is not None:
        plan.conditions.append(_scheduled_condition(inputs, policy))
    if running:
        plan.requeue = IN_PROGRESS_POLL_SECONDS
    plan.status = status
    return plan


def _schedule(inputs: PolicyInputs, policy: BackupPolicy, status: dict[str, Any], running: list[str],
              plan: PolicyPlan) -> None:
    if not policy.schedule:
        return
    tick = previous_tick(policy.schedule, inputs.now)
    last = parse_time(status.get("lastScheduledAt"))
    wait = (next_tick(policy.schedule, inputs.now) - _aware(inputs.now)).total_seconds()
    plan.requeue = max(1.0, wait) if plan.requeue is None else min(plan.requeue, max(1.0, wait))
    if last is None:
        status["lastScheduledAt"] = iso(tick)
        return
    if _naive(tick) <= last or running or plan.create or inputs.workloads_locked:
        return
    name = scheduled_name(inputs.node, tick)
    plan.create.append(NewBackup(name, "Scheduled", f"schedule {policy.schedule!r} at {iso(tick)}"))
    status["lastScheduledAt"] = iso(tick)


def _after_churn(inputs: PolicyInputs, policy: BackupPolicy, status: dict[str, Any], running: list[str],
                 plan: PolicyPlan) -> None:
    if not policy.after_churn or running or plan.create or inputs.workloads_locked:
        return
    covered: set[str] = set()
    for backup in inputs.backups:
        if backup.phase != "Failed":
            covered |= backup.covers
    candidates: list[str] = []
    vault = inputs.vault
    if vault is not None and vault.member:
        candidates.append(vault.pub_key)
    for name in inputs.local_key_shares or ():
        owner = vault_of_key_share(name)
        if owner and owner not in candidates:
            candidates.append(owner)
    todo = [v for v in candidates if v not in covered]
    if not todo or todo[0] == status.get("lastAfterChurnVault"):
        return
    target = todo[0]
    name = after_churn_name(inputs.node, target)
    plan.create.append(NewBackup(name, "AfterChurn", f"new key shares for vault {target}"))
    status["lastAfterChurnVault"] = target


def _retention(inputs: PolicyInputs, policy: BackupPolicy, newest_good: BackupSummary | None,
               plan: PolicyPlan) -> None:
    current = inputs.vault.pub_key if inputs.vault else None
    mine = sorted((b for b in inputs.backups if b.policy and b.finished), key=lambda b: _order(b, current),
                  reverse=True)
    keep_good = [b.name for b in mine if b.good][: policy.retention.count]
    max_age = policy.retention.max_age_timedelta()
    now = _naive(inputs.now)
    candidates: list[tuple[BackupSummary, str]] = []
    for backup in mine:
        if newest_good is not None and backup.name == newest_good.name:
            continue
        age_from = _naive(backup.completed or backup.created)
        if max_age is not None and age_from is not None and now - age_from > max_age:
            candidates.append((backup, f"older than retention.maxAge {policy.retention.max_age}"))
        elif backup.good and backup.name not in keep_good:
            candidates.append((backup, f"beyond retention.count {policy.retention.count}"))
        elif not backup.good and newest_good is not None and _order(backup) < _order(newest_good, current):
            candidates.append((backup, f"{backup.phase or 'unfinished'} and older than the newest good backup "
                                       f"{newest_good.name}"))
    said = set(inputs.previous.get("pruneDeferred") or ())
    for backup, why in candidates:
        usage = inputs.in_use.get(backup.name)
        if usage is not None and usage.blocks:
            plan.prune_deferred.append(backup.name)
            if backup.name not in said:         # once, not at every pass while the restore runs
                plan.events.append(EventSpec("Warning", "BackupPruneDeferred",
                                             f"NodeBackup {backup.name} is {why}, but " + usage.message("pruning it")))
            continue
        plan.delete.append((backup.name, why))
        if backup.deletion_policy == DELETE:
            what = "with its archive"
        else:
            plan.retain_archive.add(backup.name)
            what = "keeping its archive in the store (deletionPolicy Retain)"
        plan.events.append(EventSpec("Normal", "BackupPruned", f"deleting NodeBackup {backup.name} {what}: {why}"))


def _freshness(inputs: PolicyInputs, newest: BackupSummary | None, good: Sequence[BackupSummary] = ()) -> Condition:
    vault = inputs.vault
    if newest is None:
        return Condition("BackupFresh", "False", "NoBackup",
                         "no Completed NodeBackup of this node" + ("" if inputs.policy else
                                                                   "; create one, or set spec.backup"))
    if vault is None:
        return Condition("BackupFresh", "True", "NoChurnYet",
                         f"{newest.name} is the newest backup; no Asgard vault observed yet")
    holding = next((b for b in sorted(good, key=lambda b: _order(b, vault.pub_key), reverse=True)
                    if vault.pub_key in b.covers), None)
    if holding is not None:
        return Condition("BackupFresh", "True", "Fresh", f"{holding.name} holds the key shares of the current vault "
                                                         f"{vault.pub_key}")
    after = next((b for b in good if b.height is not None and vault.height is not None and b.height > vault.height),
                 None)
    if after is not None and vault.member is not True:
        return Condition("BackupFresh", "True", "Fresh",
                         f"{after.name} was captured at height {after.height}, after the last churn at "
                         f"{vault.height}")
    return Condition("BackupFresh", "False", "OlderThanChurn",
                     f"the newest good backup {newest.name} predates the churn to vault {vault.pub_key}"
                     + (f" at height {vault.height}" if vault.height is not None else "")
                     + ": it cannot sign for the current vault; take a new backup")


def _scheduled_condition(inputs: PolicyInputs, policy: BackupPolicy) -> Condition:
    if inputs.workloads_locked:
        return Condition("BackupScheduled", "False", "WorkloadsLocked",
                         f"no automatic backup while {inputs.workloads_locked}")
    parts = []
    if policy.schedule:
        parts.append(f"next scheduled backup at {iso(next_tick(policy.schedule, inputs.now))} ({policy.schedule})")
    if policy.after_churn:
        parts.append("a backup after every churn")
    if not parts:
        return Condition("BackupScheduled", "False", "NoSchedule",
                         "spec.backup has no schedule and afterChurn is false: only manual backups")
    return Condition("BackupScheduled", "True", "Scheduled", "; ".join(parts))


def new_backup_body(namespace: str, node: str, policy: BackupPolicy, new: NewBackup) -> dict[str, Any]:
    from ..api import naming

    spec: dict[str, Any] = {"nodeRef": {"name": node}, "reason": new.reason,
                            "location": policy.location.to_k8s(), "verify": policy.verify,
                            "deletionPolicy": DELETE}     # retention owns them: pruning deletes the archive
    if policy.volume_snapshots.enabled:
        spec["volumeSnapshots"] = policy.volume_snapshots.to_k8s()
    return {
        "apiVersion": naming.API_VERSION, "kind": naming.NODEBACKUP_KIND,
        "metadata": {"name": new.name, "namespace": namespace,
                     "labels": {naming.LABEL_NODE: node, POLICY_LABEL: "true",
                                naming.LABEL_MANAGED_BY: naming.FIELD_MANAGER},
                     "annotations": {f"{naming.GROUP}/backup-trigger": new.detail[:200]}},
        "spec": spec,
    }


def newest_first(backups: Sequence[BackupSummary], vault: str | None = None) -> list[BackupSummary]:
    return sorted(backups, key=lambda b: _order(b, vault), reverse=True)


PRUNE_HEALTH = "BackupHealthy"


def prune_failures(previous: Sequence[Mapping[str, Any]] | None,
                   failures: Sequence[tuple[str, str]]) -> tuple[list[Condition], list[EventSpec]]:
    """Backups retention wanted gone but whose archive or object could not be deleted (name, why): they are kept
    and pruned again at the next pass. BackupHealthy False says so; an event only when what it says changed."""
    if not failures:
        return [], []
    message = ("could not prune " + "; ".join(f"NodeBackup {name} ({why})" for name, why in failures)
               + ": kept, and tried again at the next pass")[:2000]
    before = next((c for c in previous or () if c.get("type") == PRUNE_HEALTH), {})
    same = before.get("status") == "False" and before.get("reason") == "PruneFailed" and before.get("message") == message
    return ([Condition(PRUNE_HEALTH, "False", "PruneFailed", message)],
            [] if same else [EventSpec("Warning", "PruneFailed", message[:1000])])
