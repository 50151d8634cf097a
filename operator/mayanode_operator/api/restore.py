"""NodeRestore: restore or migrate a node from a NodeBackup, crash-safe, with double-sign guards."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import Field, model_validator

from . import naming
from .common import (
    Condition,
    DnsLabelName,
    DnsSubdomainName,
    HttpURL,
    LocalObjectReference,
    SpecModel,
    StatusModel,
    always,
    cel,
    conditions_field,
    find_condition,
    list_map,
    rule,
)


class BackupReference(SpecModel):
    """The NodeBackup to restore from."""

    name: DnsSubdomainName = Field(description="The NodeBackup's name.")
    namespace: DnsLabelName | None = Field(
        None, description="The NodeBackup's namespace. Absent: this namespace. Another namespace works only when "
                          "that NodeBackup lists this namespace in `spec.restoreNamespaces`.")

    def resolved_namespace(self, own_namespace: str) -> str:
        return self.namespace or own_namespace


class DestroyedAcknowledgement(SpecModel):
    """A person's statement that the old node can never sign again (its machine and volumes are gone). Replaces the
    proof that its consensus key is silent on chain; recorded in status and in an event."""

    model_config = {"json_schema_extra": cel(
        rule("!self.acknowledged || (has(self.reason) && size(self.reason) > 0)",
             "reason is required when acknowledged is true", field_path=".reason", reason="FieldValueRequired"),
    )}

    acknowledged: bool = Field(description="The old node is destroyed and cannot come back.")
    reason: str | None = Field(None, max_length=1024,
                               description="How you know, e.g. `provider deleted the VM and its disks on 2024-06-01`.")
    acknowledged_by: str | None = Field(None, max_length=256, description="Who acknowledges (name or e-mail).")

    @model_validator(mode="after")
    def _reason_when_acknowledged(self) -> DestroyedAcknowledgement:
        if self.acknowledged and not self.reason:
            raise ValueError("reason is required when acknowledged is true")
        return self


class OldNodeReference(SpecModel):
    """The node being replaced, when it runs in this cluster: a hand-off. The operator prepares the new node first,
    then stops the old one, reads its `priv_validator_state.json` after it stopped, and only then starts the new one.
    The stop is proven by the operator itself (the old node's pods are gone, terminating ones counting as running,
    and its sign state is read from its volume afterwards), so the new node starts at once; a hand-off never adds a
    signer, since any other copy of the key would already be signing next to the old node."""

    name: DnsSubdomainName = Field(description="The old MayaNode's name.")
    namespace: DnsLabelName | None = Field(None, description="The old MayaNode's namespace. Absent: this namespace.")
    suspend: bool = Field(
        True, description="Suspend the old MayaNode (spec.suspend) at the right moment. false: wait until someone "
                          "else has stopped it (its pods gone).")
    prove_silent_on_chain: bool = Field(
        False, description="Also require the consensus key silent on chain for `silentBlocks` blocks after the old "
                           "node stopped, before the new node starts: for when a copy of the key may run outside "
                           "this cluster. Adds at least silentBlocks × the block time to the downtime.")


class DoubleSignGuard(SpecModel):
    """Proof that the old node cannot sign any more before the restored node starts: in a hand-off (`oldNode`), the
    old node's pods gone and its sign state read afterwards; otherwise the consensus key must have signed none of
    `silentBlocks` consecutive blocks (read from the RPC), or the old node must be acknowledged as destroyed. The
    sign state's high-water mark never moves backwards."""

    silent_blocks: int = Field(10, ge=3, le=1000,
                               description="How many consecutive recent blocks the consensus key must not have signed "
                                           "(not used by a hand-off unless `oldNode.proveSilentOnChain`).")
    old_node_destroyed: DestroyedAcknowledgement | None = Field(
        None, description="Skip the silence proof because the old node is destroyed (a recorded acknowledgement).")
    old_node: OldNodeReference | None = Field(None, description="A hand-off from a MayaNode in this cluster.")
    rpc: list[HttpURL] = Field(
        default_factory=list, max_length=8,
        description="CometBFT RPC base URLs of other nodes of the same network (or a public endpoint) to read blocks "
                    "from while this node is down. Tried in order, before the operator's `--guard-rpc` endpoints and "
                    "the RPC of the other MayaNodes of the same network in the cluster.")


class RestoreTimeouts(SpecModel):
    """How long the restore waits before it fails (loudly, and never leaving half-written keys running)."""

    scale_down_seconds: int = Field(120, ge=10, le=3600,
                                    description="For the pods of mayanode and bifrost (and the old node's) to be gone.")
    ready_seconds: int = Field(600, ge=30, le=7200,
                               description="For the restored node to be Ready and report the restored node address.")
    guard_seconds: int = Field(1800, ge=30, le=86400,
                               description="For the double-sign guard to pass (the old key to fall silent).")


