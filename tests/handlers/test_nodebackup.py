"""NodeBackup reconcile, step by step, against the sandbox (real API semantics, exec into PVC trees, mocknet)."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

from mayanode_operator import cli_backup
from mayanode_operator.api import naming
from mayanode_operator.backup import ArchiveError, CryptoError, decrypt, generate_identity, open_sealed, sha256_hex
from mayanode_operator.reconcile import nodebackup
from mayanode_operator.plan import backup_policy
from mayanode_operator.reconcile.mayanode import reconcile_mayanode
from mayanode_operator.sandbox import kubeclient as kc
from mayanode_operator.sandbox.apiserver.handlers import request_info
from mayanode_operator.sandbox.harness import eventually

from .backup_world import condition

NS = "hb-a"
IDENTITY_ITEMS = {
    "mayanode/MAYAChain-ED25519", "mayanode/config/node_key.json", "mayanode/config/priv_validator_key.json",
    "mayanode/data/priv_validator_state.json", "mayanode/keyring-file/keyhash", "mayanode/keyring-file/mayachain.info",
    "secret/mayanode-mnemonic/mnemonic", "secret/mayanode-password/password",
}


@pytest.fixture(scope="module")
def node(world):
    return world.member_node(NS)


def vault_now(world) -> str:
    return world.sandbox.mocknet.active_vault.pub_key


def expected_names(world, node) -> set[str]:
    keyring_address = f"mayanode/keyring-file/{node.identity.address_bytes.hex()}.address"
    return IDENTITY_ITEMS | {keyring_address, f"bifrost/localstate-{vault_now(world)}.json"}


def stored_object(world, namespace: str, body: dict) -> bytes:
    store = world.call(nodebackup.open_store(world.runtime, body["spec"].get("location") or world.location(), namespace))
    return world.call(store.get(body["status"]["archive"]["key"]))


@pytest.fixture(scope="module")
def full(world, node):
    """The node's full backup, driven to its end once: several tests read it."""
    world.nodebackup(NS, "full", NS)
    return world.drive(NS, "full")


def test_backup_completes_with_every_item_listed_and_verified(world, node, full):
    body = full
    status = body["status"]
    assert status["phase"] == "Completed", status
    assert {i["name"] for i in status["items"]} == expected_names(world, node)
    assert condition(body, "Completed")["reason"] == "ArchiveStored"
    verified = condition(body, "Verified")
    assert verified["status"] == "True" and verified["reason"] == "Verified", verified
    assert "consensus key matches" in verified["message"] and vault_now(world) in verified["message"]
    assert all("sha256" not in i for i in status["items"] if i["component"] == "secret")
    assert all(len(i["sha256"]) == 64 for i in status["items"] if i["component"] != "secret")
    assert status["node"]["consensusPubKey"] == node.facts.consensus_pubkey_bech32
    assert status["node"]["vaultPubKey"] == vault_now(world)
    assert status["startedAt"] <= status["completedAt"]
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert status["archive"]["store"] == "Secret" and status["archive"]["uri"].startswith(f"secret://{NS}/")
    reasons = [e["reason"] for e in world.events(NS, "full")]
    assert {"Accepted", "Started", "Stored", "Verified", "Completed"} <= set(reasons)


def test_stored_object_is_unreadable_without_the_identity(world, node, full):
    body = world.backup(NS, "full")
    ciphertext = stored_object(world, NS, body)
    assert ciphertext.startswith(b"age-encryption.org/v1\n")
    assert sha256_hex(ciphertext) == body["status"]["archive"]["sha256"]
    for secret in (node.identity.mnemonic, node.password, "priv_validator_key", "localstate-"):
        assert secret.encode() not in ciphertext
    other, _ = generate_identity()
    with pytest.raises(CryptoError) as err:
        decrypt(ciphertext, other)
    assert err.value.reason == "WrongIdentity"
    manifest, items = open_sealed(ciphertext, world.identity, body["status"]["archive"]["sha256"])
    by_name = {i.name: i for i in items}
    assert by_name["secret/mayanode-mnemonic/mnemonic"].data.decode().strip() == node.identity.mnemonic
    tree = world.sandbox.kubelet.volume(NS, "mayanode")
    key = by_name["mayanode/config/priv_validator_key.json"]
    assert key.data == tree.read(".mayanode/config/priv_validator_key.json")
    assert key.mode == 0o600 and manifest.meta["nodeAddress"] == node.node_address


