"""SecretStore: against a CoreV1-like double, and over HTTP against the emulated API server."""

from __future__ import annotations

import base64
import json
import os
import re

import pytest

from .fake_core import FakeCoreV1, _error
from mayanode_operator.backup import generate_identity, open_sealed, seal, sha256_hex
from mayanode_operator.backup.stores import BackupStore, SecretStore, StoreError
from mayanode_operator.backup.stores.secret import ANN_CHUNKS, ANN_KEY, ANN_SHA256, ANN_SIZE, LABEL_OBJECT, key_hash

NS = "node-a"
MIB = 1024 * 1024
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _data_size(secret: dict) -> int:
    return sum(len(base64.b64decode(v)) for v in (secret.get("data") or {}).values())


@pytest.fixture
def core() -> FakeCoreV1:
    return FakeCoreV1()


@pytest.fixture
def store(core: FakeCoreV1) -> SecretStore:
    return SecretStore(core, NS, "nodebackup")


def test_is_a_backup_store(store: SecretStore) -> None:
    assert isinstance(store, BackupStore)
    assert store.describe() == "secret://node-a/nodebackup"


async def test_small_object_round_trip_in_one_secret(store: SecretStore, core: FakeCoreV1) -> None:
    data = os.urandom(5000)
    stored = await store.put("node-a/nbk-1.tar.age", data, {"backup": "nbk-1"})
    assert stored.size == 5000 and stored.sha256 == sha256_hex(data) and stored.parts == 1
    assert stored.location == f"secret://{NS}/{store.secret_name('node-a/nbk-1.tar.age')}"
    assert core.names(NS) == [store.secret_name("node-a/nbk-1.tar.age")]
    secret = core.secrets[(NS, store.secret_name("node-a/nbk-1.tar.age"))]
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mayanode-operator"
    assert secret["metadata"]["labels"][LABEL_OBJECT] == key_hash("node-a/nbk-1.tar.age")
    ann = secret["metadata"]["annotations"]
    assert ann[ANN_KEY] == "node-a/nbk-1.tar.age" and ann[ANN_SIZE] == "5000"
    assert ann[ANN_SHA256] == sha256_hex(data) and ann[ANN_CHUNKS] == "0"
    assert await store.get("node-a/nbk-1.tar.age") == data
    assert await store.exists("node-a/nbk-1.tar.age")
    listed = await store.list("node-a/")
    assert [(o.key, o.size, o.metadata) for o in listed] == [("node-a/nbk-1.tar.age", 5000, {"backup": "nbk-1"})]


async def test_large_object_is_split_into_chunks_under_1mib(store: SecretStore, core: FakeCoreV1) -> None:
    data = os.urandom(3 * MIB)
    stored = await store.put("big", data)
    names = core.names(NS)
    assert stored.parts == len(names) == 5                      # 4 chunks of ≤ 900 KiB + the index
    for name in names:
        assert DNS1123.match(name) and len(name) <= 253
        assert _data_size(core.secrets[(NS, name)]) <= 900 * 1024 < MIB
    creates = [name for verb, name in core.calls if verb == "create"]
    assert creates[-1] == store.secret_name("big")               # the index is written last
    assert creates[:-1] == [store.chunk_name("big", i) for i in range(4)]
    assert await store.get("big") == data


async def test_too_large_is_refused_with_a_hint_to_use_s3(core: FakeCoreV1) -> None:
    store = SecretStore(core, NS, "nodebackup", max_size=2 * MIB)
    with pytest.raises(StoreError) as excinfo:
        await store.put("huge", b"x" * (2 * MIB + 1))
    assert excinfo.value.reason == "TooLarge" and "S3" in excinfo.value.message
    assert core.names(NS) == []


async def test_default_max_is_8mib(store: SecretStore) -> None:
    with pytest.raises(StoreError) as excinfo:
        await store.put("huge", b"x" * (8 * MIB + 1))
    assert excinfo.value.reason == "TooLarge"


async def test_delete_is_idempotent_and_removes_every_chunk(store: SecretStore, core: FakeCoreV1) -> None:
    await store.put("big", os.urandom(2 * MIB))
    await store.put("other", b"keep")
    await store.delete("big")
    await store.delete("big")
    await store.delete("never-written")
    assert core.names(NS) == [store.secret_name("other")]
    assert not await store.exists("big")
    with pytest.raises(StoreError) as excinfo:
        await store.get("big")
    assert excinfo.value.reason == "NotFound"


