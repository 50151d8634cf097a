import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from mayanode_operator import chainkeys
from mayanode_operator.chainkeys import ChainKeyError, SignState

# Real keys from a THORChain node account (same amino encoding, other prefix) and a real MAYA node.
REAL_THOR_CONS = "thorcpub1zcjduepqaxvrp5xjrmg65e3a06sdkr5z7y67xdlzyetlx40p857gxw5g4tqs2xdavr"
REAL_THOR_CONS_HEX = "e99830d0d21ed1aa663d7ea0db0e82f135e337e22657f355e13d3c833a88aac1"
REAL_THOR_ED25519 = "thorpub1zcjduepqxg5dfc27l3tw2xrxtw63025gaxwup723y0t7p8w2ww37vqgvyw7q348pxp"
REAL_THOR_SECP = "thorpub1addwnpepq2gmjlu6y0whj8gtfnl3ccta66zx3u5p04wdh834e065x4z6qndzsulj5aa"
REAL_MAYA_NODE = "maya1gv85v0jvc0rsjunku3qxempax6kmrg5jqh8vmg"


def _key_file(seed: bytes = b"\x01" * 32, **overrides) -> bytes:
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    doc = {
        "address": hashlib.sha256(public).digest()[:20].hex().upper(),
        "pub_key": {"type": "tendermint/PubKeyEd25519", "value": base64.b64encode(public).decode()},
        "priv_key": {"type": "tendermint/PrivKeyEd25519", "value": base64.b64encode(seed + public).decode()},
    }
    doc.update(overrides)
    return json.dumps(doc).encode()


def test_real_consensus_pubkey_decodes_and_re_encodes_with_maya_prefix():
    raw = chainkeys.consensus_pubkey_bytes(REAL_THOR_CONS, prefix="thorcpub")
    assert raw.hex() == REAL_THOR_CONS_HEX
    assert chainkeys.consensus_pubkey_bech32(raw, prefix="thorcpub") == REAL_THOR_CONS
    maya = chainkeys.consensus_pubkey_bech32(raw)
    assert maya.startswith("mayacpub1zcjduepq")
    assert chainkeys.consensus_pubkey_bytes(maya) == raw


def test_real_account_pubkeys_decode():
    assert len(chainkeys.consensus_pubkey_bytes(REAL_THOR_ED25519, prefix="thorpub")) == 32
    secp = chainkeys.secp256k1_pubkey_bytes(REAL_THOR_SECP, prefix="thorpub")
    assert len(secp) == 33 and secp[0] in (2, 3)
    assert chainkeys.secp256k1_pubkey_bech32(secp).startswith("mayapub1addwnpep")


@pytest.mark.parametrize(
    ("value", "network", "valid"),
    [
        (REAL_MAYA_NODE, "mainnet", True),
        (REAL_MAYA_NODE, "mocknet", True),
        (REAL_MAYA_NODE, "stagenet", False),
        (chainkeys.account_address(b"\x07" * 20, "stagenet"), "stagenet", True),
        (chainkeys.account_address(b"\x07" * 20, "stagenet"), "mainnet", False),
        (REAL_MAYA_NODE.upper(), "mainnet", True),          # bech32 allows all upper case
        (REAL_MAYA_NODE[:-1] + "q", "mainnet", False),      # checksum
        ("maya19h62vypuelrj0pv4jhl26wf79yr5zhxcmd5w85", "mainnet", False),  # doc example, bad checksum
        (chainkeys.bech32_encode("maya", b"\x07" * 32), "mainnet", False),  # 32 bytes is not an address
        (chainkeys.bech32_encode("mayavaloper", b"\x07" * 20), "mainnet", False),
        ("", "mainnet", False),
        ("maya1", "mainnet", False),
        (REAL_MAYA_NODE, "nosuchnet", False),
        (chainkeys.account_address(b"\x07" * 20, "mainnet").replace("maya1", "tmaya1"), "mocknet", False),
        (chainkeys.bech32_encode("tmaya", b"\x07" * 20), "mocknet", True),     # a mocknet build's prefix
        (chainkeys.bech32_encode("tmaya", b"\x07" * 20), "mainnet", False),
    ],
)
def test_is_valid_node_address(value, network, valid):
    assert chainkeys.is_valid_node_address(value, network) is valid


@pytest.mark.parametrize(
    ("call", "value"),
    [
        (chainkeys.consensus_pubkey_bytes, REAL_THOR_CONS),                      # wrong prefix
        (chainkeys.consensus_pubkey_bytes, chainkeys.bech32_encode("mayacpub", b"\x00" * 37)),  # no amino prefix
        (chainkeys.secp256k1_pubkey_bytes, chainkeys.consensus_pubkey_bech32(b"\x01" * 32, "mayapub")),
        (chainkeys.consensus_pubkey_bytes, "not bech32"),
    ],
)
def test_malformed_pubkeys_are_refused(call, value):
    with pytest.raises(ChainKeyError):
        call(value)


