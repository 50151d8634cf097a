"""Pure helpers for MAYAChain keys and addresses: bech32, consensus keys, CometBFT key files.

No I/O. Everything here takes bytes or strings and returns values, so planners and the backup
checker can verify key material without touching a cluster.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import bech32

ACCOUNT_PREFIX = "maya"
STAGENET_ACCOUNT_PREFIX = "smaya"
ACCOUNT_PUBKEY_PREFIX = "mayapub"
CONSENSUS_PUBKEY_PREFIX = "mayacpub"
VALOPER_PREFIX = "mayavaloper"

MOCKNET_BUILD_ACCOUNT_PREFIX = "tmaya"

# The prefix addresses are written with on each network. The sandbox's mocknet uses mainnet
# prefixes; a mayanode binary built for mocknet/testnet uses `tmaya`, so both are accepted there.
NETWORK_ACCOUNT_PREFIXES = {
    "mainnet": ACCOUNT_PREFIX,
    "mocknet": ACCOUNT_PREFIX,
    "stagenet": STAGENET_ACCOUNT_PREFIX,
}
ACCEPTED_ACCOUNT_PREFIXES = {
    "mainnet": (ACCOUNT_PREFIX,),
    "mocknet": (ACCOUNT_PREFIX, MOCKNET_BUILD_ACCOUNT_PREFIX),
    "stagenet": (STAGENET_ACCOUNT_PREFIX,),
}

# Amino "prefix bytes" cosmos puts before a public key before bech32-encoding it. They are why
# every consensus pubkey starts "mayacpub1zcjduepq" and every account pubkey "mayapub1addwnpep".
AMINO_ED25519_PUBKEY_PREFIX = bytes.fromhex("1624de6420")
AMINO_SECP256K1_PUBKEY_PREFIX = bytes.fromhex("eb5ae98721")

ED25519_PUBKEY_LEN = 32
SECP256K1_COMPRESSED_PUBKEY_LEN = 33
ADDRESS_LEN = 20

COMETBFT_PUBKEY_TYPE = "tendermint/PubKeyEd25519"
COMETBFT_PRIVKEY_TYPE = "tendermint/PrivKeyEd25519"


class ChainKeyError(ValueError):
    """A key, address or key file that does not have the expected form."""


# --- bech32 -----------------------------------------------------------------------------------

def bech32_encode(prefix: str, data: bytes) -> str:
    five_bit = bech32.convertbits(data, 8, 5, True)
    if five_bit is None:  # pragma: no cover - convertbits only fails on out-of-range input
        raise ChainKeyError("cannot convert data to 5-bit groups")
    return bech32.bech32_encode(prefix, five_bit)


def bech32_decode(value: str, expected_prefix: str | None = None) -> tuple[str, bytes]:
    """Returns (prefix, data). Raises ChainKeyError on a bad checksum, mixed case or wrong prefix."""
    if not isinstance(value, str):
        raise ChainKeyError("bech32 value must be a string")
    prefix, five_bit = bech32.bech32_decode(value)
    if prefix is None or five_bit is None:
        raise ChainKeyError(f"not a valid bech32 string: {value!r}")
    data = bech32.convertbits(five_bit, 5, 8, False)
    if data is None:
        raise ChainKeyError(f"bech32 data has invalid padding: {value!r}")
    if expected_prefix is not None and prefix != expected_prefix:
        raise ChainKeyError(f"expected prefix {expected_prefix!r}, got {prefix!r}")
    return prefix, bytes(data)


def address_prefix(network: str) -> str:
    try:
        return NETWORK_ACCOUNT_PREFIXES[network]
    except KeyError:
        raise ChainKeyError(f"unknown network {network!r}") from None


def account_address(address_bytes: bytes, network: str = "mainnet") -> str:
    """The `maya1…`/`smaya1…` form of a 20-byte account address."""
    if len(address_bytes) != ADDRESS_LEN:
        raise ChainKeyError(f"an account address is {ADDRESS_LEN} bytes, got {len(address_bytes)}")
    return bech32_encode(address_prefix(network), address_bytes)


def valoper_address(address_bytes: bytes) -> str:
    if len(address_bytes) != ADDRESS_LEN:
        raise ChainKeyError(f"a validator operator address is {ADDRESS_LEN} bytes")
    return bech32_encode(VALOPER_PREFIX, address_bytes)


def is_valid_node_address(value: str, network: str) -> bool:
    """True for a well-formed node address of that network (`maya1…`, stagenet `smaya1…`,
    mocknet `maya1…` or `tmaya1…`)."""
    try:
        prefix, data = bech32_decode(value)
    except ChainKeyError:
        return False
    return prefix in ACCEPTED_ACCOUNT_PREFIXES.get(network, ()) and len(data) == ADDRESS_LEN


# --- public keys ------------------------------------------------------------------------------

def consensus_pubkey_bech32(pubkey_bytes: bytes, prefix: str = CONSENSUS_PUBKEY_PREFIX) -> str:
    """`mayacpub1zcjduepq…`: an ed25519 consensus pubkey as `validator_cons_pub_key` shows it."""
    if len(pubkey_bytes) != ED25519_PUBKEY_LEN:
        raise ChainKeyError(f"an ed25519 pubkey is {ED25519_PUBKEY_LEN} bytes, got {len(pubkey_bytes)}")
    return bech32_encode(prefix, AMINO_ED25519_PUBKEY_PREFIX + pubkey_bytes)


def consensus_pubkey_bytes(value: str, prefix: str = CONSENSUS_PUBKEY_PREFIX) -> bytes:
    """The raw 32 bytes of a `mayacpub1…` consensus pubkey (or another prefix if given)."""
    _, data = bech32_decode(value, expected_prefix=prefix)
    return _strip_amino(data, AMINO_ED25519_PUBKEY_PREFIX, ED25519_PUBKEY_LEN, "ed25519")


def ed25519_account_pubkey_bech32(pubkey_bytes: bytes) -> str:
    """`mayapub1zcjduepq…`: the ed25519 entry of a node's `pub_key_set`."""
    return consensus_pubkey_bech32(pubkey_bytes, prefix=ACCOUNT_PUBKEY_PREFIX)


