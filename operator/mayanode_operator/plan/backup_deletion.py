"""What deleting a NodeBackup does to its stored archive (`spec.deletionPolicy`). Pure.

`Retain` (default): deleting the NodeBackup keeps the archive (and the VolumeSnapshots); nothing of ours is on
the object, Kubernetes removes it at once. `Delete`: the operator keeps its own finalizer
`maya.nodeops.io/delete-archive` on the NodeBackup (only then), so a deletion made while the operator is down
waits for it; when it sees the deletion it deletes the archive and the VolumeSnapshots, then removes the
finalizer. It holds the deletion, with the `DeletionBlocked` condition and an event, while a NodeRestore in
progress uses the backup (or while it cannot tell, or the store refuses): the archive of a restore in
progress is never deleted.

The same rules answer TTL expiry and retention: they never delete a backup a NodeRestore in progress uses,
and retention deletes the archive only when the backup's deletionPolicy says Delete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..api import naming
from .conditions import Condition
from .events import EventSpec

DELETE_FINALIZER = f"{naming.GROUP}/delete-archive"
RETAIN, DELETE = "Retain", "Delete"
RESTORE_FINISHED = ("Completed", "Failed")
BLOCKED_CONDITION = "DeletionBlocked"
BLOCKED_REQUEUE_SECONDS = 15.0        # a restore in progress: look again soon
STORE_RETRY_SECONDS = 30.0            # the store refused or is unreachable


def store_key(namespace: str, node: str, name: str, uid: str) -> str:
    """The archive's key in its location: a function of the NodeBackup's identity (see nodebackup.py)."""
    return f"{namespace}/{node}/{name}-{(uid or 'nouid')[:8]}.tar.age"


def deletion_policy(body: Mapping[str, Any]) -> str:
    """The NodeBackup's spec.deletionPolicy (Retain when absent or unknown)."""
    value = (body.get("spec") or {}).get("deletionPolicy")
    return DELETE if value == DELETE else RETAIN


def finalizers(body: Mapping[str, Any]) -> list[str]:
    return [str(f) for f in ((body.get("metadata") or {}).get("finalizers") or [])]


def has_finalizer(body: Mapping[str, Any]) -> bool:
    return DELETE_FINALIZER in finalizers(body)


def deleting(body: Mapping[str, Any]) -> bool:
    return bool((body.get("metadata") or {}).get("deletionTimestamp"))


def finalizer_change(body: Mapping[str, Any]) -> list[str] | None:
    """The finalizer list the NodeBackup should have, or None when it is right: ours exactly when the policy is
    Delete. Never added to an object being deleted (the API server refuses that); removed from one only by the
    deletion path, after the archive is gone."""
    current = finalizers(body)
    want = deletion_policy(body) == DELETE
    if deleting(body):
        return None
    if want and DELETE_FINALIZER not in current:
        return [*current, DELETE_FINALIZER]
    if not want and DELETE_FINALIZER in current:
        return [f for f in current if f != DELETE_FINALIZER]
    return None


def finalizer_patch(body: Mapping[str, Any], new: Sequence[str]) -> list[dict[str, Any]]:
    """A JSON patch setting `metadata.finalizers`, refused (422) if the object changed since it was read, so a
    finalizer another controller added meanwhile is never dropped."""
    rv = (body.get("metadata") or {}).get("resourceVersion")
    ops: list[dict[str, Any]] = []
    if rv:
        ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": rv})
    ops.append({"op": "add", "path": "/metadata/finalizers", "value": list(new)})
    return ops


# --------------------------------------------------------------------------------------------------
# Who uses the backup
# --------------------------------------------------------------------------------------------------
def restore_namespaces(body: Mapping[str, Any]) -> list[str]:
    """Where a NodeRestore using this backup may live: its namespace and `spec.restoreNamespaces`."""
    own = str((body.get("metadata") or {}).get("namespace") or "")
    others = [str(n) for n in (body.get("spec") or {}).get("restoreNamespaces") or [] if n and n != own]
    return [own, *sorted(set(others))]


