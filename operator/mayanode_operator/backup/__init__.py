"""NodeBackup storage layer: the archive format, age encryption, sealed objects, export bundles and stores.

    sealed = seal(items, meta, recipients)          # SealedBackup(ciphertext, manifest, digest)
    stored = await store.put(key, sealed.ciphertext, {"backup": name})
    manifest, items = open_sealed(await store.get(key), identity, sealed.digest)
"""

from .archive import (
    EXPORT_FORMAT,
    FORMAT,
    SEALED_FORMAT,
    ArchiveError,
    ArchiveReason,
    BackupItem,
    Manifest,
    ManifestItem,
    SealedBackup,
    build_archive,
    check_digest,
    export_bundle,
    import_bundle,
    open_sealed,
    read_archive,
    seal,
)
from .crypto import (
    BackupError,
    CryptoError,
    CryptoReason,
    decrypt,
    encrypt,
    generate_identity,
    identity_recipients,
    sha256_hex,
    validate_identity,
    validate_recipient,
    validate_recipients,
)

__all__ = [
    "EXPORT_FORMAT", "FORMAT", "SEALED_FORMAT", "ArchiveError", "ArchiveReason", "BackupItem", "Manifest",
    "ManifestItem", "SealedBackup", "build_archive", "check_digest", "export_bundle", "import_bundle",
    "open_sealed", "read_archive", "seal", "BackupError", "CryptoError", "CryptoReason", "decrypt", "encrypt",
    "generate_identity", "identity_recipients", "sha256_hex", "validate_identity", "validate_recipient",
    "validate_recipients",
]
