"""The backup archive format (pure: bytes in, bytes out).

Plaintext archive (`mayanode-backup/v1`): an uncompressed POSIX (pax) tar holding

    manifest.json                 first entry; every item with name, component, path, size, sha256,
                                  mode, uid, gid, mtime, plus `meta` (public facts about the node)
    <component>/<path>            one regular file per item, component mayanode | bifrost | secret

The tar is deterministic: entries sorted by archive path after the manifest, mtimes taken from the
items (the manifest's is 0), no user or group names, no directories, links or devices.

Sealed object (`tar+age/v1`): that tar encrypted with age to X25519 recipients; its digest is the
sha256 of the ciphertext, checked before anything is decrypted.

Export bundle (`mayanode-backup-export/v1`), for moving a backup to another cluster: an uncompressed
deterministic tar with exactly two regular files, in this order

    export.json                   {"format": "mayanode-backup-export/v1",
                                   "archive": {"file": "archive.tar.age", "format": "tar+age/v1",
                                               "size": N, "sha256": "<hex of the ciphertext>"},
                                   "manifest": <public manifest: names, sizes, digests, meta>,
                                   "backup": <backup metadata: name, namespace, recipients, …>}
    archive.tar.age               the sealed object, byte for byte (`age -d -i key archive.tar.age | tar t`)

Nothing in a bundle is plaintext key material: the archive stays encrypted end to end.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .crypto import BackupError, decrypt, encrypt, is_age, sha256_hex, validate_recipients

FORMAT = "mayanode-backup/v1"
SEALED_FORMAT = "tar+age/v1"
EXPORT_FORMAT = "mayanode-backup-export/v1"
MANIFEST_NAME = "manifest.json"
EXPORT_INDEX_NAME = "export.json"
EXPORT_ARCHIVE_NAME = "archive.tar.age"
COMPONENTS = ("mayanode", "bifrost", "secret")

MAX_ITEM_SIZE = 16 * 1024 * 1024
MAX_TOTAL_SIZE = 64 * 1024 * 1024
MAX_ITEMS = 4096
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
MAX_PATH_LENGTH = 1024
MAX_BUNDLE_SIZE = 256 * 1024 * 1024
MAX_EXPORT_INDEX_SIZE = 4 * 1024 * 1024

# Recommended keys of `meta` (all public): nodeAddress, namespace, mayaNode, consensusPubKey,
# vaultPubKey, height, signStateHeight, version, createdAt (RFC 3339). Any JSON-serialisable values
# are kept as given.
META_KEYS = ("nodeAddress", "namespace", "mayaNode", "consensusPubKey", "vaultPubKey", "height", "signStateHeight",
             "version", "createdAt")


class ArchiveReason(StrEnum):
    DIGEST_MISMATCH = "DigestMismatch"
    MISSING_ITEM = "MissingItem"
    UNEXPECTED_ENTRY = "UnexpectedEntry"
    UNSAFE_PATH = "UnsafePath"
    MALFORMED = "Malformed"


class ArchiveError(BackupError):
    """DigestMismatch, MissingItem, UnexpectedEntry, UnsafePath or Malformed; the message names the entry."""


def _fail(reason: ArchiveReason, message: str) -> ArchiveError:
    return ArchiveError(reason, message)


# --------------------------------------------------------------------------------------------------
# Items and the manifest
# --------------------------------------------------------------------------------------------------
def check_relative_path(path: str, what: str = "path") -> str:
    """`path` if it is a clean relative POSIX path (no `..`, `.`, empty segments, absolute or control chars)."""
    if not isinstance(path, str) or not path:
        raise _fail(ArchiveReason.UNSAFE_PATH, f"{what} is empty")
    shown = path[:200]
    if len(path) > MAX_PATH_LENGTH:
        raise _fail(ArchiveReason.UNSAFE_PATH, f"{what} {shown!r} is longer than {MAX_PATH_LENGTH} characters")
    if path.startswith("/") or "\\" in path or (len(path) > 1 and path[1] == ":"):
        raise _fail(ArchiveReason.UNSAFE_PATH, f"{what} {shown!r} is absolute")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        raise _fail(ArchiveReason.UNSAFE_PATH, f"{what} {shown!r} contains control characters")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise _fail(ArchiveReason.UNSAFE_PATH,
                        f"{what} {shown!r} has an empty, '.' or '..' segment (path traversal is refused)")
    return path


@dataclass(frozen=True)
class BackupItem:
    """One file (or Secret key) of a node's identity. `data` never appears in repr."""

    name: str
    component: str
    path: str
    data: bytes = field(repr=False)
    mode: int = 0o600
    uid: int = 0
    gid: int = 0
    mtime: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.component, str):
            object.__setattr__(self, "component", str(self.component))
        if self.component not in COMPONENTS:
            raise _fail(ArchiveReason.MALFORMED,
                        f"item {self.name!r}: component must be one of {', '.join(COMPONENTS)}")
        check_relative_path(self.path, f"item {self.name!r} path")
        if not isinstance(self.name, str) or not self.name or len(self.name) > MAX_PATH_LENGTH:
            raise _fail(ArchiveReason.MALFORMED, "an item needs a name of 1 to 1024 characters")
        if not isinstance(self.data, (bytes, bytearray, memoryview)):
            raise _fail(ArchiveReason.MALFORMED, f"item {self.name!r}: data must be bytes")
        if not isinstance(self.data, bytes):
            object.__setattr__(self, "data", bytes(self.data))
        for attr, upper in (("mode", 0o7777), ("uid", 2**31 - 1), ("gid", 2**31 - 1), ("mtime", 2**33 - 1)):
            value = getattr(self, attr)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= upper:
                raise _fail(ArchiveReason.MALFORMED, f"item {self.name!r}: {attr} is out of range")

    @property
    def archive_path(self) -> str:
        """Where the item is in the tar: `<component>/<path>`."""
        return f"{self.component}/{self.path}"

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return sha256_hex(self.data)


