import base64
import hashlib
import json
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mayanode_operator import chainkeys
from mayanode_operator.sandbox import identity as ident
from mayanode_operator.sandbox.identity import NodeIdentity


@dataclass
class FakeVault:
    pub_key: str
    membership: list[str]


@pytest.fixture(scope="module")
def node_a() -> NodeIdentity:
    return NodeIdentity.from_seed("node-a")


def _entries(identity: NodeIdentity) -> dict[str, ident.HomeEntry]:
    return {e.path: e for e in ident.mayanode_home_entries(identity)}


def test_same_seed_same_identity_other_seed_other_keys(node_a):
    again = NodeIdentity.from_seed("node-a")
    other = NodeIdentity.from_seed("node-b")
    assert again == node_a
    key_file = "config/priv_validator_key.json"
    assert _entries(again)[key_file].content == _entries(node_a)[key_file].content
    for attribute in ("mnemonic", "password", "node_address", "secp256k1_pubkey", "ed25519_pubkey", "consensus_pubkey"):
        assert getattr(other, attribute) != getattr(node_a, attribute)


def test_mnemonic_is_24_words_from_the_word_list(node_a):
    words = node_a.mnemonic.split()
    assert len(words) == 24 and set(words) <= set(ident.WORDS)


def test_node_address_follows_the_sandbox_convention(node_a):
    expected = chainkeys.account_address(hashlib.sha256(node_a.mnemonic.encode()).digest()[:20], "mocknet")
    assert node_a.node_address == expected
    assert chainkeys.is_valid_node_address(node_a.node_address, "mocknet")
    assert ident.node_address_from_mnemonic(node_a.mnemonic) == node_a.node_address


def test_stagenet_identity_uses_smaya():
    staged = NodeIdentity.from_seed("node-a", network="stagenet")
    assert staged.node_address.startswith("smaya1")
    assert chainkeys.is_valid_node_address(staged.node_address, "stagenet")


def test_pubkeys_are_real_amino_encoded_keys(node_a):
    assert node_a.secp256k1_pubkey.startswith("mayapub1addwnpep")
    assert len(chainkeys.secp256k1_pubkey_bytes(node_a.secp256k1_pubkey)) == 33
    assert node_a.ed25519_pubkey.startswith("mayapub1zcjduepq")
    assert ident.secp256k1_pubkey_from_mnemonic(node_a.mnemonic) == node_a.secp256k1_pubkey
    assert ident.ed25519_pubkey_from_mnemonic(node_a.mnemonic) == node_a.ed25519_pubkey


def test_public_facts_match_chainkeys(node_a):
    facts = ident.public_facts(node_a)
    assert facts.consensus_pubkey_bech32 == chainkeys.consensus_pubkey_bech32(node_a.consensus_pubkey)
    assert facts.consensus_pubkey_bech32.startswith("mayacpub1zcjduepq")
    assert facts.validator_address == chainkeys.validator_address(node_a.consensus_pubkey)
    assert facts.consensus_pubkey_base64 == base64.b64encode(node_a.consensus_pubkey).decode()
    assert facts.node_address == node_a.node_address


def test_secrets_never_show_in_repr(node_a):
    text = repr(node_a) + str(node_a) + repr(ident.public_facts(node_a))
    secrets = [node_a.mnemonic, node_a.password, node_a.mnemonic.split()[0] + " " + node_a.mnemonic.split()[1],
               base64.b64encode(node_a.consensus_private_key).decode(), node_a.consensus_private_key[:32].hex()]
    for secret in secrets:
        assert secret not in text


def test_priv_validator_key_json_is_cometbft_format_and_parses(node_a):
    raw = _entries(node_a)["config/priv_validator_key.json"].content
    doc = json.loads(raw)
    assert set(doc) == {"address", "pub_key", "priv_key"}
    assert doc["pub_key"]["type"] == "tendermint/PubKeyEd25519"
    assert doc["priv_key"]["type"] == "tendermint/PrivKeyEd25519"
    key = chainkeys.parse_priv_validator_key(raw)
    assert key.address == node_a.validator_address
    assert key.private_key_matches_pubkey()


