"""S3-compatible object storage (AWS S3, MinIO, Ceph, rclone serve s3, …) through boto3.

Every object carries its sha256 in the user metadata field `sha256` (`x-amz-meta-sha256`), checked on
`get`. Calls run in worker threads with short timeouts and few retries, so an unreachable endpoint
fails in seconds. Error messages name the endpoint and bucket, never the credentials.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError as BotoConnectionError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from ..crypto import sha256_hex
from .base import StoredObject, StoreError, StoreReason, check_key, check_metadata, check_prefix

SHA256_META = "sha256"
DEFAULT_MAX_SIZE = 256 * 1024 * 1024

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "Forbidden", "SignatureDoesNotMatch", "InvalidAccessKeyId",
           "InvalidToken", "ExpiredToken", "InvalidClientTokenId", "AccountProblem", "AllAccessDisabled",
           "UnrecognizedClientException", "AuthorizationHeaderMalformed"}
_UNAVAILABLE = {"InternalError", "ServiceUnavailable", "SlowDown", "503", "500", "502", "504",
                "RequestTimeout", "RequestTimeTooSkewed"}
_TOO_LARGE = {"EntityTooLarge", "413"}
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "OperationAborted"}


def _object_missing(err: StoreError) -> bool:
    return err.reason == StoreReason.NOT_FOUND and not getattr(err, "bucket_missing", False)


def sanitize_endpoint(endpoint: str | None) -> str | None:
    """The endpoint without user info, query or fragment (safe to show)."""
    if not endpoint:
        return endpoint
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class S3Store:
    """BackupStore over one bucket and key prefix."""

    def __init__(self, endpoint: str | None, bucket: str, prefix: str = "", region: str = "us-east-1",
                 access_key: str | None = None, secret_key: str | None = None, force_path_style: bool = False, *,
                 connect_timeout: float = 3.0, read_timeout: float = 30.0, max_attempts: int = 2,
                 max_size: int = DEFAULT_MAX_SIZE) -> None:
        if not bucket or not isinstance(bucket, str):
            raise StoreError(StoreReason.INVALID, "an S3 location needs a bucket")
        if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
            raise StoreError(StoreReason.INVALID,
                             f"S3 endpoint {sanitize_endpoint(endpoint)!r} must be an http:// or https:// URL")
        if (access_key is None) != (secret_key is None):
            raise StoreError(StoreReason.INVALID,
                             "give both the S3 access key ID and the secret access key, or neither")
        prefix = prefix or ""
        if prefix:
            check_prefix(prefix)
            if not prefix.endswith("/"):
                prefix += "/"
        self.endpoint = endpoint
        self.bucket = bucket
        self.prefix = prefix
        self.region = region or "us-east-1"
        self.force_path_style = force_path_style
        self.max_size = max_size
        self._credentials = (access_key, secret_key)
        self._config = Config(
            region_name=self.region,
            signature_version="s3v4",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": "path" if force_path_style else "auto"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Store({self.describe()!r})"

    # --- naming ------------------------------------------------------------------------------
    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}"
        shown = sanitize_endpoint(self.endpoint)
        return f"{where} at {shown}" if shown else where

    def _full_key(self, key: str) -> str:
        return self.prefix + key

    def _location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full_key(key)}"

    # --- boto3 -------------------------------------------------------------------------------
    def _boto(self) -> Any:
        with self._lock:
            if self._client is None:
                access_key, secret_key = self._credentials
                session = boto3.session.Session()
                self._client = session.client(
                    "s3", endpoint_url=self.endpoint, region_name=self.region,
                    aws_access_key_id=access_key, aws_secret_access_key=secret_key, config=self._config)
            return self._client

    def _scrub(self, text: str) -> str:
        for secret in self._credentials:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text[:300]

    def _error(self, err: BaseException, action: str) -> StoreError:
        where = f"{action} ({self.describe()})"
        if isinstance(err, ClientError):
            error = err.response.get("Error") or {}
            code = str(error.get("Code") or "")
            status = int((err.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
            if code == "NoSuchBucket":
                missing = StoreError(StoreReason.NOT_FOUND, f"{where}: bucket {self.bucket!r} does not exist")
                missing.bucket_missing = True
                return missing
            if code in _NOT_FOUND or (not code and status == 404):
                return StoreError(StoreReason.NOT_FOUND, f"{where}: not found")
            if code in _DENIED or status in (401, 403):
                return StoreError(StoreReason.ACCESS_DENIED,
                                  f"{where}: access denied ({code or status}); check the credentials Secret and "
                                  f"the bucket policy")
            if code in _TOO_LARGE:
                return StoreError(StoreReason.TOO_LARGE,
                                  f"{where}: the object is too large for the server ({code})")
            if code in _CONFLICT:
                return StoreError(StoreReason.CONFLICT, f"{where}: conflict ({code})")
            if code in _UNAVAILABLE or status >= 500:
                return StoreError(StoreReason.UNREACHABLE, f"{where}: the server is unavailable ({code or status})")
            detail = self._scrub(str(error.get("Message") or ""))
            suffix = f": {detail}" if detail else ""
            return StoreError(StoreReason.INVALID, f"{where}: refused ({code or status}){suffix}")
        if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
            return StoreError(StoreReason.ACCESS_DENIED, f"{where}: no S3 credentials are configured")
        if isinstance(err, ParamValidationError):
            return StoreError(StoreReason.INVALID, f"{where}: invalid request parameters")
        if isinstance(err, (EndpointConnectionError, BotoConnectionError)):
            return StoreError(StoreReason.UNREACHABLE,
                              f"{where}: the S3 endpoint is unreachable ({type(err).__name__})")
        if isinstance(err, BotoCoreError):
            return StoreError(StoreReason.UNREACHABLE, f"{where}: S3 request failed ({type(err).__name__})")
        if isinstance(err, (OSError, TimeoutError)):
            return StoreError(StoreReason.UNREACHABLE,
                              f"{where}: the S3 endpoint is unreachable ({type(err).__name__})")
        return StoreError(StoreReason.INVALID, f"{where}: unexpected failure ({type(err).__name__})")

    async def _run(self, action: str, fn: Any) -> Any:
        def call() -> Any:
            return fn(self._boto())

        try:
            return await asyncio.to_thread(call)
        except StoreError:
            raise
        except Exception as err:
            raise self._error(err, action) from None

    async def _head(self, key: str) -> dict[str, Any] | None:
        full = self._full_key(key)
        try:
            return await self._run(f"reading {full}", lambda c: c.head_object(Bucket=self.bucket, Key=full))
        except StoreError as err:
            if _object_missing(err):
                return None
            raise

    def _stored(self, key: str, head: Mapping[str, Any]) -> StoredObject:
        metadata = {str(k).lower(): str(v) for k, v in (head.get("Metadata") or {}).items()}
        digest = metadata.pop(SHA256_META, "")
        return StoredObject(key=key, size=int(head.get("ContentLength") or 0), sha256=digest,
                            location=self._location(key), parts=1, metadata=metadata)

    # --- objects -----------------------------------------------------------------------------
    async def put(self, key: str, data: bytes, metadata: Mapping[str, str] | None = None, *,
                  overwrite: bool = False) -> StoredObject:
        check_key(key)
        meta = check_metadata(metadata)
        data = bytes(data)
        if len(data) > self.max_size:
            raise StoreError(StoreReason.TOO_LARGE,
                             f"the object is {len(data)} bytes; this store accepts at most {self.max_size}")
        digest = sha256_hex(data)
        head = await self._head(key)
        if head is not None:
            stored = self._stored(key, head)
            if stored.sha256 == digest and stored.size == len(data):
                return stored
            if not overwrite:
                raise StoreError(StoreReason.CONFLICT,
                                 f"object {key!r} already exists in {self.describe()} with different content")
        full = self._full_key(key)
        await self._run(f"writing {full}", lambda c: c.put_object(
            Bucket=self.bucket, Key=full, Body=data, ContentType="application/octet-stream",
            Metadata={**meta, SHA256_META: digest}))
        return StoredObject(key=key, size=len(data), sha256=digest, location=self._location(key), metadata=meta)

    async def get(self, key: str) -> bytes:
        check_key(key)
        full = self._full_key(key)

        def fetch(client: Any) -> tuple[bytes, dict[str, Any]]:
            response = client.get_object(Bucket=self.bucket, Key=full)
            length = int(response.get("ContentLength") or 0)
            body = response["Body"]
            try:
                if length > self.max_size:
                    raise StoreError(StoreReason.TOO_LARGE,
                                     f"object {key!r} is {length} bytes; this store reads at most {self.max_size}")
                return body.read(), response
            finally:
                body.close()

        try:
            data, response = await self._run(f"reading {full}", fetch)
        except StoreError as err:
            if _object_missing(err):
                raise StoreError(StoreReason.NOT_FOUND, f"no object {key!r} in {self.describe()}") from None
            raise
        expected = {str(k).lower(): v for k, v in (response.get("Metadata") or {}).items()}.get(SHA256_META)
        if expected and sha256_hex(data) != expected:
            raise StoreError(StoreReason.DIGEST_MISMATCH,
                             f"object {key!r} read from {self.describe()} does not match its recorded sha256")
        return data

    async def exists(self, key: str) -> bool:
        check_key(key)
        return await self._head(key) is not None

    async def stat(self, key: str) -> StoredObject:
        check_key(key)
        head = await self._head(key)
        if head is None:
            raise StoreError(StoreReason.NOT_FOUND, f"no object {key!r} in {self.describe()}")
        return self._stored(key, head)

    async def delete(self, key: str) -> None:
        check_key(key)
        full = self._full_key(key)
        try:
            await self._run(f"deleting {full}", lambda c: c.delete_object(Bucket=self.bucket, Key=full))
        except StoreError as err:
            if not _object_missing(err):
                raise

    async def list(self, prefix: str = "") -> list[StoredObject]:
        check_prefix(prefix)
        full_prefix = self._full_key(prefix)

        def keys(client: Any) -> list[str]:
            found: list[str] = []
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for entry in page.get("Contents") or []:
                    found.append(entry["Key"])
            return found

        objects: list[StoredObject] = []
        for full in await self._run(f"listing {full_prefix or '/'}", keys):
            key = full[len(self.prefix):]
            try:
                check_key(key)
            except StoreError:
                continue
            head = await self._head(key)
            if head is not None:
                objects.append(self._stored(key, head))
        return sorted(objects, key=lambda obj: obj.key)
