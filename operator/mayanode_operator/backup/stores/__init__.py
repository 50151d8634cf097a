"""Backup stores behind one interface: the in-cluster Secret store and S3-compatible storage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import BackupStore, StoredObject, StoreError, StoreReason, check_key
from .factory import store_for_location, store_kind
from .secret import SecretStore

if TYPE_CHECKING:
    from .s3 import S3Store

__all__ = ["BackupStore", "StoredObject", "StoreError", "StoreReason", "check_key", "store_for_location",
           "store_kind", "S3Store", "SecretStore"]


def __getattr__(name: str) -> Any:
    # S3Store on first use: boto3 costs ~7 MiB of operator memory and only an S3 location needs it.
    if name == "S3Store":
        from .s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
