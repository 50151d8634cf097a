"""spec.deletionPolicy and `backup verify`, against the sandbox: the finalizer, a deletion while the operator is
away, the NodeRestore guard, TTL expiry; verification in the cluster, of an export file, and the command's exit
codes and output."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest

from mayanode_operator import cli, cli_backup
from mayanode_operator.api import naming
from mayanode_operator.backup import generate_identity
from mayanode_operator.plan.backup_deletion import DELETE_FINALIZER
from mayanode_operator.reconcile import nodebackup
from mayanode_operator.sandbox.identity import NodeIdentity

from .backup_world import condition

NS = "hb-del"


@pytest.fixture(scope="module")
def node(world):
    return world.member_node(NS)


def store(world):
    return world.call(nodebackup.open_store(world.runtime, world.location(), NS))


def delete(world, name):
    world.call(asyncio.to_thread(world.runtime.kube.custom.delete_namespaced_custom_object, naming.GROUP,
                                 naming.VERSION, NS, naming.NODEBACKUP_PLURAL, name))


def noderestore(world, name, backup):
    body = {"apiVersion": naming.API_VERSION, "kind": "NodeRestore", "metadata": {"name": name, "namespace": NS},
            "spec": {"backupRef": {"name": backup}, "nodeRef": {"name": NS},
                     "doubleSignGuard": {"oldNodeDestroyed": {"acknowledged": True, "reason": "test: VM deleted"}}}}
    world.create(naming.NODERESTORE_PLURAL, body)


def finish_restore(world, name, phase="Completed"):
    world.call(world.runtime.kube.patch_custom_status(naming.NODERESTORE_PLURAL, NS, name, {"phase": phase}))


def reasons(world, name):
    return [e["reason"] for e in world.events(NS, name)]


def test_delete_policy_puts_our_finalizer_first_and_deleting_removes_the_archive(world, node):
    world.nodebackup(NS, "scratch", NS, deletionPolicy="Delete")
    world.step(NS, "scratch")                                       # accepted: nothing stored yet
    first = world.backup(NS, "scratch")
    assert first["metadata"]["finalizers"] == [DELETE_FINALIZER] and first["status"]["phase"] == "New"
    body = world.drive(NS, "scratch")
    assert body["status"]["phase"] == "Completed", body["status"]
    assert body["status"]["archive"]["location"]["secret"] == {"namePrefix": "nodebackup"}
    key = body["status"]["archive"]["key"]
    assert world.call(store(world).exists(key))
    delete(world, "scratch")                                        # the operator is away: nothing happens yet
    waiting = world.backup(NS, "scratch")
    assert waiting["metadata"]["deletionTimestamp"] and world.call(store(world).exists(key))
    assert world.step(NS, "scratch") is None                        # back: the archive goes, then the object
    assert world.backup(NS, "scratch") is None
    assert not world.call(store(world).exists(key))
    assert "ArchiveDeleted" in reasons(world, "scratch")


def test_a_restore_in_progress_holds_the_deletion_until_it_ends(world, node):
    world.nodebackup(NS, "in-use", NS, deletionPolicy="Delete")
    key = world.drive(NS, "in-use")["status"]["archive"]["key"]
    noderestore(world, "restore-a", "in-use")                       # Pending: it is going to read the archive
    delete(world, "in-use")
    assert world.step(NS, "in-use") > 0
    assert world.step(NS, "in-use") > 0                             # looked again: still held, no second event
    held = world.backup(NS, "in-use")
    blocked = condition(held, "DeletionBlocked")
    assert (blocked["status"], blocked["reason"]) == ("True", "RestoreInProgress")
    assert f"{NS}/restore-a" in blocked["message"]
    assert reasons(world, "in-use").count("DeletionBlocked") == 1
    assert world.call(store(world).exists(key))
    finish_restore(world, "restore-a", "Failed")
    assert world.step(NS, "in-use") is None
    assert world.backup(NS, "in-use") is None and not world.call(store(world).exists(key))


def test_back_to_retain_removes_the_finalizer_and_keeps_the_archive(world, node):
    world.nodebackup(NS, "changed-mind", NS, deletionPolicy="Delete")
    key = world.drive(NS, "changed-mind")["status"]["archive"]["key"]
    world.patch_spec(naming.NODEBACKUP_PLURAL, NS, "changed-mind", {"deletionPolicy": "Retain"})
    world.drive(NS, "changed-mind")
    assert not world.backup(NS, "changed-mind")["metadata"].get("finalizers")
    delete(world, "changed-mind")
    assert world.backup(NS, "changed-mind") is None                 # nothing of ours holds it
    assert world.call(store(world).exists(key))


def test_ttl_expiry_waits_for_a_restore_in_progress(world, node):
    world.nodebackup(NS, "expiring", NS, ttl="1h")
    key = world.drive(NS, "expiring")["status"]["archive"]["key"]
    noderestore(world, "restore-b", "expiring")
    world.clock = datetime.now(timezone.utc) + timedelta(hours=2)
    try:
        assert world.step(NS, "expiring") > 0
        held = world.backup(NS, "expiring")
        assert condition(held, "DeletionBlocked")["reason"] == "RestoreInProgress"
        assert "expiry waits" in condition(held, "DeletionBlocked")["message"]
        assert world.call(store(world).exists(key))
        finish_restore(world, "restore-b")
        assert world.step(NS, "expiring") is None
    finally:
        world.clock = None
    assert world.backup(NS, "expiring") is None and not world.call(store(world).exists(key))


# --------------------------------------------------------------------------------------------------
# backup verify
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def verified(world, node):
    world.nodebackup(NS, "to-verify", NS)
    body = world.drive(NS, "to-verify")
    assert body["status"]["phase"] == "Completed"
    return body


def test_verify_in_the_cluster_asks_the_chain(world, node, verified):
    subject, result = world.call(cli_backup.verify_in_cluster(world.runtime.kube, NS, "to-verify", world.identity))
    assert (result.status, result.reason) == ("True", "Verified"), result.message
    assert "consensus key matches the node account" in result.message
    assert f"keyring holds the key of node {node.node_address}" in result.message
    assert verified["status"]["archive"]["uri"] in subject
    _, offline = world.call(cli_backup.verify_in_cluster(world.runtime.kube, NS, "to-verify", world.identity,
                                                         offline=True))
    assert offline.reason == "VerifiedOffline"
    _, wrong = world.call(cli_backup.verify_in_cluster(world.runtime.kube, NS, "to-verify", generate_identity()[0]))
    assert (wrong.status, wrong.reason) == ("False", "WrongIdentity")


def test_verify_an_export_file_offline_or_against_a_node_api(world, node, verified):
    bundle = world.call(cli_backup.export_backup(world.runtime.kube, NS, "to-verify"))
    _, result = world.call(cli_backup.verify_exported(bundle, world.identity))
    assert (result.status, result.reason) == ("True", "VerifiedOffline"), result.message
    _, online = world.call(cli_backup.verify_exported(bundle, world.identity, node_api=node.rest_url))
    assert online.reason == "Verified" and "consensus key matches the node account" in online.message
    other = NodeIdentity.from_seed("not-this-node").node_address
    _, elsewhere = world.call(cli_backup.verify_exported(bundle, world.identity, node_address=other))
    assert (elsewhere.status, elsewhere.reason) == ("False", "NodeAddressMismatch")
    tampered = bytearray(bundle)
    tampered[bundle.index(b"age-encryption.org/v1") + 300] ^= 1
    _, broken = world.call(cli_backup.verify_exported(bytes(tampered), world.identity))
    assert (broken.status, broken.reason) == ("False", "DigestMismatch")


def test_the_command_exits_by_outcome_and_prints_no_secret(world, node, verified, tmp_path, capsys):
    identity_file = tmp_path / "key.txt"
    identity_file.write_text(f"# created: for a test\n{world.identity}\n")
    identity_file.chmod(0o600)
    kube = ["--kubeconfig", str(world.thread.kubeconfig_path)]
    assert cli.main(["backup", "verify", "to-verify", "-n", NS, "-i", str(identity_file), *kube]) == 0
    ok = capsys.readouterr()
    assert "VERIFIED (Verified)" in ok.out and ok.err == ""
    bundle = tmp_path / "node.mayabackup"
    assert cli.main(["backup", "export", "to-verify", "-n", NS, "-o", str(bundle), *kube]) == 0
    assert cli.main(["backup", "verify", "--file", str(bundle), "-i", str(identity_file)]) == 0
    assert "VERIFIED (VerifiedOffline)" in capsys.readouterr().out
    other = tmp_path / "other.txt"
    other.write_text(generate_identity()[0] + "\n")
    other.chmod(0o600)
    assert cli.main(["backup", "verify", "--file", str(bundle), "-i", str(other)]) == 1
    failed = capsys.readouterr()
    assert "FAILED (WrongIdentity)" in failed.err
    assert cli.main(["backup", "verify", "to-verify", "-n", NS, "-i", str(identity_file), "--node-api",
                     "http://127.0.0.1:9", *kube]) == 3
    incomplete = capsys.readouterr()
    assert "INCOMPLETE (ChainUnavailable)" in incomplete.err and "--offline" in incomplete.err
    assert cli.main(["backup", "verify", "to-verify", "-i", str(identity_file)]) == 2
    assert cli.main(["backup", "verify", "missing", "-n", NS, "-i", str(identity_file), *kube]) == 1
    assert "not found" in capsys.readouterr().err
    tree = world.sandbox.kubelet.volume(NS, "mayanode")
    key = json.loads(tree.read(".mayanode/config/priv_validator_key.json"))["priv_key"]["value"]
    text = ok.out + ok.err + failed.out + failed.err + incomplete.out + incomplete.err
    for secret in (node.identity.mnemonic, node.password, world.identity, key):
        assert secret not in text
