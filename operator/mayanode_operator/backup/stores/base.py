"""The interface every backup store implements, and its errors.

Objects are immutable once written: `put` of an existing key answers the stored object when the
content is the same (a retried write) and `Conflict` when it differs, unless `overwrite=True`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from ..crypto import BackupError

KEY_PATTERN = re.compile(r"^[A-Za-z0-9!_.*'()/-]+$")
MAX_KEY_LENGTH = 1024
METADATA_KEY_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$")
MAX_METADATA_VALUE = 1024
MAX_METADATA_TOTAL = 2048


class StoreReason(StrEnum):
    NOT_FOUND = "NotFound"
    ACCESS_DENIED = "AccessDenied"
    UNREACHABLE = "Unreachable"
    TOO_LARGE = "TooLarge"
    CONFLICT = "Conflict"
    INVALID = "Invalid"
    DIGEST_MISMATCH = "DigestMismatch"


class StoreError(BackupError):
    """NotFound, AccessDenied, Unreachable, TooLarge, Conflict, Invalid or DigestMismatch (what was read back
    is not what was written). The message names the location, never credentials."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str
    location: str
    parts: int = 1
    metadata: Mapping[str, str] = field(default_factory=dict, compare=False)


@runtime_checkable
class BackupStore(Protocol):
    async def put(self, key: str, data: bytes, metadata: Mapping[str, str] | None = None, *,
                  overwrite: bool = False) -> StoredObject: ...

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...

    async def exists(self, key: str) -> bool: ...

    async def list(self, prefix: str = "") -> list[StoredObject]: ...

    def describe(self) -> str: ...


def check_key(key: str) -> str:
    """`key` if it is a usable object key: 1–1024 of `A-Za-z0-9!_.*'()/-`, relative, no `.`/`..` or empty segments."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH or not KEY_PATTERN.match(key):
        raise StoreError(StoreReason.INVALID,
                         f"object key {str(key)[:120]!r} must be 1-{MAX_KEY_LENGTH} characters of A-Za-z0-9!_.*'()/-")
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        raise StoreError(StoreReason.INVALID,
                         f"object key {key[:120]!r} must not start with '/' nor hold empty, '.' or '..' segments")
    return key


def check_prefix(prefix: str) -> str:
    """A list prefix: empty, or the characters of a key (it may end with '/')."""
    if prefix == "":
        return prefix
    if not isinstance(prefix, str) or len(prefix) > MAX_KEY_LENGTH or not KEY_PATTERN.match(prefix):
        raise StoreError(StoreReason.INVALID,
                         f"list prefix {str(prefix)[:120]!r} has characters outside A-Za-z0-9!_.*'()/-")
    return prefix


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Lower-case keys (`[a-z0-9-]`, ≤ 48) and printable ASCII values; public data only."""
    out: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not METADATA_KEY_PATTERN.match(key):
            raise StoreError(StoreReason.INVALID,
                             f"metadata key {str(key)[:60]!r} must be 1-48 characters of a-z, 0-9 and '-'")
        if key == "sha256":
            raise StoreError(StoreReason.INVALID, "metadata key 'sha256' is reserved")
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE or \
                any(not (0x20 <= ord(ch) < 0x7F) for ch in value):
            raise StoreError(StoreReason.INVALID,
                             f"metadata value of {key!r} must be printable ASCII of at most "
                             f"{MAX_METADATA_VALUE} characters")
        out[key] = value
    if sum(len(k) + len(v) for k, v in out.items()) > MAX_METADATA_TOTAL:
        raise StoreError(StoreReason.INVALID, f"metadata is larger than {MAX_METADATA_TOTAL} bytes")
    return out
