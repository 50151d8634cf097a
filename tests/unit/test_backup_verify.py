"""Verification of a decrypted backup against its status and the chain (pure), with real sealed archives."""

import json

import pytest

from mayanode_operator.backup import BackupItem, generate_identity, open_sealed, seal
from mayanode_operator.backup.stores import StoreError, StoreReason
from mayanode_operator.plan.backup_verify import ChainFacts, failure_from_error, verify_contents
from mayanode_operator.sandbox import identity as ident

WHO = ident.NodeIdentity.from_seed("verify-node")
OTHER = ident.NodeIdentity.from_seed("someone-else")
VAULT = type("V", (), {"pub_key": "mayapub1vaultcurrent", "membership": [WHO.secp256k1_pubkey, OTHER.secp256k1_pubkey]})()
SHARE_NAME, SHARE = ident.key_share_file(WHO, VAULT)
CHAIN = ChainFacts(reachable=True, cons_pub_key=WHO.consensus_pubkey_bech32, secp256k1=WHO.secp256k1_pubkey,
                   vault_pub_key=VAULT.pub_key, vault_membership=tuple(VAULT.membership))
IDENTITY, RECIPIENT = generate_identity()


def items(who=WHO, share=(SHARE_NAME, SHARE), mnemonic=None):
    out = [BackupItem(f"mayanode/{e.path}", "mayanode", e.path, e.content, e.mode)
           for e in ident.mayanode_home_entries(who) if e.identity and not e.is_dir]
    if share:
        out.append(BackupItem(f"bifrost/{share[0]}", "bifrost", share[0], share[1]))
    out.append(BackupItem("secret/mayanode-mnemonic/mnemonic", "secret", "mayanode-mnemonic/mnemonic",
                          (mnemonic or who.mnemonic).encode()))
    return out


def sealed_and_opened(contents):
    sealed = seal(contents, {"nodeAddress": WHO.node_address}, [RECIPIENT])
    manifest, opened = open_sealed(sealed.ciphertext, IDENTITY, sealed.digest)
    return manifest, opened, sealed.manifest.public_summary()["items"]


def check(contents, chain=CHAIN, recorded=None, required=("mayanode/config/priv_validator_key.json",)):
    manifest, opened, public = sealed_and_opened(contents)
    return verify_contents(manifest, opened, recorded=public if recorded is None else recorded, required=required,
                           chain=chain, mnemonic_item="secret/mayanode-mnemonic/mnemonic")


def test_a_good_backup_verifies():
    result = check(items())
    assert (result.status, result.reason) == ("True", "Verified")
    assert "consensus key matches the node account" in result.checks
    assert f"key share of the current vault {VAULT.pub_key}" in result.checks


@pytest.mark.parametrize("contents,chain,reason", [
    (items(who=OTHER, share=None), ChainFacts(True, WHO.consensus_pubkey_bech32), "ConsensusKeyMismatch"),
    (items(share=None), CHAIN, "KeyShareMissing"),
    (items(share=(f"localstate-{VAULT.pub_key}.json", json.dumps({"PubKey": "mayapub1other"}).encode())), CHAIN,
     "KeyShareMismatch"),
    (items(share=ident.key_share_file(OTHER, VAULT)), CHAIN, "KeyShareMismatch"),
    (items(mnemonic="only three words"), CHAIN, "MnemonicMalformed"),
])
def test_wrong_identity_fails_with_a_clear_reason(contents, chain, reason):
    result = check(contents, chain)
    assert (result.status, result.reason) == ("False", reason), result.message
    assert WHO.mnemonic not in result.message


def test_a_broken_consensus_key_file():
    bad = [i if i.path != "config/priv_validator_key.json" else
           BackupItem(i.name, i.component, i.path, b'{"address": "00"}') for i in items()]
    result = check(bad)
    assert result.reason == "InvalidKeyFile"


def test_status_and_archive_must_agree():
    manifest, opened, public = sealed_and_opened(items())
    recorded = [dict(i) for i in public]
    recorded[0]["size"] += 1
    result = verify_contents(manifest, opened, recorded=recorded, required=(), chain=CHAIN)
    assert result.reason == "ManifestMismatch"
    result = verify_contents(manifest, opened, recorded=public[1:], required=(), chain=CHAIN)
    assert result.reason == "ManifestMismatch" and "not in the status" in result.message


def test_required_items_must_be_there():
    result = check(items(), required=("mayanode/config/priv_validator_key.json", "secret/mayanode-password/password"))
    assert (result.status, result.reason) == ("False", "MissingItem")


def test_unreachable_chain_is_unknown_not_true():
    result = check(items(), ChainFacts(False, error="node: Unreachable"))
    assert (result.status, result.reason) == ("Unknown", "ChainUnavailable")


def test_not_a_vault_member_needs_no_key_share():
    chain = ChainFacts(True, WHO.consensus_pubkey_bech32, WHO.secp256k1_pubkey, "mayapub1newvault", ("x",))
    result = check(items(share=None), chain)
    assert result.ok and "not a member of the current vault" in result.message


def test_errors_become_reasons():
    sealed = seal(items(), {}, [RECIPIENT])
    other, _ = generate_identity()
    with pytest.raises(Exception) as wrong:
        open_sealed(sealed.ciphertext, other, sealed.digest)
    assert failure_from_error(wrong.value).reason == "WrongIdentity"
    tampered = bytearray(sealed.ciphertext)
    tampered[-5] ^= 1
    with pytest.raises(Exception) as digest:
        open_sealed(bytes(tampered), IDENTITY, sealed.digest)
    assert failure_from_error(digest.value).reason == "DigestMismatch"
    assert failure_from_error(StoreError(StoreReason.UNREACHABLE, "s3 down")).status == "Unknown"
    assert failure_from_error(StoreError(StoreReason.NOT_FOUND, "gone")).reason == "ArchiveNotFound"


def test_a_backup_of_an_older_vault_verifies_as_older():
    old_vault = type("V", (), {"pub_key": "mayapub1vaultold", "membership": [WHO.secp256k1_pubkey]})()
    contents = items(share=ident.key_share_file(WHO, old_vault))
    manifest, opened, public = sealed_and_opened(contents)
    result = verify_contents(manifest, opened, recorded=public, required=(), chain=CHAIN, captured_vault="mayapub1vaultold")
    assert (result.status, result.reason) == ("True", "VerifiedOlderVault")
    assert "predates the last churn" in result.message
    stale = verify_contents(manifest, opened, recorded=public, required=(), chain=CHAIN, captured_vault=VAULT.pub_key)
    assert stale.reason == "KeyShareMissing"
