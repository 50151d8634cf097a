"""Label selectors: the API server's text form, and whether a selector picks every pod a Deployment selects."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mayanode_operator.selectors import (
    Requirement, match_labels, parse_label_selector, selects, selects_every_pod_of,
)

PARSED = {
    "": (),
    "a=b": (Requirement("a", "=", ("b",)),),
    "a==b": (Requirement("a", "=", ("b",)),),
    "a!=b": (Requirement("a", "!=", ("b",)),),
    "app.kubernetes.io/name in (mayanode,bifrost)":
        (Requirement("app.kubernetes.io/name", "in", ("mayanode", "bifrost")),),
    "tier notin ( test , dev )": (Requirement("tier", "notin", ("test", "dev")),),
    "a, !b": (Requirement("a", "exists"), Requirement("b", "!")),
    " a = b , c in (d) ": (Requirement("a", "=", ("b",)), Requirement("c", "in", ("d",))),
}


@pytest.mark.parametrize("text", PARSED)
def test_parse(text):
    assert parse_label_selector(text) == PARSED[text]


@pytest.mark.parametrize("text, message", [
    ("=b", "found '=b', expected: identifier"),
    ("a in ()", "values set can't be empty"),
    ("a b", "found 'a b'"),
    ("a=b;c", "found 'a=b;c'"),
])
def test_what_does_not_parse_says_where(text, message):
    with pytest.raises(ValueError, match="unable to parse requirement") as err:
        parse_label_selector(text)
    assert message in str(err.value)


NODE_LAUNCHER = {"app.kubernetes.io/name": "mayanode", "app.kubernetes.io/instance": "mayanode"}
EVERY_POD = [
    # (selector, a Deployment's matchLabels, picks every pod it selects)
    ("", {}, True),
    ("app.kubernetes.io/name in (mayanode,bifrost)", NODE_LAUNCHER, True),
    ("app.kubernetes.io/name in (mayanode,bifrost)", {"app.kubernetes.io/name": "gateway"}, False),
    ("app.kubernetes.io/name in (mayanode,bifrost)", {"app": "mayanode"}, False),     # a pod may lack the label
    ("app.kubernetes.io/name", NODE_LAUNCHER, True),
    ("app.kubernetes.io/name=mayanode", NODE_LAUNCHER, True),
    ("app.kubernetes.io/name!=bifrost", NODE_LAUNCHER, True),
    ("app.kubernetes.io/name!=bifrost", {}, False),                                   # a pod may say bifrost
    ("tier notin (test)", {"tier": "validator"}, True),
    ("tier notin (test)", {"tier": "test"}, False),
    ("!canary", NODE_LAUNCHER, False),                  # no matchLabels can rule out a label a pod adds
    ("app.kubernetes.io/name=mayanode,tier=validator", NODE_LAUNCHER, False),
]


@pytest.mark.parametrize("selector, labels, expected", EVERY_POD)
def test_selects_every_pod_of(selector, labels, expected):
    assert selects_every_pod_of(parse_label_selector(selector), labels) is expected


def test_match_labels_of_a_deployment():
    assert match_labels({"spec": {"selector": {"matchLabels": NODE_LAUNCHER}}}) == NODE_LAUNCHER
    assert match_labels({"spec": {}}) == {} == match_labels({})


KEYS = st.sampled_from(["a", "b", "c"])
VALUES = st.sampled_from(["x", "y", "z"])
REQUIREMENTS = st.builds(
    Requirement, KEYS, st.sampled_from(["=", "!=", "in", "notin", "exists", "!"]),
    st.lists(VALUES, min_size=1, max_size=2, unique=True).map(tuple))
LABELS = st.dictionaries(KEYS, VALUES, max_size=3)


def supersets(labels: dict, requirements: tuple) -> list[dict]:
    """`labels`, and `labels` with one more label of a key the requirements name: enough to break any requirement
    that the labels alone do not decide."""
    more = [{**labels, r.key: value} for r in requirements for value in (*r.values, "other") if r.key not in labels]
    return [labels, *more]


@given(st.lists(REQUIREMENTS, max_size=3).map(tuple), LABELS)
def test_picking_every_pod_means_every_pod(requirements, labels):
    """Sound (every label set holding the matchLabels is picked) and not needlessly strict (when it says no, some
    pod the Deployment may run is not picked)."""
    picked = [selects(requirements, pod) for pod in supersets(labels, requirements)]
    if selects_every_pod_of(requirements, labels):
        assert all(picked)
    else:
        assert not all(picked)
