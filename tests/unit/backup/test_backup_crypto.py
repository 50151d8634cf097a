"""age encryption, sealed objects and export bundles."""

from __future__ import annotations

import json
import tarfile

import pytest

from .backup_samples import META, SECRET_VALUES, file_info, raw_tar, sample_items, tar_entries
from mayanode_operator.backup import (
    ArchiveError,
    CryptoError,
    decrypt,
    encrypt,
    export_bundle,
    generate_identity,
    identity_recipients,
    import_bundle,
    open_sealed,
    seal,
    sha256_hex,
    validate_identity,
    validate_recipient,
    validate_recipients,
)
from mayanode_operator.backup import archive as archive_module
from mayanode_operator.backup.archive import EXPORT_ARCHIVE_NAME, EXPORT_INDEX_NAME

PLAINTEXT = b"priv_validator_key " + SECRET_VALUES[0]


@pytest.fixture(scope="module")
def keys() -> list[tuple[str, str]]:
    return [generate_identity() for _ in range(3)]


def _assert_safe(err: BaseException, *secrets: str | bytes) -> None:
    text = str(err) + repr(err)
    for secret in [*secrets, *SECRET_VALUES]:
        shown = secret.decode() if isinstance(secret, bytes) else secret
        assert shown not in text


def test_generate_identity_shapes(keys: list[tuple[str, str]]) -> None:
    identity, recipient = keys[0]
    assert identity.startswith("AGE-SECRET-KEY-1") and recipient.startswith("age1") and len(recipient) == 62
    assert identity_recipients(identity) == [recipient]
    validate_identity(identity)


def test_round_trip_to_one_recipient(keys: list[tuple[str, str]]) -> None:
    identity, recipient = keys[0]
    ciphertext = encrypt(PLAINTEXT, [recipient])
    assert PLAINTEXT not in ciphertext and SECRET_VALUES[0] not in ciphertext
    assert ciphertext.startswith(b"age-encryption.org/v1\n")
    assert decrypt(ciphertext, identity) == PLAINTEXT


def test_round_trip_to_two_recipients_each_can_decrypt(keys: list[tuple[str, str]]) -> None:
    (id_a, rec_a), (id_b, rec_b), _ = keys
    ciphertext = encrypt(PLAINTEXT, [rec_a, rec_b])
    assert decrypt(ciphertext, id_a) == PLAINTEXT
    assert decrypt(ciphertext, id_b) == PLAINTEXT


def test_identity_file_with_comments(keys: list[tuple[str, str]]) -> None:
    identity, recipient = keys[0]
    text = f"# created: 2026-01-01T00:00:00Z\n# public key: {recipient}\n{identity}\n"
    assert decrypt(encrypt(PLAINTEXT, [recipient]), text.encode()) == PLAINTEXT


def test_wrong_identity(keys: list[tuple[str, str]]) -> None:
    (_, rec_a), (_, rec_b), (id_c, _) = keys
    ciphertext = encrypt(PLAINTEXT, [rec_a, rec_b])
    with pytest.raises(CryptoError) as excinfo:
        decrypt(ciphertext, id_c)
    assert excinfo.value.reason == "WrongIdentity"
    _assert_safe(excinfo.value, id_c, PLAINTEXT)


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1:]


@pytest.mark.parametrize("where", ["payload", "last-byte", "header-mac", "truncated", "not-age"])
def test_tampered_ciphertext_is_corrupted(keys: list[tuple[str, str]], where: str) -> None:
    identity, recipient = keys[0]
    ciphertext = encrypt(PLAINTEXT * 50, [recipient])
    mac_line = ciphertext.index(b"\n--- ") + 6
    tampered = {
        "payload": lambda: _flip(ciphertext, len(ciphertext) - 100),
        "last-byte": lambda: _flip(ciphertext, len(ciphertext) - 1),
        "header-mac": lambda: _flip(ciphertext, mac_line + 3),
        "truncated": lambda: ciphertext[:-40],
        "not-age": lambda: b"PK\x03\x04" + ciphertext[4:],
    }[where]()
    with pytest.raises(CryptoError) as excinfo:
        decrypt(tampered, identity)
    assert excinfo.value.reason == "Corrupted"
    _assert_safe(excinfo.value, identity, PLAINTEXT)


@pytest.mark.parametrize("recipient", ["age1notvalid", "ssh-ed25519 AAAA", "", "age1" + "q" * 58])
def test_invalid_recipient(recipient: str) -> None:
    with pytest.raises(CryptoError) as excinfo:
        encrypt(PLAINTEXT, [recipient])
    assert excinfo.value.reason == "InvalidRecipient"