def restores_using(namespace: str, name: str, restores: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """`<namespace>/<name> (<phase>)` of the NodeRestores in progress (not Completed or Failed, not being deleted)
    whose backupRef is the NodeBackup `namespace/name`."""
    found = []
    for restore in restores:
        meta, spec = restore.get("metadata") or {}, restore.get("spec") or {}
        if meta.get("deletionTimestamp"):
            continue
        phase = (restore.get("status") or {}).get("phase")
        if phase in RESTORE_FINISHED:
            continue
        ref = spec.get("backupRef") or {}
        own = str(meta.get("namespace") or "")
        if ref.get("name") == name and (ref.get("namespace") or own) == namespace:
            found.append(f"{own}/{meta.get('name')} ({phase or 'Pending'})")
    return tuple(sorted(found))


@dataclass(frozen=True)
class Usage:
    """The NodeRestores in progress that use a backup, and the namespaces whose NodeRestores could not be read."""

    restores: tuple[str, ...] = ()
    unchecked: tuple[str, ...] = ()       # "<namespace>: <why>"

    @property
    def blocks(self) -> bool:
        return bool(self.restores or self.unchecked)

    def message(self, what: str) -> str:
        if self.restores:
            return (f"{what} waits: NodeRestore {', '.join(self.restores)} is in progress and uses this backup; "
                    f"it goes on when the restore is Completed or Failed")
        return (f"{what} waits: the NodeRestores that may use this backup cannot be read ({'; '.join(self.unchecked)}); "
                f"grant the operator list on noderestores there, or remove the namespace from spec.restoreNamespaces")

    @property
    def reason(self) -> str:
        return "RestoreInProgress" if self.restores else "RestoresUnknown"


# --------------------------------------------------------------------------------------------------
# Deleting a NodeBackup that carries our finalizer
# --------------------------------------------------------------------------------------------------
class DeletionAction(StrEnum):
    RELEASE = "Release"            # remove the finalizer, keep whatever is stored (policy Retain meanwhile)
    DELETE_DATA = "DeleteData"     # delete the archive and the VolumeSnapshots, then remove the finalizer
    BLOCK = "Block"                # not now: say why, look again later


@dataclass(frozen=True)
class ArchiveTarget:
    """What is stored for a backup: the archive key (None: nothing was ever written) and snapshot names."""

    key: str | None
    recorded: bool                       # status.archive names it (else: the key a capture may have written)
    uri: str | None = None
    snapshots: tuple[str, ...] = ()


def archive_target(body: Mapping[str, Any]) -> ArchiveTarget:
    """Where the backup's data is. An interrupted capture may have stored its archive under the deterministic key
    before any status recorded it; a backup that never started capturing stored nothing."""
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    archive = status.get("archive") or {}
    snapshots = tuple(str(s["name"]) for s in status.get("snapshots") or [] if s.get("name"))
    if archive.get("key"):
        return ArchiveTarget(str(archive["key"]), True, archive.get("uri"), snapshots)
    source = spec.get("source") or {}
    if source.get("key"):
        return ArchiveTarget(str(source["key"]), True, None, snapshots)
    if status.get("startedAt"):
        key = store_key(str(meta.get("namespace")), str((spec.get("nodeRef") or {}).get("name")),
                        str(meta.get("name")), str(meta.get("uid") or ""))
        return ArchiveTarget(key, False, None, snapshots)
    return ArchiveTarget(None, False, None, snapshots)


@dataclass(frozen=True)
class DeletionInputs:
    body: Mapping[str, Any]
    usage: Usage
    location_known: bool                  # spec.location, status.archive.location or the MayaNode's
    store_error: str | None = None        # the last attempt to delete from the store failed with this


@dataclass
class DeletionDecision:
    action: DeletionAction
    reason: str
    message: str
    conditions: list[Condition] = field(default_factory=list)
    events: list[EventSpec] = field(default_factory=list)
    requeue: float | None = None


def _blocked_before(body: Mapping[str, Any], condition: str = BLOCKED_CONDITION) -> Mapping[str, Any]:
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == condition), {})


