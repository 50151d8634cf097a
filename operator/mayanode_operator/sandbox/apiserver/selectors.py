"""Label and field selectors with the grammar and error messages of apimachinery."""

from __future__ import annotations

import re
from typing import Any, Callable

from ...selectors import Requirement, parse_label_selector as parse
from .errors import bad_request


def parse_label_selector(text: str | None) -> tuple[Requirement, ...]:
    """The operator's parser (one grammar for both), its errors as the API server's 400."""
    try:
        return parse(text)
    except ValueError as err:
        raise bad_request(str(err)) from None


def label_matcher(text: str | None) -> Callable[[dict[str, Any]], bool]:
    requirements = parse_label_selector(text)

    def matches(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r.matches(labels) for r in requirements)

    return matches


def selector_from_label_selector(selector: dict[str, Any] | None) -> Callable[[dict[str, Any]], bool]:
    """A `metav1.LabelSelector` (matchLabels + matchExpressions) as a predicate on objects."""
    selector = selector or {}
    requirements = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        requirements.append(Requirement(expr["key"], ops[expr["operator"]], tuple(expr.get("values") or ())))

    def matches(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r.matches(labels) for r in requirements)

    return matches


def label_selector_string(selector: dict[str, Any] | None) -> str:
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = expr["operator"]
        if op == "Exists":
            parts.append(expr["key"])
        elif op == "DoesNotExist":
            parts.append(f"!{expr['key']}")
        else:
            parts.append(f"{expr['key']} {op.lower()} ({','.join(sorted(expr.get('values') or []))})")
    return ",".join(parts)


def lookup(obj: dict[str, Any], dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def field_matcher(text: str | None, supported: tuple[str, ...], kind: str,
                  version: str) -> Callable[[dict[str, Any]], bool]:
    """Field selectors support `=`, `==`, `!=` on the fields each kind declares."""
    terms: list[tuple[str, bool, str]] = []
    for raw in (text or "").split(","):
        raw = raw.strip()
        if not raw:
            continue
        match = re.fullmatch(r"([^=!]+?)\s*(==|=|!=)\s*(.*)", raw)
        if not match:
            raise bad_request(f'invalid selector: \'{text}\'; can\'t understand \'{raw}\'')
        key, op, value = match.groups()
        if key not in supported:
            raise bad_request(f'field label not supported: {key}')
        terms.append((key, op == "!=", value))

    def matches(obj: dict[str, Any]) -> bool:
        for key, negate, value in terms:
            actual = lookup(obj, key)
            actual = "" if actual is None else str(actual).lower() if isinstance(actual, bool) else str(actual)
            if (actual == value) == negate:
                return False
        return True

    return matches
