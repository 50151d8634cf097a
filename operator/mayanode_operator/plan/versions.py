"""mayanode versions: parsing and ordering (Semantic Versioning 2.0 precedence). Pure.

mayanode tags are `x.y.z` (`mainnet-1.111.0`); release candidates (`1.112.0-rc.1`) sort before the
release, build metadata (`+abc`) is ignored for ordering, a leading `v` is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_SEMVER = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
MAX_COMPONENT = 10**9        # larger numbers are not versions anyone ships; refusing them keeps ordering sane


@dataclass(frozen=True, order=False)
class SemVer:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + self.build
        return text

    @property
    def core(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    @property
    def major_minor(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def _key(self) -> tuple:
        # A release sorts after its pre-releases; numeric identifiers sort before alphanumeric ones.
        if not self.prerelease:
            return (self.core, 1, ())
        parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.core, 0, parts)

    def __lt__(self, other: SemVer) -> bool:
        return self._key() < other._key()

    def __le__(self, other: SemVer) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: SemVer) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: SemVer) -> bool:
        return self._key() >= other._key()

    def same_precedence(self, other: SemVer) -> bool:
        return self._key() == other._key()


def parse_version(text: str | None) -> SemVer | None:
    """`1.111.0` → SemVer(1, 111, 0); None for anything that is not a version."""
    if not isinstance(text, str):
        return None
    match = _SEMVER.match(text.strip())
    if not match:
        return None
    numbers = [int(match.group(k)) for k in ("major", "minor", "patch")]
    if any(n > MAX_COMPONENT for n in numbers):
        return None
    pre = tuple(match.group("pre").split(".")) if match.group("pre") else ()
    if any(p.isdigit() and len(p) > 1 and p.startswith("0") for p in pre):
        return None          # semver: numeric identifiers have no leading zeros
    return SemVer(*numbers, prerelease=pre, build=match.group("build") or "")


def compare(a: str | None, b: str | None) -> int | None:
    """-1, 0 or 1 as `a` sorts before, with or after `b`; None when either is not a version."""
    va, vb = parse_version(a), parse_version(b)
    if va is None or vb is None:
        return None
    if va.same_precedence(vb):
        return 0
    return -1 if va < vb else 1


def at_least(version: str | None, minimum: str | None) -> bool:
    """`version` >= `minimum` (False when either is unknown)."""
    result = compare(version, minimum)
    return result is not None and result >= 0


class Step(StrEnum):
    """How a target relates to the running version."""

    SAME = "Same"
    PATCH = "Patch"
    MINOR = "Minor"
    MAJOR = "Major"
    PRERELEASE = "Prerelease"     # same x.y.z, pre-release identifiers differ
    DOWNGRADE = "Downgrade"


def step_between(running: str, target: str) -> Step | None:
    """The kind of move from `running` to `target`; None when either is not a version."""
    vr, vt = parse_version(running), parse_version(target)
    if vr is None or vt is None:
        return None
    if vt.same_precedence(vr):
        return Step.SAME
    if vt < vr:
        return Step.DOWNGRADE
    if vt.major != vr.major:
        return Step.MAJOR
    if vt.minor != vr.minor:
        return Step.MINOR
    if vt.patch != vr.patch:
        return Step.PATCH
    return Step.PRERELEASE


def share_at_least(versions: list[str] | tuple[str, ...], minimum: str) -> tuple[int, int]:
    """(how many of `versions` are >= minimum, how many versions there are)."""
    return sum(1 for v in versions if at_least(v, minimum)), len(versions)