async def test_half_written_object_is_never_seen_and_a_retry_completes_it(store: SecretStore,
                                                                         core: FakeCoreV1) -> None:
    data = os.urandom(2 * MIB)
    core.fail_on[("create", store.chunk_name("obj", 2))] = _error(500, "InternalError", "etcd timeout")
    with pytest.raises(StoreError) as excinfo:
        await store.put("obj", data)
    assert excinfo.value.reason == "Unreachable"
    assert len(core.names(NS)) == 2                               # chunks 0 and 1, no index
    assert await store.list() == [] and not await store.exists("obj")
    with pytest.raises(StoreError) as excinfo:
        await store.get("obj")
    assert excinfo.value.reason == "NotFound"
    core.fail_on.clear()
    await store.put("obj", data)
    assert await store.get("obj") == data and len(core.names(NS)) == 4


async def test_crash_before_the_index_after_all_chunks(store: SecretStore, core: FakeCoreV1) -> None:
    core.fail_on[("create", store.secret_name("obj"))] = _error(503, "ServiceUnavailable", "down")
    with pytest.raises(StoreError):
        await store.put("obj", os.urandom(MIB))
    assert await store.list() == []
    await store.delete("obj")
    assert core.names(NS) == []


async def test_put_is_idempotent_for_equal_content_and_conflicts_otherwise(store: SecretStore) -> None:
    first = await store.put("k", b"one")
    assert await store.put("k", b"one") == first
    with pytest.raises(StoreError) as excinfo:
        await store.put("k", b"two")
    assert excinfo.value.reason == "Conflict"
    await store.put("k", os.urandom(2 * MIB), overwrite=True)
    await store.put("k", b"three", overwrite=True)
    assert await store.get("k") == b"three"


async def test_a_corrupted_chunk_is_a_digest_mismatch(store: SecretStore, core: FakeCoreV1) -> None:
    await store.put("obj", os.urandom(2 * MIB))
    chunk = core.secrets[(NS, store.chunk_name("obj", 1))]
    raw = bytearray(base64.b64decode(chunk["data"]["object"]))
    raw[10] ^= 0xFF
    chunk["data"]["object"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(StoreError) as excinfo:
        await store.get("obj")
    assert excinfo.value.reason == "DigestMismatch"


async def test_list_filters_by_prefix_and_store(core: FakeCoreV1) -> None:
    a = SecretStore(core, NS, "nodebackup")
    b = SecretStore(core, NS, "elsewhere")
    await a.put("node-a/1", b"1")
    await a.put("node-a/2", os.urandom(MIB))
    await a.put("node-b/1", b"3")
    await b.put("node-a/9", b"9")
    assert [o.key for o in await a.list("node-a/")] == ["node-a/1", "node-a/2"]
    assert [o.key for o in await a.list()] == ["node-a/1", "node-a/2", "node-b/1"]
    assert [o.key for o in await b.list()] == ["node-a/9"]
    assert [o.parts for o in await a.list("node-a/")] == [1, 3]


async def test_names_are_dns1123_for_awkward_and_long_keys(store: SecretStore) -> None:
    keys = ["UPPER/Case_key.tar.age", "a" * 1000, "x/(y)/z!*'", "___"]
    names = {store.secret_name(key) for key in keys}
    assert len(names) == len(keys)
    for name in names | {store.chunk_name(keys[1], 12)}:
        assert DNS1123.match(name) and len(name) <= 253
    for key in keys:
        await store.put(key, key.encode())
        assert await store.get(key) == key.encode()
    assert store.secret_name("a/b") != store.secret_name("a-b")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "spaces are bad", "ü"])
async def test_invalid_keys(store: SecretStore, key: str) -> None:
    with pytest.raises(StoreError) as excinfo:
        await store.put(key, b"x")
    assert excinfo.value.reason == "Invalid"


async def test_api_errors_map_to_reasons(store: SecretStore, core: FakeCoreV1) -> None:
    core.fail_on[("read", "*")] = _error(403, "Forbidden", "secrets is forbidden")
    with pytest.raises(StoreError) as excinfo:
        await store.get("k")
    assert excinfo.value.reason == "AccessDenied" and "RBAC" in excinfo.value.message

    class Unreachable(FakeCoreV1):
        def read_namespaced_secret(self, *args, **kwargs):
            raise ConnectionRefusedError("connection refused")

    with pytest.raises(StoreError) as excinfo:
        await SecretStore(Unreachable(), NS).exists("k")
    assert excinfo.value.reason == "Unreachable"


