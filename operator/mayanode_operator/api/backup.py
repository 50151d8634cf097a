"""NodeBackup: an encrypted, verified snapshot of a node's identity; and BackupLocation, shared with MayaNode."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import Field, model_validator

from . import naming
from .common import (
    LIST_SET,
    SHA256_PATTERN,
    AgeRecipient,
    Condition,
    DnsLabelName,
    DnsSubdomainName,
    Duration,
    HttpURL,
    LocalObjectReference,
    SecretDataKey,
    SpecModel,
    StatusModel,
    cel,
    conditions_field,
    find_condition,
    parse_duration,
    rule,
)


# --------------------------------------------------------------------------------------------------
# BackupLocation
# --------------------------------------------------------------------------------------------------
class SecretStore(SpecModel):
    """The in-cluster store: the encrypted archive is kept in Secrets in the node's namespace.

    A Secret holds at most 1 MiB, so a large archive is split over several Secrets
    `<namePrefix>-<backup>-<n>`. Good for a single cluster; use S3 to survive losing the cluster."""

    name_prefix: DnsLabelName = Field(
        naming.DEFAULT_BACKUP_SECRET_PREFIX, max_length=40,
        description="Prefix of the Secrets holding the archive: `<namePrefix>-<backup name>-<part>`.")


class S3Credentials(SpecModel):
    """Where the S3 access keys are: a Secret in the same namespace."""

    name: DnsSubdomainName = Field(description="The Secret holding the access key pair.")
    access_key_id_key: SecretDataKey = Field(
        naming.DEFAULT_S3_ACCESS_KEY_ID_KEY, alias="accessKeyIDKey",
        description="The key in the Secret holding the access key ID.")
    secret_access_key_key: SecretDataKey = Field(
        naming.DEFAULT_S3_SECRET_ACCESS_KEY_KEY, description="The key in the Secret holding the secret access key.")


class S3Store(SpecModel):
    """S3-compatible object storage (AWS S3, MinIO, Ceph, rclone serve s3, …)."""

    endpoint: HttpURL | None = Field(
        None, description="The S3 endpoint URL, e.g. `https://s3.eu-central-1.amazonaws.com` or "
                          "`http://minio.storage:9000`. Absent: AWS S3 for `region`.")
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", min_length=3, max_length=63,
                        description="The bucket name. The bucket must exist.")
    prefix: str = Field("", pattern=r"^([A-Za-z0-9!_.*'()-]+/)*$", max_length=512,
                        description="A key prefix ending in `/` (e.g. `mayanode/mainnet/`), or empty for the bucket "
                                    "root.")
    region: str = Field("us-east-1", pattern=r"^[a-z0-9-]+$", max_length=64, description="The bucket's region.")
    force_path_style: bool = Field(
        False, description="Address the bucket as `<endpoint>/<bucket>` instead of `<bucket>.<endpoint>`; "
                           "most self-hosted servers (MinIO, rclone) need true.")
    credentials_secret: S3Credentials | None = Field(
        None, description="The Secret with the access key pair. Absent: the operator's own credentials "
                          "(environment, instance profile or IRSA).")


class IdentitySecret(SpecModel):
    """The age identity (private key) that decrypts the archives."""

    name: DnsSubdomainName = Field(description="The Secret holding the age identity (`AGE-SECRET-KEY-1…`).")
    key: SecretDataKey = Field(naming.DEFAULT_AGE_IDENTITY_KEY, description="The key in the Secret's data.")


class BackupEncryption(SpecModel):
    """Every archive is encrypted with age before it leaves the operator."""

    recipients: list[AgeRecipient] = Field(
        min_length=1, max_length=16, json_schema_extra=LIST_SET,
        description="The age X25519 recipients (public keys) the archive is encrypted to. Any one of the "
                    "matching identities can decrypt it; keep one offline.")
    identity_secret: IdentitySecret | None = Field(
        None, description="A Secret with an identity matching one of the recipients. Needed only to verify and "
                          "to restore; without it backups are taken but the Verified condition stays Unknown.")


class BackupLocation(SpecModel):
    """Where encrypted backups are stored: exactly one of `secret` (in-cluster) or `s3`."""

    model_config = {"json_schema_extra": cel(
        rule("has(self.secret) != has(self.s3)", "exactly one of secret or s3 must be set"),
    )}

    secret: SecretStore | None = Field(
        None, description="Store archives in Secrets in the node's namespace (write `secret: {}` for the defaults).")
    s3: S3Store | None = Field(None, description="Store archives in an S3-compatible bucket.")
    encryption: BackupEncryption = Field(description="How archives are encrypted (age, X25519 recipients).")

    @model_validator(mode="after")
    def _exactly_one_store(self) -> BackupLocation:
        if (self.secret is None) == (self.s3 is None):
            raise ValueError("exactly one of secret or s3 must be set")
        return self

    @property
    def store(self) -> str:
        """`Secret` or `S3`."""
        return "S3" if self.s3 is not None else "Secret"


class VolumeSnapshotOptions(SpecModel):
    """CSI VolumeSnapshots (snapshot.storage.k8s.io/v1) of the mayanode and bifrost PVCs, besides the archive."""

    enabled: bool = Field(False, description="Take a VolumeSnapshot of each PVC and wait until it is readyToUse.")
    class_name: DnsSubdomainName | None = Field(
        None, description="The VolumeSnapshotClass. Absent: the cluster's default class.")


# --------------------------------------------------------------------------------------------------
# NodeBackup spec
# --------------------------------------------------------------------------------------------------
class BackupReason(StrEnum):
    """Why a NodeBackup exists: Manual (a person), Scheduled (spec.backup.schedule), AfterChurn (a churn made new
    key shares), PreUpgrade (the upgrade gate), Imported (`mayanode-operator backup import`)."""

    MANUAL = "Manual"
    SCHEDULED = "Scheduled"
    AFTER_CHURN = "AfterChurn"
    PRE_UPGRADE = "PreUpgrade"
    IMPORTED = "Imported"


class DeletionPolicy(StrEnum):
    """Retain (the default) or Delete."""

    RETAIN = "Retain"
    DELETE = "Delete"


class ImportSource(SpecModel):
    """An archive that was exported from another cluster and uploaded to this backup's location."""

    key: str = Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z0-9!_.*'()/-]+$",
                     description="Where the archive is in the location: the object key (S3) or the Secret name "
                                 "prefix (in-cluster store).")
    sha256: str = Field(pattern=SHA256_PATTERN, max_length=64,
                        description="The archive's SHA-256 (hex); checked before any use.")
    size: int | None = Field(None, ge=0, description="The archive's size in bytes, if known.")
    original_name: DnsSubdomainName | None = Field(None, description="The NodeBackup's name in the source cluster.")
    original_namespace: DnsLabelName | None = Field(
        None, description="The NodeBackup's namespace in the source cluster.")
    captured_at: datetime | None = Field(None, description="When the original backup was captured.")


