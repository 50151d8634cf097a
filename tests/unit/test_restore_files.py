"""What a restore writes from a backup (plan/restore_files.py): checks, the write plan, stale key shares."""

from __future__ import annotations

import json

import pytest

from mayanode_operator.backup import BackupItem
from mayanode_operator.plan import restore_files as rf
from mayanode_operator.sandbox import identity as ident

WHO = ident.NodeIdentity.from_seed("restore-unit")
MNEMONIC, PASSWORD = rf.SecretRef("mayanode-mnemonic", "mnemonic"), rf.SecretRef("mayanode-password", "password")
REFS = {"mnemonic": MNEMONIC, "password": PASSWORD, "default_mnemonic": "mayanode-mnemonic",
        "default_password": "mayanode-password"}


def items(*, drop: tuple[str, ...] = (), shares: dict[str, bytes] | None = None, secrets: bool = True,
          state: bytes = ident.priv_validator_state_json(42)) -> list[BackupItem]:
    out = []
    for entry in ident.mayanode_home_entries(WHO):
        if entry.identity and not entry.is_dir and entry.path not in drop:
            data = state if entry.path == "data/priv_validator_state.json" else entry.content
            out.append(BackupItem(f"mayanode/{entry.path}", "mayanode", entry.path, data, entry.mode, 1000, 1000))
    for name, data in (shares or {}).items():
        out.append(BackupItem(f"bifrost/{name}", "bifrost", name, data, 0o600))
    if secrets:
        out.append(BackupItem("secret/mayanode-mnemonic/mnemonic", "secret", "mayanode-mnemonic/mnemonic",
                              WHO.mnemonic.encode()))
        out.append(BackupItem("secret/mayanode-password/password", "secret", "mayanode-password/password",
                              WHO.password.encode()))
    return out


def check(its, meta=None, **kw):
    return rf.check_backup(its, meta or {"nodeAddress": WHO.node_address}, target_node_address=kw.pop(
        "target", WHO.node_address), restore_secrets=kw.pop("restore_secrets", True), **REFS)


def test_a_complete_backup_passes_with_public_facts():
    result = check(items())
    assert result.ok and result.facts.cons_pub_key == WHO.consensus_pubkey_bech32
    assert result.facts.validator_address == WHO.validator_address and result.facts.sign_state.height == 42
    assert WHO.mnemonic not in result.message and WHO.password not in result.message


@pytest.mark.parametrize("kwargs, reason", [
    ({"drop": ("config/priv_validator_key.json",)}, "MissingItem"),
    ({"drop": ("MAYAChain-ED25519",)}, "MissingItem"),
    ({"secrets": False}, "MissingItem"),
    ({"state": b"not json"}, "InvalidSignState"),
])
def test_refusals(kwargs, reason):
    result = check(items(**kwargs))
    assert not result.ok and result.reason == reason


def test_files_only_restore_needs_no_secrets():
    assert rf.check_backup(items(secrets=False), {}, target_node_address=None, restore_secrets=False, **REFS).ok


def test_node_address_and_consensus_key_must_match():
    other = ident.NodeIdentity.from_seed("someone-else")
    assert check(items(), target=other.node_address).reason == "NodeAddressMismatch"
    assert check(items(), {"consensusPubKey": other.consensus_pubkey_bech32}).reason == "ConsensusKeyMismatch"
    broken = [i if i.path != "config/priv_validator_key.json" else
              BackupItem(i.name, i.component, i.path, b'{"x": 1}') for i in items()]
    assert check(broken).reason == "InvalidConsensusKey"


def test_write_plan():
    share = json.dumps({"LocalPartyKey": "pk"}).encode()
    plan = rf.write_plan(items(shares={"localstate-v1.json": share}), signer_name="mayachain", restore_secrets=True,
                         **REFS)
    paths = {w.path for w in plan.mayanode}
    assert "config/priv_validator_key.json" in paths and "data/priv_validator_state.json" not in paths
    assert plan.sign_state_item == "mayanode/data/priv_validator_state.json"
    # bifrost gets the key shares and, as the runbook does, the node key and the signer's keyring record.
    assert {w.path for w in plan.bifrost} == {"localstate-v1.json", "MAYAChain-ED25519", "keyring-file/mayachain.info"}
    key = next(w for w in plan.mayanode if w.path == "config/priv_validator_key.json")
    assert (key.uid, key.gid, key.mode) == (1000, 1000, 0o600)
    assert plan.secrets == {"mayanode-mnemonic": {"mnemonic": "secret/mayanode-mnemonic/mnemonic"},
                            "mayanode-password": {"password": "secret/mayanode-password/password"}}
    assert plan.dirs["mayanode"] == ("config", "keyring-file") and plan.dirs["bifrost"] == ("keyring-file",)


