"""`mayanode-operator backup …`: parsing, the describe text and its next step, the export metadata (pure parts)."""

import pytest

from mayanode_operator.backup import export_bundle, import_bundle
from mayanode_operator.cli import build_parser
from mayanode_operator.cli_backup import backup_meta, describe_text, imported_body, next_step, public_manifest

STATUS = {
    "phase": "Completed", "startedAt": "2026-03-01T00:00:00Z", "completedAt": "2026-03-01T00:00:01Z",
    "archive": {"store": "Secret", "uri": "secret://ns/nodebackup-x", "key": "ns/n/b-1234.tar.age", "parts": 1,
                "size": 20000, "sha256": "a" * 64, "recipients": ["age1xyz"], "format": "tar+age/v1"},
    "node": {"address": "maya1abc", "consensusPubKey": "mayacpub1abc", "height": 5},
    "items": [{"name": "mayanode/config/priv_validator_key.json", "component": "mayanode",
               "path": "config/priv_validator_key.json", "size": 345, "sha256": "b" * 64, "mode": "0600", "uid": 0,
               "gid": 0},
              {"name": "secret/mayanode-mnemonic/mnemonic", "component": "secret", "path": "mayanode-mnemonic/mnemonic",
               "size": 165, "mode": "0600", "uid": 0, "gid": 0}],
    "conditions": [{"type": "Completed", "status": "True", "reason": "ArchiveStored", "message": "stored"},
                   {"type": "Verified", "status": "True", "reason": "Verified", "message": "ok"}],
}
BODY = {"metadata": {"name": "b", "namespace": "ns"}, "spec": {"nodeRef": {"name": "n"}, "reason": "Manual"},
        "status": STATUS}


def test_the_subcommands_parse():
    parser = build_parser()
    args = parser.parse_args(["backup", "export", "b", "-n", "ns", "-o", "f"])
    assert (args.name, args.namespace, args.output) == ("b", "ns", "f")
    args = parser.parse_args(["backup", "import", "f", "-n", "ns", "--node", "n2"])
    assert (args.file, args.node, args.name) == ("f", "n2", None)
    args = parser.parse_args(["backup", "describe", "b", "-n", "ns", "--kubeconfig", "k"])
    assert args.kubeconfig == "k"
    with pytest.raises(SystemExit):
        parser.parse_args(["backup", "export", "b", "-o", "f"])            # -n is required


def test_describe_shows_items_without_secret_digests_and_the_next_step():
    text = describe_text(BODY, [{"type": "Normal", "reason": "Completed", "message": "10 items"}])
    assert "Phase:        Completed" in text and "secret://ns/nodebackup-x" in text
    assert "sha256:bbbbbbbbbbbb" in text and "(secret: digest only in the archive)" in text
    assert "Next:  mayanode-operator backup export b -n ns" in text


@pytest.mark.parametrize("phase,conditions,extra,expected", [
    ("InProgress", [], {}, "kubectl get nodebackup b -n ns -w"),
    ("Failed", [{"type": "Completed", "status": "False", "reason": "NodeNotFound"}], {}, "kubectl get mayanode n"),
    ("Failed", [{"type": "Completed", "status": "False", "reason": "CriticalItemMissing"}], {}, "ls -la"),
    ("PartiallyFailed", [], {"missing": [{"path": "x"}]}, "restore the missing files"),
    ("Completed", [{"type": "Verified", "status": "False", "reason": "DigestMismatch"}], {}, "take a new backup"),
    ("Completed", [{"type": "Verified", "status": "False", "reason": "WrongIdentity"}], {}, "kubectl get secret"),
])
def test_next_step(phase, conditions, extra, expected):
    body = {**BODY, "status": {**STATUS, "phase": phase, "conditions": conditions, **extra}}
    assert expected in next_step(body)


def test_export_metadata_is_public_and_round_trips():
    manifest, meta = public_manifest(STATUS), backup_meta(BODY)
    assert manifest["itemCount"] == 2 and "sha256" not in manifest["items"][1]
    assert meta["verified"] == "True" and meta["nodeRef"] == "n"
    bundle = export_bundle(b"age-encryption.org/v1\n-> X25519 x\n", manifest, meta)
    ciphertext, manifest2, meta2 = import_bundle(bundle)
    assert manifest2 == manifest and meta2["name"] == "b"
    body = imported_body("ns2", "b", "n", {"secret": {}}, "ns2/n/imported-b-aaaa.tar.age", len(ciphertext), "a" * 64,
                         manifest2, meta2)
    assert body["spec"]["reason"] == "Imported" and body["spec"]["source"]["originalNamespace"] == "ns"


def test_verify_parses_a_name_or_a_file():
    parser = build_parser()
    args = parser.parse_args(["backup", "verify", "b", "-n", "ns", "-i", "key.txt", "--offline"])
    assert (args.name, args.namespace, args.identity, args.offline, args.file) == ("b", "ns", "key.txt", True, None)
    args = parser.parse_args(["backup", "verify", "--file", "f.mayabackup", "-i", "key.txt", "--node-api",
                              "http://localhost:1317", "--node-address", "maya1abc"])
    assert (args.name, args.file, args.node_api, args.node_address) == (None, "f.mayabackup", "http://localhost:1317",
                                                                        "maya1abc")
    with pytest.raises(SystemExit):
        parser.parse_args(["backup", "verify", "b", "-n", "ns"])                # -i is required


def test_verify_usage_errors_exit_2(capsys):
    from mayanode_operator.cli import main

    assert main(["backup", "verify", "-i", "k"]) == 2                            # neither a name nor a file
    assert main(["backup", "verify", "b", "--file", "f", "-i", "k"]) == 2        # both
    assert main(["backup", "verify", "b", "-i", "k"]) == 2                       # a name without -n
    assert "error:" in capsys.readouterr().err


def test_verify_report_and_exit_codes():
    from mayanode_operator.cli_backup import verify_report
    from mayanode_operator.plan.backup_verify import VerifyResult

    text, code = verify_report("NodeBackup ns/b", VerifyResult("True", "Verified", "all good", ("decrypted",)))
    assert code == 0 and "  ok  decrypted" in text and "VERIFIED (Verified): all good" in text
    assert verify_report("x", VerifyResult("False", "DigestMismatch", "altered"))[1] == 1
    text, code = verify_report("x", VerifyResult("Unknown", "ChainUnavailable", "node API down"))
    assert code == 3 and "INCOMPLETE (ChainUnavailable)" in text and "--node-api" in text


def test_describe_shows_the_deletion_policy_and_a_held_deletion():
    assert "Deletion:     Retain (deleting the NodeBackup keeps the archive)" in describe_text(BODY, [])
    held = {"metadata": {**BODY["metadata"], "deletionTimestamp": "2026-03-02T00:00:00Z"},
            "spec": {**BODY["spec"], "deletionPolicy": "Delete"},
            "status": {**STATUS, "conditions": [*STATUS["conditions"], {
                "type": "DeletionBlocked", "status": "True", "reason": "RestoreInProgress",
                "message": "deleting the archive waits: NodeRestore ns/r1 (Writing) is in progress"}]}}
    text = describe_text(held, [])
    assert "Delete (deleting the NodeBackup deletes the archive); being deleted since 2026-03-02T00:00:00Z" in text
    assert "NodeRestore ns/r1 (Writing)" in text
    assert "kubectl get noderestores" in next_step(held)
    held["status"]["conditions"][-1]["reason"] = "StoreError"
    assert '"deletionPolicy":"Retain"' in next_step(held)