class NodeRestoreSpec(SpecModel):
    """Which backup goes onto which node, and how carefully. `backupRef`, `nodeRef` and `restoreSecrets` cannot
    change; the guard, timeouts and `force` can (e.g. to acknowledge a destroyed node after a refusal)."""

    backup_ref: BackupReference = Field(
        description="The NodeBackup to restore.",
        json_schema_extra=cel(rule("self == oldSelf", "backupRef is immutable")))
    node_ref: LocalObjectReference = Field(
        description="The MayaNode (this namespace) to restore onto. Its mayanode and bifrost are scaled to 0 while "
                    "the files are written.",
        json_schema_extra=cel(rule("self == oldSelf", "nodeRef is immutable")))
    double_sign_guard: DoubleSignGuard = always(DoubleSignGuard, "Double-sign protection (always on).")
    restore_secrets: bool = Field(
        True, description="Also restore the mnemonic and password Secrets (replaced in place, never deleted first).",
        json_schema_extra=cel(rule("self == oldSelf", "restoreSecrets is immutable")))
    announce_ip: bool | None = Field(
        None, alias="announceIP",
        description="Re-announce the IP with set-ip-address after the node is back. Absent: as the MayaNode's "
                    "`spec.externalIP.announce` says.")
    timeouts: RestoreTimeouts = always(RestoreTimeouts, "Timeouts of the waiting steps.")
    force: bool = Field(False, description="Go ahead during network halts that the MayaNode's `haltPolicy.restore` "
                                           "would wait for. Never skips the double-sign guard.")
    replace_other_identity: bool = Field(
        False, description="Allow restoring onto a MayaNode whose volumes hold another node's identity: a "
                           "`priv_validator_key.json` with another consensus key (or one that cannot be read), or TSS "
                           "key shares of another node under the backup's file names. Without it such a restore fails "
                           "at VerifyBackup and changes nothing. With it, that node's key files are overwritten (back "
                           "it up first) and its key shares are moved aside to `<name>.replaced-<restore>`. Not needed "
                           "for an empty node, nor for the node the backup was taken of.")


class RestorePhase(StrEnum):
    """Pending → Verifying → ScalingDown → Writing → SwappingSecrets → Guarding → ScalingUp → WaitingReady →
    AnnouncingIP → Completed, or Failed. Guarding (proving the old key silent, the hand-off, then writing the sign
    state) comes after the slow work so the downtime is short; a failure before ScalingDown changes nothing."""

    PENDING = "Pending"
    VERIFYING = "Verifying"
    SCALING_DOWN = "ScalingDown"
    WRITING = "Writing"
    GUARDING = "Guarding"
    SWAPPING_SECRETS = "SwappingSecrets"
    SCALING_UP = "ScalingUp"
    WAITING_READY = "WaitingReady"
    ANNOUNCING_IP = "AnnouncingIP"
    COMPLETED = "Completed"
    FAILED = "Failed"


class RestoreStepRecord(StatusModel):
    """One step of the restore. A step with `completedAt` is never done again."""

    name: str = Field(description="The step, e.g. VerifyBackup, AcquireKeyLock, ScaleDown, StartHelpers, WriteFiles, "
                                  "StopOldNode, WaitKeySilent, WriteSignState, RemoveHelpers, SwapSecrets, ScaleUp, "
                                  "WaitReady, AnnounceIP.")
    started_at: datetime | None = Field(None, description="When it started.")
    completed_at: datetime | None = Field(None, description="When it completed.")
    message: str | None = Field(None, description="What it did or why it failed.")


class HighWaterMarkSource(StrEnum):
    """Backup, TargetVolume (what was already on the node's volume), OldNodeVolume (read after the old node stopped)
    or ChainTip (the chain's height once the old key was proven silent, or the old node of a hand-off stopped)."""

    BACKUP = "Backup"
    TARGET_VOLUME = "TargetVolume"
    OLD_NODE_VOLUME = "OldNodeVolume"
    CHAIN_TIP = "ChainTip"


class HighWaterMark(StatusModel):
    """The priv_validator_state.json written to the restored node: the highest of the backup, the target volume, the
    old node's volume after it stopped, and the chain tip once the old key is proven silent (or the old node of a
    hand-off stopped)."""

    height: int = Field(ge=0, description="Height.")
    round: int = Field(0, ge=0, description="Round.")
    step: int = Field(0, ge=0, description="Step.")
    source: HighWaterMarkSource = Field(description="Which input was highest.")


class GuardMethod(StrEnum):
    """Silent (the key signed none of the last silentBlocks blocks), Acknowledged (a person recorded that the old
    node is destroyed), HandOff (the old MayaNode in this cluster was stopped, its pods gone, and its sign state read
    afterwards; with `proveSilentOnChain` also the silent blocks)."""

    SILENT = "Silent"
    ACKNOWLEDGED = "Acknowledged"
    HAND_OFF = "HandOff"