def test_a_crash_after_the_write_resumes_without_a_second_object(world, node, monkeypatch):
    world.nodebackup(NS, "crashy", NS)
    assert world.step(NS, "crashy") == 0.0                      # New
    assert world.step(NS, "crashy") == 0.0                      # InProgress/Capturing
    real = nodebackup.write_status

    async def crash(ctx, result):
        raise ConnectionResetError("operator killed before the status write")

    monkeypatch.setattr(nodebackup, "write_status", crash)
    with pytest.raises(ConnectionResetError):
        world.step(NS, "crashy")                                # archive written, status not
    monkeypatch.setattr(nodebackup, "write_status", real)
    assert world.backup(NS, "crashy")["status"]["step"] == "Capturing"
    body = world.drive(NS, "crashy")
    assert body["status"]["phase"] == "Completed"
    assert condition(body, "Verified")["status"] == "True"
    store = world.call(nodebackup.open_store(world.runtime, world.location(), NS))
    objects = [o for o in world.call(store.list(f"{NS}/{NS}/")) if "/crashy-" in o.key]
    assert len(objects) == 1 and objects[0].sha256 == body["status"]["archive"]["sha256"]


def test_a_restarted_operator_resumes_at_the_recorded_step(world, node):
    world.nodebackup(NS, "resume", NS)
    world.step(NS, "resume")
    world.step(NS, "resume")
    world.step(NS, "resume")
    status = world.backup(NS, "resume")["status"]
    assert (status["phase"], status["step"]) == ("InProgress", "Verifying")
    first_digest = status["archive"]["sha256"]
    body = world.drive(NS, "resume")                           # a new pass picks up at Verifying
    assert body["status"]["phase"] == "Completed" and body["status"]["archive"]["sha256"] == first_digest
    assert world.step(NS, "resume") is None                    # idle: nothing more, nothing written


def test_scaled_to_zero_reads_through_a_helper_pod_that_is_always_removed(world):
    seeded = world.seed("hb-zero", replicas=0)
    world.mayanode(seeded, backup={"afterChurn": False, "location": world.location()})
    leftover = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "leftover-helper", "namespace": "hb-zero",
                             "labels": {naming.LABEL_HELPER: "backup", naming.LABEL_BACKUP: "cold"}},
                "spec": {"containers": [{"name": "helper", "image": "busybox:1.36"}]}}
    world.call(asyncio.to_thread(world.runtime.kube.core.create_namespaced_pod, "hb-zero", leftover))
    world.nodebackup("hb-zero", "cold", "hb-zero")
    body = world.drive("hb-zero", "cold")
    assert body["status"]["phase"] == "Completed", body["status"]
    names = {i["name"] for i in body["status"]["items"]}
    assert "mayanode/config/priv_validator_key.json" in names and "secret/mayanode-mnemonic/mnemonic" in names
    journal = [(event, name) for _, event, ns, name in world.sandbox.kubelet.journal if ns == "hb-zero"]
    helpers = {name for event, name in journal if event == "pod-running" and name.startswith("backup-")}
    assert {name.split("-")[1] for name in helpers} == {"mayanode", "bifrost"}

    async def gone():
        pods = await world.sandbox.pods("hb-zero")
        return not [p for p in pods if (p["metadata"].get("labels") or {}).get(naming.LABEL_HELPER)]
    world.call(world.sandbox.wait_for(gone, 10, message="helper pods removed"))


def test_a_missing_file_is_partially_failed_with_the_list(world):
    seeded = world.seed("hb-part")
    world.mayanode(seeded, backup={"afterChurn": False, "location": world.location()})
    world.sandbox.kubelet.volume("hb-part", "mayanode").remove(".mayanode/config/node_key.json")
    world.nodebackup("hb-part", "partial", "hb-part")
    body = world.drive("hb-part", "partial")
    status = body["status"]
    assert status["phase"] == "PartiallyFailed"
    assert status["missing"] == [{"component": "mayanode", "path": "config/node_key.json", "reason": "not found"}]
    assert "config/node_key.json" in status["message"]
    assert condition(body, "Verified")["status"] == "True"
    assert "ItemsMissing" in [e["reason"] for e in world.events("hb-part", "partial")]


