"""JSON shapes of the node API exactly as mayanode and CometBFT serve them (see DOMAIN.md).

Which numbers are strings: `bond` and every CometBFT height/voting power are strings; the other
node-account numbers (heights, slash points, preflight code) are JSON integers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime

import bech32

from .model import Block, ExternalChain, NodeAccount, Vault
from .rules import CHAINS, NetworkVersions, Preflight, inbound_flags

COMETBFT_VERSION = "0.37.4"
EMPTY_HASH = ""


def rfc3339(moment: datetime) -> str:
    """CometBFT's RFC3339Nano form: 2024-05-01T12:00:00.123456000Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


# --- REST -------------------------------------------------------------------------------------

def cosmos_error(code: int, message: str) -> dict:
    return {"code": code, "message": message, "details": []}


def node_account(account: NodeAccount, preflight: Preflight) -> dict:
    return {
        "node_address": account.node_address,
        "status": account.status,
        "pub_key_set": {"secp256k1": account.secp256k1_pubkey, "ed25519": account.ed25519_pubkey},
        "validator_cons_pub_key": account.validator_cons_pub_key,
        "bond": str(account.bond),
        "active_block_height": account.active_block_height,
        "bond_address": account.bond_address,
        "status_since": account.status_since,
        "signer_membership": list(account.signer_membership),
        "requested_to_leave": account.requested_to_leave,
        "forced_to_leave": account.forced_to_leave,
        "leave_height": account.leave_height,
        "ip_address": account.ip_address,
        "version": account.version,
        "slash_points": account.slash_points,
        "jail": {
            "node_address": account.jail.node_address,
            "release_height": account.jail.release_height,
            "reason": account.jail.reason,
        },
        "preflight_status": {"status": preflight.status, "reason": preflight.reason, "code": preflight.code},
    }


def version(versions: NetworkVersions | None, querier: str) -> dict:
    # With no Active node there is no network version; a lone node reports its own.
    current = versions.current if versions else querier
    next_ = versions.next if versions else querier
    return {"current": current, "next": next_, "querier": querier}


def mimir_nodes_all(votes: Mapping[tuple[str, str], int]) -> dict:
    ordered = sorted(votes.items(), key=lambda item: (item[0][1], item[0][0]))
    return {"mimirs": [{"key": key, "value": value, "signer": signer} for (signer, key), value in ordered]}


def lastblock(chains: Iterable[ExternalChain], maya_height: int) -> list[dict]:
    return [
        {
            "chain": c.chain,
            "last_observed_in": c.last_observed_in,
            "last_signed_out": min(c.last_signed_out, maya_height),
            "mayachain": maya_height,
        }
        for c in chains
    ]


CHAIN_FEES = {
    # chain: (gas_rate, gas_rate_units, outbound_tx_size, outbound_fee, dust_threshold)
    "BTC": ("25", "satsperbyte", "1000", "37500", "10000"),
    "ETH": ("3", "gwei", "80000", "240000", "0"),
    "DASH": ("5", "satsperbyte", "1000", "7500", "10000"),
    "KUJI": ("3000000", "ukuji", "1", "3000000", "0"),
    "THOR": ("2000000", "tor", "1", "2000000", "0"),
    "ARB": ("1", "centigwei", "500000", "500000", "0"),
}
ROUTER_CHAINS = ("ETH", "ARB")


def inbound_addresses(vault: Vault | None, mimirs: Mapping[str, int], height: int) -> list[dict]:
    entries = []
    for chain in CHAINS:
        flags = inbound_flags(chain, mimirs, height)
        gas_rate, units, size, fee, dust = CHAIN_FEES[chain]
        entry = {
            "chain": chain,
            "pub_key": vault.pub_key if vault else "",
            "address": vault_chain_address(vault.pub_key, chain) if vault else "",
            "halted": flags.halted,
            "global_trading_paused": flags.global_trading_paused,
            "chain_trading_paused": flags.chain_trading_paused,
            "chain_lp_actions_paused": flags.chain_lp_actions_paused,
            "gas_rate": gas_rate,
            "gas_rate_units": units,
            "outbound_tx_size": size,
            "outbound_fee": fee,
            "dust_threshold": dust,
        }
        if chain in ROUTER_CHAINS:
            entry["router"] = "0x" + hashlib.sha256(f"router/{chain}".encode()).hexdigest()[:40]
        entries.append(entry)
    return entries


def vault(v: Vault) -> dict:
    return {
        "block_height": v.block_height,
        "pub_key": v.pub_key,
        "coins": [],
        "type": "AsgardVault",
        "status": v.status,
        "status_since": v.status_since,
        "membership": list(v.membership),
        "chains": ["MAYA", *CHAINS],
        "inbound_tx_count": 0,
        "outbound_tx_count": 0,
        "addresses": [{"chain": c, "address": vault_chain_address(v.pub_key, c)} for c in CHAINS],
    }


