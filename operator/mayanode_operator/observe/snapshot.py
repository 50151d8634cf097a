"""Frozen snapshots of the world, as observed in one reconcile.

Planners read these and nothing else: no client, no clock, no kopf object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PodObservation:
    name: str
    phase: str
    ready: bool
    restarts: int
    waiting_reason: str | None = None
    terminating: bool = False
    images: tuple[str, ...] = ()          # the images of the pod's containers (its template's, not the Deployment's)


@dataclass(frozen=True)
class WorkloadObservation:
    """One Deployment (mayanode or bifrost) and its pods."""

    name: str
    exists: bool
    desired_replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    image: str | None = None
    pods: tuple[PodObservation, ...] = ()
    generation: int = 0
    observed_generation: int = 0          # < generation: the status above describes an older spec

    @property
    def version(self) -> str | None:
        return version_from_image(self.image)

    @property
    def running_pods(self) -> int:
        return sum(1 for pod in self.pods if not pod.terminating)


def version_from_image(image: str | None) -> str | None:
    """`registry/mayanode:mainnet-1.111.0` → `1.111.0`; None when the tag carries no version."""
    if not image or ":" not in image.rsplit("/", 1)[-1]:
        return None
    tag = image.rsplit(":", 1)[1]
    candidate = tag.rsplit("-", 1)[-1]
    parts = candidate.split(".")
    if len(parts) == 3 and all(part.isdigit() for part in parts):
        return candidate
    return None


@dataclass(frozen=True)
class Jail:
    release_height: int
    reason: str


@dataclass(frozen=True)
class Preflight:
    status: str
    reason: str
    code: int


@dataclass(frozen=True)
class NodeAccount:
    address: str
    status: str
    bond: str
    slash_points: int
    version: str
    ip_address: str
    validator_cons_pub_key: str
    jail: Jail | None = None
    preflight: Preflight | None = None
    requested_to_leave: bool = False
    forced_to_leave: bool = False
    signer_membership: tuple[str, ...] = ()
    secp256k1: str = ""


@dataclass(frozen=True)
class ChainStatus:
    """What a CometBFT RPC `/status` says: the node's own, or one of `spec.api.networkRpc`'s."""

    height: int
    catching_up: bool
    validator_address: str = ""
    chain_id: str = ""                    # `node_info.network`; "" when not reported


@dataclass(frozen=True)
class Halt:
    """One halt in effect: `kind` is Trading, Chain, Signing, Solvency, LP, Churning or NodePause."""

    kind: str
    key: str
    chain: str | None = None


@dataclass(frozen=True)
class Vault:
    pub_key: str
    block_height: int
    membership: tuple[str, ...] = ()


@dataclass(frozen=True)
class InboundChain:
    chain: str
    halted: bool
    global_trading_paused: bool
    chain_trading_paused: bool
    chain_lp_actions_paused: bool


@dataclass(frozen=True)
class NetworkObservation:
    current_version: str | None = None
    next_version: str | None = None
    querier_version: str | None = None
    mimir: tuple[tuple[str, int], ...] = ()          # sorted (KEY, value) pairs, keys upper-case
    inbound: tuple[InboundChain, ...] = ()
    vault: Vault | None = None


@dataclass(frozen=True)
class EndpointError:
    """Why one endpoint of the node API gave no usable answer (no secrets, just the cause)."""

    endpoint: str
    reason: str          # Unreachable | Timeout | HTTPError | InvalidResponse | NotFound | TooLarge
    message: str


@dataclass(frozen=True)
class NodeApiObservation:
    network: NetworkObservation = field(default_factory=NetworkObservation)
    account: NodeAccount | None = None
    chain: ChainStatus | None = None
    errors: tuple[EndpointError, ...] = ()
    network_rpc: tuple[ChainStatus, ...] = ()   # answers of the `spec.api.networkRpc` endpoints' `/status`, in order

    def error_for(self, endpoint: str) -> EndpointError | None:
        return next((err for err in self.errors if err.endpoint == endpoint), None)

    @property
    def reachable(self) -> bool:
        """The API answered at least its version route or the RPC status."""
        return self.error_for("version") is None or self.error_for("status") is None


@dataclass(frozen=True)
class MayaNodeObservation:
    mayanode: WorkloadObservation
    bifrost: WorkloadObservation
    api: NodeApiObservation
    # Deployment name → the Deployment and its pods as read in this pass (observe.kube.WorkloadObjects), for a facet
    # that needs more of them than the observation keeps (the external IP's env and ConfigMap references): one read
    # per pass.
    objects: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # The node's Deployments that the workload watch does not see (or whose pods it may not), first noticed in this
    # pass: the pass says so once (reconcile/watched.py).
    newly_unwatched: tuple[str, ...] = ()
