"""What a NodeRestore writes, from a decrypted backup. Pure.

- `check_backup`: the items a restore needs are there and well formed (the consensus key parses and matches the
  manifest, the node address matches the target), before anything is touched.
- `write_plan`: which item goes to which home and which Secret. The mayanode home gets the node's key files (not the
  sign state: that is written after the guard, as the high-water mark); the bifrost home gets the TSS key shares and,
  as node-launcher's runbook does, `MAYAChain-ED25519` and the signer's `keyring-file/<signer>.info`.
- `classify_key_shares`: `localstate-*.json` already on the target that are not in the backup. A share of the same
  node (same `LocalPartyKey` as the backup's shares) is newer than the backup and is kept; a share of another node is
  moved aside to `<name>.replaced-<restore>` (never deleted: key shares cannot be made again); a share that cannot be
  attributed is kept and reported. A share of another node under one of the backup's names (they are named after the
  vault, so nodes of one vault use the same names) is moved aside too before the backup's is written; any other share
  there that differs from the backup's (it names no party, or this node's) is kept under that new name and reported.
- `check_target_identity`: whether the target's volumes hold another node's identity (another consensus key, or a
  same-named key share of another node): a restore then replaces it only when asked to.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .. import chainkeys
from ..backup import BackupItem
from .backup_items import BIFROST, CONSENSUS_KEY_PATH, MAYANODE, SECRET, SIGN_STATE_PATH, vault_of_key_share

REQUIRED_MAYANODE = ("MAYAChain-ED25519", "config/node_key.json", CONSENSUS_KEY_PATH)
NODE_KEY_FILE = "MAYAChain-ED25519"


@dataclass(frozen=True)
class BackupFacts:
    """Public facts of a verified backup (safe for status and events)."""

    cons_pub_key: str
    validator_address: str
    node_address: str | None
    sign_state: chainkeys.SignState | None
    item_count: int
    key_shares: tuple[str, ...]


@dataclass(frozen=True)
class BackupCheck:
    ok: bool
    reason: str
    message: str
    facts: BackupFacts | None = None


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str


def _find(items: Sequence[BackupItem], component: str, path: str) -> BackupItem | None:
    return next((i for i in items if i.component == component and i.path == path), None)


def find_secret_item(items: Sequence[BackupItem], ref: SecretRef, default_name: str) -> BackupItem | None:
    """The backup's value for a Secret key: the same `<secret>/<key>`, else the same key under node-launcher's
    default Secret name, else the only Secret item with that key."""
    secrets = [i for i in items if i.component == SECRET]
    for path in (f"{ref.name}/{ref.key}", f"{default_name}/{ref.key}"):
        hit = next((i for i in secrets if i.path == path), None)
        if hit is not None:
            return hit
    same_key = [i for i in secrets if i.path.rsplit("/", 1)[-1] == ref.key]
    return same_key[0] if len(same_key) == 1 else None


def check_backup(items: Sequence[BackupItem], meta: Mapping[str, object], *, target_node_address: str | None,
                 restore_secrets: bool, mnemonic: SecretRef, password: SecretRef,
                 default_mnemonic: str, default_password: str) -> BackupCheck:
    missing = [p for p in REQUIRED_MAYANODE if _find(items, MAYANODE, p) is None]
    if not any(i.component == MAYANODE and i.path.startswith("keyring-file/") for i in items):
        missing.append("keyring-file/")
    if missing:
        return BackupCheck(False, "MissingItem", "the backup lacks " + ", ".join(f"mayanode/{m}" for m in missing))
    key_item = _find(items, MAYANODE, CONSENSUS_KEY_PATH)
    assert key_item is not None
    try:
        key = chainkeys.parse_priv_validator_key(key_item.data)
    except chainkeys.ChainKeyError as err:
        return BackupCheck(False, "InvalidConsensusKey", f"mayanode/{CONSENSUS_KEY_PATH} is not a valid key: {err}")
    if not key.private_key_matches_pubkey():
        return BackupCheck(False, "InvalidConsensusKey",
                           f"mayanode/{CONSENSUS_KEY_PATH}: the private key does not match its public key")
    cons = key.pubkey_bech32
    recorded = meta.get("consensusPubKey")
    if recorded and recorded != cons:
        return BackupCheck(False, "ConsensusKeyMismatch",
                           f"the manifest says consensus key {recorded}, the key file holds {cons}")
    node_address = str(meta["nodeAddress"]) if meta.get("nodeAddress") else None
    if target_node_address and node_address and node_address != target_node_address:
        return BackupCheck(False, "NodeAddressMismatch",
                           f"the backup is of node {node_address}, the MayaNode's spec.nodeAddress is "
                           f"{target_node_address}")
    state = None
    state_item = _find(items, MAYANODE, SIGN_STATE_PATH)
    if state_item is not None:
        try:
            state = chainkeys.parse_priv_validator_state(state_item.data)
        except chainkeys.ChainKeyError as err:
            return BackupCheck(False, "InvalidSignState", f"mayanode/{SIGN_STATE_PATH} is unreadable: {err}")
    if restore_secrets:
        item = find_secret_item(items, mnemonic, default_mnemonic)
        if item is None or not item.data.strip():
            return BackupCheck(False, "MissingItem",
                               f"the backup holds no mnemonic for Secret {mnemonic.name} (key {mnemonic.key}); "
                               f"set spec.restoreSecrets: false to restore the files only")
        pw = find_secret_item(items, password, default_password)
        if pw is None or not pw.data:
            return BackupCheck(False, "MissingItem",
                               f"the backup holds no keyring password for Secret {password.name} (key {password.key})")
    shares = tuple(sorted(i.path for i in items if i.component == BIFROST and vault_of_key_share(i.path)))
    facts = BackupFacts(cons_pub_key=cons, validator_address=key.address, node_address=node_address,
                        sign_state=state, item_count=len(items), key_shares=shares)
    return BackupCheck(True, "BackupVerified",
                       f"{len(items)} items, digests and decryption checked; consensus key {cons}, validator "
                       f"{key.address}" + (f", node {node_address}" if node_address else ""), facts)


@dataclass(frozen=True)
class FileWrite:
    path: str                 # relative to the component's home
    item: str                 # the backup item's name
    mode: int
    uid: int
    gid: int
    mtime: int


@dataclass(frozen=True)
class WritePlan:
    mayanode: tuple[FileWrite, ...]
    bifrost: tuple[FileWrite, ...]
    sign_state_item: str | None
    secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)   # secret → key → item name

    @property
    def dirs(self) -> dict[str, tuple[str, ...]]:
        """Parent directories the files need, per component (created 0700 when absent)."""
        out: dict[str, tuple[str, ...]] = {}
        for component, files in ((MAYANODE, self.mayanode), (BIFROST, self.bifrost)):
            parents = set()
            for f in files:
                parent = posixpath.dirname(f.path)
                while parent:
                    parents.add(parent)
                    parent = posixpath.dirname(parent)
            out[component] = tuple(sorted(parents))
        return out


def _write(item: BackupItem, path: str | None = None) -> FileWrite:
    return FileWrite(path or item.path, item.name, item.mode, item.uid, item.gid, item.mtime)


def write_plan(items: Sequence[BackupItem], *, signer_name: str, restore_secrets: bool, mnemonic: SecretRef,
               password: SecretRef, default_mnemonic: str, default_password: str) -> WritePlan:
    mayanode = tuple(_write(i) for i in sorted(items, key=lambda i: i.path)
                     if i.component == MAYANODE and i.path != SIGN_STATE_PATH)
    bifrost_items = {i.path: i for i in items if i.component == BIFROST}
    for shared in (NODE_KEY_FILE, f"keyring-file/{signer_name}.info"):
        source = _find(items, MAYANODE, shared)
        if source is not None and shared not in bifrost_items:
            bifrost_items[shared] = source
    bifrost = tuple(_write(bifrost_items[p], p) for p in sorted(bifrost_items))
    state = _find(items, MAYANODE, SIGN_STATE_PATH)
    secrets: dict[str, dict[str, str]] = {}
    if restore_secrets:
        for ref, default in ((mnemonic, default_mnemonic), (password, default_password)):
            item = find_secret_item(items, ref, default)
            if item is not None:
                secrets.setdefault(ref.name, {})[ref.key] = item.name
    return WritePlan(mayanode=mayanode, bifrost=bifrost, sign_state_item=state.name if state else None,
                     secrets=secrets)


# --------------------------------------------------------------------------------------------------
# Key shares already on the target
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SharePlan:
    keep: tuple[str, ...] = ()                            # same node, newer than the backup
    move_aside: tuple[tuple[str, str], ...] = ()          # (path, new path): another node's share
    unknown: tuple[str, ...] = ()                         # kept, reported
    # (path, new path): a different share under one of the backup's names that is not proven another node's (it names
    # no party, or this node's): the backup's is written there, so it is kept under the new path
    saved: tuple[tuple[str, str], ...] = ()

    @property
    def set_aside(self) -> tuple[tuple[str, str], ...]:
        """Every share to be kept under a new path before the backup's shares are written."""
        return self.move_aside + self.saved

    def describe(self) -> str:
        parts = []
        if self.keep:
            parts.append(f"kept {len(self.keep)} newer key share(s) of this node ({', '.join(self.keep)})")
        if self.move_aside:
            parts.append(f"moved {len(self.move_aside)} key share(s) of another node aside "
                         f"({', '.join(f'{a} → {b}' for a, b in self.move_aside)})")
        if self.saved:
            parts.append(f"kept {len(self.saved)} key share(s) that differ from the backup's of the same name "
                         f"({', '.join(f'{a} → {b}' for a, b in self.saved)}): check them")
        if self.unknown:
            parts.append(f"kept {len(self.unknown)} key share(s) that could not be attributed "
                         f"({', '.join(self.unknown)}): check them")
        return "; ".join(parts)