def blocked(body: Mapping[str, Any], reason: str, message: str, requeue: float,
            event_reason: str = "DeletionBlocked", condition: str = BLOCKED_CONDITION) -> DeletionDecision:
    """`condition` (DeletionBlocked) True; an event only when the reason or message changed (no event storm while
    waiting)."""
    previous = _blocked_before(body, condition)
    same = previous.get("status") == "True" and previous.get("reason") == reason and previous.get("message") == message
    events = [] if same else [EventSpec("Warning", event_reason, message[:1000])]
    return DeletionDecision(DeletionAction.BLOCK, reason, message,
                            [Condition(condition, "True", reason, message[:2000])], events, requeue)


def decide_deletion(inputs: DeletionInputs) -> DeletionDecision:
    """The NodeBackup is being deleted and carries our finalizer: what now."""
    body = inputs.body
    name = (body.get("metadata") or {}).get("name")
    if deletion_policy(body) != DELETE:
        return DeletionDecision(DeletionAction.RELEASE, "Retained",
                                f"NodeBackup {name} deleted with deletionPolicy Retain: the archive stays in its store",
                                events=[EventSpec("Normal", "ArchiveRetained",
                                                  "deletionPolicy is Retain: the stored archive is kept")])
    target = archive_target(body)
    if target.key is None and not target.snapshots:
        return DeletionDecision(DeletionAction.RELEASE, "NothingStored",
                                "nothing was stored for this backup: nothing to delete")
    if inputs.usage.blocks:
        return blocked(body, inputs.usage.reason, inputs.usage.message("deleting the archive"),
                       BLOCKED_REQUEUE_SECONDS)
    if target.key is not None and not inputs.location_known:
        if not target.recorded:
            return DeletionDecision(
                DeletionAction.RELEASE, "NothingRecorded",
                f"no archive was recorded and the backup's location is unknown (no spec.location, MayaNode gone): "
                f"if an interrupted capture stored {target.key}, delete it by hand",
                events=[EventSpec("Warning", "ArchiveNotDeleted",
                                  f"no archive recorded and no location known; check for {target.key} by hand")])
        return blocked(body, "LocationUnknown",
                       f"the archive {target.uri or target.key} cannot be deleted: the NodeBackup has no "
                       f"spec.location and its MayaNode (or its spec.backup.location) is gone; recreate the MayaNode's "
                       f"location, or remove the finalizer {DELETE_FINALIZER} to keep the archive",
                       STORE_RETRY_SECONDS, "ArchiveDeleteFailed")
    if inputs.store_error:
        return blocked(body, "StoreError",
                       f"deleting the archive {target.uri or target.key} failed: {inputs.store_error}; retrying every "
                       f"{int(STORE_RETRY_SECONDS)}s (remove the finalizer {DELETE_FINALIZER} to give up and keep it)",
                       STORE_RETRY_SECONDS, "ArchiveDeleteFailed")
    what = []
    if target.key is not None:
        what.append(f"the archive {target.uri or target.key}")
    if target.snapshots:
        what.append(f"VolumeSnapshots {', '.join(target.snapshots)}")
    message = f"deletionPolicy Delete: deleting {' and '.join(what)}"
    return DeletionDecision(DeletionAction.DELETE_DATA, "Deleting", message,
                            events=[EventSpec("Normal", "ArchiveDeleted",
                                              f"deleted {' and '.join(what)} (deletionPolicy Delete)"[:1000])])


def cleared(body: Mapping[str, Any], condition: str = BLOCKED_CONDITION, reason: str = "NotDeleting",
            message: str = "no deletion is pending") -> list[Condition]:
    """`condition` (DeletionBlocked) False again when it was True and what it held is over (e.g. a longer TTL)."""
    if _blocked_before(body, condition).get("status") == "True":
        return [Condition(condition, "False", reason, message)]
    return []