def test_a_missing_consensus_key_fails_and_stores_nothing(world):
    seeded = world.seed("hb-nokey")
    world.mayanode(seeded, backup={"afterChurn": False, "location": world.location()})
    world.sandbox.kubelet.volume("hb-nokey", "mayanode").remove(".mayanode/config/priv_validator_key.json")
    world.nodebackup("hb-nokey", "nokey", "hb-nokey")
    body = world.drive("hb-nokey", "nokey")
    status = body["status"]
    assert status["phase"] == "Failed" and "archive" not in status
    assert condition(body, "Completed")["reason"] == "CriticalItemMissing"
    assert {"component": "mayanode", "path": "config/priv_validator_key.json", "reason": "not found"} in status["missing"]
    text = cli_backup.describe_text(body, world.events("hb-nokey", "nokey"))
    assert "Next:  kubectl exec -n hb-nokey deploy/mayanode" in text


def test_missing_node_or_location_fails_with_a_reason(world, node):
    world.nodebackup(NS, "orphan", "no-such-node")
    body = world.drive(NS, "orphan")
    assert body["status"]["phase"] == "Failed" and condition(body, "Completed")["reason"] == "NodeNotFound"
    seeded = world.seed("hb-noloc")
    world.mayanode(seeded)
    world.nodebackup("hb-noloc", "nowhere", "hb-noloc")
    body = world.drive("hb-noloc", "nowhere")
    assert condition(body, "Completed")["reason"] == "NoLocation"


def test_tampered_archive_fails_verification_with_a_clear_reason(world, node):
    world.nodebackup(NS, "tamper", NS)
    body = world.drive(NS, "tamper")
    assert condition(body, "Verified")["status"] == "True"
    index = next(s for s in world.secrets(NS)
                 if (s.metadata.annotations or {}).get(f"{naming.GROUP}/backup-key") == body["status"]["archive"]["key"])
    data = bytearray(base64.b64decode(index.data["object"]))
    data[-20] ^= 0x01
    world.call(asyncio.to_thread(world.runtime.kube.core.patch_namespaced_secret, index.metadata.name, NS,
                                 {"data": {"object": base64.b64encode(bytes(data)).decode()}}))
    world.patch_spec(naming.NODEBACKUP_PLURAL, NS, "tamper", {"ttl": "720h"})   # any spec change re-verifies
    body = world.drive(NS, "tamper")
    verified = condition(body, "Verified")
    assert (verified["status"], verified["reason"]) == ("False", "DigestMismatch"), verified
    assert "altered" in verified["message"]
    assert body["status"]["phase"] == "Completed" and body["status"]["expiresAt"]
    assert "VerificationFailed" in [e["reason"] for e in world.events(NS, "tamper")]
    assert "take a new backup" in cli_backup.next_step(body)


def test_the_wrong_identity_fails_verification_with_a_clear_reason(world, node):
    other, _ = generate_identity()
    world.create_secret(NS, "wrong-identity", {"identity": other})
    world.nodebackup(NS, "wrongid", NS, location=world.location(identity_secret="wrong-identity"))
    body = world.drive(NS, "wrongid")
    verified = condition(body, "Verified")
    assert (verified["status"], verified["reason"]) == ("False", "WrongIdentity"), verified
    assert "recipient" in verified["message"]
    assert "kubectl get secret wrong-identity" in cli_backup.next_step(body)


def test_without_an_identity_the_backup_completes_unverified(world, node):
    world.nodebackup(NS, "noid", NS, location=world.location(identity_secret=None))
    body = world.drive(NS, "noid")
    assert body["status"]["phase"] == "Completed"
    assert (condition(body, "Verified")["status"], condition(body, "Verified")["reason"]) == ("Unknown", "NoIdentity")


def test_a_key_share_of_another_vault_fails_verification(world, node):
    tree = world.sandbox.kubelet.volume(NS, "bifrost")
    path = f"mayanode/localstate-{vault_now(world)}.json"
    original = tree.read(path)
    doc = json.loads(original)
    doc["PubKey"] = "mayapub1somethingelse"
    tree.update(path, json.dumps(doc).encode())
    try:
        world.nodebackup(NS, "badshare", NS)
        body = world.drive(NS, "badshare")
    finally:
        tree.update(path, original)
    verified = condition(body, "Verified")
    assert (verified["status"], verified["reason"]) == ("False", "KeyShareMismatch"), verified