async def test_sealed_backup_through_the_store(store: SecretStore) -> None:
    identity, recipient = generate_identity()
    from .backup_samples import META, sample_items

    sealed = seal(sample_items(), META, [recipient])
    stored = await store.put("node-a/nbk.tar.age", sealed.ciphertext)
    assert stored.sha256 == sealed.digest
    manifest, items = open_sealed(await store.get("node-a/nbk.tar.age"), identity, stored.sha256)
    assert len(items) == len(sample_items())


def test_constructor_validation(core: FakeCoreV1) -> None:
    for kwargs in ({"name_prefix": "Bad_Prefix"}, {"chunk_size": 2 * MIB}, {"chunk_size": 0}):
        with pytest.raises(StoreError) as excinfo:
            SecretStore(core, NS, **kwargs)
        assert excinfo.value.reason == "Invalid"


# --- over HTTP against the emulated API server --------------------------------------------------
apiserver = pytest.importorskip("mayanode_operator.sandbox.apiserver")


@pytest.fixture(scope="module")
def emulated():
    from kubernetes import client

    from mayanode_operator.sandbox.apiserver.testing import api_client

    with apiserver.ServerThread() as thread:
        api = api_client(thread.url)
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
        yield api, thread
        api.close()


@pytest.fixture
def http_store(emulated, request) -> SecretStore:
    api, _ = emulated
    prefix = "t" + sha256_hex(request.node.name.encode())[:12]
    return SecretStore(api, NS, prefix)


def _http_secrets(api, prefix: str) -> list[dict]:
    from kubernetes import client

    response = client.CoreV1Api(api).list_namespaced_secret(
        NS, label_selector=f"maya.nodeops.io/backup-store={prefix}", _preload_content=False)
    return json.loads(response.data)["items"]


async def test_http_round_trip(http_store: SecretStore) -> None:
    data = os.urandom(10_000)
    stored = await http_store.put("node-a/nbk-1.tar.age", data, {"backup": "nbk-1"})
    assert stored.parts == 1
    assert await http_store.get("node-a/nbk-1.tar.age") == data
    assert await http_store.exists("node-a/nbk-1.tar.age")
    assert [o.key for o in await http_store.list("node-a/")] == ["node-a/nbk-1.tar.age"]
    assert await http_store.list("node-b/") == []


async def test_http_3mib_object_is_split_into_secrets_under_1mib(http_store: SecretStore, emulated) -> None:
    api, _ = emulated
    data = os.urandom(3 * MIB)
    stored = await http_store.put("big.tar.age", data)
    secrets = _http_secrets(api, http_store.name_prefix)
    assert stored.parts == len(secrets) == 5
    for secret in secrets:
        assert secret["type"] == "Opaque"
        assert _data_size(secret) < MIB
        assert DNS1123.match(secret["metadata"]["name"])
    assert await http_store.get("big.tar.age") == data


async def test_http_too_large_and_idempotent_delete(http_store: SecretStore, emulated) -> None:
    api, _ = emulated
    with pytest.raises(StoreError) as excinfo:
        await http_store.put("huge", b"\0" * (8 * MIB + 1))
    assert excinfo.value.reason == "TooLarge" and "S3" in excinfo.value.message
    await http_store.put("obj", os.urandom(2 * MIB))
    await http_store.delete("obj")
    await http_store.delete("obj")
    assert _http_secrets(api, http_store.name_prefix) == []


async def test_http_half_written_object_is_not_listed(http_store: SecretStore, emulated) -> None:
    from kubernetes import client

    api, _ = emulated
    data = os.urandom(2 * MIB)
    await http_store.put("obj", data)
    client.CoreV1Api(api).delete_namespaced_secret(http_store.secret_name("obj"), NS)   # chunks remain, no index
    assert len(_http_secrets(api, http_store.name_prefix)) == 3
    assert await http_store.list() == [] and not await http_store.exists("obj")
    with pytest.raises(StoreError) as excinfo:
        await http_store.get("obj")
    assert excinfo.value.reason == "NotFound"
    await http_store.put("obj", data)                                  # a retry replaces the leftovers
    assert await http_store.get("obj") == data
    assert len(_http_secrets(api, http_store.name_prefix)) == 4


async def test_http_secret_over_1mib_is_refused_by_the_server(emulated) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api, _ = emulated
    body = {"metadata": {"name": "too-big"}, "type": "Opaque",
            "data": {"x": base64.b64encode(b"\0" * (MIB + 1)).decode()}}
    with pytest.raises(ApiException) as excinfo:
        client.CoreV1Api(api).create_namespaced_secret(NS, body, _preload_content=False)
    assert excinfo.value.status == 422
