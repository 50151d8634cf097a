"""JSON merge patches (RFC 7386) computed from an old and a new document."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def merge_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The smallest merge patch turning `old` into `new` for the keys `new` names.

    Keys set to None in `new` are deleted; keys absent from `new` are left alone, so planners
    that own different parts of one status can each contribute a patch.
    """
    old = old or {}
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if value is None:
            if key in old:
                patch[key] = None
        elif isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = merge_patch(before, {**{k: None for k in before if k not in value}, **value})
            if nested:
                patch[key] = nested
        elif before != value:
            patch[key] = value
    return patch


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


def without_nulls(doc: Any) -> Any:
    """What a server stores after a merge patch: nested nulls mean "absent"."""
    if isinstance(doc, Mapping):
        return {key: without_nulls(value) for key, value in doc.items() if value is not None}
    if isinstance(doc, list):
        return [without_nulls(item) for item in doc]
    return doc


def owned_part(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A planner's part of a status: top-level None stays (delete that key), nested nulls go."""
    return {key: (None if value is None else without_nulls(value)) for key, value in doc.items()}