def _immutable(always_there: tuple[str, ...], optional: tuple[str, ...]) -> str:
    """A transition rule: these fields keep their value (and optional ones their presence) on update."""
    parts = [f"self.{f} == oldSelf.{f}" for f in always_there]
    parts += [f"has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || self.{f} == oldSelf.{f})" for f in optional]
    return " && ".join(parts)


class NodeBackupSpec(SpecModel):
    """What to back up and where. Only `ttl`, `verify`, `restoreNamespaces` and `deletionPolicy` may change after
    creation."""

    model_config = {"json_schema_extra": cel(
        rule("has(self.source) == (has(self.reason) && self.reason == 'Imported')",
             "source must be set exactly when reason is Imported"),
        rule(_immutable(("nodeRef", "reason"), ("location", "source", "volumeSnapshots")),
             "nodeRef, location, reason, source and volumeSnapshots cannot change after creation"),
    )}

    node_ref: LocalObjectReference = Field(
        description="The MayaNode (same namespace) whose identity is backed up. For an imported backup: the "
                    "MayaNode it belongs to in this cluster.")
    location: BackupLocation | None = Field(
        None, description="Where to store the archive. Absent: the MayaNode's `spec.backup.location`.")
    reason: BackupReason = Field(BackupReason.MANUAL, description="Set by whoever creates the backup.")
    volume_snapshots: VolumeSnapshotOptions | None = Field(
        None, description="Also take CSI VolumeSnapshots of the PVCs. Absent: the MayaNode's "
                          "`spec.backup.volumeSnapshots`, or none.")
    ttl: Duration | None = Field(
        None, description="Delete this backup (from the store and the cluster) this long after it completed. "
                          "Absent: kept until the MayaNode's retention policy or a person removes it.")
    verify: bool = Field(
        True, description="After storing, decrypt the archive with the location's identity, check every digest and "
                          "check the keys against the chain (consensus key, vault membership).")
    source: ImportSource | None = Field(
        None, description="For reason Imported only: the archive that already exists in the location.")
    deletion_policy: DeletionPolicy = Field(
        DeletionPolicy.RETAIN,
        description="What deleting this NodeBackup does to its stored archive (the Secrets or the S3 object) and its "
                    "VolumeSnapshots. `Retain`: they are kept (their store metadata names the backup, namespace, node "
                    "and uid). `Delete`: the operator deletes them, then lets the NodeBackup go; it puts its finalizer "
                    "`maya.nodeops.io/delete-archive` on the NodeBackup for this (only with Delete), so a deletion "
                    "made while the operator is down is finished when it is back. The deletion waits (condition "
                    "DeletionBlocked) while a NodeRestore in progress uses this backup. Retention of the MayaNode's "
                    "policy backups (created with Delete) keeps the archive of one set to Retain. `spec.ttl` expiry "
                    "always deletes the archive. May change at any time.")
    restore_namespaces: list[DnsLabelName] = Field(
        default_factory=list, max_length=16, json_schema_extra=LIST_SET,
        description="Other namespaces whose NodeRestores may use this backup (a NodeRestore in this namespace "
                    "always may). Cross-namespace restores are refused unless listed here.")

    @model_validator(mode="after")
    def _source_iff_imported(self) -> NodeBackupSpec:
        if (self.source is not None) != (self.reason == BackupReason.IMPORTED):
            raise ValueError("source must be set exactly when reason is Imported")
        return self

    def effective_location(self, node_backup_policy: Any | None) -> BackupLocation | None:
        """This backup's location, else the MayaNode's `spec.backup.location` (pass `MayaNodeSpec.backup`)."""
        if self.location is not None:
            return self.location
        return node_backup_policy.location if node_backup_policy is not None else None

    def ttl_timedelta(self):
        return parse_duration(self.ttl) if self.ttl else None