def secp256k1_pubkey_bech32(compressed_pubkey: bytes, prefix: str = ACCOUNT_PUBKEY_PREFIX) -> str:
    """`mayapub1addwnpep…`: a compressed secp256k1 pubkey (node keys, vault pubkeys)."""
    if len(compressed_pubkey) != SECP256K1_COMPRESSED_PUBKEY_LEN or compressed_pubkey[0] not in (2, 3):
        raise ChainKeyError("a compressed secp256k1 pubkey is 33 bytes starting 02 or 03")
    return bech32_encode(prefix, AMINO_SECP256K1_PUBKEY_PREFIX + compressed_pubkey)


def secp256k1_pubkey_bytes(value: str, prefix: str = ACCOUNT_PUBKEY_PREFIX) -> bytes:
    _, data = bech32_decode(value, expected_prefix=prefix)
    return _strip_amino(data, AMINO_SECP256K1_PUBKEY_PREFIX, SECP256K1_COMPRESSED_PUBKEY_LEN, "secp256k1")


def _strip_amino(data: bytes, amino_prefix: bytes, key_len: int, kind: str) -> bytes:
    if not data.startswith(amino_prefix) or len(data) != len(amino_prefix) + key_len:
        raise ChainKeyError(f"not an amino-encoded {kind} pubkey")
    return data[len(amino_prefix):]


def validator_address(pubkey_bytes: bytes) -> str:
    """CometBFT validator address: upper-case hex of sha256(pubkey)[:20]."""
    if len(pubkey_bytes) != ED25519_PUBKEY_LEN:
        raise ChainKeyError(f"an ed25519 pubkey is {ED25519_PUBKEY_LEN} bytes, got {len(pubkey_bytes)}")
    return hashlib.sha256(pubkey_bytes).digest()[:ADDRESS_LEN].hex().upper()


