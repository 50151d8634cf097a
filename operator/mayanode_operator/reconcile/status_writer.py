"""Status writes in the middle of a pass, for what must be on record before an action happens.

A reconcile normally writes one status patch at the end. A transaction is different: that it was
sent must be stored *before* it is sent, or an operator that dies in between would send it again
after a restart. `StatusWriter.persist` writes such a part of the status at once and keeps the
baseline of the final patch in step, so the end-of-pass patch still says exactly what changed.

A write whose answer is lost may have landed anyway. The facet stops there, so what it recorded as sent was not
sent. `UnsentRecords` remembers that in this process: when a later pass finds such a record stored, it plans from
the status as it was before the record, and sends at once instead of waiting out the pending timeout meant for
a transaction that may be in flight. Another process (after a restart) does not know, and keeps to the timeout.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..plan.patches import apply_merge_patch, merge_patch

__all__ = ["StatusWriter", "UnsentRecords", "apply_merge_patch"]

PatchStatus = Callable[[Mapping[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class _Unsent:
    before: Any            # the key's value before the record (None: absent)
    record: Any            # the key's value the failed write would have stored


class UnsentRecords:
    """Status records of this process whose write failed, so the action they announce was not taken."""

    def __init__(self) -> None:
        self._by_object: dict[str, dict[str, _Unsent]] = {}

    def remember(self, uid: str, key: str, before: Any, record: Any) -> None:
        self._by_object.setdefault(uid, {})[key] = _Unsent(copy.deepcopy(before), copy.deepcopy(record))

    def forget(self, uid: str, key: str) -> None:
        entries = self._by_object.get(uid)
        if entries is not None:
            entries.pop(key, None)
            if not entries:
                del self._by_object[uid]

    def as_planned_from(self, uid: str, stored: Mapping[str, Any]) -> dict[str, Any]:
        """The stored status with each landed-but-unsent record replaced by what was there before it.

        An entry lasts while the key holds the record or its earlier value (a read that predates the write), and
        until a write of this process replaces it (`StatusWriter.persist`); anything else stored ends it."""
        status = dict(stored)
        for key, unsent in list(self._by_object.get(uid, {}).items()):
            value = stored.get(key)
            if value == unsent.record:
                if unsent.before is None:
                    status.pop(key, None)
                else:
                    status[key] = copy.deepcopy(unsent.before)
            elif value != unsent.before:
                self.forget(uid, key)
        return status

    def holds(self, uid: str) -> bool:
        return bool(self._by_object.get(uid))

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._by_object.values())


class StatusWriter:
    """Holds what the server's status is known to be; writes parts of it at once when asked."""

    def __init__(self, stored: Mapping[str, Any] | None, patch_status: PatchStatus,
                 unsent: UnsentRecords | None = None, uid: str | None = None) -> None:
        self.stored: dict[str, Any] = copy.deepcopy(dict(stored or {}))
        self._patch_status = patch_status
        self._unsent = unsent if uid else None
        self._uid = uid or ""

    async def persist(self, part: Mapping[str, Any]) -> None:
        """Write these top-level status keys now (only what differs).

        The caller acts on the record only if this returns; when it raises, the record may still have landed,
        and is remembered as one whose action was not taken."""
        patch = merge_patch(self.stored, part)
        if not patch:
            return
        try:
            await self._patch_status(patch)
        except BaseException:
            if self._unsent is not None:
                after = apply_merge_patch(self.stored, patch)
                for key in patch:
                    self._unsent.remember(self._uid, key, self.stored.get(key), after.get(key))
            raise
        self.stored = apply_merge_patch(self.stored, patch)
        if self._unsent is not None:
            for key in patch:
                self._unsent.forget(self._uid, key)

    def final_patch(self, new_status: Mapping[str, Any]) -> dict[str, Any]:
        """The end-of-pass patch: from what is stored (including parts persisted meanwhile) to `new_status`."""
        return merge_patch(self.stored, new_status)