_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _base58check(version_byte: int, payload: bytes) -> str:
    raw = bytes([version_byte]) + payload
    raw += hashlib.sha256(hashlib.sha256(raw).digest()).digest()[:4]
    number, encoded = int.from_bytes(raw, "big"), ""
    while number:
        number, rem = divmod(number, 58)
        encoded = _BASE58[rem] + encoded
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + encoded


def vault_chain_address(pub_key: str, chain: str) -> str:
    """A deterministic, well-formed address of the vault on each chain (not a real derivation)."""
    h = hashlib.sha256(f"{chain}/{pub_key}".encode()).digest()[:20]
    if chain == "BTC":
        return bech32.encode("bc", 0, h) or ""
    if chain in ("ETH", "ARB"):
        return "0x" + h.hex()
    if chain == "DASH":
        return _base58check(0x4C, h)  # Dash P2PKH addresses start with X
    if chain == "KUJI":
        return bech32.bech32_encode("kujira", bech32.convertbits(h, 8, 5) or [])
    if chain == "THOR":
        return bech32.bech32_encode("thor", bech32.convertbits(h, 8, 5) or [])
    raise ValueError(f"unknown chain {chain}")


# --- RPC (CometBFT) ---------------------------------------------------------------------------

def rpc_result(result: dict) -> dict:
    return {"jsonrpc": "2.0", "id": -1, "result": result}


def rpc_error(code: int, message: str, data: str) -> dict:
    return {"jsonrpc": "2.0", "id": -1, "error": {"code": code, "message": message, "data": data}}


def _block_id(block: Block | None) -> dict:
    block_hash = block.hash if block else EMPTY_HASH
    return {"hash": block_hash, "parts": {"total": 1 if block else 0, "hash": block_hash}}


def rpc_status(
    *,
    chain_id: str,
    node_id: str,
    moniker: str,
    latest: Block,
    earliest: Block,
    catching_up: bool,
    validator_address: str,
    pubkey_b64: str,
    voting_power: int,
) -> dict:
    return rpc_result({
        "node_info": {
            "protocol_version": {"p2p": "8", "block": "11", "app": "0"},
            "id": node_id,
            "listen_addr": "tcp://0.0.0.0:27146",
            "network": chain_id,
            "version": COMETBFT_VERSION,
            "channels": "40202122233038606100",
            "moniker": moniker,
            "other": {"tx_index": "on", "rpc_address": "tcp://0.0.0.0:27147"},
        },
        "sync_info": {
            "latest_block_hash": latest.hash,
            "latest_app_hash": _app_hash(latest.height),
            "latest_block_height": str(latest.height),
            "latest_block_time": rfc3339(latest.time),
            "earliest_block_hash": earliest.hash,
            "earliest_app_hash": _app_hash(earliest.height),
            "earliest_block_height": str(earliest.height),
            "earliest_block_time": rfc3339(earliest.time),
            "catching_up": catching_up,
        },
        "validator_info": {
            "address": validator_address,
            "pub_key": {"type": "tendermint/PubKeyEd25519", "value": pubkey_b64},
            "voting_power": str(voting_power),
        },
    })


def _app_hash(height: int) -> str:
    return hashlib.sha256(f"app/{height}".encode()).hexdigest().upper()


def rpc_block(block: Block, previous: Block | None, chain_id: str) -> dict:
    """Block h carries in `last_commit` the signatures made for height h itself (see Mocknet docs)."""
    return rpc_result({
        "block_id": _block_id(block),
        "block": {
            "header": {
                "version": {"block": "11", "app": "0"},
                "chain_id": chain_id,
                "height": str(block.height),
                "time": rfc3339(block.time),
                "last_block_id": _block_id(previous),
                "last_commit_hash": hashlib.sha256(f"commit/{block.height}".encode()).hexdigest().upper(),
                "data_hash": hashlib.sha256("".join(block.txs).encode()).hexdigest().upper(),
                "validators_hash": EMPTY_HASH,
                "next_validators_hash": EMPTY_HASH,
                "consensus_hash": EMPTY_HASH,
                "app_hash": _app_hash(block.height),
                "last_results_hash": EMPTY_HASH,
                "evidence_hash": EMPTY_HASH,
                "proposer_address": block.proposer_address,
            },
            "data": {"txs": list(block.txs)},
            "evidence": {"evidence": list(block.evidence)},
            "last_commit": {
                "height": str(block.height),
                "round": 0,
                "block_id": _block_id(block),
                "signatures": [
                    {
                        "block_id_flag": s.block_id_flag,
                        "validator_address": s.validator_address,
                        "timestamp": s.timestamp,
                        "signature": s.signature,
                    }
                    for s in block.signatures
                ],
            },
        },
    })