def test_identity_given_as_recipient_is_refused_without_echoing_it(keys: list[tuple[str, str]]) -> None:
    identity, _ = keys[0]
    with pytest.raises(CryptoError) as excinfo:
        validate_recipient(identity)
    assert excinfo.value.reason == "InvalidRecipient"
    _assert_safe(excinfo.value, identity, identity[16:40])


def test_recipient_list_rules(keys: list[tuple[str, str]]) -> None:
    _, recipient = keys[0]
    assert validate_recipient(recipient.upper()) == recipient
    assert validate_recipients([recipient, recipient.upper()]) == [recipient]
    with pytest.raises(CryptoError) as excinfo:
        validate_recipients([])
    assert excinfo.value.reason == "InvalidRecipient"


@pytest.mark.parametrize("identity", ["", "# only a comment", "AGE-SECRET-KEY-1NOTVALID", "age1abc"])
def test_invalid_identity_is_refused_without_echoing_it(keys: list[tuple[str, str]], identity: str) -> None:
    ciphertext = encrypt(PLAINTEXT, [keys[0][1]])
    with pytest.raises(CryptoError) as excinfo:
        decrypt(ciphertext, identity)
    assert excinfo.value.reason == "InvalidIdentity"
    if identity:
        assert identity not in str(excinfo.value)


def test_sha256_hex() -> None:
    assert sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# --- sealed objects ----------------------------------------------------------------------------
def test_seal_and_open(keys: list[tuple[str, str]]) -> None:
    (id_a, rec_a), (id_b, rec_b), _ = keys
    sealed = seal(sample_items(), META, [rec_a, rec_b])
    assert sealed.digest == sha256_hex(sealed.ciphertext) and sealed.recipients == (rec_a, rec_b)
    for secret in SECRET_VALUES:
        assert secret not in sealed.ciphertext
    for identity in (id_a, id_b):
        manifest, items = open_sealed(sealed.ciphertext, identity, sealed.digest)
        assert manifest == sealed.manifest
        assert sorted(items, key=lambda i: i.name) == sorted(sample_items(), key=lambda i: i.name)
    text = repr(sealed)
    for secret in SECRET_VALUES:
        assert secret.decode() not in text