# --------------------------------------------------------------------------------------------------
# NodeBackup status
# --------------------------------------------------------------------------------------------------
class BackupPhase(StrEnum):
    """New → InProgress → Completed | PartiallyFailed (some expected items missing, listed in `missing`) | Failed."""

    NEW = "New"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    PARTIALLY_FAILED = "PartiallyFailed"
    FAILED = "Failed"


class BackupStep(StrEnum):
    """Snapshotting, Capturing, Storing or Verifying."""

    SNAPSHOTTING = "Snapshotting"
    CAPTURING = "Capturing"
    STORING = "Storing"
    VERIFYING = "Verifying"


class BackupComponent(StrEnum):
    """mayanode (the mayanode home), bifrost (the bifrost home) or secret (a Secret)."""

    MAYANODE = "mayanode"
    BIFROST = "bifrost"
    SECRET = "secret"


class BackupItem(StatusModel):
    """One file or Secret key in the archive (its contents are only in the encrypted archive)."""

    name: str = Field(description="The item's name in the archive, e.g. `mayanode/config/priv_validator_key.json` "
                                  "or `secret/mayanode-mnemonic/mnemonic`.")
    component: BackupComponent = Field(description="Where the item comes from.")
    path: str = Field(description="The path relative to the component's home (files) or `<secret>/<key>` (Secrets).")
    size: int = Field(ge=0, description="Size in bytes.")
    sha256: str | None = Field(
        None, pattern=SHA256_PATTERN,
        description="SHA-256 of the plaintext (hex). Omitted for Secret items: a digest of a low-entropy password "
                    "could be brute-forced; the encrypted manifest holds it.")
    mode: str | None = Field(None, pattern=r"^0[0-7]{3,4}$", description="File mode in octal, e.g. `0600`.")
    uid: int | None = Field(None, ge=0, description="Owner user ID, restored as is.")
    gid: int | None = Field(None, ge=0, description="Owner group ID, restored as is.")


class MissingItem(StatusModel):
    """An expected item that could not be captured."""

    component: BackupComponent = Field(description="Where the item would come from.")
    path: str = Field(description="The expected path (relative to the component's home) or `<secret>/<key>`.")
    reason: str = Field("", description="Why it is missing, e.g. `not found` or `permission denied`.")


class BackupStore(StrEnum):
    """Secret (in-cluster) or S3."""

    SECRET = "Secret"
    S3 = "S3"