def test_ttl_expiry_deletes_the_archive_and_the_backup(world, node):
    world.nodebackup(NS, "shortlived", NS, ttl="1h")
    body = world.drive(NS, "shortlived")
    assert body["status"]["phase"] == "Completed" and body["status"]["expiresAt"]
    key = body["status"]["archive"]["key"]
    store = world.call(nodebackup.open_store(world.runtime, world.location(), NS))
    assert world.call(store.exists(key))
    world.clock = datetime.now(timezone.utc) + timedelta(hours=2)
    try:
        assert world.step(NS, "shortlived") is None
    finally:
        world.clock = None
    assert world.backup(NS, "shortlived") is None
    assert not world.call(store.exists(key))
    assert "Expired" in [e["reason"] for e in world.events(NS, "shortlived")]


def test_deleting_the_nodebackup_alone_keeps_the_stored_archive(world, node, full):
    body = world.backup(NS, "full")
    key = body["status"]["archive"]["key"]
    world.nodebackup(NS, "todelete", NS)
    doomed = world.drive(NS, "todelete")
    world.call(asyncio.to_thread(world.runtime.kube.custom.delete_namespaced_custom_object, naming.GROUP,
                                 naming.VERSION, NS, naming.NODEBACKUP_PLURAL, "todelete"))
    store = world.call(nodebackup.open_store(world.runtime, world.location(), NS))
    assert world.call(store.exists(doomed["status"]["archive"]["key"])) and world.call(store.exists(key))


def test_volume_snapshots_are_taken_and_waited_for(world, node):
    world.nodebackup(NS, "snap", NS, volumeSnapshots={"enabled": True}, ttl="1h")
    assert world.step(NS, "snap") == 0.0
    assert world.step(NS, "snap") == 0.0
    assert world.backup(NS, "snap")["status"]["step"] == "Snapshotting"
    body = world.drive(NS, "snap")
    status = body["status"]
    assert status["phase"] == "Completed", status
    assert {(s["component"], s["pvc"], s["readyToUse"]) for s in status["snapshots"]} == \
        {("mayanode", "mayanode", True), ("bifrost", "bifrost", True)}
    assert world.sandbox.kubelet.snapshot(NS, "snap-mayanode") is not None
    world.clock = datetime.now(timezone.utc) + timedelta(hours=2)
    try:
        world.step(NS, "snap")
    finally:
        world.clock = None
    assert world.call(asyncio.to_thread(
        world.runtime.kube.custom.list_namespaced_custom_object, "snapshot.storage.k8s.io", "v1", NS,
        "volumesnapshots"))["items"] == [] or all(
        s["metadata"]["name"] not in ("snap-mayanode", "snap-bifrost") for s in world.call(asyncio.to_thread(
            world.runtime.kube.custom.list_namespaced_custom_object, "snapshot.storage.k8s.io", "v1", NS,
            "volumesnapshots"))["items"])


def test_export_import_verify_round_trip(world, node, full, tmp_path):
    bundle = world.call(cli_backup.export_backup(world.runtime.kube, NS, "full"))
    for secret in (node.identity.mnemonic, node.password):
        assert secret.encode() not in bundle
    target = "hb-import"
    world.call(asyncio.to_thread(world.runtime.kube.core.create_namespace, {"metadata": {"name": target}}))
    world.create_secret(target, "age-identity", {"identity": world.identity})
    world.mayanode(node, name="migrated", backup={"afterChurn": False, "location": world.location()})
    # the same node, registered in another namespace: the MayaNode lives where the backup is imported
    body = world.get(naming.MAYANODE_PLURAL, NS, "migrated")
    body["metadata"] = {"name": "migrated", "namespace": target}
    world.create(naming.MAYANODE_PLURAL, body)
    name, created = world.call(cli_backup.import_backup(world.runtime.kube, target, bundle, node="migrated"))
    assert (name, created) == ("full", True)
    assert world.call(cli_backup.import_backup(world.runtime.kube, target, bundle, node="migrated")) == ("full", False)
    imported = world.drive(target, "full")
    status = imported["status"]
    assert imported["spec"]["reason"] == "Imported"
    assert status["phase"] == "Completed", status
    assert condition(imported, "Verified")["status"] == "True", condition(imported, "Verified")
    original = world.backup(NS, "full")["status"]
    assert status["archive"]["sha256"] == original["archive"]["sha256"]
    assert [i["name"] for i in status["items"]] == [i["name"] for i in original["items"]]
    tampered = bytearray(bundle)
    tampered[bundle.index(b"age-encryption.org/v1") + 300] ^= 1
    with pytest.raises(ArchiveError):
        world.call(cli_backup.import_backup(world.runtime.kube, target, bytes(tampered), node="migrated", name="x"))