def format_mode(mode: int) -> str:
    """0o600 → "0600" (the status field's notation)."""
    return f"0{mode & 0o7777:03o}"


@dataclass(frozen=True)
class ManifestItem:
    name: str
    component: str
    path: str
    size: int
    sha256: str = field(repr=False)
    mode: int
    uid: int = 0
    gid: int = 0
    mtime: int = 0

    @property
    def archive_path(self) -> str:
        return f"{self.component}/{self.path}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "component": self.component, "path": self.path, "size": self.size,
                "sha256": self.sha256, "mode": self.mode, "uid": self.uid, "gid": self.gid, "mtime": self.mtime}

    def public(self) -> dict[str, Any]:
        """For status and export: no sha256 for Secret items (a digest of a low-entropy password or
        mnemonic could be brute-forced; the encrypted manifest holds it)."""
        out: dict[str, Any] = {"name": self.name, "component": self.component, "path": self.path,
                               "size": self.size}
        if self.component != "secret":
            out["sha256"] = self.sha256
        out.update({"mode": format_mode(self.mode), "uid": self.uid, "gid": self.gid})
        return out

    @classmethod
    def from_dict(cls, doc: Any) -> ManifestItem:
        if not isinstance(doc, Mapping):
            raise _fail(ArchiveReason.MALFORMED, "a manifest item is not an object")
        try:
            item = cls(name=doc["name"], component=doc["component"], path=doc["path"], size=doc["size"],
                       sha256=doc["sha256"], mode=doc["mode"], uid=doc.get("uid", 0), gid=doc.get("gid", 0),
                       mtime=doc.get("mtime", 0))
        except KeyError as err:
            raise _fail(ArchiveReason.MALFORMED, f"a manifest item lacks {err.args[0]!r}") from None
        label = str(item.name)[:200]
        if not isinstance(item.name, str) or not item.name:
            raise _fail(ArchiveReason.MALFORMED, "a manifest item has no name")
        if item.component not in COMPONENTS:
            raise _fail(ArchiveReason.MALFORMED, f"manifest item {label!r} has an unknown component")
        check_relative_path(item.path, f"manifest item {label!r} path")
        for attr in ("size", "mode", "uid", "gid", "mtime"):
            value = getattr(item, attr)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise _fail(ArchiveReason.MALFORMED, f"manifest item {label!r}: {attr} is not a non-negative integer")
        if not (isinstance(item.sha256, str) and len(item.sha256) == 64
                and all(c in "0123456789abcdef" for c in item.sha256)):
            raise _fail(ArchiveReason.MALFORMED, f"manifest item {label!r}: sha256 is not 64 lower-case hex digits")
        return item