class GuardStatus(StatusModel):
    """The double-sign guard's evidence (public data only)."""

    consensus_pub_key: str | None = Field(None, description="The restored consensus public key.")
    validator_address: str | None = Field(None, description="Its validator address (hex), as blocks show it.")
    method: GuardMethod | None = Field(None, description="The proof used.")
    silent_from_height: int | None = Field(None, ge=0, description="First block of the silent range checked.")
    silent_to_height: int | None = Field(None, ge=0, description="Last block of the silent range checked.")
    passed_at: datetime | None = Field(None, description="When the guard passed.")
    lock_holder: str | None = Field(
        None, description="The MayaNode (namespace/name) holding this consensus key when the restore was refused.")
    lock: str | None = Field(None, description="The Lease (namespace/name) recording which MayaNode holds the key.")
    stop_height: int | None = Field(
        None, ge=0, description="Chain height when the last pod that may sign with the key (the target's, the old "
                                "node's) was gone; the silent range starts after it.")
    chain_tip: int | None = Field(None, ge=0, description="Chain height when the guard passed (an input of the "
                                                          "high-water mark).")
    rpc: str | None = Field(None, description="The RPC endpoint the blocks were read from.")
    acknowledged_by: str | None = Field(None, description="For Acknowledged: who acknowledged.")
    acknowledged_reason: str | None = Field(None, description="For Acknowledged: the reason given.")


class RestoredReplicas(StatusModel):
    """Replicas before the scale-down (for the record). The restore scales both back to 1 (never more), unless the
    MayaNode is suspended: a restore is asked for to bring the node back, and spec.suspend is how to keep it down."""

    mayanode: int | None = Field(None, ge=0, le=1, description="mayanode's replicas before.")
    bifrost: int | None = Field(None, ge=0, le=1, description="bifrost's replicas before.")


class VerifiedBackup(StatusModel):
    """The backup as it was verified (the restore uses exactly this archive)."""

    name: str = Field(description="The NodeBackup.")
    namespace: str = Field(description="Its namespace.")
    sha256: str | None = Field(None, description="The archive's SHA-256.")
    node_address: str | None = Field(None, description="The node address in the backup.")
    consensus_pub_key: str | None = Field(None, description="The consensus public key in the backup.")
    sign_state_height: int | None = Field(None, ge=0, description="Height in the backup's priv_validator_state.json.")
    sign_state_round: int | None = Field(None, ge=0, description="Its round.")
    sign_state_step: int | None = Field(None, ge=0, description="Its step.")


class NodeRestoreStatus(StatusModel):
    """Where the restore is (the state machine lives here: a restarted operator resumes from it)."""

    observed_generation: int | None = Field(None, ge=0, description="The generation this status describes.")
    phase: RestorePhase | None = Field(None, description="Where the restore is.")
    step: str | None = Field(None, description="The current step (see `steps`).")
    steps: list[RestoreStepRecord] = Field(default_factory=list, max_length=64,
                                           json_schema_extra=list_map("name"),
                                           description="Steps done and under way, in order.")
    backup: VerifiedBackup | None = Field(None, description="The verified backup.")
    guard: GuardStatus | None = Field(None, description="Double-sign guard evidence.")
    high_water_mark: HighWaterMark | None = Field(None, description="The sign state written.")
    sign_state_inputs: list[HighWaterMark] = Field(
        default_factory=list, max_length=4,
        description="Every sign state considered for the high-water mark (source: Backup, TargetVolume, "
                    "OldNodeVolume, ChainTip).")
    previous_replicas: RestoredReplicas | None = Field(None, description="Replicas to scale back to.")
    started_at: datetime | None = Field(None, description="When the restore started.")
    scaled_down_at: datetime | None = Field(None, description="When the node's last pod was gone.")
    scaled_up_at: datetime | None = Field(None, description="When the restored node was Ready again.")
    completed_at: datetime | None = Field(None, description="When it reached Completed or Failed.")
    downtime_seconds: float | None = Field(None, ge=0, description="Seconds the node had no ready pod.")
    message: str | None = Field(None, description="A one-line summary for humans.")
    next_action: str | None = Field(
        None, description="When Failed: what a person should do now (e.g. the node is left scaled down).")
    failed_step: str | None = Field(None, description="When Failed: the step that failed (a spec change resumes it).")
    node_left_down: bool | None = Field(
        None, description="When Failed: true when the node was scaled down and is left at 0 replicas.")
    conditions: list[Condition] = conditions_field(
        "Verified (the backup decrypted and checked), Guarded (double-sign guard passed), ScaledDown, Completed, "
        "Failed.")

    def condition(self, type_: str) -> Condition | None:
        return find_condition(self.conditions, type_)

    def step_done(self, name: str) -> bool:
        return any(s.name == name and s.completed_at is not None for s in self.steps)


class NodeRestore(SpecModel):
    """A NodeRestore puts a NodeBackup onto a MayaNode: verify the backup, prove the old node silent, scale down,
    write the key files and sign state, swap the Secrets in place, scale up and wait until the node is back. Every
    step is recorded in status and idempotent; re-applying a finished NodeRestore does nothing."""

    model_config = {"extra": "ignore"}

    kind_name: ClassVar[str] = naming.NODERESTORE_KIND
    api_version: str = Field(naming.API_VERSION, description="maya.nodeops.io/v1alpha1")
    kind: str = Field(naming.NODERESTORE_KIND, description="NodeRestore")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: NodeRestoreSpec = Field(description="Desired state.")
    status: NodeRestoreStatus | None = Field(None, description="Observed state.")
