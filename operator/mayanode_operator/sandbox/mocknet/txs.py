"""`mayanode tx mayachain …` commands: what the CLI refuses, what the chain refuses at CheckTx,
and what a tx changes once a block includes it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mayanode_operator import chainkeys

from .model import ACTIVE, NodeAccount
from .rules import PAUSE_CHAIN_BLOCKS, is_valid_ip, parse_version

# Cosmos SDK error codes that these commands answer with.
CODE_CLI_ERROR = 1        # the CLI gave up before broadcasting (bad arguments, node unreachable)
CODE_UNAUTHORIZED = 4
CODE_INVALID_REQUEST = 18
CODE_WRONG_SEQUENCE = 32

ARITY = {
    "set-ip-address": 1,
    "set-version": 0,
    "set-node-keys": 3,
    "mimir": 2,
    "pause-chain": 0,
    "resume-chain": 0,
}


@dataclass(frozen=True)
class Refusal:
    code: int
    raw_log: str


def cli_refusal(argv: list[str]) -> Refusal | None:
    """What the CLI itself rejects, before anything is broadcast."""
    if not argv:
        return Refusal(CODE_CLI_ERROR, 'missing command for "mayanode tx mayachain"')
    command, args = argv[0], argv[1:]
    if command not in ARITY:
        return Refusal(CODE_CLI_ERROR, f'unknown command "{command}" for "mayanode tx mayachain"')
    if len(args) != ARITY[command]:
        return Refusal(CODE_CLI_ERROR, f"accepts {ARITY[command]} arg(s), received {len(args)}")
    if command == "mimir":
        try:
            int(args[1])
        except ValueError:
            return Refusal(CODE_CLI_ERROR, f"invalid mimir value {args[1]!r}: not an integer")
    return None


def chain_refusal(
    argv: list[str], signer: NodeAccount | None, signer_address: str, paused_this_churn: bool
) -> Refusal | None:
    """What the chain rejects at CheckTx."""
    if signer is None:
        return Refusal(CODE_UNAUTHORIZED, f"unauthorized: {signer_address} is not a node account")
    command, args = argv[0], argv[1:]
    if command == "set-ip-address" and not is_valid_ip(args[0]):
        return Refusal(CODE_INVALID_REQUEST, f"invalid request: invalid IP address: {args[0]}")
    if command == "set-node-keys":
        return _node_keys_refusal(args, signer)
    if command in ("pause-chain", "resume-chain") and signer.status != ACTIVE:
        return Refusal(CODE_UNAUTHORIZED, f"unauthorized: {signer_address} is not an active node")
    if command == "pause-chain" and paused_this_churn:
        return Refusal(CODE_UNAUTHORIZED, "unauthorized: node has already paused the chain this churn")
    return None


def _node_keys_refusal(args: list[str], signer: NodeAccount) -> Refusal | None:
    if signer.has_pub_key_set:
        return Refusal(CODE_UNAUTHORIZED, "unauthorized: node account already has pubkey set assigned")
    secp, ed, cons = args
    parsers: list[tuple[str, Callable[[str], bytes]]] = [
        (secp, chainkeys.secp256k1_pubkey_bytes),
        (ed, lambda v: chainkeys.consensus_pubkey_bytes(v, prefix=chainkeys.ACCOUNT_PUBKEY_PREFIX)),
        (cons, chainkeys.consensus_pubkey_bytes),
    ]
    for value, parse in parsers:
        try:
            parse(value)
        except chainkeys.ChainKeyError as err:
            return Refusal(CODE_INVALID_REQUEST, f"invalid request: invalid pubkey {value!r}: {err}")
    return None


@dataclass
class ChainEffects:
    """Where applied txs write besides the node account itself."""

    node_mimirs: dict[tuple[str, str], int]
    node_pause_until: int
    paused_this_churn: set[str]


def apply_tx(
    argv: list[str], account: NodeAccount, process_version: str, height: int, effects: ChainEffects
) -> None:
    command, args = argv[0], argv[1:]
    if command == "set-ip-address":
        account.ip_address = args[0]
    elif command == "set-version":
        if parse_version(process_version) > parse_version(account.version):
            account.version = process_version
    elif command == "set-node-keys":
        account.secp256k1_pubkey, account.ed25519_pubkey, account.validator_cons_pub_key = args
        if account.status == "Whitelisted":
            account.status, account.status_since = "Standby", height
    elif command == "mimir":
        key, value = args[0].upper(), int(args[1])
        if value == -1:
            effects.node_mimirs.pop((account.node_address, key), None)
        else:
            effects.node_mimirs[(account.node_address, key)] = value
    elif command == "pause-chain":
        effects.node_pause_until = max(effects.node_pause_until, height + PAUSE_CHAIN_BLOCKS)
        effects.paused_this_churn.add(account.node_address)
    elif command == "resume-chain":
        effects.node_pause_until = min(effects.node_pause_until, height)