def test_outer_digest_is_checked_before_decrypting(keys: list[tuple[str, str]],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    identity, recipient = keys[0]
    sealed = seal(sample_items(), META, [recipient])

    def must_not_decrypt(*_: object) -> bytes:
        raise AssertionError("decrypt was called before the digest check")

    monkeypatch.setattr(archive_module, "decrypt", must_not_decrypt)
    with pytest.raises(ArchiveError) as excinfo:
        open_sealed(sealed.ciphertext, identity, "0" * 64)
    assert excinfo.value.reason == "DigestMismatch"
    tampered = _flip(sealed.ciphertext, len(sealed.ciphertext) - 10)
    with pytest.raises(ArchiveError) as excinfo:
        open_sealed(tampered, identity, sealed.digest)
    assert excinfo.value.reason == "DigestMismatch"
    _assert_safe(excinfo.value, identity)


def test_open_sealed_with_the_wrong_identity_or_tampered_but_rehashed(keys: list[tuple[str, str]]) -> None:
    (identity, recipient), _, (other_identity, _) = keys
    sealed = seal(sample_items(), META, [recipient])
    with pytest.raises(CryptoError) as excinfo:
        open_sealed(sealed.ciphertext, other_identity, sealed.digest)
    assert excinfo.value.reason == "WrongIdentity"
    tampered = _flip(sealed.ciphertext, len(sealed.ciphertext) - 10)
    with pytest.raises(CryptoError) as excinfo:
        open_sealed(tampered, identity, sha256_hex(tampered))
    assert excinfo.value.reason == "Corrupted"


def test_sealed_archive_with_a_bad_inner_manifest(keys: list[tuple[str, str]]) -> None:
    identity, recipient = keys[0]
    tar_bytes = raw_tar([(file_info("manifest.json"), b"{}"), (file_info("mayanode/x"), b"x")])
    ciphertext = encrypt(tar_bytes, [recipient])
    with pytest.raises(ArchiveError) as excinfo:
        open_sealed(ciphertext, identity, sha256_hex(ciphertext))
    assert excinfo.value.reason == "Malformed"


# --- export bundles ----------------------------------------------------------------------------
BACKUP_META = {"name": "node-a-20260102", "namespace": "node-a", "capturedAt": "2026-01-02T03:04:05Z",
               "reason": "Manual"}


def _bundle(recipient: str) -> tuple[bytes, bytes, dict]:
    sealed = seal(sample_items(), META, [recipient])
    public = sealed.manifest.public_summary()
    meta = {**BACKUP_META, "recipients": list(sealed.recipients), "sha256": sealed.digest}
    return export_bundle(sealed.ciphertext, public, meta), sealed.ciphertext, public


def test_export_import_round_trip_then_open(keys: list[tuple[str, str]]) -> None:
    identity, recipient = keys[0]
    bundle, ciphertext, public = _bundle(recipient)
    got_ciphertext, got_public, got_meta = import_bundle(bundle)
    assert got_ciphertext == ciphertext and got_public == public
    assert got_meta["name"] == BACKUP_META["name"] and got_meta["recipients"] == [recipient]
    manifest, items = open_sealed(got_ciphertext, identity, got_meta["sha256"])
    assert len(items) == len(sample_items()) and manifest.meta == META


def test_export_bundle_layout_and_no_plaintext(keys: list[tuple[str, str]]) -> None:
    identity, recipient = keys[0]
    bundle, ciphertext, _ = _bundle(recipient)
    assert _bundle(recipient)[0] != bundle          # a fresh encryption, but
    entries = tar_entries(bundle)
    assert [info.name for info, _ in entries] == [EXPORT_INDEX_NAME, EXPORT_ARCHIVE_NAME]
    index = json.loads(entries[0][1])
    assert index["format"] == "mayanode-backup-export/v1"
    assert index["archive"] == {"file": EXPORT_ARCHIVE_NAME, "format": "tar+age/v1", "size": len(ciphertext),
                                "sha256": sha256_hex(ciphertext)}
    assert entries[1][1] == ciphertext
    for secret in [*SECRET_VALUES, identity.encode()]:
        assert secret not in bundle
    assert export_bundle(ciphertext, index["manifest"], index["backup"]) == bundle   # deterministic


def _rebuild(bundle: bytes, change) -> bytes:
    return raw_tar(change(tar_entries(bundle)))


@pytest.mark.parametrize("case,reason", [
    ("tampered-archive", "DigestMismatch"),
    ("extra-entry", "UnexpectedEntry"),
    ("missing-archive", "MissingItem"),
    ("missing-index", "MissingItem"),
    ("bad-format", "Malformed"),
    ("wrong-size", "DigestMismatch"),
    ("symlink", "UnsafePath"),
    ("not-a-tar", "Malformed"),
    ("key-in-meta", "Malformed"),
])
def test_import_refuses_bad_bundles(keys: list[tuple[str, str]], case: str, reason: str) -> None:
    bundle, _, _ = _bundle(keys[0][1])

    def edit_index(entries, fn):
        out = []
        for info, data in entries:
            if info.name == EXPORT_INDEX_NAME:
                doc = json.loads(data)
                fn(doc)
                data = json.dumps(doc).encode()
            out.append((info, data))
        return out

    if case == "tampered-archive":
        bad = _rebuild(bundle, lambda es: [(i, _flip(d, len(d) - 5) if i.name == EXPORT_ARCHIVE_NAME else d)
                                           for i, d in es])
    elif case == "extra-entry":
        bad = _rebuild(bundle, lambda es: es + [(file_info("plaintext.tar"), b"x")])
    elif case == "missing-archive":
        bad = _rebuild(bundle, lambda es: [(i, d) for i, d in es if i.name != EXPORT_ARCHIVE_NAME])
    elif case == "missing-index":
        bad = _rebuild(bundle, lambda es: [(i, d) for i, d in es if i.name != EXPORT_INDEX_NAME])
    elif case == "bad-format":
        bad = _rebuild(bundle, lambda es: edit_index(es, lambda doc: doc.update(format="something/v0")))
    elif case == "wrong-size":
        bad = _rebuild(bundle, lambda es: edit_index(es, lambda doc: doc["archive"].update(size=1)))
    elif case == "symlink":
        bad = _rebuild(bundle, lambda es: [(file_info(EXPORT_INDEX_NAME, type=tarfile.SYMTYPE,
                                                       linkname="/etc/passwd"), None)] + es[1:])
    elif case == "key-in-meta":
        bad = _rebuild(bundle, lambda es: edit_index(
            es, lambda doc: doc["backup"].update(identity=generate_identity()[0])))
    else:
        bad = b"garbage" * 100
    with pytest.raises(ArchiveError) as excinfo:
        import_bundle(bad)
    assert excinfo.value.reason == reason


def test_export_refuses_plaintext_or_key_material(keys: list[tuple[str, str]]) -> None:
    identity, recipient = keys[0]
    sealed = seal(sample_items(), META, [recipient])
    public = sealed.manifest.public_summary()
    with pytest.raises(ArchiveError):
        export_bundle(b"plain tar bytes", public, BACKUP_META)
    with pytest.raises(ArchiveError) as excinfo:
        export_bundle(sealed.ciphertext, public, {**BACKUP_META, "identity": identity})
    _assert_safe(excinfo.value, identity)
    with pytest.raises(ArchiveError):
        export_bundle(sealed.ciphertext, {"items": [{"name": "x", "data": "c2VjcmV0"}]}, BACKUP_META)