def validator_address_from_base64(pubkey_b64: str) -> str:
    return validator_address(_b64decode(pubkey_b64, "consensus pubkey"))


# --- CometBFT key files -----------------------------------------------------------------------

@dataclass(frozen=True)
class ConsensusKey:
    """The consensus signing key of `priv_validator_key.json`. The private half never prints."""

    address: str
    pubkey: bytes
    private_key: bytes = field(repr=False, compare=False)

    @property
    def pubkey_base64(self) -> str:
        return base64.b64encode(self.pubkey).decode()

    @property
    def pubkey_bech32(self) -> str:
        return consensus_pubkey_bech32(self.pubkey)

    def private_key_matches_pubkey(self) -> bool:
        """A restored file whose private half does not produce its pubkey cannot sign."""
        seed = self.private_key[:32]
        if len(seed) != 32:
            return False
        # Here, not at the top: cryptography costs ~6 MiB of operator memory; only restores and verification check keys.
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        derived = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
        return derived == self.pubkey


@dataclass(frozen=True, order=True)
class SignState:
    """`priv_validator_state.json`: the last (height, round, step) signed. Orders as that tuple."""

    height: int
    round: int
    step: int


def parse_priv_validator_key(json_bytes: bytes) -> ConsensusKey:
    doc = _load_json_object(json_bytes, "priv_validator_key.json")
    pub = _typed_key(doc, "pub_key", COMETBFT_PUBKEY_TYPE)
    priv = _typed_key(doc, "priv_key", COMETBFT_PRIVKEY_TYPE)
    pubkey = _b64decode(pub, "pub_key.value")
    private_key = _b64decode(priv, "priv_key.value")
    if len(pubkey) != ED25519_PUBKEY_LEN:
        raise ChainKeyError("pub_key.value is not a 32-byte ed25519 key")
    if len(private_key) != 64:
        raise ChainKeyError("priv_key.value is not a 64-byte ed25519 key")
    address = doc.get("address")
    expected = validator_address(pubkey)
    if not isinstance(address, str) or address.upper() != expected:
        raise ChainKeyError("address does not match pub_key")
    return ConsensusKey(address=expected, pubkey=pubkey, private_key=private_key)


def parse_priv_validator_state(json_bytes: bytes) -> SignState:
    doc = _load_json_object(json_bytes, "priv_validator_state.json")
    # CometBFT writes height (int64) as a string and round/step as numbers; accept either.
    return SignState(
        height=_non_negative_int(doc, "height"),
        round=_non_negative_int(doc, "round"),
        step=_non_negative_int(doc, "step"),
    )


def render_priv_validator_state(state: SignState) -> bytes:
    return json.dumps(
        {"height": str(state.height), "round": state.round, "step": state.step}, indent=2
    ).encode()


def _load_json_object(json_bytes: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(json_bytes)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise ChainKeyError(f"{what} is not valid JSON") from err
    if not isinstance(doc, dict):
        raise ChainKeyError(f"{what} is not a JSON object")
    return doc


def _typed_key(doc: dict[str, Any], name: str, expected_type: str) -> str:
    entry = doc.get(name)
    if not isinstance(entry, dict) or entry.get("type") != expected_type:
        raise ChainKeyError(f"{name} is not of type {expected_type}")
    value = entry.get("value")
    if not isinstance(value, str):
        raise ChainKeyError(f"{name}.value is missing")
    return value


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ChainKeyError(f"{what} is not valid base64") from err


def _non_negative_int(doc: dict[str, Any], name: str) -> int:
    raw = doc.get(name)
    if isinstance(raw, bool):
        raise ChainKeyError(f"{name} is not an integer")
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        return int(raw)
    if isinstance(raw, int) and raw >= 0:
        return raw
    raise ChainKeyError(f"{name} is not a non-negative integer")
