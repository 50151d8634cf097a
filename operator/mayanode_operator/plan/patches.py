"""JSON merge patches (RFC 7386) computed from an old and a new document."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any


_SCALARS = (str, int, float, type(None))
_PLAIN = (*_SCALARS, list, tuple)


def _is_mapping(value: Any) -> bool:
    """isinstance(value, Mapping), without the ABC's slower check for the plain JSON types that fill a status."""
    return isinstance(value, dict) or (not isinstance(value, _PLAIN) and isinstance(value, Mapping))


def copy_document(doc: Any) -> Any:
    """A deep copy of JSON-shaped data (what a status holds): a pickle round trip, several times faster than
    `copy.deepcopy` on a status (no memo of every object, all in C). Only ever loads what it just dumped."""
    return pickle.loads(pickle.dumps(doc, pickle.HIGHEST_PROTOCOL))


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
        elif before == value:       # most of a status is unchanged: one comparison in C instead of a walk
            continue
        elif _is_mapping(value) and _is_mapping(before):
            nested = merge_patch(before, {**{k: None for k in before if k not in value}, **value})
            if nested:
                patch[key] = nested
        else:
            patch[key] = value
    return patch


def apply_merge_patch(doc: Mapping[str, Any] | None, patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386: what a server stores after applying `patch` to `doc`.

    New mappings along the patched paths and copies of the patch's values; what the patch does not touch is shared
    with `doc` (a status is large and a patch small), so neither is to be changed in place afterwards."""
    result = dict(doc or {})
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif _is_mapping(value):
            before = result.get(key)
            result[key] = apply_merge_patch(before if _is_mapping(before) else {}, value)
        else:
            result[key] = copy_document(value)
    return result


def without_nulls(doc: Any) -> Any:
    """What a server stores after a merge patch: nested nulls mean "absent"."""
    if _is_mapping(doc):
        return {key: value if isinstance(value, _SCALARS) else without_nulls(value)
                for key, value in doc.items() if value is not None}
    if isinstance(doc, list):
        return [item if isinstance(item, _SCALARS) else without_nulls(item) for item in doc]
    return doc


def owned_part(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A planner's part of a status: top-level None stays (delete that key), nested nulls go."""
    return {key: (None if value is None else without_nulls(value)) for key, value in doc.items()}
