"""A simulated MAYAChain network serving each node namespace's HTTP API (REST and CometBFT RPC).

    net = Mocknet(block_interval=0.2)
    await net.start()                       # net.url; net.rest_url(ns); net.rpc_url(ns)
    net.add_node(node_account_for(identity, status="Active", version="1.111.0", ip_address="1.2.3.4"))
    net.process_started("node-a", "pod-1", node_address=..., cons_pubkey_b64=..., version="1.111.0",
                        signed_state_height=0)
    await net.advance(3)
    await net.stop()

State lives in plain dataclasses (`model.py`); chain rules are pure functions (`rules.py`).
"""

from .model import (
    ACTIVE_VAULT,
    BLOCK_ID_FLAG_ABSENT,
    BLOCK_ID_FLAG_COMMIT,
    INACTIVE_VAULT,
    NODE_STATUSES,
    RETIRING_VAULT,
    BifrostProcess,
    Block,
    CommitSig,
    DoubleSign,
    ExternalChain,
    Jail,
    NamespaceConfig,
    NodeAccount,
    NodeProcess,
    Tx,
    TxResult,
    Vault,
)
from .network import FAIL_MODES, Mocknet, node_account_for
from .rules import CHAINS, NetworkVersions, network_versions, parse_version
from .server import HUGE_BODY_BYTES, NO_ENDPOINTS_BODY

__all__ = [
    "ACTIVE_VAULT", "BLOCK_ID_FLAG_ABSENT", "BLOCK_ID_FLAG_COMMIT", "CHAINS", "FAIL_MODES",
    "HUGE_BODY_BYTES", "INACTIVE_VAULT", "NODE_STATUSES", "NO_ENDPOINTS_BODY", "RETIRING_VAULT",
    "BifrostProcess", "Block", "CommitSig", "DoubleSign", "ExternalChain", "Jail", "Mocknet",
    "NamespaceConfig", "NetworkVersions", "NodeAccount", "NodeProcess", "Tx", "TxResult", "Vault",
    "network_versions", "node_account_for", "parse_version",
]