def test_node_key_json_is_a_real_ed25519_key(node_a):
    doc = json.loads(_entries(node_a)["config/node_key.json"].content)
    assert doc["priv_key"]["type"] == "tendermint/PrivKeyEd25519"
    value = base64.b64decode(doc["priv_key"]["value"])
    assert Ed25519PrivateKey.from_private_bytes(value[:32]).public_key().public_bytes_raw() == value[32:]
    assert len(ident.p2p_node_id(node_a)) == 40


def test_fresh_sign_state_is_height_zero(node_a):
    raw = _entries(node_a)["data/priv_validator_state.json"].content
    assert json.loads(raw) == {"height": "0", "round": 0, "step": 0}
    at_height = {e.path: e for e in ident.mayanode_home_entries(node_a, signed_height=77)}
    assert chainkeys.parse_priv_validator_state(at_height["data/priv_validator_state.json"].content).height == 77


def test_mayanode_home_holds_the_identity_files_and_others(node_a):
    entries = _entries(node_a)
    identity_files = {p for p, e in entries.items() if e.identity and not e.is_dir}
    address_file = f"keyring-file/{node_a.address_bytes.hex()}.address"
    assert identity_files == {
        "MAYAChain-ED25519", "keyring-file/keyhash", "keyring-file/mayachain.info", address_file,
        "config/node_key.json", "config/priv_validator_key.json", "data/priv_validator_state.json",
    }
    others = {p for p, e in entries.items() if not e.identity and not e.is_dir}
    assert {"config/config.toml", "config/genesis.json", "data/application.db/CURRENT"} <= others
    assert json.loads(entries["config/genesis.json"].content)["chain_id"] == "mayachain-mocknet"


def test_home_modes_and_owners(node_a):
    entries = ident.mayanode_home_entries(node_a)
    paths = [e.path for e in entries]
    for entry in entries:
        assert (entry.uid, entry.gid) == (0, 0)
        if entry.is_dir:
            assert entry.mode == 0o700
        elif entry.identity:
            assert entry.mode == 0o600
        parent = entry.path.rpartition("/")[0]
        assert not parent or paths.index(parent) < paths.index(entry.path)   # parents first


def test_key_share_file_names_vault_and_member(node_a):
    node_b = NodeIdentity.from_seed("node-b")
    vault = FakeVault("mayapub1addwnpepvault", [node_a.secp256k1_pubkey, node_b.secp256k1_pubkey])
    name, content = ident.key_share_file(node_a, vault)
    assert name == "localstate-mayapub1addwnpepvault.json"
    doc = json.loads(content)
    assert doc["PubKey"] == vault.pub_key
    assert doc["LocalPartyKey"] == node_a.secp256k1_pubkey
    assert doc["ParticipantKeys"] == vault.membership
    assert ident.key_share_file(node_b, vault)[1] != content
    assert ident.key_share_file(node_a, FakeVault("mayapub1other", vault.membership))[1] != content


def test_non_member_has_no_key_share(node_a):
    with pytest.raises(ValueError, match="not a member"):
        ident.key_share_file(node_a, FakeVault("mayapub1x", ["mayapub1someoneelse"]))


def test_bifrost_home_holds_shares_of_member_vaults_only(node_a):
    member = FakeVault("mayapub1new", [node_a.secp256k1_pubkey])
    stranger = FakeVault("mayapub1foreign", ["mayapub1someoneelse"])
    entries = {e.path: e for e in ident.bifrost_home_entries(node_a, [member, stranger])}
    assert "localstate-mayapub1new.json" in entries
    assert "localstate-mayapub1foreign.json" not in entries
    assert entries["localstate-mayapub1new.json"].mode == 0o600
    assert entries["localstate-mayapub1new.json"].identity
    assert not entries["observer/CURRENT"].identity