@dataclass(frozen=True)
class Manifest:
    """What an archive holds. `meta` carries public facts only (see META_KEYS)."""

    items: tuple[ManifestItem, ...]
    meta: dict[str, Any]
    format: str = FORMAT

    @property
    def total_size(self) -> int:
        return sum(item.size for item in self.items)

    def item(self, name: str) -> ManifestItem | None:
        return next((item for item in self.items if item.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "meta": dict(self.meta), "items": [item.to_dict() for item in self.items]}

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no insignificant whitespace): equal manifests give equal bytes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, doc: Any) -> Manifest:
        if not isinstance(doc, Mapping):
            raise _fail(ArchiveReason.MALFORMED, "the manifest is not a JSON object")
        if doc.get("format") != FORMAT:
            raise _fail(ArchiveReason.MALFORMED,
                        f"unsupported manifest format {str(doc.get('format'))[:64]!r} (expected {FORMAT})")
        meta = doc.get("meta", {})
        raw_items = doc.get("items")
        if not isinstance(meta, Mapping):
            raise _fail(ArchiveReason.MALFORMED, "the manifest's meta is not an object")
        if not isinstance(raw_items, list):
            raise _fail(ArchiveReason.MALFORMED, "the manifest's items are not a list")
        if len(raw_items) > MAX_ITEMS:
            raise _fail(ArchiveReason.MALFORMED, f"the manifest lists more than {MAX_ITEMS} items")
        items = tuple(ManifestItem.from_dict(raw) for raw in raw_items)
        _check_unique(items)
        return cls(items=items, meta=dict(meta))

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise _fail(ArchiveReason.MALFORMED, "the manifest is not valid JSON") from None
        return cls.from_dict(doc)

    def public_summary(self) -> dict[str, Any]:
        """Safe for status, events and export files: names, sizes, digests of non-secret items, meta."""
        return {
            "format": self.format,
            "meta": dict(self.meta),
            "itemCount": len(self.items),
            "totalSize": self.total_size,
            "items": [item.public() for item in self.items],
        }


def _check_unique(items: Iterable[ManifestItem | BackupItem]) -> None:
    names: set[str] = set()
    paths: set[str] = set()
    for item in items:
        if item.name in names:
            raise _fail(ArchiveReason.MALFORMED, f"item name {item.name[:200]!r} appears twice")
        if item.archive_path in paths or item.archive_path == MANIFEST_NAME:
            raise _fail(ArchiveReason.MALFORMED, f"archive path {item.archive_path[:200]!r} appears twice")
        names.add(item.name)
        paths.add(item.archive_path)


def _canonical_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(meta, Mapping) or not all(isinstance(key, str) for key in meta):
        raise _fail(ArchiveReason.MALFORMED, "meta must be a mapping with string keys")
    try:
        return json.loads(json.dumps(dict(meta), sort_keys=True))
    except (TypeError, ValueError):
        raise _fail(ArchiveReason.MALFORMED, "meta must be JSON-serialisable") from None


# --------------------------------------------------------------------------------------------------
# Deterministic tar
# --------------------------------------------------------------------------------------------------
def _add_file(tar: tarfile.TarFile, path: str, data: bytes, *, mode: int, uid: int, gid: int, mtime: int) -> None:
    info = tarfile.TarInfo(path)
    info.size = len(data)
    info.mode = mode & 0o7777
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    info.mtime = mtime
    info.type = tarfile.REGTYPE
    tar.addfile(info, io.BytesIO(data))


