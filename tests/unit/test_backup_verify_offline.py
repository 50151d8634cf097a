"""`backup verify` (pure part): the checks that need no chain, the expected items without the MayaNode, and how
they combine with verify_contents. Real sealed archives of sandbox identities."""

import pytest

from mayanode_operator.api.mayanode import MayaNodeSpec
from mayanode_operator.backup import BackupItem, generate_identity, open_sealed, seal
from mayanode_operator.plan.backup_verify import (
    ChainFacts,
    identity_binding,
    offline_required,
    required_item_names,
    verify_backup,
)
from mayanode_operator.sandbox import identity as ident

WHO = ident.NodeIdentity.from_seed("offline-node")
OTHER = ident.NodeIdentity.from_seed("offline-other")
IDENTITY, RECIPIENT = generate_identity()
SPEC = MayaNodeSpec.model_validate({"network": "mainnet"})
KEY = "mayanode/config/priv_validator_key.json"
MNEMONIC = "secret/mayanode-mnemonic/mnemonic"


def items(who=WHO, *, keys_of=None, secrets=("mayanode-mnemonic/mnemonic", "mayanode-password/password"),
          skip=()):
    out = []
    for entry in ident.mayanode_home_entries(who):
        if entry.identity and not entry.is_dir and f"mayanode/{entry.path}" not in skip:
            content = entry.content
            if keys_of is not None and entry.path == "config/priv_validator_key.json":
                content = next(e.content for e in ident.mayanode_home_entries(keys_of)
                               if e.path == "config/priv_validator_key.json")
            out.append(BackupItem(f"mayanode/{entry.path}", "mayanode", entry.path, content, entry.mode))
    for path in secrets:
        data = who.mnemonic if path.endswith("mnemonic") else "pw-offline-123"
        out.append(BackupItem(f"secret/{path}", "secret", path, data.encode(), 0o600))
    return out


def opened(contents, meta=None):
    meta = {"nodeAddress": WHO.node_address, "consensusPubKey": WHO.consensus_pubkey_bech32} if meta is None else meta
    sealed = seal(contents, meta, [RECIPIENT])
    manifest, plain = open_sealed(sealed.ciphertext, IDENTITY, sealed.digest)
    return manifest, plain, sealed.manifest.public_summary()["items"]


def offline(contents, meta=None, *, chain=None, expected=None, missing=()):
    manifest, plain, public = opened(contents, meta)
    required, mnemonic = offline_required(manifest, SPEC, missing=list(missing))
    return verify_backup(manifest, plain, recorded=public, required=required, chain=chain, mnemonic_item=mnemonic,
                         expected_node_address=expected)


def test_a_good_backup_verifies_offline():
    result = offline(items())
    assert (result.status, result.reason) == ("True", "VerifiedOffline"), result.message
    assert f"consensus key file is {WHO.consensus_pubkey_bech32}" in result.checks
    assert f"keyring holds the key of node {WHO.node_address}" in result.checks
    assert "the chain was not asked (offline)" in result.message
    assert WHO.mnemonic not in result.message


def test_with_the_chain_the_consensus_key_is_checked_there_too():
    chain = ChainFacts(reachable=True, cons_pub_key=WHO.consensus_pubkey_bech32, secp256k1=WHO.secp256k1_pubkey)
    result = offline(items(), chain=chain)
    assert (result.status, result.reason) == ("True", "Verified")
    assert "consensus key matches the node account" in result.message and "keyring holds" in result.message
    wrong = ChainFacts(reachable=True, cons_pub_key=OTHER.consensus_pubkey_bech32, secp256k1=WHO.secp256k1_pubkey)
    assert offline(items(), chain=wrong).reason == "ConsensusKeyMismatch"
    down = offline(items(), chain=ChainFacts(reachable=False, error="node: HTTP 503"))
    assert (down.status, down.reason) == ("Unknown", "ChainUnavailable")
    assert "keyring holds the key of node" in " ".join(down.checks)


@pytest.mark.parametrize("contents,meta,expected,reason", [
    # the key file is another node's consensus key
    (items(keys_of=OTHER), None, None, "ConsensusKeyMismatch"),
    # the keyring is another node's
    (items(OTHER), {"nodeAddress": WHO.node_address}, None, "NodeAddressMismatch"),
    # the backup is of another node than the one asked about
    (items(), None, OTHER.node_address, "NodeAddressMismatch"),
    # an expected item is missing
    (items(skip=("mayanode/config/node_key.json",)), None, None, "MissingItem"),
    (items(secrets=("mayanode-password/password",)), None, None, "MissingItem"),
])
def test_offline_failures_have_a_reason(contents, meta, expected, reason):
    result = offline(contents, meta, expected=expected)
    assert (result.status, result.reason) == ("False", reason), result.message
    assert WHO.mnemonic not in result.message and OTHER.mnemonic not in result.message


def test_items_the_capture_listed_as_missing_are_not_required_again():
    contents = items(skip=("mayanode/config/node_key.json",))
    result = offline(contents, missing=[{"component": "mayanode", "path": "config/node_key.json"}])
    assert result.reason == "VerifiedOffline", result.message


def test_secret_names_of_another_node_launcher_setup_are_found_by_their_key():
    manifest, _, _ = opened(items(secrets=("my-seed/mnemonic", "my-pass/password")))
    required, mnemonic = offline_required(manifest, SPEC, missing=[])
    assert mnemonic == "secret/my-seed/mnemonic" and "secret/my-pass/password" in required
    assert offline(items(secrets=("my-seed/mnemonic", "my-pass/password"))).reason == "VerifiedOffline"


def test_the_captured_vaults_key_share_is_required():
    manifest, _, _ = opened(items(), {"nodeAddress": WHO.node_address, "vaultPubKey": "mayapub1vault"})
    required, _ = offline_required(manifest, SPEC, missing=[])
    assert "bifrost/localstate-mayapub1vault.json" in required


def test_required_names_follow_the_node_spec_and_imports():
    spec = MayaNodeSpec.model_validate({"network": "mainnet", "secrets": {"mnemonic": {"name": "seed"}}})
    names, mnemonic = required_item_names(spec, vault=None, missing=[])
    assert mnemonic == "secret/seed/mnemonic" and KEY in names and "secret/seed/mnemonic" in names
    assert required_item_names(spec, vault=None, missing=[], imported=True)[0] == [KEY]


def test_binding_without_keyring_address_files_says_so():
    contents = [i for i in items() if not i.path.endswith(".address")]
    failure, checks = identity_binding({"nodeAddress": WHO.node_address}, contents)
    assert failure is None and any("no .address file" in c for c in checks)
