"""plan/versions.py: semver parsing and precedence, tables and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mayanode_operator.plan.versions import (
    SemVer,
    Step,
    at_least,
    compare,
    parse_version,
    share_at_least,
    step_between,
)


@pytest.mark.parametrize("text,expected", [
    ("1.111.0", SemVer(1, 111, 0)),
    ("v1.2.3", SemVer(1, 2, 3)),
    ("0.0.0", SemVer(0, 0, 0)),
    ("1.112.0-rc.1", SemVer(1, 112, 0, ("rc", "1"))),
    ("1.112.0+build.5", SemVer(1, 112, 0, (), "build.5")),
    (" 1.2.3 ", SemVer(1, 2, 3)),
])
def test_parses(text, expected):
    assert parse_version(text) == expected


@pytest.mark.parametrize("text", [None, "", "1.2", "1.2.3.4", "01.2.3", "1.2.x", "mainnet-1.2.3", "1.2.3-",
                                  "1.2.3-01", "9999999999.0.0", 5, "latest"])
def test_refuses(text):
    assert parse_version(text) is None


@pytest.mark.parametrize("a,b,result", [
    ("1.111.0", "1.111.0", 0),
    ("1.111.0", "1.112.0", -1),
    ("1.112.0", "1.111.9", 1),
    ("2.0.0", "1.999.999", 1),
    ("1.112.0-rc.1", "1.112.0", -1),
    ("1.112.0-rc.2", "1.112.0-rc.10", -1),      # numeric identifiers compare as numbers
    ("1.112.0-1", "1.112.0-alpha", -1),        # numeric before alphanumeric
    ("1.112.0-alpha", "1.112.0-alpha.1", -1),  # fewer identifiers first
    ("1.112.0+a", "1.112.0+b", 0),             # build metadata is ignored
    ("1.2.3", "nonsense", None),
])
def test_compare(a, b, result):
    assert compare(a, b) == result


@pytest.mark.parametrize("running,target,step", [
    ("1.111.0", "1.111.0", Step.SAME),
    ("1.111.0", "1.111.1", Step.PATCH),
    ("1.111.0", "1.112.0", Step.MINOR),
    ("1.111.0", "2.0.0", Step.MAJOR),
    ("1.112.0-rc.1", "1.112.0", Step.PRERELEASE),
    ("1.112.0", "1.111.0", Step.DOWNGRADE),
    ("1.112.0", "junk", None),
])
def test_step_between(running, target, step):
    assert step_between(running, target) == step


def test_share_and_at_least():
    assert share_at_least(["1.111.0", "1.112.0", "1.113.0", "bad"], "1.112.0") == (2, 4)
    assert at_least("1.112.0", "1.112.0") and not at_least(None, "1.0.0") and not at_least("1.0.0", None)


identifier = st.one_of(st.integers(0, 50).map(str), st.text("abcxyz-", min_size=1, max_size=4))
semvers = st.builds(SemVer, st.integers(0, 20), st.integers(0, 200), st.integers(0, 20),
                    st.lists(identifier, max_size=3).map(tuple))


@given(semvers)
def test_round_trip(version):
    assert parse_version(str(version)) == version


@given(semvers, semvers, semvers)
def test_ordering_is_a_total_order(a, b, c):
    assert (a < b) + (b < a) + a.same_precedence(b) == 1
    if a <= b and b <= c:
        assert a <= c
    assert compare(str(a), str(b)) == (0 if a.same_precedence(b) else (-1 if a < b else 1))


@given(st.text(max_size=40))
def test_never_crashes_on_text(text):
    parsed = parse_version(text)
    assert parsed is None or isinstance(parsed, SemVer)
    assert step_between(text, "1.2.3") in (None, *Step)
