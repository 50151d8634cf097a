"""The mocknet's state: plain dataclasses that tests and the demo read (and tests may mutate)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

NODE_STATUSES = ("Unknown", "Whitelisted", "Standby", "Ready", "Active", "Disabled")
ACTIVE = "Active"

ACTIVE_VAULT = "ActiveVault"
RETIRING_VAULT = "RetiringVault"
INACTIVE_VAULT = "InactiveVault"

# CometBFT BlockIDFlag values.
BLOCK_ID_FLAG_ABSENT = 1
BLOCK_ID_FLAG_COMMIT = 2

DEFAULT_BOND = 10_240_000_000_000


@dataclass
class Jail:
    node_address: str = ""
    release_height: int = 0
    reason: str = ""


@dataclass
class NodeAccount:
    """A node account as the chain stores it. `virtual` accounts stand for the rest of the network:
    no process runs for them, yet they sign every block while Active."""

    node_address: str
    status: str = "Standby"
    bond: int = DEFAULT_BOND
    secp256k1_pubkey: str = ""
    ed25519_pubkey: str = ""
    validator_cons_pub_key: str = ""
    bond_address: str = ""
    active_block_height: int = 0
    status_since: int = 0
    signer_membership: list[str] = field(default_factory=list)
    requested_to_leave: bool = False
    forced_to_leave: bool = False
    leave_height: int = 0
    ip_address: str = ""
    version: str = "0.0.0"
    slash_points: int = 0
    jail: Jail = field(default_factory=Jail)
    virtual: bool = False

    def __post_init__(self) -> None:
        if self.status not in NODE_STATUSES:
            raise ValueError(f"unknown node status {self.status!r}; expected one of {NODE_STATUSES}")
        if not self.bond_address:
            self.bond_address = self.node_address
        if not self.jail.node_address:
            self.jail.node_address = self.node_address

    @property
    def has_pub_key_set(self) -> bool:
        return bool(self.secp256k1_pubkey and self.ed25519_pubkey)


@dataclass
class NodeProcess:
    """A running mayanode container, keyed by the instance id the kubelet gives it."""

    instance_id: str
    namespace: str
    node_address: str
    cons_pubkey_b64: str
    validator_address: str
    version: str
    started_at: float         # mocknet clock
    start_height: int
    last_signed_height: int   # starts at priv_validator_state's height; rises as it signs


@dataclass
class BifrostProcess:
    instance_id: str
    namespace: str
    node_address: str
    started_at: float


@dataclass
class CommitSig:
    block_id_flag: int
    validator_address: str
    timestamp: str
    signature: str | None


@dataclass
class Block:
    height: int
    time: datetime
    hash: str
    proposer_address: str
    signatures: list[CommitSig]
    txs: list[str] = field(default_factory=list)          # base64
    evidence: list[dict] = field(default_factory=list)    # DuplicateVoteEvidence, CometBFT JSON


@dataclass(frozen=True)
class DoubleSign:
    height: int
    validator_address: str
    instances: tuple[str, ...]


@dataclass
class Vault:
    pub_key: str
    status: str
    membership: list[str]
    block_height: int
    status_since: int


@dataclass(frozen=True)
class TxResult:
    code: int
    txhash: str
    raw_log: str
    height: int   # 0 while pending, as a sync broadcast answers

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass
class Tx:
    namespace: str
    signer: str
    argv: list[str]
    submitted_height: int
    result: TxResult
    applied_height: int | None = None   # the block that included it; None while pending or refused


@dataclass
class NamespaceConfig:
    catch_up_seconds: float = 0.0
    height_lag: int = 0


@dataclass
class ExternalChain:
    """One external chain as `/lastblock` reports it. `last_observed_in` is that chain's height and
    stops rising while the chain is halted; `last_signed_out` is the MAYAChain height of the last
    outbound signed and stops while signing is halted."""

    chain: str
    start_height: int
    blocks_per_maya_block: float
    observed_maya_blocks: int = 0
    last_signed_out: int = 0

    @property
    def last_observed_in(self) -> int:
        return self.start_height + int(self.observed_maya_blocks * self.blocks_per_maya_block)
