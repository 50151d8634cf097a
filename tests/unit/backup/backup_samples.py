"""Realistic backup items for the storage-layer tests (fake key material, never real keys)."""

from __future__ import annotations

import io
import json
import tarfile

from mayanode_operator.backup import BackupItem

MNEMONIC = b"abandon ability able about above absent absorb abstract absurd abuse access accident\n"
PASSWORD = b"correct-horse-battery-staple\n"
PRIV_VALIDATOR_KEY = json.dumps({
    "address": "1AADB9E5C0FFEE00112233445566778899AABBCC",
    "pub_key": {"type": "tendermint/PubKeyEd25519", "value": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="},
    "priv_key": {"type": "tendermint/PrivKeyEd25519",
                 "value": "SECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSE"},
}).encode()
META = {
    "nodeAddress": "tmaya1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqrnkmls",
    "namespace": "node-a",
    "mayaNode": "node-a",
    "consensusPubKey": "tmayacpub1zcjduepqexample",
    "vaultPubKey": "tmayapub1addwnpepqexample",
    "height": 197675,
    "createdAt": "2026-01-02T03:04:05Z",
}


def sample_items() -> list[BackupItem]:
    return [
        BackupItem("MAYAChain-ED25519", "mayanode", "MAYAChain-ED25519", b"ed25519-node-key-" + bytes(range(48)),
                   0o600, mtime=1_700_000_000),
        BackupItem("keyring-file/mayachain.info", "mayanode", "keyring-file/mayachain.info", b"eyJhbGciOi" * 20,
                   0o600, uid=1000, gid=1000, mtime=1_700_000_001),
        BackupItem("config/node_key.json", "mayanode", "config/node_key.json", b'{"priv_key":{"value":"nk"}}',
                   0o600, mtime=1_700_000_002),
        BackupItem("config/priv_validator_key.json", "mayanode", "config/priv_validator_key.json",
                   PRIV_VALIDATOR_KEY, 0o600, mtime=1_700_000_003),
        BackupItem("data/priv_validator_state.json", "mayanode", "data/priv_validator_state.json",
                   b'{"height":"197675","round":0,"step":3}', 0o600, mtime=1_700_000_004),
        BackupItem("localstate-tmayapub1.json", "bifrost", "localstate-tmayapub1addwnpep.json",
                   json.dumps({"key_share": "ab" * 2000}).encode(), 0o600, mtime=1_700_000_005),
        BackupItem("mayanode-mnemonic/mnemonic", "secret", "mayanode-mnemonic/mnemonic", MNEMONIC, 0o600),
        BackupItem("mayanode-password/password", "secret", "mayanode-password/password", PASSWORD, 0o600),
    ]


SECRET_VALUES = [MNEMONIC.strip(), PASSWORD.strip(), b"SECRETSECRETSECRET"]


def raw_tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def file_info(name: str, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o600
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def tar_entries(tar_bytes: bytes) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    out: list[tuple[tarfile.TarInfo, bytes | None]] = []
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for member in tar:
            handle = tar.extractfile(member)
            out.append((member, handle.read() if handle else None))
    return out
