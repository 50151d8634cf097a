"""Status writes in the middle of a pass, for what must be on record before an action happens.

A reconcile normally writes one status patch at the end. A transaction is different: that it was
sent must be stored *before* it is sent, or an operator that dies in between would send it again
after a restart. `StatusWriter.persist` writes such a part of the status at once and keeps the
baseline of the final patch in step, so the end-of-pass patch still says exactly what changed.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..plan.patches import merge_patch

PatchStatus = Callable[[Mapping[str, Any]], Awaitable[Any]]


def apply_merge_patch(doc: Mapping[str, Any] | None, patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386: what a server stores after applying `patch` to `doc`."""
    result = copy.deepcopy(dict(doc or {}))
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            before = result.get(key)
            result[key] = apply_merge_patch(before if isinstance(before, Mapping) else {}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


class StatusWriter:
    """Holds what the server's status is known to be; writes parts of it at once when asked."""

    def __init__(self, stored: Mapping[str, Any] | None, patch_status: PatchStatus) -> None:
        self.stored: dict[str, Any] = copy.deepcopy(dict(stored or {}))
        self._patch_status = patch_status

    async def persist(self, part: Mapping[str, Any]) -> None:
        """Write these top-level status keys now (only what differs)."""
        patch = merge_patch(self.stored, part)
        if patch:
            await self._patch_status(patch)
            self.stored = apply_merge_patch(self.stored, patch)

    def final_patch(self, new_status: Mapping[str, Any]) -> dict[str, Any]:
        """The end-of-pass patch: from what is stored (including parts persisted meanwhile) to `new_status`."""
        return merge_patch(self.stored, new_status)
