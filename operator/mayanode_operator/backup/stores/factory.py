"""A BackupStore from a backup location as the CRDs write it (`spec.location` / `spec.backup.location`).

    {"secret": {"namePrefix": "nodebackup"}}
    {"s3": {"endpoint": "http://minio:9000", "bucket": "b", "prefix": "mayanode/", "region": "us-east-1",
            "forcePathStyle": true,
            "credentialsSecret": {"name": "s3-creds", "accessKeyIDKey": "AWS_ACCESS_KEY_ID",
                                  "secretAccessKeyKey": "AWS_SECRET_ACCESS_KEY"}}}

Other keys of the location (e.g. `encryption`) are ignored here. Without `credentialsSecret` the S3
store uses boto3's default credential chain (environment, instance profile, IRSA).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ...api import naming
from .base import BackupStore, StoreError, StoreReason
from .secret import SecretStore

ReadSecret = Callable[[str, str], Awaitable[Mapping[str, bytes] | None]]   # (namespace, name) → data


def store_kind(location: Mapping[str, Any]) -> str:
    """`Secret` or `S3` (StoreError Invalid unless exactly one is set)."""
    if not isinstance(location, Mapping):
        raise StoreError(StoreReason.INVALID, "the backup location must be an object")
    has_secret = location.get("secret") is not None
    has_s3 = location.get("s3") is not None
    if has_secret == has_s3:
        raise StoreError(StoreReason.INVALID, "the backup location must set exactly one of secret or s3"
                         + (" (both are set)" if has_secret else " (neither is set)"))
    return "Secret" if has_secret else "S3"


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8").strip()
        except UnicodeDecodeError:
            return ""
    return str(value).strip() if value is not None else ""


async def _credentials(spec: Mapping[str, Any], namespace: str, read_secret: ReadSecret) -> tuple[str, str]:
    if not isinstance(spec, Mapping) or not spec.get("name"):
        raise StoreError(StoreReason.INVALID, "s3.credentialsSecret needs the name of a Secret")
    name = str(spec["name"])
    id_key = str(spec.get("accessKeyIDKey") or naming.DEFAULT_S3_ACCESS_KEY_ID_KEY)
    secret_key = str(spec.get("secretAccessKeyKey") or naming.DEFAULT_S3_SECRET_ACCESS_KEY_KEY)
    try:
        data = await read_secret(namespace, name)
    except StoreError as err:
        if err.reason == StoreReason.NOT_FOUND:
            data = None
        else:
            raise
    if not data:
        raise StoreError(StoreReason.INVALID,
                         f"the S3 credentials Secret {namespace}/{name} does not exist or is empty")
    missing = [key for key in (id_key, secret_key) if not _text(data.get(key))]
    if missing:
        raise StoreError(StoreReason.INVALID,
                         f"the S3 credentials Secret {namespace}/{name} has no (or an empty) "
                         f"{' and '.join(repr(k) for k in missing)}")
    return _text(data[id_key]), _text(data[secret_key])


async def store_for_location(location: Mapping[str, Any], namespace: str, kube_api_client: Any,
                             read_secret: ReadSecret) -> BackupStore:
    """The store a location names. `read_secret(namespace, name)` answers a Secret's decoded data (or None)."""
    kind = store_kind(location)
    if kind == "Secret":
        spec = location["secret"]
        if not isinstance(spec, Mapping):
            raise StoreError(StoreReason.INVALID, "location.secret must be an object (write `secret: {}` for defaults)")
        prefix = spec.get("namePrefix") or naming.DEFAULT_BACKUP_SECRET_PREFIX
        if len(str(prefix)) > 40:
            raise StoreError(StoreReason.INVALID, "location.secret.namePrefix must be at most 40 characters")
        return SecretStore(kube_api_client, namespace, str(prefix))
    spec = location["s3"]
    if not isinstance(spec, Mapping):
        raise StoreError(StoreReason.INVALID, "location.s3 must be an object")
    bucket = spec.get("bucket")
    if not bucket or not isinstance(bucket, str):
        raise StoreError(StoreReason.INVALID, "location.s3.bucket is required")
    access_key = secret = None
    if spec.get("credentialsSecret") is not None:
        access_key, secret = await _credentials(spec["credentialsSecret"], namespace, read_secret)
    from .s3 import S3Store     # here, not at the top: boto3 costs ~7 MiB and only S3 locations need it

    return S3Store(
        endpoint=spec.get("endpoint") or None,
        bucket=bucket,
        prefix=str(spec.get("prefix") or ""),
        region=str(spec.get("region") or "us-east-1"),
        access_key=access_key,
        secret_key=secret,
        force_path_style=bool(spec.get("forcePathStyle", False)),
    )