def test_no_secret_material_in_status_events_or_messages(world, node):
    secrets = [node.identity.mnemonic, node.password, world.identity, world.identity.lower()]
    tree = world.sandbox.kubelet.volume(NS, "mayanode")
    key = json.loads(tree.read(".mayanode/config/priv_validator_key.json"))
    secrets.append(key["priv_key"]["value"])
    secrets.append(base64.b64encode(base64.b64decode(key["priv_key"]["value"])[:32]).decode()[:20])
    backups = world.call(world.runtime.kube.list_custom(naming.NODEBACKUP_PLURAL, NS))
    text = json.dumps([b.get("status") for b in backups]) + json.dumps(world.events(NS))
    text += json.dumps(world.get(naming.MAYANODE_PLURAL, NS, NS).get("status"))
    for body in backups:
        text += cli_backup.describe_text(body, [])
    for secret in secrets:
        assert secret not in text


def test_the_policy_makes_one_backup_per_churn_and_reports_freshness(world):
    seeded = world.seed("hb-policy")
    policy = {"afterChurn": True, "location": world.location(), "retention": {"count": 1}}
    world.mayanode(seeded, backup=policy)
    world.call(reconcile_mayanode(world.runtime, "hb-policy", "hb-policy"))
    status = world.get(naming.MAYANODE_PLURAL, "hb-policy", "hb-policy")["status"]
    assert condition({"status": status}, "BackupFresh")["reason"] == "NoBackup"      # not in any vault yet
    assert condition({"status": status}, "BackupScheduled")["status"] == "True"
    assert world.call(world.runtime.kube.list_custom(naming.NODEBACKUP_PLURAL, "hb-policy")) == []
    world.call(lambda: world.sandbox.mocknet.churn())                                  # now it is a member
    world.call(world.sandbox.mocknet.settle())
    world.call(reconcile_mayanode(world.runtime, "hb-policy", "hb-policy"))
    first = [b for b in world.call(world.runtime.kube.list_custom(naming.NODEBACKUP_PLURAL, "hb-policy"))]
    assert [b["spec"]["reason"] for b in first] == ["AfterChurn"]
    world.drive("hb-policy", first[0]["metadata"]["name"])
    world.call(reconcile_mayanode(world.runtime, "hb-policy", "hb-policy"))
    status = world.get(naming.MAYANODE_PLURAL, "hb-policy", "hb-policy")["status"]
    assert status["backup"]["lastSuccessful"]["name"] == first[0]["metadata"]["name"]
    assert condition({"status": status}, "BackupFresh")["status"] == "True"

    world.call(lambda: world.sandbox.mocknet.churn())
    world.call(world.sandbox.mocknet.settle())
    world.call(reconcile_mayanode(world.runtime, "hb-policy", "hb-policy"))
    status = world.get(naming.MAYANODE_PLURAL, "hb-policy", "hb-policy")["status"]
    assert condition({"status": status}, "BackupFresh")["reason"] == "OlderThanChurn"
    names = {b["metadata"]["name"] for b in world.call(world.runtime.kube.list_custom(naming.NODEBACKUP_PLURAL,
                                                                                      "hb-policy"))}
    second = (names - {first[0]["metadata"]["name"]}).pop()
    assert status["backup"]["inProgress"] == second
    world.call(reconcile_mayanode(world.runtime, "hb-policy", "hb-policy"))   # no duplicate while it runs
    assert len(world.call(world.runtime.kube.list_custom(naming.NODEBACKUP_PLURAL, "hb-policy"))) == 2
    body = world.drive("hb-policy", second)
    assert f"bifrost/localstate-{vault_now(world)}.json" in {i["name"] for i in body["status"]["items"]}
    world.call(reconcile_mayanode(world.runtime, "hb-policy", "hb-policy"))
    status = world.get(naming.MAYANODE_PLURAL, "hb-policy", "hb-policy")["status"]
    assert condition({"status": status}, "BackupFresh")["status"] == "True"
    assert status["backup"]["lastSuccessful"]["name"] == second
    remaining = {b["metadata"]["name"] for b in world.call(world.runtime.kube.list_custom(naming.NODEBACKUP_PLURAL,
                                                                                          "hb-policy"))}
    assert remaining == {second}                                   # retention.count 1 pruned the first
    reasons = [e["reason"] for e in world.events("hb-policy", "hb-policy")]
    assert "BackupCreated" in reasons and "BackupPruned" in reasons and "BackupStale" in reasons