def _write_tar(entries: Iterable[tuple[str, bytes, int, int, int, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for path, data, mode, uid, gid, mtime in entries:
            _add_file(tar, path, data, mode=mode, uid=uid, gid=gid, mtime=mtime)
    return buffer.getvalue()


def build_archive(items: Iterable[BackupItem], meta: Mapping[str, Any]) -> tuple[bytes, Manifest]:
    """A deterministic tar of `items` plus `manifest.json`; the same input always gives the same bytes."""
    ordered = sorted(items, key=lambda item: item.archive_path)
    if len(ordered) > MAX_ITEMS:
        raise _fail(ArchiveReason.MALFORMED, f"more than {MAX_ITEMS} items")
    _check_unique(ordered)
    for item in ordered:
        if item.size > MAX_ITEM_SIZE:
            raise _fail(ArchiveReason.MALFORMED, f"item {item.name[:200]!r} is larger than {MAX_ITEM_SIZE} bytes")
    manifest = Manifest(
        items=tuple(ManifestItem(name=item.name, component=item.component, path=item.path, size=item.size,
                                 sha256=item.sha256, mode=item.mode, uid=item.uid, gid=item.gid, mtime=item.mtime)
                    for item in ordered),
        meta=_canonical_meta(meta),
    )
    if manifest.total_size > MAX_TOTAL_SIZE:
        raise _fail(ArchiveReason.MALFORMED, f"the items add up to more than {MAX_TOTAL_SIZE} bytes")
    manifest_bytes = manifest.to_json().encode("utf-8")
    entries = [(MANIFEST_NAME, manifest_bytes, 0o600, 0, 0, 0)]
    entries += [(item.archive_path, item.data, item.mode, item.uid, item.gid, item.mtime) for item in ordered]
    return _write_tar(entries), manifest


def _read_entries(tar_bytes: bytes, *, max_entries: int, max_entry_size: int,
                  max_total_size: int, what: str) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    """Every entry of a tar, refusing anything but clean relative regular files."""
    if not isinstance(tar_bytes, (bytes, bytearray, memoryview)) or not tar_bytes:
        raise _fail(ArchiveReason.MALFORMED, f"the {what} is empty")
    entries: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(bytes(tar_bytes)), mode="r:", encoding="utf-8") as tar:
            for member in tar:
                name = member.name
                shown = name[:200]
                if len(entries) >= max_entries:
                    raise _fail(ArchiveReason.MALFORMED, f"the {what} has more than {max_entries} entries")
                if member.issym() or member.islnk():
                    raise _fail(ArchiveReason.UNSAFE_PATH, f"entry {shown!r} is a link; links are refused")
                if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
                    raise _fail(ArchiveReason.UNSAFE_PATH, f"entry {shown!r} is a device or FIFO; refused")
                check_relative_path(name.rstrip("/") if member.isdir() else name, "entry")
                if member.isdir():
                    raise _fail(ArchiveReason.UNEXPECTED_ENTRY, f"entry {shown!r} is a directory, which is not listed")
                if not member.isreg():
                    raise _fail(ArchiveReason.UNSAFE_PATH, f"entry {shown!r} is not a regular file")
                if member.size > max_entry_size:
                    raise _fail(ArchiveReason.MALFORMED, f"entry {shown!r} is larger than {max_entry_size} bytes")
                total += member.size
                if total > max_total_size:
                    raise _fail(ArchiveReason.MALFORMED, f"the {what}'s entries add up to more than "
                                                         f"{max_total_size} bytes")
                if name in entries:
                    raise _fail(ArchiveReason.MALFORMED, f"entry {shown!r} appears twice")
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                if len(data) != member.size:
                    raise _fail(ArchiveReason.MALFORMED, f"entry {shown!r} is truncated")
                entries[name] = (member, data)
    except ArchiveError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError, UnicodeError) as err:
        raise _fail(ArchiveReason.MALFORMED, f"the {what} is not a readable tar ({type(err).__name__})") from None
    return entries


def read_archive(tar_bytes: bytes, *, max_item_size: int = MAX_ITEM_SIZE, max_total_size: int = MAX_TOTAL_SIZE,
                 max_items: int = MAX_ITEMS) -> tuple[Manifest, list[BackupItem]]:
    """Parse and check a plaintext archive: links, devices, directories, absolute or `..` paths, entries not in
    the manifest, missing items and any size or digest difference are refused with an ArchiveError."""
    entries = _read_entries(tar_bytes, max_entries=max_items + 1,
                            max_entry_size=max(max_item_size, MAX_MANIFEST_SIZE),
                            max_total_size=max_total_size + MAX_MANIFEST_SIZE, what="archive")
    if MANIFEST_NAME not in entries:
        raise _fail(ArchiveReason.MISSING_ITEM, f"the archive has no {MANIFEST_NAME}")
    manifest_info, manifest_bytes = entries.pop(MANIFEST_NAME)
    if manifest_info.size > MAX_MANIFEST_SIZE:
        raise _fail(ArchiveReason.MALFORMED, f"{MANIFEST_NAME} is larger than {MAX_MANIFEST_SIZE} bytes")
    manifest = Manifest.from_json(manifest_bytes)
    listed = {item.archive_path: item for item in manifest.items}
    for path in sorted(entries):
        if path not in listed:
            raise _fail(ArchiveReason.UNEXPECTED_ENTRY, f"entry {path[:200]!r} is not listed in the manifest")
    items: list[BackupItem] = []
    for entry in manifest.items:
        if entry.archive_path not in entries:
            raise _fail(ArchiveReason.MISSING_ITEM,
                        f"item {entry.name[:200]!r} ({entry.archive_path[:200]}) is listed but not in the archive")
        if entry.size > max_item_size:
            raise _fail(ArchiveReason.MALFORMED, f"item {entry.name[:200]!r} is larger than {max_item_size} bytes")
        _, data = entries[entry.archive_path]
        if len(data) != entry.size:
            raise _fail(ArchiveReason.DIGEST_MISMATCH,
                        f"item {entry.name[:200]!r} is {len(data)} bytes, the manifest says {entry.size}")
        if sha256_hex(data) != entry.sha256:
            raise _fail(ArchiveReason.DIGEST_MISMATCH, f"item {entry.name[:200]!r} does not match its sha256")
        try:
            items.append(BackupItem(name=entry.name, component=entry.component, path=entry.path, data=data,
                                    mode=entry.mode, uid=entry.uid, gid=entry.gid, mtime=entry.mtime))
        except ArchiveError as err:
            raise _fail(ArchiveReason.MALFORMED, err.message) from None
    if manifest.total_size > max_total_size:
        raise _fail(ArchiveReason.MALFORMED, f"the items add up to more than {max_total_size} bytes")
    return manifest, items


# --------------------------------------------------------------------------------------------------
# Sealed (encrypted) archives
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SealedBackup:
    """The encrypted archive, its manifest (kept in memory; public_summary() for status) and the sha256
    of the ciphertext."""

    ciphertext: bytes = field(repr=False)
    manifest: Manifest = field(repr=False)
    digest: str
    recipients: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.ciphertext)


