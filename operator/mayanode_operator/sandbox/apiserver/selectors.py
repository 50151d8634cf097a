"""Label and field selectors with the grammar and error messages of apimachinery."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from .errors import bad_request

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[A-Za-z0-9_.\-]*"
_TOKEN = re.compile(
    rf"\s*(?:(?P<notexists>!\s*(?P<nkey>{_KEY}))"
    rf"|(?P<key>{_KEY})\s*(?:(?P<op>==|=|!=)\s*(?P<value>{_VALUE})"
    rf"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?)\s*(?:,|$)"
)


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str                       # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        raise AssertionError(self.op)


def parse_label_selector(text: str | None) -> list[Requirement]:
    text = (text or "").strip()
    requirements: list[Requirement] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise bad_request(f'unable to parse requirement: found \'{text[pos:]}\', expected: identifier')
        pos = match.end()
        if match.group("notexists"):
            requirements.append(Requirement(match.group("nkey"), "!"))
        elif match.group("op"):
            op = "!=" if match.group("op") == "!=" else "="
            requirements.append(Requirement(match.group("key"), op, (match.group("value"),)))
        elif match.group("setop"):
            values = tuple(v.strip() for v in match.group("values").split(",") if v.strip())
            requirements.append(Requirement(match.group("key"), match.group("setop"), values))
        else:
            requirements.append(Requirement(match.group("key"), "exists"))
    return requirements


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