@pytest.mark.parametrize("length", [0, 31, 33])
def test_consensus_pubkey_needs_32_bytes(length):
    with pytest.raises(ChainKeyError):
        chainkeys.consensus_pubkey_bech32(b"\x01" * length)
    with pytest.raises(ChainKeyError):
        chainkeys.validator_address(b"\x01" * length)


def test_validator_address_is_upper_hex_of_sha256_prefix():
    pubkey = bytes(range(32))
    assert chainkeys.validator_address(pubkey) == hashlib.sha256(pubkey).hexdigest()[:40].upper()
    from_base64 = chainkeys.validator_address_from_base64(base64.b64encode(pubkey).decode())
    assert from_base64 == chainkeys.validator_address(pubkey)


def test_valoper_address_prefix():
    assert chainkeys.valoper_address(b"\x02" * 20).startswith("mayavaloper1")


def test_parse_priv_validator_key():
    key = chainkeys.parse_priv_validator_key(_key_file())
    public = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32).public_key().public_bytes_raw()
    assert key.pubkey == public
    assert key.pubkey_base64 == base64.b64encode(public).decode()
    assert key.address == chainkeys.validator_address(public)
    assert key.pubkey_bech32.startswith("mayacpub1zcjduepq")
    assert key.private_key_matches_pubkey()


def test_consensus_key_never_shows_its_private_half():
    key = chainkeys.parse_priv_validator_key(_key_file())
    private_b64 = base64.b64encode(key.private_key).decode()
    for text in (repr(key), str(key), f"{key}"):
        assert private_b64 not in text and "private" not in text


def test_private_key_that_does_not_match_pubkey_is_detected():
    other = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32).public_key().public_bytes_raw()
    doc = json.loads(_key_file())
    doc["priv_key"]["value"] = base64.b64encode(b"\x02" * 32 + other).decode()
    assert not chainkeys.parse_priv_validator_key(json.dumps(doc).encode()).private_key_matches_pubkey()


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        _key_file(address="00" * 20),
        _key_file(pub_key={"type": "tendermint/PubKeySecp256k1", "value": "AA=="}),
        _key_file(pub_key={"type": "tendermint/PubKeyEd25519", "value": "***"}),
        _key_file(priv_key={"type": "tendermint/PrivKeyEd25519", "value": base64.b64encode(b"x" * 32).decode()}),
        _key_file(priv_key=None),
    ],
)
def test_bad_priv_validator_key_files_are_refused(content):
    with pytest.raises(ChainKeyError):
        chainkeys.parse_priv_validator_key(content)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"height":"0","round":0,"step":0}', SignState(0, 0, 0)),
        (b'{"height":"197675","round":0,"step":3,"signature":"abc","signbytes":"00"}', SignState(197675, 0, 3)),
        (b'{"height":12,"round":"1","step":2}', SignState(12, 1, 2)),
    ],
)
def test_parse_priv_validator_state(content, expected):
    assert chainkeys.parse_priv_validator_state(content) == expected


@pytest.mark.parametrize(
    "content",
    [
        b'{"height":"-1","round":0,"step":0}',
        '{"height":"\u0661\u0662","round":0,"step":0}'.encode(),   # non-ASCII digits
        b'{"round":0,"step":0}',
        b'{"height":true,"round":0,"step":0}',
        b'"x"',
    ],
)
def test_bad_priv_validator_state_is_refused(content):
    with pytest.raises(ChainKeyError):
        chainkeys.parse_priv_validator_state(content)


def test_sign_states_order_by_height_round_step():
    states = [SignState(5, 0, 3), SignState(4, 9, 9), SignState(5, 1, 0), SignState(5, 0, 1)]
    assert sorted(states) == [SignState(4, 9, 9), SignState(5, 0, 1), SignState(5, 0, 3), SignState(5, 1, 0)]
    assert max(states) == SignState(5, 1, 0)


def test_rendered_state_keeps_height_as_string():
    rendered = json.loads(chainkeys.render_priv_validator_state(SignState(42, 1, 2)))
    assert rendered == {"height": "42", "round": 1, "step": 2}


@given(st.binary(min_size=0, max_size=40), st.sampled_from(["maya", "smaya", "mayapub", "mayacpub", "mayavaloper"]))
def test_bech32_round_trip(data, prefix):
    assert chainkeys.bech32_decode(chainkeys.bech32_encode(prefix, data), prefix) == (prefix, data)


@given(st.binary(min_size=32, max_size=32))
def test_consensus_pubkey_round_trip(pubkey):
    encoded = chainkeys.consensus_pubkey_bech32(pubkey)
    assert encoded.startswith("mayacpub1zcjduepq")
    assert chainkeys.consensus_pubkey_bytes(encoded) == pubkey


@given(st.binary(min_size=20, max_size=20), st.sampled_from(["mainnet", "stagenet", "mocknet"]))
def test_account_address_round_trip(address_bytes, network):
    address = chainkeys.account_address(address_bytes, network)
    assert chainkeys.is_valid_node_address(address, network)
    assert chainkeys.bech32_decode(address)[1] == address_bytes