def party_key(data: bytes) -> str | None:
    """The `LocalPartyKey` of a TSS localstate file (the node's secp256k1 public key), or None."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    value = doc.get("LocalPartyKey") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and value else None


def classify_key_shares(backup_shares: Mapping[str, bytes], target_shares: Mapping[str, bytes],
                        restore_name: str) -> SharePlan:
    """Shares on the target that the backup does not overwrite (see the module docstring)."""
    own = {k for k in (party_key(d) for d in backup_shares.values()) if k}
    keep, aside, unknown, saved = [], [], [], []
    for path in sorted(target_shares):
        if path in backup_shares:
            # Never overwritten: key shares cannot be made again. Another node's is moved aside; any other that
            # differs is kept beside it.
            if _other_party(backup_shares[path], target_shares[path]):
                aside.append((path, f"{path}.replaced-{restore_name}"))
            elif target_shares[path] != backup_shares[path]:
                saved.append((path, f"{path}.replaced-{restore_name}"))
            continue
        key = party_key(target_shares[path])
        if key and own and key in own:
            keep.append(path)
        elif key and own:
            aside.append((path, f"{path}.replaced-{restore_name}"))
        else:
            unknown.append(path)
    return SharePlan(tuple(keep), tuple(aside), tuple(unknown), tuple(saved))


def _other_party(backup_share: bytes, target_share: bytes) -> str | None:
    """The target's share's party, when both shares name their party and they differ (None otherwise)."""
    ours, theirs = party_key(backup_share), party_key(target_share)
    return theirs if ours and theirs and ours != theirs else None


# --------------------------------------------------------------------------------------------------
# Another node's identity on the target
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IdentityCheck:
    """What the target's volumes hold, compared with the backup (public facts only: keys are named by their public
    half). `found` lists what belongs to another node; empty: an empty node, or the backup's own node."""

    found: tuple[str, ...] = ()

    @property
    def other(self) -> bool:
        return bool(self.found)

    def describe(self) -> str:
        return "; ".join(self.found)


def check_target_identity(backup_cons_pub_key: str, backup_shares: Mapping[str, bytes], target_key: bytes | None,
                          target_shares: Mapping[str, bytes]) -> IdentityCheck:
    """`target_key`: the target's config/priv_validator_key.json (None: absent); `target_shares`: its key shares under
    the backup's names (absent ones left out)."""
    found = []
    if target_key is not None:
        try:
            cons: str | None = chainkeys.parse_priv_validator_key(target_key).pubkey_bech32
        except chainkeys.ChainKeyError:
            cons = None
        if cons is None:
            found.append(f"its {CONSENSUS_KEY_PATH} cannot be read as a consensus key (it may be another node's)")
        elif cons != backup_cons_pub_key:
            found.append(f"its {CONSENSUS_KEY_PATH} holds consensus key {cons}, the backup's is {backup_cons_pub_key}")
    for path in sorted(target_shares):
        other = _other_party(backup_shares[path], target_shares[path]) if path in backup_shares else None
        if other:
            found.append(f"its key share {path} belongs to party {other}, not the backup's "
                         f"{party_key(backup_shares[path])}")
    return IdentityCheck(tuple(found))
