"""age encryption (X25519 recipients) for backup archives, and the error base of the backup package.

The operator needs only recipients (public keys, `age1…`) to back up; an identity (private key,
`AGE-SECRET-KEY-1…`) is needed only to decrypt, i.e. to verify or restore.

Errors carry a `reason` (CamelCase, usable as a condition reason) and a message that never holds key
material or plaintext.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from enum import StrEnum
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyrage import x25519

AGE_HEADER = b"age-encryption.org/v1\n"
RECIPIENT_PREFIX = "age1"
IDENTITY_PREFIX = "AGE-SECRET-KEY-1"
MAX_RECIPIENTS = 16


class BackupError(Exception):
    """Base of every error raised by the backup package: a CamelCase `reason` and a safe message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = str(reason)
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, {self.message!r})"


class CryptoReason(StrEnum):
    INVALID_RECIPIENT = "InvalidRecipient"
    INVALID_IDENTITY = "InvalidIdentity"
    WRONG_IDENTITY = "WrongIdentity"
    CORRUPTED = "Corrupted"


class CryptoError(BackupError):
    """InvalidRecipient, InvalidIdentity (not an age X25519 identity), WrongIdentity (no recipient stanza
    matches the identity) or Corrupted (not an age file, or it was altered)."""


def _pyrage() -> tuple[ModuleType, ModuleType]:
    """pyrage and its x25519 module, imported on first use: only sealing or opening a backup needs them."""
    import pyrage
    from pyrage import x25519

    return pyrage, x25519


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _short(value: str, limit: int = 24) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


def validate_recipient(recipient: str) -> str:
    """The canonical form of an X25519 recipient (`age1…`, lower case), or CryptoError(InvalidRecipient)."""
    if not isinstance(recipient, str):
        raise CryptoError(CryptoReason.INVALID_RECIPIENT, "an age recipient must be a string")
    text = recipient.strip()
    if text.upper().startswith(IDENTITY_PREFIX):
        raise CryptoError(CryptoReason.INVALID_RECIPIENT,
                          "an age identity (private key) was given where a recipient (public key, age1…) belongs")
    if not text.lower().startswith(RECIPIENT_PREFIX):
        raise CryptoError(CryptoReason.INVALID_RECIPIENT,
                          f"{_short(text)!r} is not an age X25519 recipient (it must start with age1)")
    _, x25519 = _pyrage()
    try:
        parsed = x25519.Recipient.from_str(text)
    except Exception as err:
        raise CryptoError(CryptoReason.INVALID_RECIPIENT,
                          f"{_short(text)!r} is not a valid age X25519 recipient ({err})") from None
    return str(parsed)


def validate_recipients(recipients: Iterable[str]) -> list[str]:
    """Canonical, de-duplicated recipients in their given order; at least one, at most 16."""
    if isinstance(recipients, str):
        recipients = [recipients]
    out: list[str] = []
    for recipient in recipients:
        canonical = validate_recipient(recipient)
        if canonical not in out:
            out.append(canonical)
    if not out:
        raise CryptoError(CryptoReason.INVALID_RECIPIENT, "at least one age recipient is needed")
    if len(out) > MAX_RECIPIENTS:
        raise CryptoError(CryptoReason.INVALID_RECIPIENT, f"at most {MAX_RECIPIENTS} age recipients are allowed")
    return out


def _parse_identities(identity: str | bytes) -> list[x25519.Identity]:
    """One identity, or an identity file as `age-keygen` writes it (comment lines start with `#`)."""
    if isinstance(identity, bytes):
        try:
            identity = identity.decode("utf-8")
        except UnicodeDecodeError:
            raise CryptoError(CryptoReason.INVALID_IDENTITY, "the age identity is not UTF-8 text") from None
    if not isinstance(identity, str):
        raise CryptoError(CryptoReason.INVALID_IDENTITY, "an age identity must be a string")
    _, x25519 = _pyrage()
    parsed: list[x25519.Identity] = []
    for number, line in enumerate(identity.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.upper().startswith(IDENTITY_PREFIX):
            raise CryptoError(CryptoReason.INVALID_IDENTITY,
                              f"line {number} of the age identity is not an X25519 identity (AGE-SECRET-KEY-1…)")
        try:
            parsed.append(x25519.Identity.from_str(line.upper()))
        except Exception:
            raise CryptoError(CryptoReason.INVALID_IDENTITY,
                              f"line {number} of the age identity is not a valid X25519 identity") from None
    if not parsed:
        raise CryptoError(CryptoReason.INVALID_IDENTITY, "no age identity (AGE-SECRET-KEY-1…) was given")
    return parsed


def validate_identity(identity: str | bytes) -> None:
    """CryptoError(InvalidIdentity) unless `identity` holds at least one X25519 identity."""
    _parse_identities(identity)


def identity_recipients(identity: str | bytes) -> list[str]:
    """The recipients (public keys) of the identities in `identity`."""
    return [str(parsed.to_public()) for parsed in _parse_identities(identity)]


def generate_identity() -> tuple[str, str]:
    """A new X25519 key pair: (identity `AGE-SECRET-KEY-1…`, recipient `age1…`)."""
    _, x25519 = _pyrage()
    identity = x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def encrypt(plaintext: bytes, recipients: Iterable[str]) -> bytes:
    """`plaintext` encrypted (binary age format) so that any one of `recipients` can decrypt it."""
    pyrage, x25519 = _pyrage()
    parsed = [x25519.Recipient.from_str(r) for r in validate_recipients(recipients)]
    try:
        return pyrage.encrypt(bytes(plaintext), parsed)
    except Exception as err:
        raise CryptoError(CryptoReason.INVALID_RECIPIENT, f"age encryption failed ({type(err).__name__})") from None


def is_age(data: bytes) -> bool:
    """Whether `data` starts like a binary age file."""
    return bytes(data[: len(AGE_HEADER)]) == AGE_HEADER


def decrypt(ciphertext: bytes, identity: str | bytes) -> bytes:
    """Decrypt with an identity (or an identity file). WrongIdentity when no recipient stanza opens with it,
    Corrupted when the data is not age or was altered.

    age cannot tell a wrong identity from an altered recipient stanza (both fail to unwrap the file
    key); `open_sealed` checks the outer digest first, which catches the latter."""
    identities = _parse_identities(identity)
    pyrage, _ = _pyrage()
    if not is_age(ciphertext):
        raise CryptoError(CryptoReason.CORRUPTED, "the data is not an age-encrypted file (bad header)")
    try:
        return pyrage.decrypt(bytes(ciphertext), identities)
    except pyrage.DecryptError as err:
        text = str(err)
        if "No matching keys" in text:
            raise CryptoError(CryptoReason.WRONG_IDENTITY,
                              "the identity does not match any recipient the archive was encrypted to") from None
        if "Header MAC" in text or "Header is invalid" in text or "Unknown age format" in text:
            detail = "its header was altered or is malformed"
        elif "decryption error" in text:
            detail = "its payload was altered or truncated"
        else:
            detail = "it is malformed"
        raise CryptoError(CryptoReason.CORRUPTED, f"the age-encrypted data cannot be decrypted: {detail}") from None
    except Exception as err:
        raise CryptoError(CryptoReason.CORRUPTED,
                          f"the age-encrypted data cannot be decrypted ({type(err).__name__})") from None
