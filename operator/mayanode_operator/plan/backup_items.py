"""What a NodeBackup must hold, and what to read given what is on the volumes. Pure.

The node's identity (DOMAIN.md): in the mayanode home `MAYAChain-ED25519`, `keyring-file/`,
`config/node_key.json`, `config/priv_validator_key.json`, `data/priv_validator_state.json`; in the
bifrost home the TSS key shares `localstate-*.json`; the mnemonic and password Secrets.

Capture is: list what is there (`find`), `plan_capture` (expected vs present), then read exactly the
planned paths. Every expected item that is not there is listed in `missing`, never skipped silently.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..api.mayanode import MayaNodeSpec

Kind = Literal["file", "dir", "glob"]

MAYANODE, BIFROST, SECRET = "mayanode", "bifrost", "secret"
CONSENSUS_KEY_PATH = "config/priv_validator_key.json"
SIGN_STATE_PATH = "data/priv_validator_state.json"
KEY_SHARE_GLOB = "localstate-*.json"


def key_share_name(vault_pub_key: str) -> str:
    return f"localstate-{vault_pub_key}.json"


def vault_of_key_share(path: str) -> str | None:
    """`localstate-<vault>.json` → `<vault>`; None for anything else."""
    base = posixpath.basename(path)
    if base.startswith("localstate-") and base.endswith(".json") and len(base) > len("localstate-.json"):
        return base[len("localstate-"):-len(".json")]
    return None


@dataclass(frozen=True)
class VolumeTarget:
    """Where a component's home is: in the running container, or inside its PVC for a helper pod."""

    component: str
    deployment: str
    container: str
    pvc: str
    home: str
    sub_path: str

    @property
    def helper_root(self) -> str:
        """The home as a helper pod that mounts the PVC at /data sees it."""
        return posixpath.join("/data", self.sub_path) if self.sub_path else "/data"


@dataclass(frozen=True)
class ExpectedFile:
    component: str
    path: str                 # relative to the home; a directory ends with "/"; a glob holds "*"
    kind: Kind
    required: bool = True
    critical: bool = False    # without it the backup is worthless: Failed, nothing stored

    @property
    def label(self) -> str:
        return f"{self.component}/{self.path}"


@dataclass(frozen=True)
class ExpectedSecret:
    secret: str
    key: str
    required: bool = True
    critical: bool = False

    @property
    def path(self) -> str:
        return f"{self.secret}/{self.key}"


@dataclass(frozen=True)
class ExpectedSet:
    targets: tuple[VolumeTarget, ...]
    files: tuple[ExpectedFile, ...]
    secrets: tuple[ExpectedSecret, ...]

    def target(self, component: str) -> VolumeTarget:
        return next(t for t in self.targets if t.component == component)

    def files_of(self, component: str) -> tuple[ExpectedFile, ...]:
        return tuple(f for f in self.files if f.component == component)