def test_secrets_map_to_the_target_names():
    renamed = rf.SecretRef("node-seed", "mnemonic")
    plan = rf.write_plan(items(), signer_name="mayachain", restore_secrets=True,
                         **{**REFS, "mnemonic": renamed})
    assert plan.secrets["node-seed"] == {"mnemonic": "secret/mayanode-mnemonic/mnemonic"}
    assert rf.write_plan(items(), signer_name="x", restore_secrets=False, **REFS).secrets == {}


def share(party: str | None) -> bytes:
    return json.dumps({"PubKey": "v", **({"LocalPartyKey": party} if party else {})}).encode()


def test_key_shares_on_the_target():
    backup = {"localstate-v1.json": share("me")}
    target = {"localstate-v1.json": share("me"), "localstate-v2.json": share("me"),
              "localstate-v3.json": share("someone"), "localstate-v4.json": b"garbage"}
    result = rf.classify_key_shares(backup, target, "r1")
    assert result.keep == ("localstate-v2.json",)
    assert result.move_aside == (("localstate-v3.json", "localstate-v3.json.replaced-r1"),)
    assert result.unknown == ("localstate-v4.json",)
    assert "moved 1" in result.describe() and "check them" in result.describe()
    # Without a share in the backup nothing can be attributed: everything is kept and reported.
    assert rf.classify_key_shares({}, {"localstate-v3.json": share("someone")}, "r").unknown == ("localstate-v3.json",)
    assert rf.classify_key_shares(backup, {}, "r") == rf.SharePlan()


def test_a_same_named_key_share_of_another_node_is_moved_aside_not_overwritten():
    # Key shares are named after the vault: two members of one vault hold files of the same name.
    backup = {"localstate-v1.json": share("me")}
    result = rf.classify_key_shares(backup, {"localstate-v1.json": share("someone")}, "r1")
    assert result.move_aside == (("localstate-v1.json", "localstate-v1.json.replaced-r1"),)
    # The backup's own share, byte for byte: written over (the same bytes).
    assert rf.classify_key_shares(backup, {"localstate-v1.json": share("me")}, "r1") == rf.SharePlan()


@pytest.mark.parametrize("there", [share(None), b"garbage", json.dumps({"PubKey": "v", "LocalPartyKey": "me",
                                                                         "Extra": 1}).encode()])
def test_a_different_same_named_key_share_not_proven_another_nodes_is_kept_beside_it(there):
    """It names no party, cannot be read, or is this node's yet differs: a key share cannot be made again, so it is
    kept under a new name (and reported) rather than written over."""
    backup = {"localstate-v1.json": share("me")}
    result = rf.classify_key_shares(backup, {"localstate-v1.json": there}, "r1")
    assert result.saved == result.set_aside == (("localstate-v1.json", "localstate-v1.json.replaced-r1"),)
    assert result.move_aside == () and "differ from the backup's" in result.describe()
    assert "check them" in result.describe()


def test_another_identity_on_the_target():
    cons = WHO.consensus_pubkey_bech32
    own_key = ident.priv_validator_key_json(WHO)
    other = ident.NodeIdentity.from_seed("someone-else")
    backup = {"localstate-v1.json": share("me")}
    # An empty node, or the backup's own node: nothing to protect.
    assert not rf.check_target_identity(cons, backup, None, {}).other
    assert not rf.check_target_identity(cons, backup, own_key, {"localstate-v1.json": share("me")}).other
    assert not rf.check_target_identity(cons, backup, own_key, {"localstate-v1.json": share(None)}).other
    # Another consensus key, an unreadable key file, a same-named share of another party.
    found = rf.check_target_identity(cons, backup, ident.priv_validator_key_json(other), {})
    assert found.other and other.consensus_pubkey_bech32 in found.describe() and cons in found.describe()
    assert rf.check_target_identity(cons, backup, b"{}", {}).other
    shares = rf.check_target_identity(cons, backup, own_key, {"localstate-v1.json": share("someone")})
    assert shares.other and "localstate-v1.json" in shares.describe() and "someone" in shares.describe()
    assert len(rf.check_target_identity(cons, backup, ident.priv_validator_key_json(other),
                                        {"localstate-v1.json": share("someone")}).found) == 2
