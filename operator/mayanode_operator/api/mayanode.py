"""MayaNode: one MAYAChain validator node (node-launcher's mayanode-stack in one namespace), as the operator sees it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, model_validator

from . import naming
from .backup import BackupLocation, VolumeSnapshotOptions
from .common import (
    ABSOLUTE_PATH_PATTERN,
    LIST_SET,
    SUB_PATH_PATTERN,
    Condition,
    CronSchedule,
    DnsLabelName,
    DnsSubdomainName,
    Duration,
    HttpURL,
    IPAddress,
    NodeAddress,
    SecretDataKey,
    SpecModel,
    StatusModel,
    Version,
    always,
    cel,
    check_mimir_keys,
    conditions_field,
    find_condition,
    list_map,
    parse_duration,
    rule,
)


class Network(StrEnum):
    """The MAYAChain network the node belongs to: mainnet, stagenet or mocknet."""

    MAINNET = "mainnet"
    STAGENET = "stagenet"
    MOCKNET = "mocknet"


# --------------------------------------------------------------------------------------------------
# Image and workloads
# --------------------------------------------------------------------------------------------------
class ImageSpec(SpecModel):
    """The image the operator sets on both the mayanode and bifrost containers when it upgrades."""

    model_config = {"json_schema_extra": cel(
        rule("!has(self.tagTemplate) || self.tagTemplate.contains('{version}')", "tagTemplate must contain {version}",
             field_path=".tagTemplate"),
    )}

    repository: str = Field(
        naming.DEFAULT_IMAGE_REPOSITORY, pattern=r"^[a-z0-9]+([._:/-][a-z0-9]+)*$", max_length=255,
        description="The image repository (without tag).")
    tag_template: str = Field(
        naming.DEFAULT_TAG_TEMPLATE, pattern=r"^[A-Za-z0-9_.{}-]+$", max_length=128,
        description="How a version becomes a tag: `{network}` and `{version}` are replaced, e.g. "
                    "`{network}-{version}` → `mainnet-1.111.0`.")

    @model_validator(mode="after")
    def _template_has_version(self) -> ImageSpec:
        if "{version}" not in self.tag_template:
            raise ValueError("tagTemplate must contain {version}")
        leftover = self.tag_template.replace("{network}", "").replace("{version}", "")
        if "{" in leftover or "}" in leftover:
            raise ValueError("tagTemplate knows only the placeholders {network} and {version}")
        return self

    def tag(self, network: str, version: str) -> str:
        return naming.image_tag(self.tag_template, network=str(network), version=version)

    def reference(self, network: str, version: str) -> str:
        """`registry.gitlab.com/mayachain/mayanode:mainnet-1.111.0`."""
        return f"{self.repository}:{self.tag(network, version)}"


_WORKLOAD_TEXT = {
    "deployment": "The Deployment running {what}.",
    "container": "The container in that Deployment.",
    "pvc": "The PersistentVolumeClaim holding {what}'s home (used by helper pods when the Deployment is scaled to 0).",
    "home": "The home directory inside the container (where the key files are).",
    "volumeSubPath": "Where that home lives inside the PVC, relative to the volume root (\"\" = the root).",
}


class MayanodeWorkload(SpecModel):
    """The mayanode Deployment, container and volume (defaults: node-launcher's names)."""

    deployment: DnsSubdomainName = Field(naming.DEFAULT_MAYANODE_DEPLOYMENT,
                                         description=_WORKLOAD_TEXT["deployment"].format(what="mayanode"))
    container: DnsLabelName = Field(naming.DEFAULT_MAYANODE_CONTAINER, description=_WORKLOAD_TEXT["container"])
    pvc: DnsSubdomainName = Field(naming.DEFAULT_MAYANODE_PVC,
                                  description=_WORKLOAD_TEXT["pvc"].format(what="mayanode"))
    home: str = Field(naming.DEFAULT_NODE_HOME, pattern=ABSOLUTE_PATH_PATTERN, max_length=512,
                      description=_WORKLOAD_TEXT["home"])
    volume_sub_path: str = Field(naming.DEFAULT_MAYANODE_SUBPATH, pattern=SUB_PATH_PATTERN, max_length=512,
                                 description=_WORKLOAD_TEXT["volumeSubPath"])


class BifrostWorkload(SpecModel):
    """The bifrost Deployment, container and volume (defaults: node-launcher's names)."""

    deployment: DnsSubdomainName = Field(naming.DEFAULT_BIFROST_DEPLOYMENT,
                                         description=_WORKLOAD_TEXT["deployment"].format(what="bifrost"))
    container: DnsLabelName = Field(naming.DEFAULT_BIFROST_CONTAINER, description=_WORKLOAD_TEXT["container"])
    pvc: DnsSubdomainName = Field(naming.DEFAULT_BIFROST_PVC, description=_WORKLOAD_TEXT["pvc"].format(what="bifrost"))
    home: str = Field(naming.DEFAULT_NODE_HOME, pattern=ABSOLUTE_PATH_PATTERN, max_length=512,
                      description=_WORKLOAD_TEXT["home"])
    volume_sub_path: str = Field(naming.DEFAULT_BIFROST_SUBPATH, pattern=SUB_PATH_PATTERN, max_length=512,
                                 description=_WORKLOAD_TEXT["volumeSubPath"])


class MnemonicSecretRef(SpecModel):
    """The Secret with the node account's seed phrase (node-launcher: `mayanode-mnemonic`, key `mnemonic`)."""

    name: DnsSubdomainName = Field(naming.DEFAULT_MNEMONIC_SECRET, description="The Secret's name.")
    key: SecretDataKey = Field(naming.DEFAULT_MNEMONIC_KEY, description="The key in the Secret's data.")


class PasswordSecretRef(SpecModel):
    """The Secret with the keyring password (node-launcher: `mayanode-password`, key `password`)."""

    name: DnsSubdomainName = Field(naming.DEFAULT_PASSWORD_SECRET, description="The Secret's name.")
    key: SecretDataKey = Field(naming.DEFAULT_PASSWORD_KEY, description="The key in the Secret's data.")


class SecretsSpec(SpecModel):
    """The node's Secrets. The operator reads them to back up, replaces them in place on restore, and pipes the
    password to `mayanode tx` on stdin; it never logs them or puts them in status or events."""

    mnemonic: MnemonicSecretRef = always(MnemonicSecretRef, "The seed phrase Secret.")
    password: PasswordSecretRef = always(PasswordSecretRef, "The keyring password Secret.")


class ApiSpec(SpecModel):
    """How the operator reaches the node's HTTP API."""

    rest: HttpURL | None = Field(
        None, description="The REST API base URL (serving `/mayachain/...`). Absent: "
                          "`http://mayanode.<namespace>.svc:1317`.")
    rpc: HttpURL | None = Field(
        None, description="The CometBFT RPC base URL. Absent: `http://mayanode.<namespace>.svc:27147`.")
    timeout_seconds: int = Field(5, ge=1, le=60, description="Timeout of one request to the node API.")
    network_rpc: list[HttpURL] = Field(
        default_factory=list, max_length=8,
        description="CometBFT RPC base URLs of other nodes of the same network (a public RPC endpoint of the network, "
                    "or a full node you run) to read the network's height from: `status.chain.networkHeight` is the "
                    "highest `latest_block_height` among those that answer `/status`, are not catching up and report "
                    "the node's chain id. It feeds the height-lag metric and the upgrade sync gate; the `Synced` "
                    "condition names endpoints that give no usable height. Empty: the network's height is not "
                    "observed.")


class ObserveSpec(SpecModel):
    """How often the operator observes the node."""

    interval_seconds: int = Field(
        30, ge=5, le=3600, description="Seconds between two observations (node API, workloads, chain). Status is "
                                       "written only when something changed.")


# --------------------------------------------------------------------------------------------------
# External IP
# --------------------------------------------------------------------------------------------------
class ExternalIPSource(StrEnum):
    """Service (a LoadBalancer's ingress `ip`, or its `hostname` resolved), Static (spec.externalIP.address) or None
    (not managed: the operator only reports what the node registered)."""

    SERVICE = "Service"
    STATIC = "Static"
    NONE = "None"


class GatewayServiceRef(SpecModel):
    """The LoadBalancer Service whose ingress address is the node's public IP."""

    name: DnsLabelName = Field(naming.DEFAULT_GATEWAY_SERVICE, description="The Service's name.")


class ExternalIPSpec(SpecModel):
    """The node's public IP: where it comes from, where it is written, and whether it is announced on chain."""

    model_config = {"json_schema_extra": cel(
        rule("!has(self.source) || self.source != 'Static' || has(self.address)",
             "address is required when source is Static",
             field_path=".address", reason="FieldValueRequired"),
    )}

    source: ExternalIPSource = Field(ExternalIPSource.SERVICE, description="Where the address comes from.")
    service: GatewayServiceRef = always(
        GatewayServiceRef, "For source Service: the LoadBalancer Service (ingress `ip`, or `hostname` resolved).")
    address: IPAddress | None = Field(None, description="For source Static: the public IPv4 or IPv6 address.")
    announce: bool = Field(
        False, description="Send `set-ip-address` when the registered IP differs (costs a transaction fee; the "
                           "keyring password goes on stdin).")
    config_maps: list[DnsSubdomainName] = Field(
        default_factory=lambda: list(naming.EXTERNAL_IP_CONFIGMAPS), max_length=8,
        json_schema_extra={**LIST_SET, "default": list(naming.EXTERNAL_IP_CONFIGMAPS)},
        description="ConfigMaps whose `externalIP` key receives the address (the pods read it as EXTERNAL_IP; "
                    "they are restarted only when the value really changed).")

    @model_validator(mode="after")
    def _static_needs_address(self) -> ExternalIPSpec:
        if self.source == ExternalIPSource.STATIC and self.address is None:
            raise ValueError("address is required when source is Static")
        return self


# --------------------------------------------------------------------------------------------------
# Upgrades
# --------------------------------------------------------------------------------------------------
class UpgradeStrategy(StrEnum):
    """Auto: roll out `spec.version` as soon as every gate passes. Manual: evaluate and report the gates, and roll
    out only when a `nodeActions` entry with action Upgrade asks for it (the gates still apply)."""

    AUTO = "Auto"
    MANUAL = "Manual"


class AdoptionMode(StrEnum):
    """Next: wait until the network's `next` version (run by 2/3 of active nodes) has reached the target.
    Share: wait until `minActiveShare` percent of active nodes run the target or newer. None: no adoption gate."""

    NEXT = "Next"
    SHARE = "Share"
    NONE = "None"


class AdoptionGate(SpecModel):
    """Do not run ahead of the network."""

    mode: AdoptionMode = Field(AdoptionMode.NEXT, description="How adoption is measured.")
    min_active_share: int = Field(67, ge=1, le=100,
                                  description="For mode Share: percent of active nodes that must run the target.")


class SyncGate(SpecModel):
    """Upgrade only a node that is in sync (not catching up)."""

    max_height_lag: int = Field(10, ge=0, le=100000,
                                description="Most blocks the node may be behind the network's height.")


class ChurnGate(SpecModel):
    """Churn awareness: a restart while Active costs slash points, a restart during keygen costs revenue."""

    avoid_while_active: bool = Field(
        True, description="Do not upgrade an Active node while a churn (keygen, vault migration) is under way.")
    only_when_standby: bool = Field(False, description="Upgrade only while the node is not Active (e.g. Standby).")
    within_blocks_after_churn: int | None = Field(
        None, ge=1, le=1000000,
        description="Upgrade only within this many blocks after the last churn. Absent: any time.")


class MaintenanceWindow(SpecModel):
    """A window in which upgrades may start."""

    schedule: CronSchedule = Field(description="When the window opens (cron, UTC), e.g. `0 2 * * *`.")
    duration_minutes: int = Field(60, ge=1, le=10080, description="How long the window stays open.")


class UpgradeGates(SpecModel):
    """Every enabled gate must pass before the operator changes an image. Version sanity (a valid step from the
    running version; no downgrade unless allowed) is always on; halts are configured in `spec.haltPolicy.upgrade`."""

    adoption: AdoptionGate = always(AdoptionGate, "Network adoption of the target version.")
    sync: SyncGate = always(SyncGate, "The node must be in sync.")
    churn: ChurnGate = always(ChurnGate, "Churn awareness.")
    maintenance_windows: list[MaintenanceWindow] = Field(
        default_factory=list, max_length=16,
        description="Upgrades start only inside one of these windows. Empty: any time.")
    pre_upgrade_backup: bool = Field(
        False, description="Create a NodeBackup (reason PreUpgrade) and wait until it is Completed before the upgrade. "
                           "Needs `spec.backup.location`.")


class HeightVersion(SpecModel):
    """A flag day: from this height on the node must run this version (the old binary halts there)."""

    height: int = Field(ge=1, description="The chain height at which to switch.")
    version: Version = Field(description="The version to run from that height on.")


class RolloutSpec(SpecModel):
    """Fleet budget: how many MayaNodes of one group upgrade at the same time, across the cluster."""

    group: DnsLabelName | None = Field(None, description="The rollout group. Absent: this node is its own group.")
    max_concurrent: int = Field(1, ge=1, le=100, description="At most this many nodes of the group upgrade at once.")
    canary: bool = Field(
        False, description="The first node of the group to upgrade must finish healthy before any other starts.")


class UpgradeSpec(SpecModel):
    """How the operator moves the mayanode and bifrost images to `spec.version`: mayanode first (until Ready and the
    API reports the target), then bifrost, then `set-version` once; roll back when unhealthy."""

    strategy: UpgradeStrategy = Field(UpgradeStrategy.AUTO, description="What starts an upgrade.")
    allow_downgrade: bool = Field(False, description="Allow a target version below the running version.")
    gates: UpgradeGates = always(UpgradeGates, "The gates every upgrade must pass.")
    health_timeout_seconds: int = Field(
        600, ge=30, le=86400,
        description="How long a new version may take to become Ready, in sync and reporting the target version.")
    rollback_on_failure: bool = Field(
        True, description="When the health check fails, put both deployments back on the previous image.")
    height_schedule: list[HeightVersion] = Field(
        default_factory=list, max_length=32, json_schema_extra=list_map("height"),
        description="Flag days: switch at these heights, after the old pod stopped cleanly. They override "
                    "`spec.version` once the chain reached their height.")
    rollout: RolloutSpec = always(RolloutSpec, "Fleet budget and canary.")


# --------------------------------------------------------------------------------------------------
# Backups, mimir, halts, node actions
# --------------------------------------------------------------------------------------------------
class BackupRetention(SpecModel):
    """Which backups created by this policy are kept (Manual and Imported backups are left alone)."""

    count: int = Field(7, ge=1, le=1000, description="Keep at most this many Completed backups.")
    max_age: Duration | None = Field(
        None, description="Delete backups older than this (e.g. `720h`). Absent: no limit.")

    def max_age_timedelta(self):
        return parse_duration(self.max_age) if self.max_age else None


class BackupPolicy(SpecModel):
    """Automatic NodeBackups of this node."""

    schedule: CronSchedule | None = Field(None, description="Create a NodeBackup on this cron schedule (UTC). "
                                                            "Absent: no scheduled backups.")
    after_churn: bool = Field(
        True, description="Create a NodeBackup when a churn gave the node new key shares (vault membership or "
                          "bifrost's localstate files changed): older backups cannot sign for the new vault.")
    retention: BackupRetention = always(BackupRetention, "How many and how old backups are kept.")
    location: BackupLocation = Field(description="Where backups are stored and how they are encrypted.")
    volume_snapshots: VolumeSnapshotOptions = always(VolumeSnapshotOptions, "CSI VolumeSnapshots with each backup.")
    verify: bool = Field(True, description="Verify each backup after storing it (see NodeBackup `spec.verify`).")


MimirValue = Annotated[int, Field(ge=0, description="The value this node votes for the key.")]


class MimirSpec(SpecModel):
    """Mimir votes as code: the operator sends only the differences with the node's votes on chain."""

    votes: Annotated[dict[str, MimirValue], AfterValidator(check_mimir_keys)] = Field(
        default_factory=dict, max_length=64,
        description="Mimir key → value this node votes for, e.g. `{HALTTRADING: 0}`. Keys are letters, digits and "
                    "dashes, case-insensitive.")
    withdraw_removed: bool = Field(
        False, description="When a key is removed from `votes`, withdraw the vote (send -1). Only votes this "
                           "operator sent are withdrawn.")


class HaltKind(StrEnum):
    """A kind of network halt: Trading (HaltTrading, Halt<CHAIN>Trading), Chain (HaltChainGlobal,
    Halt<CHAIN>Chain), Signing (HaltSigning<CHAIN>), Solvency (SolvencyHalt<CHAIN>Chain), LP (PauseLP<CHAIN>),
    Churning (HaltChurning), NodePause (NodePauseChainGlobal, a node's pause-chain)."""

    TRADING = "Trading"
    CHAIN = "Chain"
    SIGNING = "Signing"
    SOLVENCY = "Solvency"
    LP = "LP"
    CHURNING = "Churning"
    NODE_PAUSE = "NodePause"


def _halt_list(default: list[HaltKind], what: str) -> Any:
    values = [str(k) for k in default]
    return Field(default_factory=lambda: list(default), max_length=7,
                 json_schema_extra={**LIST_SET, "default": values},
                 description=f"Halts during which {what} waits.")


class HaltAction(StrEnum):
    """An operator action that a halt can hold back."""

    RESTORE = "Restore"
    UPGRADE = "Upgrade"
    BACKUP = "Backup"
    ANNOUNCE_IP = "AnnounceIP"
    MIMIR_VOTE = "MimirVote"
    NODE_ACTION = "NodeAction"


class HaltPolicy(SpecModel):
    """Which operator actions wait while which network halts are in effect (a NodeRestore can override with
    `spec.force`). An action that waits says so in status with the halt that holds it."""

    restore: list[HaltKind] = _halt_list([HaltKind.SIGNING], "a NodeRestore of this node")
    upgrade: list[HaltKind] = _halt_list([], "an upgrade")
    backup: list[HaltKind] = _halt_list([], "a NodeBackup of this node")
    announce_ip: list[HaltKind] = Field(
        default_factory=list, max_length=7, alias="announceIP", json_schema_extra={**LIST_SET, "default": []},
        description="Halts during which announcing the IP (set-ip-address) waits.")
    mimir_votes: list[HaltKind] = _halt_list([], "sending mimir votes")
    node_actions: list[HaltKind] = _halt_list([], "a one-shot node action")

    def blocking(self, action: HaltAction, halts_in_effect: list[str] | tuple[str, ...]) -> list[str]:
        """The halt kinds in effect that hold `action` back (empty: go ahead)."""
        field = {
            HaltAction.RESTORE: self.restore, HaltAction.UPGRADE: self.upgrade, HaltAction.BACKUP: self.backup,
            HaltAction.ANNOUNCE_IP: self.announce_ip, HaltAction.MIMIR_VOTE: self.mimir_votes,
            HaltAction.NODE_ACTION: self.node_actions,
        }[HaltAction(action)]
        waiting = {str(k) for k in field}
        return sorted({str(h) for h in halts_in_effect} & waiting)


class NodeActionType(StrEnum):
    """A one-shot request: PauseChain / ResumeChain (a node's pause-chain and resume-chain transactions, once per
    churn), Upgrade (start the upgrade to spec.version now; the way to upgrade with strategy Manual), AnnounceIP
    (send set-ip-address once, even when `externalIP.announce` is false)."""

    PAUSE_CHAIN = "PauseChain"
    RESUME_CHAIN = "ResumeChain"
    UPGRADE = "Upgrade"
    ANNOUNCE_IP = "AnnounceIP"


class NodeActionRequest(SpecModel):
    """A one-shot action, done once and recorded in `status.nodeActions` under its id; never repeated."""

    id: DnsLabelName = Field(description="A unique id; a new id is a new request (e.g. `pause-2024-06-01`).")
    action: NodeActionType = Field(description="What to do.")
    reason: str | None = Field(None, max_length=512, description="Why, for the record and the event.")


# --------------------------------------------------------------------------------------------------
# MayaNode spec
# --------------------------------------------------------------------------------------------------
class MayaNodeSpec(SpecModel):
    """Which node this is and what the operator may do for it. It always observes; it manages the external IP,
    mimir votes, backups and upgrades only when the matching field asks for it."""

    model_config = {"json_schema_extra": cel(
        rule("!has(self.nodeAddress) || (self.network == 'mainnet' ? self.nodeAddress.startsWith('maya1') : "
             "self.network == 'stagenet' ? self.nodeAddress.startsWith('smaya1') : true)",
             "nodeAddress must start with maya1 on mainnet and smaya1 on stagenet", field_path=".nodeAddress"),
        rule("!has(self.upgrade) || !has(self.upgrade.gates) || !has(self.upgrade.gates.preUpgradeBackup) || "
             "!self.upgrade.gates.preUpgradeBackup || has(self.backup)",
             "upgrade.gates.preUpgradeBackup needs spec.backup (its location)", field_path=".backup",
             reason="FieldValueRequired"),
    )}

    network: Network = Field(description="mainnet, stagenet or mocknet.")
    node_address: NodeAddress | None = Field(
        None, description="The node account address (`maya1…`). Absent for a node not yet bonded: the operator "
                          "observes workloads and chain only and says so in the NodeRegistered condition.")
    chain_id: str | None = Field(
        None, pattern=r"^[a-z0-9][a-z0-9-]{0,48}[a-z0-9]$", max_length=50,
        description="The chain ID for transactions. Absent: mayachain-mainnet-v1, mayachain-stagenet-v1 or "
                    "mayachain-mocknet.")
    signer_name: str = Field(naming.DEFAULT_SIGNER_NAME, pattern=r"^[A-Za-z0-9_.-]+$", max_length=64,
                             description="The keyring key name used with `--from` (node-launcher's SIGNER_NAME).")
    version: Version | None = Field(
        None, description="The target mayanode version (x.y.z). Absent: observe only, the operator never changes "
                          "an image.")
    image: ImageSpec = always(ImageSpec, "The image repository and tag template used for `version`.")
    mayanode: MayanodeWorkload = always(MayanodeWorkload, "The mayanode Deployment, container and volume.")
    bifrost: BifrostWorkload = always(BifrostWorkload, "The bifrost Deployment, container and volume.")
    secrets: SecretsSpec = always(SecretsSpec, "The mnemonic and password Secrets.")
    api: ApiSpec = always(ApiSpec, "How to reach the node's REST and RPC APIs.")
    observe: ObserveSpec = always(ObserveSpec, "Observation interval.")
    suspend: bool = Field(
        False, description="Maintenance mode: scale mayanode and bifrost to 0 (and keep them there); false brings "
                           "them back to 1. Never more than 1 replica either way.")
    external_ip: ExternalIPSpec | None = Field(
        None, alias="externalIP",
        description="Manage the node's public IP. Absent: not managed (node-launcher's init containers keep doing it).")
    upgrade: UpgradeSpec = always(UpgradeSpec, "Upgrade policy for `version` (inert while `version` is absent).")
    backup: BackupPolicy | None = Field(None, description="Automatic backups. Absent: only the NodeBackups you create.")
    mimir: MimirSpec | None = Field(None, description="Mimir votes. Absent: the operator never votes.")
    halt_policy: HaltPolicy = always(HaltPolicy, "Which operator actions wait during which network halts.")
    node_actions: list[NodeActionRequest] = Field(
        default_factory=list, max_length=32, json_schema_extra=list_map("id"),
        description="One-shot requests (pause-chain, resume-chain, upgrade now, announce IP). Each id is done once; "
                    "keep or remove entries freely.")

    @model_validator(mode="after")
    def _cross_field_rules(self) -> MayaNodeSpec:
        prefix = {Network.MAINNET: "maya1", Network.STAGENET: "smaya1"}.get(self.network)
        if self.node_address and prefix and not self.node_address.startswith(prefix):
            raise ValueError("nodeAddress must start with maya1 on mainnet and smaya1 on stagenet")
        if self.upgrade.gates.pre_upgrade_backup and self.backup is None:
            raise ValueError("upgrade.gates.preUpgradeBackup needs spec.backup (its location)")
        return self

    # ---- values the operator computes from the spec --------------------------------------------
    def rest_url(self, namespace: str) -> str:
        return (self.api.rest or naming.default_rest_url(namespace)).rstrip("/")

    def rpc_url(self, namespace: str) -> str:
        return (self.api.rpc or naming.default_rpc_url(namespace)).rstrip("/")

    def effective_chain_id(self) -> str:
        return self.chain_id or naming.default_chain_id(str(self.network))

    @property
    def observe_only(self) -> bool:
        """True when the operator must not touch images (no target version and no flag day)."""
        return self.version is None and not self.upgrade.height_schedule

    def target_version(self, height: int | None = None) -> str | None:
        """The version the node should run at `height`: the last flag day reached, else `spec.version`."""
        reached = [e for e in self.upgrade.height_schedule if height is not None and e.height <= height]
        if reached:
            return max(reached, key=lambda e: e.height).version
        return self.version

    def next_flag_day(self, height: int | None) -> HeightVersion | None:
        """The next height-based switch still ahead of `height`."""
        ahead = [e for e in self.upgrade.height_schedule if height is None or e.height > height]
        return min(ahead, key=lambda e: e.height) if ahead else None

    def image_for(self, version: str) -> str:
        return self.image.reference(str(self.network), version)

    def pending_node_actions(self, status: MayaNodeStatus | None) -> list[NodeActionRequest]:
        """Requests whose id is not yet recorded in status (in spec order)."""
        done = {a.id for a in status.node_actions} if status else set()
        return [a for a in self.node_actions if a.id not in done]


# --------------------------------------------------------------------------------------------------
# MayaNode status
# --------------------------------------------------------------------------------------------------
class MayaNodePhase(StrEnum):
    """Pending (not observed yet), Running (Ready), Degraded (not Ready), Suspended, Upgrading, Restoring or
    Unknown."""

    PENDING = "Pending"
    RUNNING = "Running"
    DEGRADED = "Degraded"
    SUSPENDED = "Suspended"
    UPGRADING = "Upgrading"
    RESTORING = "Restoring"
    UNKNOWN = "Unknown"


class JailStatus(StatusModel):
    """The node's jail, as the node API reports it."""

    release_height: int = Field(ge=0, description="The height at which the node is released.")
    reason: str = Field("", description="Why it was jailed.")


class PreflightStatus(StatusModel):
    """The node's preflight check, as the node API reports it (what keeps it from churning in)."""

    status: str = Field(description="e.g. Ready or Standby.")
    reason: str = Field("", description="e.g. OK, or `node account has invalid registered IP address`.")
    code: int = Field(0, description="0 when the node is ready.")


class NodeAccountStatus(StatusModel):
    """The node account on chain (public data only)."""

    address: str | None = Field(None, description="The node address.")
    status: str | None = Field(None, description="Unknown, Whitelisted, Standby, Ready, Active or Disabled.")
    bond: str | None = Field(None, description="The bond in base units (1e-10 CACAO), as the node API reports it.")
    slash_points: int | None = Field(None, description="Current slash points.")
    jail: JailStatus | None = Field(None, description="Present while jailed.")
    preflight: PreflightStatus | None = Field(None, description="The preflight check.")
    registered_ip: str | None = Field(None, alias="registeredIP", description="The IP address registered on chain.")
    version: str | None = Field(None, description="The version the node announced (set-version).")
    validator_cons_pub_key: str | None = Field(None, description="The consensus public key registered on chain.")
    requested_to_leave: bool | None = Field(None, description="The node asked to leave at the next churn.")


class ChainStatus(StatusModel):
    """The node's view of the chain."""

    height: int | None = Field(None, ge=0, description="The node's latest block height (refreshed at most every "
                                                       "heightObservedAt interval unless the sync state flips).")
    catching_up: bool | None = Field(None, description="The node is still syncing.")
    network_height: int | None = Field(
        None, ge=0, description="The network's height from `spec.api.networkRpc` (the highest height among the "
                                "endpoints on the node's chain that are not catching up), observed with `height`. "
                                "Absent when no endpoint is configured or none answered.")
    height_observed_at: datetime | None = Field(None, description="When `height` was last refreshed.")


class HaltStatus(StatusModel):
    """One network halt in effect."""

    kind: HaltKind = Field(description="The kind of halt.")
    key: str = Field(description="What says so: the mimir key (e.g. HALTBTCTRADING) or `inbound:<CHAIN>:<what>`.")
    chain: str | None = Field(None, description="The external chain (e.g. BTC); absent for network-wide halts.")


class VaultStatus(StatusModel):
    """The current Asgard vault (it changes at every churn)."""

    pub_key: str = Field(description="The vault's public key.")
    height: int | None = Field(None, ge=0, description="The block height the vault was created at.")
    member: bool | None = Field(None, description="This node is in the vault's membership (holds key shares).")


class NetworkStatus(StatusModel):
    """The network as the node sees it."""

    current_version: str | None = Field(None, description="Lowest version among Active nodes.")
    next_version: str | None = Field(None, description="Highest version run by at least 2/3 of Active nodes.")
    halts: list[HaltStatus] = Field(default_factory=list, description="Halts in effect.")
    vault: VaultStatus | None = Field(None, description="The current Asgard vault.")
    last_churn_height: int | None = Field(None, ge=0, description="Height of the last churn.")
    active_nodes: int | None = Field(None, ge=0, description="Number of Active nodes.")
    target_adoption_percent: int | None = Field(
        None, ge=0, le=100, description="Percent of Active nodes running the target version or newer.")


class WorkloadStatus(StatusModel):
    """One Deployment as observed."""

    replicas: int | None = Field(None, ge=0, description="Desired replicas (0 or 1).")
    ready_replicas: int | None = Field(None, ge=0, description="Ready replicas.")
    image: str | None = Field(None, description="The container's image.")
    version: str | None = Field(None, description="The version in the image tag.")


class WorkloadsStatus(StatusModel):
    """The mayanode and bifrost Deployments."""

    mayanode: WorkloadStatus | None = Field(None, description="The mayanode Deployment.")
    bifrost: WorkloadStatus | None = Field(None, description="The bifrost Deployment.")


class PendingIPAnnouncement(StatusModel):
    """A set-ip-address that was sent and is not yet visible on chain (it is not sent again meanwhile)."""

    address: str = Field(description="The address sent.")
    sent_at: datetime = Field(description="When it was sent.")
    height: int | None = Field(None, ge=0, description="Chain height when it was sent.")
    attempts: int = Field(1, ge=1, description="How many times it was sent (transient errors are retried).")
    txhash: str | None = Field(None, description="The transaction hash the node answered with.")
    message: str | None = Field(None, description="Details, e.g. that an earlier announcement timed out.")


class TransactionFailure(StatusModel):
    """The last transaction of this kind that did not go through (it is retried later, not at every pass)."""

    what: str = Field(description="The transaction, e.g. `set-ip-address 203.0.113.7`.")
    at: datetime = Field(description="When it failed.")
    transient: bool = Field(False, description="A transient error (retried at the next pass); else retried after "
                                               "a back-off or when the desired value changes.")
    message: str = Field("", description="The error (no secret material).")


class ExternalIPStatus(StatusModel):
    """The node's public IP."""

    address: str | None = Field(None, description="The current public address (from the source).")
    source: ExternalIPSource | None = Field(None, description="Where it came from.")
    config_maps_address: str | None = Field(None, description="The address written in the ConfigMaps.")
    announced_address: str | None = Field(None, description="The last address announced with set-ip-address.")
    announced_at: datetime | None = Field(None, description="When it was announced.")
    pending: PendingIPAnnouncement | None = Field(None, description="An announcement not yet seen on chain.")
    last_failure: TransactionFailure | None = Field(None, description="The last announcement that failed.")


class LastBackup(StatusModel):
    """The newest Completed NodeBackup of this node."""

    name: str = Field(description="The NodeBackup.")
    completed_at: datetime | None = Field(None, description="When it completed.")
    vault_pub_key: str | None = Field(None, description="The vault whose key shares it holds.")
    height: int | None = Field(None, ge=0, description="Chain height at capture.")


class NodeBackupsStatus(StatusModel):
    """Backups of this node."""

    last_successful: LastBackup | None = Field(None, description="The newest Completed NodeBackup.")
    fresh: bool | None = Field(None, description="The last successful backup holds the current vault's key shares.")
    last_scheduled_at: datetime | None = Field(
        None, description="The schedule time of the last scheduled backup (a missed time is not made up twice).")
    last_after_churn_vault: str | None = Field(
        None, description="The vault for which an AfterChurn backup was created (one per vault).")
    in_progress: str | None = Field(None, description="A NodeBackup created by the policy and not finished yet.")
    prune_deferred: list[Annotated[str, Field(description="A NodeBackup name.")]] | None = Field(
        None, description="NodeBackups due for pruning but kept while a NodeRestore in progress uses them (said once "
                          "in a BackupPruneDeferred event; pruned when the restore finishes).")


class UpgradeState(StrEnum):
    """Idle (nothing to do), Blocked (a gate holds it), InProgress, RollingBack, Failed (rolled back or stuck; stays
    until the target changes or a new Upgrade node action)."""

    IDLE = "Idle"
    BLOCKED = "Blocked"
    IN_PROGRESS = "InProgress"
    ROLLING_BACK = "RollingBack"
    FAILED = "Failed"


class UpgradeGateName(StrEnum):
    """The gate that holds an upgrade."""

    VERSION_SANITY = "VersionSanity"
    ADOPTION = "Adoption"
    SYNC = "Sync"
    CHURN = "Churn"
    HALTS = "Halts"
    MAINTENANCE_WINDOW = "MaintenanceWindow"
    PRE_UPGRADE_BACKUP = "PreUpgradeBackup"
    ROLLOUT_BUDGET = "RolloutBudget"
    CANARY = "Canary"
    APPROVAL = "Approval"
    HEIGHT_SCHEDULE = "HeightSchedule"
    WORKLOADS_LOCKED = "WorkloadsLocked"


class GateResult(StatusModel):
    """Why the upgrade waits."""

    name: UpgradeGateName = Field(description="The gate.")
    reason: str = Field(description="A CamelCase reason, e.g. WaitingForAdoption.")
    message: str = Field("", description="Details for humans.")


class UpgradeStep(StrEnum):
    """A step of an upgrade in progress."""

    PRE_UPGRADE_BACKUP = "PreUpgradeBackup"
    ACQUIRE_BUDGET = "AcquireBudget"
    STOP_OLD = "StopOld"
    MAYANODE = "Mayanode"
    MAYANODE_HEALTH = "MayanodeHealth"
    BIFROST = "Bifrost"
    BIFROST_HEALTH = "BifrostHealth"
    SET_VERSION = "SetVersion"
    ROLLBACK = "Rollback"


class PreviousImages(StatusModel):
    """The images before the upgrade, for a rollback."""

    mayanode: str | None = Field(None, description="mayanode's image.")
    bifrost: str | None = Field(None, description="bifrost's image.")


class UpgradeProgress(StatusModel):
    """The upgrade under way (its state lives here, so a restarted operator resumes it)."""

    from_version: str | None = Field(None, alias="from", description="The running version when it started.")
    to_version: str = Field(alias="to", description="The target version.")
    step: UpgradeStep = Field(description="The current step.")
    started_at: datetime = Field(description="When the upgrade started.")
    step_started_at: datetime | None = Field(None, description="When the current step started.")
    previous_images: PreviousImages | None = Field(None, description="Images to roll back to.")
    backup_name: str | None = Field(None, description="The PreUpgrade NodeBackup.")
    flag_day_height: int | None = Field(None, ge=0, description="For a height-based switch: the height.")
    version_announced: bool | None = Field(None, description="set-version was sent (it is sent once).")
    deadline: datetime | None = Field(None, description="When the current health step fails if not healthy by then.")
    request_id: str | None = Field(None, description="The Upgrade node action that started it, if any.")
    reason: str | None = Field(None, description="While rolling back: why the new version failed (CamelCase).")
    message: str | None = Field(None, description="Details for humans (the failure, the set-version answer).")


class UpgradeResult(StatusModel):
    """One finished upgrade."""

    from_version: str | None = Field(None, alias="from", description="The version before.")
    to_version: str = Field(alias="to", description="The target version.")
    started_at: datetime = Field(description="When it started.")
    finished_at: datetime | None = Field(None, description="When it finished.")
    result: str = Field(description="Succeeded, RolledBack or Failed.")
    reason: str | None = Field(None, description="A CamelCase reason.")
    message: str | None = Field(None, description="Details for humans.")
    image: str | None = Field(None, description="The image the operator set (a later change by someone else is "
                                                "reported, not overwritten).")
    request_id: str | None = Field(None, description="The Upgrade node action that started it, if any.")


class FlagDayStatus(StatusModel):
    """The next height-based switch."""

    height: int = Field(ge=0, description="The height at which the node switches.")
    version: str = Field(description="The version it switches to.")


class UpgradeStatus(StatusModel):
    """Upgrade progress and history."""

    state: UpgradeState | None = Field(None, description="Where the upgrade machinery is.")
    gate: GateResult | None = Field(None, description="While Blocked: the gate that holds the upgrade.")
    current: UpgradeProgress | None = Field(None, description="The upgrade under way.")
    history: list[UpgradeResult] = Field(default_factory=list, max_length=20,
                                         description="The last upgrades, newest last (at most 20).")
    next_flag_day: FlagDayStatus | None = Field(None, description="The next height-based switch still ahead.")
    last_height: int | None = Field(
        None, ge=0, description="The highest chain height seen, never lower, kept near a flag day ahead, while a "
                                "flag-day upgrade is under way and for a while after one (the old binary halts at the "
                                "flag day's height and stops answering, and status.chain.height may be older).")


class PendingMimirVote(StatusModel):
    """A vote sent and not yet visible on chain."""

    key: str = Field(description="The mimir key.")
    value: int = Field(description="The value sent (-1 withdraws).")
    sent_at: datetime = Field(description="When it was sent.")
    txhash: str | None = Field(None, description="The transaction hash the node answered with.")
    attempts: int = Field(1, ge=1, description="How many times this vote was sent (again only after a timeout).")


class MimirVoteFailure(StatusModel):
    """A vote that did not go through; retried after a back-off or when the spec's value changes."""

    key: str = Field(description="The mimir key.")
    value: int = Field(description="The value that was sent (-1 withdraws).")
    at: datetime = Field(description="When it failed.")
    message: str = Field("", description="The error.")


class MimirStatus(StatusModel):
    """Mimir votes."""

    in_effect: dict[str, Annotated[int, Field(description="The value this node votes for on chain.")]] = Field(
        default_factory=dict, description="This node's votes on chain (key → value).")
    managed_keys: list[Annotated[str, Field(description="A mimir key.")]] = Field(default_factory=list,
                                    description="Keys this operator has voted on (withdrawn only these).")
    pending: list[PendingMimirVote] = Field(default_factory=list, description="Votes sent, not yet on chain.")
    failed: list[MimirVoteFailure] = Field(default_factory=list, description="Votes that failed (not retried "
                                                                              "at every pass).")


class NodeActionState(StrEnum):
    """Sent (recorded before the transaction, so never sent twice), Succeeded, Failed or Skipped."""

    SENT = "Sent"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"


class NodeActionRecord(StatusModel):
    """What became of one node action request."""

    id: str = Field(description="The request's id.")
    action: NodeActionType = Field(description="The action.")
    state: NodeActionState = Field(description="How far the action got.")
    at: datetime = Field(description="When it reached this state.")
    height: int | None = Field(None, ge=0, description="Chain height when it was sent.")
    message: str | None = Field(None, description="Details (the error, or why it was skipped).")
    txhash: str | None = Field(None, description="The transaction hash the node answered with.")
    node_pause_until: int | None = Field(
        None, ge=0, description="For PauseChain/ResumeChain: NODEPAUSECHAINGLOBAL when it was sent (the effect is "
                                "judged against it).")


class ReplicasStatus(StatusModel):
    """Replica control (spec.suspend, and a NodeRestore holding the node down)."""

    suspended: bool = Field(False, description="The node is held at 0 replicas by the operator.")
    reason: str | None = Field(None, description="Why: Suspended, RestoreInProgress, RestoreFailed or "
                                                 "KeyHeldElsewhere.")
    message: str | None = Field(None, description="Details and, when held down, what to do.")
    mayanode: int | None = Field(None, ge=0, description="mayanode's desired replicas.")
    bifrost: int | None = Field(None, ge=0, description="bifrost's desired replicas.")
    restore: str | None = Field(None, description="The NodeRestore holding the node, if any.")
    changed_at: datetime | None = Field(None, description="When the operator last scaled the node for this reason.")
    consensus_pub_key: str | None = Field(
        None, description="The node's consensus key as last observed (kept while the node is down, to check the "
                          "consensus-key lock before scaling it back up).")


class MayaNodeStatus(StatusModel):
    """What the operator observed and did."""

    observed_generation: int | None = Field(None, ge=0, description="The generation this status describes.")
    phase: MayaNodePhase | None = Field(None, description="A short summary of the node's state.")
    version: str | None = Field(None, description="The running mayanode version (the API's `querier`, else the "
                                                  "image tag).")
    target_version: str | None = Field(None, description="The version the operator is moving to (from spec.version "
                                                         "or a flag day).")
    node: NodeAccountStatus | None = Field(None, description="The node account on chain.")
    chain: ChainStatus | None = Field(None, description="Height and sync state.")
    network: NetworkStatus | None = Field(None, description="Network versions, halts and vault.")
    workloads: WorkloadsStatus | None = Field(None, description="The mayanode and bifrost Deployments.")
    external_ip: ExternalIPStatus | None = Field(None, alias="externalIP", description="The public IP.")
    backup: NodeBackupsStatus | None = Field(None, description="Backups of this node.")
    replicas: ReplicasStatus | None = Field(None, description="Replica control: suspend and restores.")
    upgrade: UpgradeStatus | None = Field(None, description="Upgrade progress and history.")
    mimir: MimirStatus | None = Field(None, description="Mimir votes.")
    node_actions: list[NodeActionRecord] = Field(
        default_factory=list, max_length=64, json_schema_extra=list_map("id"),
        description="Node action requests done, by id. Records of ids removed from the spec are kept (the oldest "
                    "dropped first past 64), so putting an id back never repeats the action.")
    conditions: list[Condition] = conditions_field(
        "Ready, WorkloadsReady, NodeAPIReachable, NodeRegistered, Synced, NetworkHalted, Jailed, SpecValid, "
        "ExternalIPAssigned, BackupFresh, UpgradeBlocked, Upgrading, Suspended.")

    def condition(self, type_: str) -> Condition | None:
        return find_condition(self.conditions, type_)


class MayaNode(SpecModel):
    """A MayaNode is one MAYAChain validator node run by node-launcher's mayanode-stack in this namespace. The
    operator observes it (workloads, node account, chain, network) and, when the spec asks, manages its external IP,
    mimir votes, backups and version upgrades."""

    model_config = {"extra": "ignore"}

    kind_name: ClassVar[str] = naming.MAYANODE_KIND
    api_version: str = Field(naming.API_VERSION, description="maya.nodeops.io/v1alpha1")
    kind: str = Field(naming.MAYANODE_KIND, description="MayaNode")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: MayaNodeSpec = Field(description="Desired state.")
    status: MayaNodeStatus | None = Field(None, description="Observed state.")

