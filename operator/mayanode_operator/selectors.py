"""Kubernetes label selectors: the text form the API server takes (`a=b,c in (d,e),!f`), and which Deployments'
pods a selector is sure to see.

The operator watches only the pods and Deployments a selector picks (`OperatorConfig.workload_selector`), so it
must know whether a Deployment's pods are among them: a pod a Deployment creates carries at least the
Deployment's `matchLabels`, and only what those labels decide is certain.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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

    def matches(self, labels: Mapping[str, str]) -> bool:
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

    def holds_for_every_superset_of(self, labels: Mapping[str, str]) -> bool:
        """Whether every label set holding `labels` (and any others) meets this requirement: only what `labels`
        themselves fix counts, since any other key may be present or not, with any value."""
        if self.key not in labels:
            return False            # another label may be there or not, with any value: nothing is certain
        return self.matches(labels)


def parse_label_selector(text: str | None) -> tuple[Requirement, ...]:
    """The requirements of a selector in the API server's text form; empty text selects everything. Raises
    ValueError, with the API server's message, when it does not parse."""
    text = (text or "").strip()
    requirements: list[Requirement] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ValueError(f"unable to parse requirement: found '{text[pos:]}', expected: identifier")
        pos = match.end()
        if match.group("notexists"):
            requirements.append(Requirement(match.group("nkey"), "!"))
        elif match.group("op"):
            op = "!=" if match.group("op") == "!=" else "="
            requirements.append(Requirement(match.group("key"), op, (match.group("value"),)))
        elif match.group("setop"):
            values = tuple(v.strip() for v in match.group("values").split(",") if v.strip())
            if not values:
                raise ValueError("unable to parse requirement: for 'in', 'notin' operators, values set can't be empty")
            requirements.append(Requirement(match.group("key"), match.group("setop"), values))
        else:
            requirements.append(Requirement(match.group("key"), "exists"))
    return tuple(requirements)


def match_labels(deployment: Mapping[str, Any]) -> dict[str, str]:
    """A Deployment's `spec.selector.matchLabels`."""
    return dict(((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})


def selects(requirements: tuple[Requirement, ...], labels: Mapping[str, str]) -> bool:
    return all(requirement.matches(labels) for requirement in requirements)


def selects_every_pod_of(requirements: tuple[Requirement, ...], match_labels: Mapping[str, str]) -> bool:
    """Whether the selector picks every pod that a Deployment with these `matchLabels` selects, whatever other
    labels the pod has."""
    return all(requirement.holds_for_every_superset_of(match_labels) for requirement in requirements)
