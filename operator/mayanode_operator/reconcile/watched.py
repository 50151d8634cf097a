"""What a MayaNode pass last read of its namespace, kept while the watches say nothing there changed.

An idle pass read the node's two Deployments, their pods and the namespace's NodeRestores every time: five of
its six Kubernetes requests, 150 a second for a fleet of 1,000 at the default interval, for answers that almost
never change. Here a pass keeps what it read (the small observations, not the objects) and the next pass takes
it again while it is still current, the way a controller reads from its informers. What a kept read is worth:

- Every change in a namespace makes all its kept reads stale at once: a watch event of a pod, a Deployment, a
  NodeRestore or a NodeBackup there whose resourceVersion is new (kopf's re-listings repeat the versions it has
  shown, and change nothing), and every write this operator makes there (before it is sent and when it is
  answered, so that a read made meanwhile is not kept) but to the kinds no kept read is made of (`written`):
  MayaNodes (the height refresh would otherwise spoil every namespace once a minute), Events, Leases.
- A read is kept only when the watches had already shown every pod and Deployment it returned at the same
  resourceVersion: if they lag or do not run (no `watch` permission), nothing is kept and passes read the API
  server as before. NodeRestores need no such check: what a MayaNode pass takes from them (a restore holding
  the node) only moves by this operator's own writes.
- The watches see only the pods and Deployments the workload selector picks (`OperatorConfig.workload_selector`).
  A read is kept only when the selector picks both Deployments and every pod their `matchLabels` select, since a
  pod the watch cannot see could come and go unnoticed; `unwatched` names the Deployments it does not.
- A read is kept for `max_age` seconds at most, the bound on staleness if a watch stalls unnoticed.

A read made while the namespace's epoch moved is not kept. Reads before an action are never served from here:
actions read what they change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

from ..selectors import match_labels, parse_label_selector, selects, selects_every_pod_of

WATCHED_READS_MAX_AGE_SECONDS = 300.0     # about kopf's own watch renewal (settings.watching.server_timeout)
# Writes to these kinds change nothing a pass keeps; any other write in a namespace does (or may: exec, Secrets).
WRITES_THAT_CHANGE_NO_KEPT_READ = frozenset({"mayanodes", "events", "leases"})


def resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class WatchedReads:
    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 max_age: float = WATCHED_READS_MAX_AGE_SECONDS,
                 workload_selector: str = "") -> None:
        self._clock = clock
        self.max_age = max_age
        self.workload_selector = workload_selector
        # namespace → the Deployments there already said to be unwatched
        self._unwatched: dict[str, set[str]] = {}
        # kopf's watches run (set at its startup). Without them (tests, tools driving a runtime alone) nothing is
        # known to change, so nothing is kept.
        self.running = False
        self._epochs: dict[str, int] = {}
        # (kind, namespace) → name → the resourceVersion the watch showed last
        self._versions: dict[tuple[str, str], dict[str, str]] = {}
        # namespace → key → (when it was read, the value); a change in the namespace drops them all
        self._kept: dict[str, dict[Hashable, tuple[float, Any]]] = {}

    @property
    def workload_selector(self) -> str:
        """The label selector of the pod and Deployment watches ("": they see all)."""
        return self._workload_selector

    @workload_selector.setter
    def workload_selector(self, text: str) -> None:
        self._workload_requirements = parse_label_selector(text)
        self._workload_selector = text

    # --- what changes a namespace ---------------------------------------------------------------
    def seen(self, kind: str, namespace: str, name: str, version: str, *, deleted: bool = False) -> None:
        """A watch event: a new resourceVersion (or a deletion) of an object makes the namespace's reads stale."""
        versions = self._versions.setdefault((kind, namespace), {})
        if deleted:
            versions.pop(name, None)
            if not versions:
                del self._versions[(kind, namespace)]
            self.changed(namespace)
        elif versions.get(name) != version:
            versions[name] = version
            self.changed(namespace)

    def written(self, namespace: str, resource: str) -> None:
        """This operator writes (or wrote) to `resource` in the namespace."""
        if resource not in WRITES_THAT_CHANGE_NO_KEPT_READ:
            self.changed(namespace)

    def changed(self, namespace: str) -> None:
        """Something in the namespace changed, or is being changed by this operator."""
        self._epochs[namespace] = self._epochs.get(namespace, 0) + 1
        self._kept.pop(namespace, None)

    # --- kept reads -----------------------------------------------------------------------------
    def epoch(self, namespace: str) -> int:
        """Take it before a read; `keep` the read with it."""
        return self._epochs.get(namespace, 0)

    def covers(self, kind: str, namespace: str, objects: Iterable[Mapping[str, Any]]) -> bool:
        """Whether the watch of `kind` runs in the namespace and has shown each of `objects` as read."""
        versions = self._versions.get((kind, namespace))
        if not versions:
            return False
        return all(versions.get(str((obj.get("metadata") or {}).get("name"))) == resource_version(obj)
                   for obj in objects)

    def unwatched(self, deployments: Iterable[Mapping[str, Any]]) -> list[str]:
        """The Deployments among `deployments` that the workload watch does not see, or whose pods it may not."""
        return [str(meta.get("name")) for deployment in deployments
                for meta in [deployment.get("metadata") or {}]
                if not selects(self._workload_requirements, meta.get("labels") or {})
                or not selects_every_pod_of(self._workload_requirements, match_labels(deployment))]

    def newly_unwatched(self, namespace: str, read: Iterable[str], unwatched: Iterable[str]) -> list[str]:
        """Of the Deployments `read` in the namespace, those `unwatched` that were not so when last read: each is
        said once, and again if it is watched for a while in between."""
        noted = self._unwatched.setdefault(namespace, set())
        unwatched = set(unwatched)
        new = sorted(unwatched - noted)
        noted.difference_update(set(read) - unwatched)
        noted.update(unwatched)
        if not noted:
            del self._unwatched[namespace]
        return new

    def keep(self, namespace: str, key: Hashable, value: Any, epoch: int) -> None:
        if not self.running or epoch != self.epoch(namespace):
            return
        now = self._clock()
        kept = self._kept.setdefault(namespace, {})
        for stale in [k for k, (at, _) in kept.items() if now - at > self.max_age]:
            del kept[stale]
        kept[key] = (now, value)

    def get(self, namespace: str, key: Hashable) -> Any | None:
        """The kept value, or None when there is none or it is stale."""
        entry = (self._kept.get(namespace) or {}).get(key)
        if entry is None:
            return None
        at, value = entry
        return None if self._clock() - at > self.max_age else value
