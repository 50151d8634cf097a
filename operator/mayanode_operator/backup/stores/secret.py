"""The embedded store: objects kept in Secrets in the node's namespace.

A Secret holds at most 1 MiB of data. An object of at most `chunk_size` bytes lives in one Secret
`<prefix>-<key-slug>-<hash>` (its data key `object`). A larger object is split into chunk Secrets
`<prefix>-<key-slug>-<hash>-0`, `-1`, … written first, and an index Secret `<prefix>-<key-slug>-<hash>`
(no data) written last: until the index exists the object is not seen (not listed, `exists` is
false, `get` answers NotFound), so a half-written object is never taken as complete.

Every Secret is type Opaque with the labels `app.kubernetes.io/managed-by=mayanode-operator`,
`maya.nodeops.io/backup-object=<key hash>`, `maya.nodeops.io/backup-part=index|chunk` and
`maya.nodeops.io/backup-store=<prefix>`; the index carries the annotations `maya.nodeops.io/backup-key`,
`-size`, `-sha256`, `-chunks` (number of chunk Secrets, 0 when the data is inline) and `-metadata` (JSON).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from ...adapters.kube import status_message
from ...api import naming
from ..crypto import sha256_hex
from .base import StoredObject, StoreError, StoreReason, check_key, check_metadata, check_prefix

SECRET_DATA_LIMIT = 1_048_576
DEFAULT_CHUNK_SIZE = 900 * 1024
DEFAULT_MAX_SIZE = 8 * 1024 * 1024
DATA_KEY = "object"

LABEL_OBJECT = f"{naming.GROUP}/backup-object"
LABEL_PART = f"{naming.GROUP}/backup-part"
LABEL_STORE = f"{naming.GROUP}/backup-store"
ANN_KEY = f"{naming.GROUP}/backup-key"
ANN_SIZE = f"{naming.GROUP}/backup-size"
ANN_SHA256 = f"{naming.GROUP}/backup-sha256"
ANN_CHUNKS = f"{naming.GROUP}/backup-chunks"
ANN_CHUNK = f"{naming.GROUP}/backup-chunk"
ANN_METADATA = f"{naming.GROUP}/backup-metadata"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SLUG_MAX = 100
_HASH_LEN = 12


def key_hash(key: str) -> str:
    """The label value identifying an object's Secrets (32 hex digits of sha256(key))."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def key_slug(key: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")[:_SLUG_MAX].strip("-")
    return slug or "object"


def _decode(response: Any) -> dict[str, Any]:
    raw = getattr(response, "data", response)
    if isinstance(raw, (bytes, bytearray, str)):
        return json.loads(raw) if raw else {}
    return dict(raw or {})


def _status_message(err: ApiException) -> str:
    return status_message(err)[:300] or (err.reason or "")


