"""S3Store against a real S3 server (`rclone serve s3` on loopback)."""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest

from mayanode_operator.backup import BackupItem, generate_identity, open_sealed, seal, sha256_hex
from mayanode_operator.backup.stores import BackupStore, S3Store, StoreError, store_for_location


def _store(server, prefix: str | None = None, **overrides) -> S3Store:
    kwargs = dict(endpoint=server.endpoint, bucket=server.bucket,
                  prefix=prefix if prefix is not None else f"t-{uuid.uuid4().hex[:8]}/",
                  region="us-east-1", access_key=server.access_key, secret_key=server.secret_key,
                  force_path_style=True)
    kwargs.update(overrides)
    return S3Store(**kwargs)


def _no_credentials_in(server, err: BaseException) -> None:
    text = str(err) + repr(err)
    assert server.secret_key not in text and server.access_key not in text


async def test_round_trip(s3_server) -> None:
    store = _store(s3_server)
    assert isinstance(store, BackupStore)
    data = os.urandom(200_000)
    stored = await store.put("node-a/nbk-1.tar.age", data, {"backup": "nbk-1", "namespace": "node-a"})
    assert stored.size == len(data) and stored.sha256 == sha256_hex(data)
    assert stored.location == f"s3://{s3_server.bucket}/{store.prefix}node-a/nbk-1.tar.age"
    assert await store.get("node-a/nbk-1.tar.age") == data
    assert await store.exists("node-a/nbk-1.tar.age")
    assert (await store.stat("node-a/nbk-1.tar.age")).metadata == {"backup": "nbk-1", "namespace": "node-a"}
    assert s3_server.path_of(f"{store.prefix}node-a/nbk-1.tar.age").read_bytes() == data


async def test_list_by_prefix(s3_server) -> None:
    store = _store(s3_server)
    for key in ("node-a/1.tar.age", "node-a/2.tar.age", "node-b/1.tar.age"):
        await store.put(key, key.encode())
    other = _store(s3_server)
    await other.put("node-a/9.tar.age", b"elsewhere")
    listed = await store.list("node-a/")
    assert [o.key for o in listed] == ["node-a/1.tar.age", "node-a/2.tar.age"]
    assert [o.sha256 for o in listed] == [sha256_hex(b"node-a/1.tar.age"), sha256_hex(b"node-a/2.tar.age")]
    assert [o.key for o in await store.list()] == ["node-a/1.tar.age", "node-a/2.tar.age", "node-b/1.tar.age"]


async def test_delete_is_idempotent(s3_server) -> None:
    store = _store(s3_server)
    await store.put("k", b"v")
    await store.delete("k")
    await store.delete("k")
    await store.delete("never-written")
    assert not await store.exists("k")
    assert await store.list() == []


async def test_missing_key_is_not_found(s3_server) -> None:
    store = _store(s3_server)
    with pytest.raises(StoreError) as excinfo:
        await store.get("nope.tar.age")
    assert excinfo.value.reason == "NotFound" and "nope.tar.age" in excinfo.value.message
    with pytest.raises(StoreError) as excinfo:
        await _store(s3_server, bucket="no-such-bucket").get("x")
    assert excinfo.value.reason == "NotFound" and "no-such-bucket" in excinfo.value.message


async def test_wrong_credentials_are_access_denied(s3_server) -> None:
    await _store(s3_server, prefix="creds/").put("k", b"v")
    for overrides in ({"secret_key": "definitely-the-wrong-secret"}, {"access_key": "AKIDUNKNOWNKEY99"}):
        store = _store(s3_server, prefix="creds/", **overrides)
        for call in (store.get("k"), store.put("k2", b"v"), store.list()):
            with pytest.raises(StoreError) as excinfo:
                await call
            assert excinfo.value.reason == "AccessDenied"
            _no_credentials_in(s3_server, excinfo.value)
            assert "definitely-the-wrong-secret" not in str(excinfo.value)


async def test_unreachable_endpoint_fails_within_seconds(s3_server) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = _store(s3_server, endpoint=f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(StoreError) as excinfo:
        await store.get("k")
    assert time.monotonic() - started < 5
    assert excinfo.value.reason == "Unreachable"
    assert f"127.0.0.1:{port}" in excinfo.value.message
    _no_credentials_in(s3_server, excinfo.value)


async def test_endpoint_userinfo_is_never_shown(s3_server) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = _store(s3_server, endpoint=f"http://user:hunter2secret@127.0.0.1:{port}")
    assert "hunter2secret" not in store.describe()
    with pytest.raises(StoreError) as excinfo:
        await store.exists("k")
    assert "hunter2secret" not in str(excinfo.value)


async def test_conflict_and_overwrite(s3_server) -> None:
    store = _store(s3_server)
    first = await store.put("k", b"one")
    assert (await store.put("k", b"one")).sha256 == first.sha256
    with pytest.raises(StoreError) as excinfo:
        await store.put("k", b"two")
    assert excinfo.value.reason == "Conflict"
    await store.put("k", b"two", overwrite=True)
    assert await store.get("k") == b"two"


async def test_tampered_object_is_a_digest_mismatch(s3_server) -> None:
    store = _store(s3_server)
    stored = await store.put("k", b"original-content")
    store._boto().put_object(Bucket=s3_server.bucket, Key=f"{store.prefix}k", Body=b"tampered-content",
                             Metadata={"sha256": stored.sha256})
    with pytest.raises(StoreError) as excinfo:
        await store.get("k")
    assert excinfo.value.reason == "DigestMismatch"


async def test_sealed_backup_via_factory_and_credentials_secret(s3_server) -> None:
    secrets = {("node-a", "s3-creds"): {"AWS_ACCESS_KEY_ID": s3_server.access_key.encode(),
                                        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key.encode()}}

    async def read_secret(namespace: str, name: str):
        return secrets.get((namespace, name))

    location = {"s3": {"endpoint": s3_server.endpoint, "bucket": s3_server.bucket, "prefix": "factory/",
                       "region": "us-east-1", "forcePathStyle": True,
                       "credentialsSecret": {"name": "s3-creds"}}}
    store = await store_for_location(location, "node-a", None, read_secret)
    _no_credentials_in(s3_server, Exception(store.describe()))
    identity, recipient = generate_identity()
    items = [BackupItem("config/priv_validator_key.json", "mayanode", "config/priv_validator_key.json",
                        b'{"priv_key":"not-a-real-key"}', 0o600)]
    sealed = seal(items, {"namespace": "node-a"}, [recipient])
    stored = await store.put("node-a/nbk.tar.age", sealed.ciphertext, {"backup": "nbk"})
    assert b"not-a-real-key" not in s3_server.path_of("factory/node-a/nbk.tar.age").read_bytes()
    manifest, got = open_sealed(await store.get("node-a/nbk.tar.age"), identity, stored.sha256)
    assert got == items and manifest.meta == {"namespace": "node-a"}

