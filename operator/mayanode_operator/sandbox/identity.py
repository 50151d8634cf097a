"""Realistic node identities for the sandbox: keys, mnemonic, password and the files a node holds.

Everything is derived deterministically from a seed string, so a test that asks for
`NodeIdentity.from_seed("node-a")` gets the same keys every run.

Sandbox conventions (a real node derives these with BIP39/BIP44; this is a test double):
- mnemonic: 24 words picked from `WORDS` by sha512("mayanode-sandbox/mnemonic/" + seed). It is not a
  valid BIP39 phrase.
- node address: bech32 `maya` (stagenet `smaya`) of sha256(mnemonic)[:20].
- secp256k1 node pubkey: private scalar = sha256("mayanode-sandbox/secp256k1/" + mnemonic) mod (n-1) + 1;
  shown as the amino-encoded `mayapub1addwnpep…`.
- ed25519 node key (`MAYAChain-ED25519`, `pub_key_set.ed25519`): seed sha256("mayanode-sandbox/ed25519/" + mnemonic).
- consensus key and p2p node key: from the seed string, not the mnemonic (a real node generates
  them at `init`, which is why they must be backed up).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mayanode_operator import chainkeys

MAYANODE_HOME = "/root/.mayanode"
BIFROST_HOME = "/root/.mayanode"  # the bifrost PVC's subPath is mounted at the same place
SIGNER_NAME = "mayachain"  # node-launcher's default SIGNER_NAME

KEY_FILE_MODE = 0o600
DIR_MODE = 0o700
PLAIN_FILE_MODE = 0o644

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

WORDS = (
    "acid", "amber", "anchor", "arrow", "autumn", "badge", "bamboo", "beacon",
    "birch", "blossom", "breeze", "bronze", "cable", "canyon", "cedar", "cinder",
    "clover", "comet", "coral", "crystal", "dawn", "delta", "desert", "ember",
    "falcon", "fern", "glacier", "granite", "harbor", "hazel", "horizon", "island",
    "jasper", "juniper", "kernel", "lagoon", "lantern", "lotus", "maple", "meadow",
    "nectar", "nickel", "oasis", "orbit", "pebble", "pepper", "prairie", "quartz",
    "raven", "ripple", "saffron", "shadow", "summit", "thistle", "timber", "tundra",
    "umber", "valley", "velvet", "willow", "winter", "yarrow", "zephyr", "zinc",
)
MNEMONIC_WORDS = 24


def _digest(label: str, material: str, algorithm: str = "sha256") -> bytes:
    return hashlib.new(algorithm, f"mayanode-sandbox/{label}/{material}".encode()).digest()


def _ed25519_private_bytes(seed32: bytes) -> bytes:
    """CometBFT stores an ed25519 private key as seed || pubkey (64 bytes)."""
    public = Ed25519PrivateKey.from_private_bytes(seed32).public_key().public_bytes_raw()
    return seed32 + public


# --- derivations from a mnemonic (usable on a user-supplied mnemonic Secret) -----------------

def mnemonic_from_seed(seed: str) -> str:
    entropy = _digest("mnemonic", seed, "sha512")
    return " ".join(WORDS[b % len(WORDS)] for b in entropy[:MNEMONIC_WORDS])


def node_address_from_mnemonic(mnemonic: str, network: str = "mocknet") -> str:
    address_bytes = hashlib.sha256(mnemonic.encode()).digest()[: chainkeys.ADDRESS_LEN]
    return chainkeys.account_address(address_bytes, network)


def secp256k1_pubkey_from_mnemonic(mnemonic: str) -> str:
    scalar = int.from_bytes(_digest("secp256k1", mnemonic), "big") % (SECP256K1_ORDER - 1) + 1
    public = ec.derive_private_key(scalar, ec.SECP256K1()).public_key()
    return chainkeys.secp256k1_pubkey_bech32(public.public_bytes(Encoding.X962, PublicFormat.CompressedPoint))


def ed25519_pubkey_from_mnemonic(mnemonic: str) -> str:
    public = _ed25519_private_bytes(_digest("ed25519", mnemonic))[32:]
    return chainkeys.ed25519_account_pubkey_bech32(public)


# --- the identity -----------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeIdentity:
    """Everything that makes one node itself. Secrets are excluded from repr/str."""

    seed: str
    network: str
    mnemonic: str = field(repr=False)
    password: str = field(repr=False)
    node_address: str
    secp256k1_pubkey: str          # mayapub1addwnpep…
    ed25519_pubkey: str            # mayapub1zcjduepq…
    consensus_pubkey: bytes        # raw 32 bytes
    consensus_private_key: bytes = field(repr=False)   # seed || pubkey, as CometBFT stores it
    node_private_key: bytes = field(repr=False)        # p2p key of node_key.json

    @classmethod
    def from_seed(cls, seed: str, network: str = "mocknet") -> NodeIdentity:
        mnemonic = mnemonic_from_seed(seed)
        consensus_private_key = _ed25519_private_bytes(_digest("consensus", seed))
        return cls(
            seed=seed,
            network=network,
            mnemonic=mnemonic,
            password=base64.urlsafe_b64encode(_digest("password", seed)).decode()[:20],
            node_address=node_address_from_mnemonic(mnemonic, network),
            secp256k1_pubkey=secp256k1_pubkey_from_mnemonic(mnemonic),
            ed25519_pubkey=ed25519_pubkey_from_mnemonic(mnemonic),
            consensus_pubkey=consensus_private_key[32:],
            consensus_private_key=consensus_private_key,
            node_private_key=_ed25519_private_bytes(_digest("p2p", seed)),
        )

    @property
    def consensus_pubkey_bech32(self) -> str:
        return chainkeys.consensus_pubkey_bech32(self.consensus_pubkey)

    @property
    def consensus_pubkey_base64(self) -> str:
        return base64.b64encode(self.consensus_pubkey).decode()

    @property
    def validator_address(self) -> str:
        return chainkeys.validator_address(self.consensus_pubkey)

    @property
    def address_bytes(self) -> bytes:
        return chainkeys.bech32_decode(self.node_address)[1]


@dataclass(frozen=True)
class PublicFacts:
    """What the chain and the node API show about an identity; safe to log."""

    node_address: str
    secp256k1_pubkey: str
    ed25519_pubkey: str
    consensus_pubkey_bech32: str
    consensus_pubkey_base64: str
    validator_address: str


def public_facts(identity: NodeIdentity) -> PublicFacts:
    return PublicFacts(
        node_address=identity.node_address,
        secp256k1_pubkey=identity.secp256k1_pubkey,
        ed25519_pubkey=identity.ed25519_pubkey,
        consensus_pubkey_bech32=identity.consensus_pubkey_bech32,
        consensus_pubkey_base64=identity.consensus_pubkey_base64,
        validator_address=identity.validator_address,
    )


# --- files ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HomeEntry:
    """One file or directory of a home, `path` relative to that home; `content is None` = directory.

    `identity` marks what a backup must hold (DOMAIN.md "The node's identity")."""

    path: str
    content: bytes | None = field(repr=False)
    mode: int
    identity: bool = False
    uid: int = 0
    gid: int = 0

    @property
    def is_dir(self) -> bool:
        return self.content is None


MAYANODE_IDENTITY_PATHS = (
    "MAYAChain-ED25519",
    "keyring-file/",
    "config/node_key.json",
    "config/priv_validator_key.json",
    "data/priv_validator_state.json",
)


def priv_validator_key_json(identity: NodeIdentity) -> bytes:
    doc = {
        "address": identity.validator_address,
        "pub_key": {"type": chainkeys.COMETBFT_PUBKEY_TYPE, "value": identity.consensus_pubkey_base64},
        "priv_key": {
            "type": chainkeys.COMETBFT_PRIVKEY_TYPE,
            "value": base64.b64encode(identity.consensus_private_key).decode(),
        },
    }
    return json.dumps(doc, indent=2).encode()


def node_key_json(identity: NodeIdentity) -> bytes:
    value = base64.b64encode(identity.node_private_key).decode()
    return json.dumps({"priv_key": {"type": chainkeys.COMETBFT_PRIVKEY_TYPE, "value": value}}).encode()


def priv_validator_state_json(height: int = 0, round_: int = 0, step: int = 0) -> bytes:
    return chainkeys.render_priv_validator_state(chainkeys.SignState(height, round_, step))


def p2p_node_id(identity: NodeIdentity) -> str:
    """CometBFT node ID: lower-case hex of sha256(p2p pubkey)[:20]."""
    return hashlib.sha256(identity.node_private_key[32:]).digest()[:20].hex()


def _armored_ed25519_file(identity: NodeIdentity) -> bytes:
    # Looks like a cosmos armored key export; the body is opaque (not real encryption).
    body = base64.b64encode(_digest("ed25519-armor", identity.mnemonic, "sha512") * 2).decode()
    salt = _digest("ed25519-salt", identity.seed)[:16].hex().upper()
    return (
        "-----BEGIN TENDERMINT PRIVATE KEY-----\n"
        f"kdf: bcrypt\nsalt: {salt}\ntype: ed25519\n\n{body}\n"
        "-----END TENDERMINT PRIVATE KEY-----\n"
    ).encode()


def _keyring_record(identity: NodeIdentity, label: str) -> bytes:
    # keyring-file entries are JWE tokens encrypted with the keyring password; opaque here.
    header = base64.urlsafe_b64encode(
        json.dumps({"alg": "PBES2-HS256+A128KW", "enc": "A256GCM", "p2c": 8192}).encode()
    ).rstrip(b"=")
    parts = [
        base64.urlsafe_b64encode(_digest(f"keyring/{label}/{i}", identity.mnemonic, "sha512")).rstrip(b"=")
        for i in range(4)
    ]
    return b".".join([header, *parts])


def _config_toml(identity: NodeIdentity) -> bytes:
    return (
        f'moniker = "{identity.seed}"\n'
        'proxy_app = "tcp://127.0.0.1:26658"\n\n'
        '[rpc]\nladdr = "tcp://0.0.0.0:27147"\n\n'
        '[p2p]\nladdr = "tcp://0.0.0.0:27146"\nexternal_address = ""\n'
    ).encode()


def _genesis_json(chain_id: str) -> bytes:
    doc = {
        "genesis_time": "2024-01-01T00:00:00Z",
        "chain_id": chain_id,
        "initial_height": "1",
        "consensus_params": {"block": {"max_bytes": "22020096", "max_gas": "-1"}},
        "app_state": {},
    }
    return json.dumps(doc, indent=2).encode()


def mayanode_home_entries(
    identity: NodeIdentity, *, chain_id: str = "mayachain-mocknet", signed_height: int = 0
) -> list[HomeEntry]:
    """The mayanode home (`/root/.mayanode`) as a freshly initialised node holds it, parents first."""
    address_file = f"keyring-file/{identity.address_bytes.hex()}.address"
    key_files = [
        ("MAYAChain-ED25519", _armored_ed25519_file(identity)),
        ("keyring-file/keyhash", b"$2a$10$" + base64.b64encode(_digest("keyhash", identity.password))[:53]),
        (f"keyring-file/{SIGNER_NAME}.info", _keyring_record(identity, "info")),
        (address_file, _keyring_record(identity, "address")),
        ("config/node_key.json", node_key_json(identity)),
        ("config/priv_validator_key.json", priv_validator_key_json(identity)),
        ("data/priv_validator_state.json", priv_validator_state_json(signed_height)),
    ]
    plain_files = [
        ("config/config.toml", _config_toml(identity)),
        ("config/app.toml", b'minimum-gas-prices = ""\npruning = "default"\n'),
        ("config/client.toml", f'chain-id = "{chain_id}"\nkeyring-backend = "file"\n'.encode()),
        ("config/genesis.json", _genesis_json(chain_id)),
        ("config/addrbook.json", b'{"key": "", "addrs": []}'),
        ("data/application.db/CURRENT", b"MANIFEST-000001\n"),
        ("data/application.db/000001.log", _digest("appdb", identity.seed, "sha512") * 64),
        ("data/blockstore.db/CURRENT", b"MANIFEST-000001\n"),
        ("data/state.db/CURRENT", b"MANIFEST-000001\n"),
        ("data/tx_index.db/CURRENT", b"MANIFEST-000001\n"),
    ]
    dirs = [
        HomeEntry("config", None, DIR_MODE),
        HomeEntry("data", None, DIR_MODE),
        HomeEntry("keyring-file", None, DIR_MODE, identity=True),
        HomeEntry("data/application.db", None, DIR_MODE),
        HomeEntry("data/blockstore.db", None, DIR_MODE),
        HomeEntry("data/state.db", None, DIR_MODE),
        HomeEntry("data/tx_index.db", None, DIR_MODE),
    ]
    return (
        dirs
        + [HomeEntry(path, content, KEY_FILE_MODE, identity=True) for path, content in key_files]
        + [HomeEntry(path, content, PLAIN_FILE_MODE) for path, content in plain_files]
    )


class VaultLike(Protocol):
    pub_key: str
    membership: Sequence[str]


def is_vault_member(identity: NodeIdentity, vault: VaultLike) -> bool:
    return identity.secp256k1_pubkey in vault.membership


def key_share_file_name(vault_pub_key: str) -> str:
    return f"localstate-{vault_pub_key}.json"


def key_share_file(identity: NodeIdentity, vault: VaultLike) -> tuple[str, bytes]:
    """The TSS key share bifrost writes after a keygen: `localstate-<vault pubkey>.json`.

    Only members of the vault hold a share; asking for a non-member's share is a bug."""
    if not is_vault_member(identity, vault):
        raise ValueError(f"{identity.node_address} is not a member of vault {vault.pub_key}")
    share = _digest("tss-share", f"{identity.mnemonic}/{vault.pub_key}", "sha512")
    doc = {
        "PubKey": vault.pub_key,
        "LocalData": {
            "Xi": str(int.from_bytes(share[:32], "big")),
            "ShareID": str(int.from_bytes(share[32:], "big")),
        },
        "ParticipantKeys": list(vault.membership),
        "LocalPartyKey": identity.secp256k1_pubkey,
        "NodeAddress": identity.node_address,
    }
    return key_share_file_name(vault.pub_key), json.dumps(doc, indent=2).encode()


def bifrost_home_entries(identity: NodeIdentity, vaults: Sequence[VaultLike] = ()) -> list[HomeEntry]:
    """The bifrost home: the node key and signer keyring it shares with mayanode, the key shares of
    the vaults this node is a member of, and an observer database a backup must not pick up."""
    shares = [key_share_file(identity, vault) for vault in vaults if is_vault_member(identity, vault)]
    return [
        HomeEntry("keyring-file", None, DIR_MODE, identity=True),
        HomeEntry("observer", None, DIR_MODE),
        HomeEntry("MAYAChain-ED25519", _armored_ed25519_file(identity), KEY_FILE_MODE, identity=True),
        HomeEntry(f"keyring-file/{SIGNER_NAME}.info", _keyring_record(identity, "info"), KEY_FILE_MODE, identity=True),
        *(HomeEntry(name, content, KEY_FILE_MODE, identity=True) for name, content in shares),
        HomeEntry("observer/CURRENT", b"MANIFEST-000001\n", PLAIN_FILE_MODE),
        HomeEntry("observer/000001.log", _digest("observer", identity.seed, "sha512") * 16, PLAIN_FILE_MODE),
    ]