def seal(items: Iterable[BackupItem], meta: Mapping[str, Any], recipients: Iterable[str]) -> SealedBackup:
    """build_archive, then age-encrypt it to `recipients`."""
    canonical = validate_recipients(recipients)
    tar_bytes, manifest = build_archive(items, meta)
    ciphertext = encrypt(tar_bytes, canonical)
    return SealedBackup(ciphertext=ciphertext, manifest=manifest, digest=sha256_hex(ciphertext),
                        recipients=tuple(canonical))


def check_digest(ciphertext: bytes, expected_digest: str) -> None:
    """ArchiveError(DigestMismatch) unless sha256(ciphertext) is `expected_digest`."""
    expected = (expected_digest or "").strip().lower()
    if sha256_hex(ciphertext) != expected:
        raise _fail(ArchiveReason.DIGEST_MISMATCH,
                    f"the encrypted archive's sha256 is not the expected {expected[:64]!r} "
                    f"(size {len(ciphertext)} bytes)")


def open_sealed(ciphertext: bytes, identity: str | bytes, expected_digest: str,
                **limits: int) -> tuple[Manifest, list[BackupItem]]:
    """Check the outer digest (before decrypting), decrypt (CryptoError WrongIdentity / Corrupted), then
    read and check the archive (ArchiveError). `limits` are read_archive's size caps."""
    check_digest(ciphertext, expected_digest)
    return read_archive(decrypt(ciphertext, identity), **limits)


# --------------------------------------------------------------------------------------------------
# Export bundle
# --------------------------------------------------------------------------------------------------
_FORBIDDEN_MARKERS = ("AGE-SECRET-KEY-", "PRIVATE KEY")


def _check_public(doc: Any, what: str) -> str:
    try:
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        raise _fail(ArchiveReason.MALFORMED, f"the {what} must be JSON-serialisable") from None
    upper = text.upper()
    for marker in _FORBIDDEN_MARKERS:
        if marker.upper() in upper:
            raise _fail(ArchiveReason.MALFORMED, f"the {what} looks like it holds key material; refused")
    return text


def _check_public_manifest(doc: Any) -> None:
    if not isinstance(doc, Mapping):
        raise _fail(ArchiveReason.MALFORMED, "the public manifest is not an object")
    items = doc.get("items", [])
    if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
        raise _fail(ArchiveReason.MALFORMED, "the public manifest's items are not a list of objects")
    allowed = {"name", "component", "path", "size", "sha256", "mode", "uid", "gid", "mtime"}
    for item in items:
        extra = set(item) - allowed
        if extra:
            raise _fail(ArchiveReason.MALFORMED,
                        f"a public manifest item has fields other than names, sizes and digests: {sorted(extra)}")