class BifrostExecs:
    """Counts the exec requests into one namespace's bifrost pods (the backup facet's look for key shares)."""

    def __init__(self, namespace: str) -> None:
        self.namespace, self.count = namespace, 0

    async def __call__(self, request, call_next):
        info = request_info(request)
        if info.namespace == self.namespace and info.resource == "pods" and info.subresource == "exec" and \
                info.name.startswith("bifrost"):
            self.count += 1
        return await call_next(request)


def test_key_shares_are_looked_for_when_something_says_they_changed_not_at_every_pass(world):
    """afterChurn reads bifrost's localstate files through an exec; a key share appears at a churn, days apart, so an
    idle pass plans with the last look unless bifrost's pods, the vault or the node's signer membership changed, or
    the look is KEY_SHARES_RECHECK_SECONDS old."""
    ns = "hb-shares"
    seeded = world.seed(ns)
    world.mayanode(seeded, backup={"afterChurn": True, "location": world.location()})
    execs = BifrostExecs(ns)
    world.sandbox.api.add_request_hook(execs)
    try:
        def passes(n: int) -> int:
            before = execs.count
            for _ in range(n):
                world.call(reconcile_mayanode(world.runtime, ns, ns))
            return execs.count - before

        assert passes(1) == 1                                   # the first look
        assert passes(4) == 0                                   # nothing says they changed
        world.call(lambda: world.sandbox.mocknet.churn())       # a new vault, and the node is a member
        world.call(world.sandbox.mocknet.settle())
        assert passes(1) == 1
        created = [b for b in world.call(world.runtime.kube.list_custom(naming.NODEBACKUP_PLURAL, ns))
                   if b["spec"]["reason"] == "AfterChurn"]
        assert len(created) == 1
        world.drive(ns, created[0]["metadata"]["name"])
        assert passes(3) == 0
        world.clock = datetime.now(timezone.utc) + timedelta(seconds=backup_policy.KEY_SHARES_RECHECK_SECONDS)
        assert passes(1) == 1                                   # the recheck is due
        assert passes(2) == 0
        world.runtime.key_shares.clear()                        # a restarted operator
        assert passes(1) == 1
        bifrost = world.pods(ns, "app.kubernetes.io/name=bifrost")[0]["metadata"]["name"]
        world.call(world.sandbox.client.delete(kc.PODS, bifrost, ns, grace_period_seconds=0))

        def replaced():                                         # the Deployment made a new bifrost pod, ready
            pods = world.pods(ns, "app.kubernetes.io/name=bifrost")
            assert [p["metadata"]["name"] for p in pods if p["metadata"]["name"] != bifrost] and \
                all(p["metadata"]["name"] != bifrost for p in pods), pods
            world.call(world.sandbox.wait_ready(ns, timeout=30))
            return True
        eventually(replaced, timeout=30)
        assert passes(1) == 1
    finally:
        world.sandbox.api.remove_request_hook(execs)
        world.clock = None
    assert (ns, ns) in world.runtime.key_shares
    mayanodes = kc.Resource(naming.GROUP, naming.VERSION, naming.MAYANODE_PLURAL, True, "MayaNode")
    world.call(world.sandbox.client.delete(mayanodes, ns, ns))
    assert world.call(reconcile_mayanode(world.runtime, ns, ns)) is None
    assert (ns, ns) not in world.runtime.key_shares             # a deleted MayaNode is forgotten
