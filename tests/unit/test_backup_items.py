"""What a backup must hold, and expected vs present (pure)."""

import pytest

from mayanode_operator.api.mayanode import MayaNodeSpec
from mayanode_operator.plan.backup_items import (
    Missing,
    expected_items,
    judge_capture,
    list_roots,
    plan_capture,
    secret_missing,
    vanished,
    vault_of_key_share,
)

SPEC = MayaNodeSpec.model_validate({"network": "mocknet"})
FULL_MAYANODE = {"MAYAChain-ED25519", "keyring-file/mayachain.info", "keyring-file/keyhash", "config/node_key.json",
                 "config/priv_validator_key.json", "data/priv_validator_state.json", "config/config.toml"}


def test_defaults_follow_node_launcher():
    expected = expected_items(SPEC)
    mayanode, bifrost = expected.targets
    assert (mayanode.deployment, mayanode.container, mayanode.pvc, mayanode.home, mayanode.helper_root) == \
        ("mayanode", "mayanode", "mayanode", "/root/.mayanode", "/data/.mayanode")
    assert (bifrost.pvc, bifrost.helper_root) == ("bifrost", "/data/mayanode")
    assert [s.path for s in expected.secrets] == ["mayanode-mnemonic/mnemonic", "mayanode-password/password"]
    starts, globs = list_roots(expected.files_of("mayanode"))
    assert starts == ("MAYAChain-ED25519", "config/node_key.json", "config/priv_validator_key.json",
                      "data/priv_validator_state.json", "keyring-file")
    assert list_roots(expected.files_of("bifrost")) == ((), ("localstate-*.json",))


def test_paths_come_from_the_spec():
    spec = MayaNodeSpec.model_validate({"network": "mocknet", "mayanode": {"home": "/home/maya", "volumeSubPath": ""},
                                        "secrets": {"mnemonic": {"name": "m", "key": "k"}}})
    expected = expected_items(spec)
    assert expected.targets[0].home == "/home/maya" and expected.targets[0].helper_root == "/data"
    assert expected.secrets[0].path == "m/k"


@pytest.mark.parametrize("mayanode,bifrost,vault,missing", [
    (FULL_MAYANODE, {"localstate-v1.json"}, None, []),
    (FULL_MAYANODE, set(), None, []),                                             # no vault: shares optional
    (FULL_MAYANODE, {"localstate-v0.json"}, "v1", [("bifrost", "localstate-v1.json")]),
    (FULL_MAYANODE - {"config/node_key.json"}, set(), None, [("mayanode", "config/node_key.json")]),
    (FULL_MAYANODE - {"keyring-file/mayachain.info", "keyring-file/keyhash"}, set(), None,
     [("mayanode", "keyring-file/")]),
    (None, set(), None, [("mayanode", p) for p in ("MAYAChain-ED25519", "keyring-file/", "config/node_key.json",
                                                   "config/priv_validator_key.json",
                                                   "data/priv_validator_state.json")]),
])
def test_expected_vs_present(mayanode, bifrost, vault, missing):
    expected = expected_items(SPEC, member_vault=vault)
    plan = plan_capture(expected, {"mayanode": mayanode, "bifrost": bifrost}, {"mayanode": "pod gone"})
    assert [(m.component, m.path) for m in plan.missing] == missing
    if mayanode:
        assert "config/config.toml" not in plan.read["mayanode"]          # only identity files are read
        assert set(plan.read["mayanode"]) == mayanode - {"config/config.toml"}
    assert set(plan.read.get("bifrost", ())) == bifrost


def test_glob_matches_only_top_level_key_shares():
    plan = plan_capture(expected_items(SPEC), {"mayanode": FULL_MAYANODE,
                                               "bifrost": {"localstate-a.json", "observer/localstate-b.json", "x"}})
    assert plan.read["bifrost"] == ("localstate-a.json",)
    assert vault_of_key_share("localstate-mayapub1abc.json") == "mayapub1abc"
    assert vault_of_key_share("observer/CURRENT") is None


def test_secrets_missing_or_empty():
    wanted = expected_items(SPEC).secrets[0]
    assert secret_missing(wanted, {"mnemonic": b"word " * 24}) is None
    assert "not found" in secret_missing(wanted, None).reason
    assert secret_missing(wanted, {"mnemonic": b""}).critical


@pytest.mark.parametrize("missing,captured,phase,reason", [
    ([], 10, "Completed", "AllItemsCaptured"),
    ([Missing("mayanode", "config/node_key.json", "not found")], 9, "PartiallyFailed", "ItemsMissing"),
    ([Missing("mayanode", "config/priv_validator_key.json", "not found", critical=True)], 9, "Failed",
     "CriticalItemMissing"),
    ([Missing("mayanode", "x", "gone")], 0, "Failed", "NothingCaptured"),
])
def test_judge_capture_never_silent(missing, captured, phase, reason):
    verdict = judge_capture(missing, captured)
    assert (verdict.phase, verdict.reason) == (phase, reason)
    for m in missing:
        assert m.path in verdict.message


def test_a_file_gone_between_listing_and_reading_is_as_critical_as_its_rule():
    rules = expected_items(SPEC).files_of("mayanode")
    key = vanished("mayanode", "config/priv_validator_key.json", rules)
    assert key.critical and key.reason == "vanished while it was read"
    assert not vanished("mayanode", "config/config.toml", rules).critical
    verdict = judge_capture([key], captured=6)
    assert (verdict.phase, verdict.reason) == ("Failed", "CriticalItemMissing")
