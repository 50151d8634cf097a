"""Backup stores behind one interface: the in-cluster Secret store and S3-compatible storage."""

from .base import BackupStore, StoredObject, StoreError, StoreReason, check_key
from .factory import store_for_location, store_kind
from .s3 import S3Store
from .secret import SecretStore

__all__ = ["BackupStore", "StoredObject", "StoreError", "StoreReason", "check_key", "store_for_location",
           "store_kind", "S3Store", "SecretStore"]
