"""store_for_location: the CRD's location shape → a store, with clear Invalid errors."""

from __future__ import annotations

import pytest

from .fake_core import FakeCoreV1
from mayanode_operator.api.backup import BackupLocation
from mayanode_operator.backup import generate_identity
from mayanode_operator.backup.stores import S3Store, SecretStore, StoreError, store_for_location, store_kind

AK, SK = "AKIAEXAMPLEKEY01", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SECRETS = {("node-a", "s3-creds"): {"AWS_ACCESS_KEY_ID": AK.encode(), "AWS_SECRET_ACCESS_KEY": SK.encode() + b"\n",
                                    "id": AK.encode(), "sk": SK.encode()}}


async def read_secret(namespace: str, name: str):
    return SECRETS.get((namespace, name))


S3 = {"endpoint": "http://minio.storage:9000", "bucket": "backups", "prefix": "mayanode/", "region": "eu-1",
      "forcePathStyle": True, "credentialsSecret": {"name": "s3-creds"}}


async def test_secret_location() -> None:
    store = await store_for_location({"secret": {"namePrefix": "bk"}}, "node-a", FakeCoreV1(), read_secret)
    assert isinstance(store, SecretStore) and store.name_prefix == "bk" and store.namespace == "node-a"
    store = await store_for_location({"secret": {}}, "node-a", FakeCoreV1(), read_secret)
    assert store.name_prefix == "nodebackup"


async def test_s3_location_reads_credentials_from_the_secret() -> None:
    store = await store_for_location({"s3": S3, "encryption": {}}, "node-a", None, read_secret)
    assert isinstance(store, S3Store)
    assert (store.endpoint, store.bucket, store.prefix, store.region, store.force_path_style) == \
           ("http://minio.storage:9000", "backups", "mayanode/", "eu-1", True)
    assert store._credentials == (AK, SK)
    assert AK not in store.describe() and SK not in store.describe() and SK not in repr(store)
    custom = {**S3, "credentialsSecret": {"name": "s3-creds", "accessKeyIDKey": "id", "secretAccessKeyKey": "sk"}}
    store = await store_for_location({"s3": custom}, "node-a", None, read_secret)
    assert store._credentials == (AK, SK)


async def test_s3_without_credentials_secret_uses_the_default_chain() -> None:
    store = await store_for_location({"s3": {"bucket": "backups"}}, "node-a", None, read_secret)
    assert store._credentials == (None, None) and store.endpoint is None and store.prefix == ""


@pytest.mark.parametrize("location,needle", [
    ({}, "neither"),
    ({"secret": {}, "s3": S3}, "both"),
    ({"s3": {**S3, "credentialsSecret": {"name": "missing"}}}, "does not exist"),
    ({"s3": {**S3, "credentialsSecret": {"name": "s3-creds", "accessKeyIDKey": "nope"}}}, "'nope'"),
    ({"s3": {**S3, "bucket": ""}}, "bucket"),
    ({"s3": {**S3, "credentialsSecret": {}}}, "name"),
    ({"secret": {"namePrefix": "Not_A_Label"}}, "DNS label"),
    ({"s3": {**S3, "endpoint": "ftp://x"}}, "http"),
])
async def test_bad_locations_are_invalid(location: dict, needle: str) -> None:
    with pytest.raises(StoreError) as excinfo:
        await store_for_location(location, "node-a", FakeCoreV1(), read_secret)
    assert excinfo.value.reason == "Invalid"
    assert needle in excinfo.value.message
    assert SK not in str(excinfo.value) and AK not in str(excinfo.value)


async def test_the_crd_models_produce_the_shape_the_factory_reads() -> None:
    _, recipient = generate_identity()
    encryption = {"recipients": [recipient]}
    s3 = BackupLocation.model_validate({"s3": S3, "encryption": encryption}).to_k8s()
    store = await store_for_location(s3, "node-a", None, read_secret)
    assert isinstance(store, S3Store) and store._credentials == (AK, SK) and store.force_path_style
    secret = BackupLocation.model_validate({"secret": {}, "encryption": encryption}).to_k8s()
    store = await store_for_location(secret, "node-a", FakeCoreV1(), read_secret)
    assert isinstance(store, SecretStore) and store.name_prefix == "nodebackup"
    assert store_kind(s3) == "S3" and store_kind(secret) == "Secret"