class SecretStore:
    """BackupStore over Secrets in one namespace (see the module docstring)."""

    def __init__(self, api: Any, namespace: str, name_prefix: str = naming.DEFAULT_BACKUP_SECRET_PREFIX, *,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, max_size: int = DEFAULT_MAX_SIZE,
                 owner_references: Sequence[Mapping[str, Any]] | None = None,
                 request_timeout: float | tuple[float, float] = (5.0, 30.0)) -> None:
        if not _DNS_LABEL.match(name_prefix or "") or len(name_prefix) > 63:
            raise StoreError(StoreReason.INVALID, f"Secret name prefix {str(name_prefix)[:80]!r} must be a DNS label")
        if not _DNS_LABEL.match(namespace or "") or len(namespace) > 63:
            raise StoreError(StoreReason.INVALID, f"namespace {str(namespace)[:80]!r} is not a valid namespace name")
        if not 1 <= chunk_size <= SECRET_DATA_LIMIT - 4096:
            raise StoreError(StoreReason.INVALID, f"chunk size must be 1 to {SECRET_DATA_LIMIT - 4096} bytes")
        if max_size < 0:
            raise StoreError(StoreReason.INVALID, "max size must not be negative")
        self.core = api if hasattr(api, "read_namespaced_secret") else k8s.CoreV1Api(api)
        self.namespace = namespace
        self.name_prefix = name_prefix
        self.chunk_size = chunk_size
        self.max_size = max_size
        self.owner_references = [dict(ref) for ref in owner_references or ()]
        self.request_timeout = request_timeout

    # --- naming ------------------------------------------------------------------------------
    def secret_name(self, key: str) -> str:
        """The (index) Secret of `key`: `<prefix>-<slug>-<hash>`, a DNS-1123 name of at most 190 characters."""
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:_HASH_LEN]
        return f"{self.name_prefix}-{key_slug(key)}-{digest}"

    def chunk_name(self, key: str, index: int) -> str:
        return f"{self.secret_name(key)}-{index}"

    def describe(self) -> str:
        return f"secret://{self.namespace}/{self.name_prefix}"

    def _location(self, key: str) -> str:
        return f"secret://{self.namespace}/{self.secret_name(key)}"

    # --- API calls -----------------------------------------------------------------------------
    def _error(self, err: BaseException, action: str) -> StoreError:
        where = f"{action} in namespace {self.namespace}"
        if isinstance(err, ApiException):
            status = err.status or 0
            detail = _status_message(err)
            if status == 404:
                return StoreError(StoreReason.NOT_FOUND, f"{where}: not found")
            if status in (401, 403):
                return StoreError(StoreReason.ACCESS_DENIED,
                                  f"{where}: the operator may not do this (HTTP {status}); check its RBAC for Secrets")
            if status == 409:
                return StoreError(StoreReason.CONFLICT, f"{where}: conflict (HTTP 409): {detail}")
            if status == 413:
                return StoreError(StoreReason.TOO_LARGE, f"{where}: the API server refused the size (HTTP 413)")
            if status in (400, 422):
                return StoreError(StoreReason.INVALID, f"{where}: refused (HTTP {status}): {detail}")
            if status == 0 or status >= 500 or status == 429:
                return StoreError(StoreReason.UNREACHABLE, f"{where}: the API server answered HTTP {status}")
            return StoreError(StoreReason.INVALID, f"{where}: HTTP {status}: {detail}")
        return StoreError(StoreReason.UNREACHABLE, f"{where}: the API server is unreachable ({type(err).__name__})")

    async def _call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await asyncio.to_thread(fn, *args, _preload_content=False,
                                               _request_timeout=self.request_timeout, **kwargs)
        except StoreError:
            raise
        except Exception as err:
            raise self._error(err, action) from None
        return _decode(response)

    async def _read(self, name: str) -> dict[str, Any] | None:
        try:
            return await self._call(f"reading Secret {name}", self.core.read_namespaced_secret, name, self.namespace)
        except StoreError as err:
            if err.reason == StoreReason.NOT_FOUND:
                return None
            raise

    async def _delete(self, name: str) -> None:
        try:
            await self._call(f"deleting Secret {name}", self.core.delete_namespaced_secret, name, self.namespace)
        except StoreError as err:
            if err.reason != StoreReason.NOT_FOUND:
                raise

    async def _list(self, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        doc = await self._call("listing Secrets", self.core.list_namespaced_secret, self.namespace,
                               label_selector=label_selector)
        return list(doc.get("items") or [])

    def _body(self, name: str, key: str, part: str, annotations: Mapping[str, str],
              data: bytes | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": self.namespace,
            "labels": {
                naming.LABEL_MANAGED_BY: naming.FIELD_MANAGER,
                LABEL_OBJECT: key_hash(key),
                LABEL_PART: part,
                LABEL_STORE: self.name_prefix,
            },
            "annotations": {ANN_KEY: key, **annotations},
        }
        if self.owner_references:
            metadata["ownerReferences"] = self.owner_references
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata}
        body["data"] = {DATA_KEY: base64.b64encode(data).decode("ascii")} if data is not None else {}
        return body

    async def _create_or_replace(self, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        try:
            await self._call(f"creating Secret {name}", self.core.create_namespaced_secret, self.namespace, body)
            return
        except StoreError as err:
            if err.reason != StoreReason.CONFLICT:
                raise
        current = await self._read(name)
        if current is not None:
            body = {**body, "metadata": {**body["metadata"],
                                         "resourceVersion": (current.get("metadata") or {}).get("resourceVersion")}}
        await self._call(f"replacing Secret {name}", self.core.replace_namespaced_secret, name, self.namespace, body)

    # --- objects -----------------------------------------------------------------------------
    def _stored(self, key: str, index: Mapping[str, Any]) -> StoredObject:
        ann = (index.get("metadata") or {}).get("annotations") or {}
        try:
            size = int(ann[ANN_SIZE])
            chunks = int(ann.get(ANN_CHUNKS, "0"))
            sha = str(ann[ANN_SHA256])
        except (KeyError, ValueError):
            raise StoreError(StoreReason.INVALID,
                             f"Secret {self.secret_name(key)} in {self.namespace} lacks the size or sha256 "
                             f"annotations of a backup object") from None
        try:
            metadata = json.loads(ann.get(ANN_METADATA) or "{}")
        except ValueError:
            metadata = {}
        return StoredObject(key=key, size=size, sha256=sha, location=self._location(key), parts=1 + chunks,
                            metadata={str(k): str(v) for k, v in dict(metadata).items()})

    async def _index(self, key: str) -> dict[str, Any] | None:
        index = await self._read(self.secret_name(key))
        if index is None:
            return None
        ann = (index.get("metadata") or {}).get("annotations") or {}
        if ann.get(ANN_KEY) != key:
            raise StoreError(StoreReason.CONFLICT,
                             f"Secret {self.secret_name(key)} in {self.namespace} belongs to another object")
        return index

    async def _delete_chunks(self, key: str) -> None:
        for secret in await self._list({LABEL_OBJECT: key_hash(key), LABEL_PART: "chunk",
                                        LABEL_STORE: self.name_prefix}):
            name = (secret.get("metadata") or {}).get("name")
            if name:
                await self._delete(name)

    async def put(self, key: str, data: bytes, metadata: Mapping[str, str] | None = None, *,
                  overwrite: bool = False) -> StoredObject:
        check_key(key)
        meta = check_metadata(metadata)
        data = bytes(data)
        if len(data) > self.max_size:
            raise StoreError(StoreReason.TOO_LARGE,
                             f"the object is {len(data)} bytes; the in-cluster Secret store {self.describe()} holds "
                             f"at most {self.max_size} bytes per object (Secrets are limited to 1 MiB each); "
                             f"use an S3 location for larger backups")
        digest = sha256_hex(data)
        existing = await self._index(key)
        if existing is not None:
            stored = self._stored(key, existing)
            if stored.sha256 == digest and stored.size == len(data):
                return stored
            if not overwrite:
                raise StoreError(StoreReason.CONFLICT,
                                 f"object {key!r} already exists in {self.describe()} with different content")
            await self.delete(key)
        await self._delete_chunks(key)
        chunks = [data[i:i + self.chunk_size] for i in range(0, len(data), self.chunk_size)] \
            if len(data) > self.chunk_size else []
        for number, chunk in enumerate(chunks):
            await self._create_or_replace(self._body(
                self.chunk_name(key, number), key, "chunk",
                {ANN_CHUNK: str(number), ANN_SHA256: sha256_hex(chunk), ANN_SIZE: str(len(chunk))}, chunk))
        index = self._body(self.secret_name(key), key, "index", {
            ANN_SIZE: str(len(data)), ANN_SHA256: digest, ANN_CHUNKS: str(len(chunks)),
            ANN_METADATA: json.dumps(meta, sort_keys=True, separators=(",", ":")),
        }, None if chunks else data)
        name = index["metadata"]["name"]
        try:
            await self._call(f"creating Secret {name}", self.core.create_namespaced_secret, self.namespace, index)
        except StoreError as err:
            if err.reason != StoreReason.CONFLICT:
                raise
            current = await self._index(key)
            if current is None or self._stored(key, current).sha256 != digest:
                raise StoreError(StoreReason.CONFLICT,
                                 f"object {key!r} was written concurrently in {self.describe()}") from None
        return StoredObject(key=key, size=len(data), sha256=digest, location=self._location(key),
                            parts=1 + len(chunks), metadata=meta)

    async def get(self, key: str) -> bytes:
        check_key(key)
        index = await self._index(key)
        if index is None:
            raise StoreError(StoreReason.NOT_FOUND, f"no object {key!r} in {self.describe()}")
        stored = self._stored(key, index)
        if stored.parts == 1:
            data = base64.b64decode((index.get("data") or {}).get(DATA_KEY, ""))
        else:
            pieces = []
            for number in range(stored.parts - 1):
                name = self.chunk_name(key, number)
                chunk = await self._read(name)
                if chunk is None:
                    raise StoreError(StoreReason.NOT_FOUND,
                                     f"chunk {number} ({name}) of object {key!r} is missing in {self.describe()}")
                pieces.append(base64.b64decode((chunk.get("data") or {}).get(DATA_KEY, "")))
            data = b"".join(pieces)
        if len(data) != stored.size or sha256_hex(data) != stored.sha256:
            raise StoreError(StoreReason.DIGEST_MISMATCH,
                             f"object {key!r} read back from {self.describe()} does not match its recorded "
                             f"size and sha256")
        return data

    async def exists(self, key: str) -> bool:
        check_key(key)
        return await self._index(key) is not None

    async def stat(self, key: str) -> StoredObject:
        check_key(key)
        index = await self._index(key)
        if index is None:
            raise StoreError(StoreReason.NOT_FOUND, f"no object {key!r} in {self.describe()}")
        return self._stored(key, index)

    async def delete(self, key: str) -> None:
        check_key(key)
        index = await self._read(self.secret_name(key))
        if index is not None and ((index.get("metadata") or {}).get("annotations") or {}).get(ANN_KEY) == key:
            await self._delete(self.secret_name(key))
        await self._delete_chunks(key)

    async def list(self, prefix: str = "") -> list[StoredObject]:
        check_prefix(prefix)
        found: list[StoredObject] = []
        for secret in await self._list({naming.LABEL_MANAGED_BY: naming.FIELD_MANAGER, LABEL_PART: "index",
                                        LABEL_STORE: self.name_prefix}):
            key = ((secret.get("metadata") or {}).get("annotations") or {}).get(ANN_KEY)
            if not isinstance(key, str) or not key.startswith(prefix):
                continue
            if (secret.get("metadata") or {}).get("deletionTimestamp"):
                continue
            try:
                found.append(self._stored(key, secret))
            except StoreError:
                continue
        return sorted(found, key=lambda obj: obj.key)