def export_bundle(ciphertext: bytes, public_manifest: Mapping[str, Any], backup_meta: Mapping[str, Any]) -> bytes:
    """The export file (see the module docstring). `ciphertext` must be an age file; `public_manifest`
    (Manifest.public_summary()) and `backup_meta` must be public JSON."""
    if not is_age(ciphertext):
        raise _fail(ArchiveReason.MALFORMED, "only an age-encrypted archive can be exported")
    if len(ciphertext) > MAX_BUNDLE_SIZE:
        raise _fail(ArchiveReason.MALFORMED, f"the archive is larger than {MAX_BUNDLE_SIZE} bytes")
    _check_public_manifest(public_manifest)
    _check_public(public_manifest, "public manifest")
    _check_public(backup_meta, "backup metadata")
    if not isinstance(backup_meta, Mapping):
        raise _fail(ArchiveReason.MALFORMED, "the backup metadata is not an object")
    index = {
        "format": EXPORT_FORMAT,
        "archive": {"file": EXPORT_ARCHIVE_NAME, "format": SEALED_FORMAT, "size": len(ciphertext),
                    "sha256": sha256_hex(ciphertext)},
        "manifest": dict(public_manifest),
        "backup": dict(backup_meta),
    }
    index_bytes = (json.dumps(index, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    return _write_tar([(EXPORT_INDEX_NAME, index_bytes, 0o644, 0, 0, 0),
                       (EXPORT_ARCHIVE_NAME, bytes(ciphertext), 0o600, 0, 0, 0)])


def import_bundle(bundle: bytes) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """(ciphertext, public_manifest, backup_meta) from an export file, after checking its format, that it
    holds exactly the two expected files, and the archive's size, sha256 and age header."""
    if isinstance(bundle, (bytes, bytearray)) and len(bundle) > MAX_BUNDLE_SIZE + MAX_EXPORT_INDEX_SIZE + 65536:
        raise _fail(ArchiveReason.MALFORMED, f"the export file is larger than {MAX_BUNDLE_SIZE} bytes")
    entries = _read_entries(bundle, max_entries=16, max_entry_size=MAX_BUNDLE_SIZE,
                            max_total_size=MAX_BUNDLE_SIZE + MAX_EXPORT_INDEX_SIZE, what="export file")
    for name in entries:
        if name not in (EXPORT_INDEX_NAME, EXPORT_ARCHIVE_NAME):
            raise _fail(ArchiveReason.UNEXPECTED_ENTRY, f"the export file holds an unexpected entry {name[:200]!r}")
    if EXPORT_INDEX_NAME not in entries:
        raise _fail(ArchiveReason.MISSING_ITEM, f"the export file has no {EXPORT_INDEX_NAME}")
    if EXPORT_ARCHIVE_NAME not in entries:
        raise _fail(ArchiveReason.MISSING_ITEM, f"the export file has no {EXPORT_ARCHIVE_NAME}")
    index_info, index_bytes = entries[EXPORT_INDEX_NAME]
    if index_info.size > MAX_EXPORT_INDEX_SIZE:
        raise _fail(ArchiveReason.MALFORMED, f"{EXPORT_INDEX_NAME} is larger than {MAX_EXPORT_INDEX_SIZE} bytes")
    try:
        index = json.loads(index_bytes)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _fail(ArchiveReason.MALFORMED, f"{EXPORT_INDEX_NAME} is not valid JSON") from None
    if not isinstance(index, dict) or index.get("format") != EXPORT_FORMAT:
        raise _fail(ArchiveReason.MALFORMED, f"not an export file of format {EXPORT_FORMAT}")
    archive = index.get("archive")
    manifest = index.get("manifest")
    meta = index.get("backup")
    if not isinstance(archive, dict) or not isinstance(manifest, dict) or not isinstance(meta, dict):
        raise _fail(ArchiveReason.MALFORMED, f"{EXPORT_INDEX_NAME} lacks archive, manifest or backup")
    if archive.get("file") != EXPORT_ARCHIVE_NAME or archive.get("format") != SEALED_FORMAT:
        raise _fail(ArchiveReason.MALFORMED, "the export file's archive has an unsupported format")
    _check_public_manifest(manifest)
    _check_public(manifest, "public manifest")
    _check_public(meta, "backup metadata")
    _, ciphertext = entries[EXPORT_ARCHIVE_NAME]
    if archive.get("size") != len(ciphertext):
        raise _fail(ArchiveReason.DIGEST_MISMATCH,
                    f"the archive is {len(ciphertext)} bytes, the export file says {archive.get('size')}")
    check_digest(ciphertext, str(archive.get("sha256", "")))
    if not is_age(ciphertext):
        raise _fail(ArchiveReason.MALFORMED, "the exported archive is not age-encrypted")
    return ciphertext, manifest, meta