class ArchiveInfo(StatusModel):
    """The stored archive. No credentials here: only where it is and what it is."""

    store: BackupStore = Field(description="The store.")
    uri: str = Field(description="Where the archive is, e.g. `s3://bucket/prefix/ns/name.tar.age` or "
                                 "`secret://ns/nodebackup-name`.")
    key: str = Field(description="The object key (S3) or Secret name prefix (in-cluster store).")
    parts: int = Field(1, ge=1, description="Number of objects or Secrets the archive is split over.")
    size: int = Field(ge=0, description="Size of the encrypted archive in bytes.")
    sha256: str = Field(pattern=SHA256_PATTERN, description="SHA-256 of the encrypted archive (hex).")
    recipients: list[Annotated[str, Field(description="An age recipient.")]] = Field(default_factory=list,
                                  description="The age recipients (public keys) it was encrypted to.")
    format: str = Field("tar+age/v1", description="Archive format: a tar with a manifest, encrypted with age.")
    location: BackupLocation | None = Field(
        None, description="The location the archive was written to (the backup's `spec.location`, else the "
                          "MayaNode's `spec.backup.location` at capture; references only, no credentials), so that "
                          "it is found to delete, and verified again, after the MayaNode changed its location or is "
                          "gone.")
    stored_at: datetime | None = Field(None, description="When the archive was stored (an imported one: when it was "
                                                         "found in the store).")


class CapturedNode(StatusModel):
    """The node as it was when the backup was taken (public data only)."""

    address: str | None = Field(None, description="The node account address.")
    consensus_pub_key: str | None = Field(None, description="The consensus public key (`mayacpub1…`), "
                                                            "from priv_validator_key.json.")
    vault_pub_key: str | None = Field(None, description="The Asgard vault whose key shares the backup holds.")
    height: int | None = Field(None, ge=0, description="Chain height at capture.")
    sign_state_height: int | None = Field(
        None, ge=0, description="Height in the captured priv_validator_state.json (the double-sign high-water mark).")
    version: str | None = Field(None, description="The mayanode version that was running.")


class SnapshotInfo(StatusModel):
    """A CSI VolumeSnapshot taken with this backup."""

    component: BackupComponent = Field(description="Whose PVC.")
    pvc: str = Field(description="The PersistentVolumeClaim.")
    name: str = Field(description="The VolumeSnapshot.")
    ready_to_use: bool = Field(False, description="The VolumeSnapshot's readyToUse.")
    restore_size: str | None = Field(None, description="The VolumeSnapshot's restoreSize (a quantity).")


class NodeBackupStatus(StatusModel):
    """Progress and result of the backup."""

    observed_generation: int | None = Field(None, ge=0, description="The generation this status describes.")
    phase: BackupPhase | None = Field(None, description="Where the backup is in its lifecycle.")
    step: BackupStep | None = Field(None, description="While InProgress: the current step.")
    started_at: datetime | None = Field(None, description="When the capture started.")
    completed_at: datetime | None = Field(
        None, description="When the backup reached Completed, PartiallyFailed or Failed.")
    expires_at: datetime | None = Field(None, description="When the backup will be deleted (from `spec.ttl`).")
    items: list[BackupItem] = Field(default_factory=list, description="Every item in the archive.")
    missing: list[MissingItem] = Field(default_factory=list, description="Expected items that were not captured.")
    archive: ArchiveInfo | None = Field(None, description="The stored, encrypted archive.")
    node: CapturedNode | None = Field(None, description="The node's public identity at capture.")
    snapshots: list[SnapshotInfo] = Field(default_factory=list, description="VolumeSnapshots taken.")
    message: str | None = Field(None, description="A one-line summary for humans (why it failed, what is missing).")
    conditions: list[Condition] = conditions_field(
        "Completed (the archive is stored), Verified (decrypted and checked; Unknown without an identity), "
        "Expired, DeletionBlocked (a deletion of the archive waits: a NodeRestore in progress uses it, or the store "
        "refused).")

    def condition(self, type_: str) -> Condition | None:
        return find_condition(self.conditions, type_)

    @property
    def finished(self) -> bool:
        return self.phase in (BackupPhase.COMPLETED, BackupPhase.PARTIALLY_FAILED, BackupPhase.FAILED)


class NodeBackup(SpecModel):
    """A NodeBackup is one encrypted, verified snapshot of a MAYANode's identity: the node keys, the consensus key
    and its sign state, bifrost's TSS key shares and the mnemonic and password Secrets."""

    model_config = {"extra": "ignore"}

    kind_name: ClassVar[str] = naming.NODEBACKUP_KIND
    api_version: str = Field(naming.API_VERSION, description="maya.nodeops.io/v1alpha1")
    kind: str = Field(naming.NODEBACKUP_KIND, description="NodeBackup")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: NodeBackupSpec = Field(description="Desired state.")
    status: NodeBackupStatus | None = Field(None, description="Observed state.")
