"""Status writes in the middle of a pass, for what must be on record before an action happens.

A reconcile normally writes one status patch at the end. A transaction is different: that it was
sent must be stored *before* it is sent, or an operator that dies in between would send it again
after a restart. `StatusWriter.persist` writes such a part of the status at once and keeps the
baseline of the final patch in step, so the end-of-pass patch still says exactly what changed.

A write can fail with the server's answer unknown (it may have landed), and the pass then knows more than what is
stored. The record write failed: the facet stops there, so what it recorded as sent was not sent. The end-of-pass
write failed: the facet's record still says "sent" where the pass learned that nothing went out. `UnsentRecords`
remembers, in this process, what the status should have been: a later pass that finds the record stored plans
from that instead, and sends at once rather than waiting out the pending timeout meant for a transaction that may
be in flight. Another process (after a restart) does not know, and keeps to the timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..plan.patches import apply_merge_patch, copy_document, merge_patch

__all__ = ["StatusWriter", "UnsentRecords", "apply_merge_patch"]

logger = logging.getLogger(__name__)
PatchStatus = Callable[[Mapping[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class _Known:
    stored_as: Any         # what the server may hold for the key (None: absent)…
    plan_from: Any         # …and what it would hold had the pass's writes gone through (None: absent)


class UnsentRecords:
    """Status records of this process that say more was sent than was: their write, or the write that should have
    corrected them, failed."""

    def __init__(self) -> None:
        self._by_object: dict[str, dict[str, _Known]] = {}

    def remember(self, uid: str, key: str, *, stored_as: Any, plan_from: Any) -> None:
        self._by_object.setdefault(uid, {})[key] = _Known(copy_document(stored_as), copy_document(plan_from))

    def forget(self, uid: str, key: str) -> None:
        entries = self._by_object.get(uid)
        if entries is not None:
            entries.pop(key, None)
            if not entries:
                del self._by_object[uid]

    def forget_object(self, uid: str) -> None:
        """The object is gone: nothing of it is written again."""
        self._by_object.pop(uid, None)

    def as_planned_from(self, uid: str, stored: Mapping[str, Any]) -> dict[str, Any]:
        """The stored status with each such record replaced by what the status should be.

        An entry lasts while the key holds either value (the failed write did or did not land), until a write of
        this process replaces it (`StatusWriter.persist`); anything else stored ends it."""
        status = dict(stored)
        for key, known in list(self._by_object.get(uid, {}).items()):
            value = stored.get(key)
            if value == known.stored_as:
                logger.info("status.%s of %s: planned from what this process knows, not from its stored record",
                            key, uid)
                if known.plan_from is None:
                    status.pop(key, None)
                else:
                    status[key] = copy_document(known.plan_from)
            elif value != known.plan_from:
                logger.info("status.%s of %s: stored as neither known value; the stored one counts", key, uid)
                self.forget(uid, key)
        return status

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._by_object.values())


class StatusWriter:
    """Holds what the server's status is known to be; writes parts of it at once when asked."""

    def __init__(self, stored: Mapping[str, Any] | None, patch_status: PatchStatus,
                 unsent: UnsentRecords | None = None, uid: str | None = None) -> None:
        # A copy: the pass's body may be changed by whoever holds it, `stored` must stay what the server holds. Never
        # changed in place itself (each write replaces it), so writes may share its untouched parts.
        self.stored: dict[str, Any] = copy_document(dict(stored or {}))
        self._patch_status = patch_status
        self._unsent = unsent if uid else None
        self._uid = uid or ""
        self._recorded: dict[str, Any] = {}       # keys persisted in this pass, as written
        self.left_unsent = False                  # a record's write failed in this pass: its action was not taken

    async def persist(self, part: Mapping[str, Any]) -> None:
        """Write these top-level status keys now (only what differs).

        The caller acts on the record only if this returns; when it raises, the record may still have landed,
        and is remembered as one whose action was not taken."""
        patch, before = merge_patch(self.stored, part), self.stored

        def not_taken(unsent: UnsentRecords, after: Mapping[str, Any]) -> None:
            for key in patch:
                unsent.remember(self._uid, key, stored_as=after.get(key), plan_from=before.get(key))
            self.left_unsent = True

        after = await self._write(patch, not_taken)
        for key in patch:
            self._recorded[key] = after.get(key)
            if self._unsent is not None:
                self._unsent.forget(self._uid, key)

    def final_patch(self, new_status: Mapping[str, Any]) -> dict[str, Any]:
        """The end-of-pass patch: from what is stored (including parts persisted meanwhile) to `new_status`."""
        return merge_patch(self.stored, new_status)

    async def write_final(self, new_status: Mapping[str, Any]) -> None:
        """The end-of-pass patch, written. When it fails, each record of this pass that it would have corrected (a
        transaction recorded as sent that did not go out) is remembered with its corrected value."""

        def not_corrected(unsent: UnsentRecords, after: Mapping[str, Any]) -> None:
            for key, recorded in self._recorded.items():
                if after.get(key) != recorded:
                    unsent.remember(self._uid, key, stored_as=recorded, plan_from=after.get(key))

        await self._write(self.final_patch(new_status), not_corrected)

    async def _write(self, patch: Mapping[str, Any],
                     on_unknown: Callable[[UnsentRecords, Mapping[str, Any]], None]) -> Mapping[str, Any]:
        """Send `patch` (if any) and keep `stored` in step; on a failure, `on_unknown` gets what it would have made."""
        if not patch:
            return self.stored
        after = apply_merge_patch(self.stored, patch)
        try:
            await self._patch_status(patch)
        except BaseException:
            if self._unsent is not None:
                on_unknown(self._unsent, after)
            raise
        self.stored = after
        return after