@dataclass(frozen=True)
class Missing:
    component: str
    path: str
    reason: str
    critical: bool = False

    def to_status(self) -> dict[str, str]:
        return {"component": self.component, "path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class CapturePlan:
    read: Mapping[str, tuple[str, ...]]          # component → relative paths to read, sorted
    secrets: tuple[ExpectedSecret, ...]
    missing: tuple[Missing, ...] = field(default_factory=tuple)


def volume_targets(spec: MayaNodeSpec) -> tuple[VolumeTarget, VolumeTarget]:
    m, b = spec.mayanode, spec.bifrost
    return (VolumeTarget(MAYANODE, m.deployment, m.container, m.pvc, m.home, m.volume_sub_path),
            VolumeTarget(BIFROST, b.deployment, b.container, b.pvc, b.home, b.volume_sub_path))


def expected_items(spec: MayaNodeSpec, *, member_vault: str | None = None) -> ExpectedSet:
    """The identity of the node `spec` describes. `member_vault`: the current Asgard vault when the node is
    one of its members; then its key share `localstate-<vault>.json` is required, not merely welcome."""
    files = [
        ExpectedFile(MAYANODE, "MAYAChain-ED25519", "file"),
        ExpectedFile(MAYANODE, "keyring-file/", "dir"),
        ExpectedFile(MAYANODE, "config/node_key.json", "file"),
        ExpectedFile(MAYANODE, CONSENSUS_KEY_PATH, "file", critical=True),
        ExpectedFile(MAYANODE, SIGN_STATE_PATH, "file"),
        ExpectedFile(BIFROST, KEY_SHARE_GLOB, "glob", required=False),
    ]
    if member_vault:
        files.append(ExpectedFile(BIFROST, key_share_name(member_vault), "file"))
    secrets = (
        ExpectedSecret(spec.secrets.mnemonic.name, spec.secrets.mnemonic.key, critical=True),
        ExpectedSecret(spec.secrets.password.name, spec.secrets.password.key),
    )
    return ExpectedSet(targets=volume_targets(spec), files=tuple(files), secrets=secrets)


def list_roots(expected: Sequence[ExpectedFile]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What to `find` in one component: (start paths for files and directories, globs at the top level)."""
    starts = sorted({f.path.rstrip("/") for f in expected if f.kind in ("file", "dir")})
    globs = sorted({f.path for f in expected if f.kind == "glob"})
    return tuple(starts), tuple(globs)


def _under(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip("/") + "/")


def plan_capture(expected: ExpectedSet, present: Mapping[str, Iterable[str] | None],
                 unreadable: Mapping[str, str] | None = None) -> CapturePlan:
    """Expected vs present, per component. `present[component]` is the relative paths of the regular files
    found (None: the component could not be listed at all; `unreadable[component]` says why)."""
    unreadable = unreadable or {}
    read: dict[str, set[str]] = {}
    missing: list[Missing] = []
    for target in expected.targets:
        component = target.component
        found = present.get(component)
        rules = expected.files_of(component)
        if found is None:
            why = unreadable.get(component, "the volume could not be listed")
            missing += [Missing(component, rule.path, why, rule.critical) for rule in rules if rule.required]
            continue
        found_set = {p for p in found if p}
        chosen = read.setdefault(component, set())
        for rule in rules:
            if rule.kind == "file":
                hits = {rule.path} & found_set
            elif rule.kind == "dir":
                hits = {p for p in found_set if _under(p, rule.path)}
            else:
                hits = {p for p in found_set if "/" not in p and fnmatch.fnmatchcase(p, rule.path)}
            if hits:
                chosen.update(hits)
            elif rule.required:
                reason = "empty or not found" if rule.kind == "dir" else "not found"
                missing.append(Missing(component, rule.path, reason, rule.critical))
    return CapturePlan(read={c: tuple(sorted(p)) for c, p in read.items() if p}, secrets=expected.secrets,
                       missing=tuple(missing))


def vanished(component: str, path: str, rules: Iterable[ExpectedFile]) -> Missing:
    """A file that was listed but gone when read: as critical as the rule that named it (the consensus key lost
    between the two makes the backup Failed, as if it had never been there)."""
    critical = any(rule.critical and rule.kind == "file" and rule.path == path for rule in rules)
    return Missing(component, path, "vanished while it was read", critical)


def secret_missing(expected: ExpectedSecret, data: Mapping[str, bytes] | None) -> Missing | None:
    """None when the Secret holds a non-empty value for the key."""
    if data is None:
        return Missing(SECRET, expected.path, f"Secret {expected.secret} not found", expected.critical)
    if not data.get(expected.key):
        return Missing(SECRET, expected.path, f"Secret {expected.secret} has no (or an empty) key {expected.key!r}",
                       expected.critical)
    return None


@dataclass(frozen=True)
class CaptureVerdict:
    phase: str            # Completed | PartiallyFailed | Failed
    reason: str
    message: str


def judge_capture(missing: Sequence[Missing], captured: int) -> CaptureVerdict:
    """Failed when nothing or a critical item (the consensus key, the mnemonic) is missing; PartiallyFailed
    when other expected items are; Completed otherwise. The message names every missing item."""
    names = ", ".join(f"{m.component}/{m.path} ({m.reason})" for m in missing)
    critical = [m for m in missing if m.critical]
    if captured == 0:
        return CaptureVerdict("Failed", "NothingCaptured", f"no item could be captured: {names or 'nothing found'}")
    if critical:
        crit = ", ".join(f"{m.component}/{m.path}" for m in critical)
        return CaptureVerdict("Failed", "CriticalItemMissing",
                              f"{crit} could not be captured, so nothing was stored; missing: {names}")
    if missing:
        return CaptureVerdict("PartiallyFailed", "ItemsMissing",
                              f"{len(missing)} expected item(s) missing: {names}")
    return CaptureVerdict("Completed", "AllItemsCaptured", f"{captured} items captured")
