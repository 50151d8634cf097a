"""Issue 3: NodeBackup on the emulated cluster + mocknet, with the real operator process.

`kubectl apply` of a NodeBackup → Completed with every item listed and verified; the stored object is
unreadable without the identity; a tampered archive or the wrong identity fails verification with a clear
reason; a churn makes a new backup with afterChurn; export → import → verify; deletionPolicy Delete finished by a
restarted operator; no secret in logs, events, status.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys

import pytest
from kubernetes.client.exceptions import ApiException

from mayanode_operator.api import naming
from mayanode_operator.backup import CryptoError, decrypt, generate_identity
from mayanode_operator.backup.stores import SecretStore
from mayanode_operator.sandbox.harness import OperatorProcess

from .conftest import Kube, condition, dump, eventually, mayanode_manifest, require
from .world import EmulatedWorld, real_cluster_world

NS, CHURN_NS, IMPORT_NS = "backup-a", "backup-churn", "backup-b"
IDENTITY, RECIPIENT = generate_identity()
WRONG_IDENTITY, _ = generate_identity()


def location(identity_secret: str | None = "age-identity") -> dict:
    encryption: dict = {"recipients": [RECIPIENT]}
    if identity_secret:
        encryption["identitySecret"] = {"name": identity_secret}
    return {"secret": {}, "encryption": encryption}


def create_secret(kube, namespace: str, name: str, data: dict[str, str]) -> None:
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "stringData": data})


def nodebackup(namespace: str, name: str, node: str, **spec) -> dict:
    return {"apiVersion": naming.API_VERSION, "kind": "NodeBackup", "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeRef": {"name": node}, **spec}}


def churn(world) -> str:
    vault = world.call(_churn(world.mocknet))
    return vault


async def _churn(net) -> str:
    vault = net.churn()
    await net.settle()
    return vault.pub_key


def finished(kube, namespace: str, name: str, operator, timeout: float = 30) -> dict:
    def done():
        body = kube.get_custom(naming.NODEBACKUP_PLURAL, namespace, name)
        assert (body.get("status") or {}).get("phase") in ("Completed", "PartiallyFailed", "Failed"), \
            dump(body.get("status"))
        assert condition(body, "Verified") or body["status"]["phase"] == "Failed", dump(body.get("status"))
        return body
    return eventually(done, timeout=timeout, message=lambda: operator.log_text()[-3000:])


def cli(world, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mayanode_operator.cli", "backup", *args,
                           "--kubeconfig", str(world.kubeconfig_path)], capture_output=True, text=True, timeout=60)


# These scenarios churn the mocknet (new Asgard vaults), which other scenarios' churn gates would see: they
# get a world, mocknet and operator of their own.
@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    kube_config = request.config.getoption("--kube-config")
    workdir = tmp_path_factory.mktemp("backup-world")
    w = real_cluster_world(kube_config, workdir) if kube_config else \
        EmulatedWorld(workdir, nodes=request.config.getoption("--nodes"))
    w.start()
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def operator(world, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("backup-operator") / "operator.log"
    proc = OperatorProcess(world.kubeconfig_path, log, extra_env={"MAYANODE_OPERATOR_METRICS_PORT": "0"}).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def kube(world) -> Kube:
    return Kube(world.kubeconfig_path)


@pytest.fixture(scope="module")
def node(world, operator, kube):
    require(world, "exec")                        # backups read the node's files through exec
    seeded = world.seed_node(NS)
    churn(world)                                  # the node becomes a member of the current vault
    create_secret(kube, NS, "age-identity", {"identity": IDENTITY})
    kube.apply(mayanode_manifest(seeded, backup={"afterChurn": False, "location": location()}))
    return seeded


@pytest.fixture(scope="module")
def full_backup(node, kube, operator):
    kube.apply(nodebackup(NS, "full", NS))
    return finished(kube, NS, "full", operator)


def test_apply_nodebackup_completes_with_every_item_listed(node, full_backup, world):
    status = full_backup["status"]
    assert status["phase"] == "Completed", dump(status)
    names = {item["name"] for item in status["items"]}
    vault = world.mocknet.active_vault.pub_key
    assert names == {
        "mayanode/MAYAChain-ED25519", "mayanode/config/node_key.json", "mayanode/config/priv_validator_key.json",
        "mayanode/data/priv_validator_state.json", "mayanode/keyring-file/keyhash",
        "mayanode/keyring-file/mayachain.info", f"mayanode/keyring-file/{node.identity.address_bytes.hex()}.address",
        f"bifrost/localstate-{vault}.json", "secret/mayanode-mnemonic/mnemonic", "secret/mayanode-password/password",
    }
    assert not status.get("missing")
    verified = condition(full_backup, "Verified")
    assert (verified["status"], verified["reason"]) == ("True", "Verified"), verified
    assert status["node"]["consensusPubKey"] == node.facts.consensus_pubkey_bech32
    assert status["startedAt"] and status["completedAt"] and status["archive"]["sha256"]
    out = subprocess.run(["kubectl", "--kubeconfig", str(world.kubeconfig_path), "get", "nbk", "-n", NS],
                         capture_output=True, text=True, timeout=30).stdout
    assert "full" in out and "Completed" in out


def test_the_stored_object_is_unreadable_without_the_identity(node, full_backup, kube):
    key = full_backup["status"]["archive"]["key"]
    secrets = kube.core.list_namespaced_secret(NS, label_selector=f"{naming.GROUP}/backup-part=index").items
    index = next(s for s in secrets if (s.metadata.annotations or {}).get(f"{naming.GROUP}/backup-key") == key)
    ciphertext = base64.b64decode(index.data["object"])
    assert ciphertext.startswith(b"age-encryption.org/v1\n")
    assert node.identity.mnemonic.encode() not in ciphertext and node.password.encode() not in ciphertext
    with pytest.raises(CryptoError) as err:
        decrypt(ciphertext, WRONG_IDENTITY)
    assert err.value.reason == "WrongIdentity"
    assert node.identity.mnemonic.encode() in decrypt(ciphertext, IDENTITY)


def test_a_tampered_archive_fails_verification_with_a_clear_reason(node, kube, operator):
    kube.apply(nodebackup(NS, "tampered", NS))
    body = finished(kube, NS, "tampered", operator)
    assert condition(body, "Verified")["status"] == "True"
    key = body["status"]["archive"]["key"]
    secrets = kube.core.list_namespaced_secret(NS, label_selector=f"{naming.GROUP}/backup-part=index").items
    index = next(s for s in secrets if (s.metadata.annotations or {}).get(f"{naming.GROUP}/backup-key") == key)
    data = bytearray(base64.b64decode(index.data["object"]))
    data[len(data) // 2] ^= 0xFF
    kube.core.patch_namespaced_secret(index.metadata.name, NS, {"data": {"object": base64.b64encode(data).decode()}})
    kube.patch_spec(naming.NODEBACKUP_PLURAL, NS, "tampered", {"ttl": "720h"})     # a spec change re-verifies

    def failed():
        cond = condition(kube.get_custom(naming.NODEBACKUP_PLURAL, NS, "tampered"), "Verified")
        assert cond.get("status") == "False", cond
        return cond
    cond = eventually(failed, timeout=30, message=lambda: operator.log_text()[-3000:])
    assert cond["reason"] == "DigestMismatch" and "altered" in cond["message"]
    assert any(e["reason"] == "VerificationFailed" for e in kube.events(NS, "tampered"))


def test_the_wrong_identity_fails_verification_with_a_clear_reason(node, kube, operator):
    create_secret(kube, NS, "wrong-identity", {"identity": WRONG_IDENTITY})
    kube.apply(nodebackup(NS, "wrongid", NS, location=location("wrong-identity")))
    body = finished(kube, NS, "wrongid", operator)
    cond = condition(body, "Verified")
    assert (cond["status"], cond["reason"]) == ("False", "WrongIdentity"), cond


def test_a_churn_produces_a_new_backup_automatically(world, kube, operator):
    seeded = world.seed_node(CHURN_NS)
    create_secret(kube, CHURN_NS, "age-identity", {"identity": IDENTITY})
    kube.apply(mayanode_manifest(seeded, backup={"afterChurn": True, "location": location()}))
    before = {b["metadata"]["name"] for b in kube.custom.list_namespaced_custom_object(
        naming.GROUP, naming.VERSION, CHURN_NS, naming.NODEBACKUP_PLURAL)["items"]}
    vault = churn(world)

    def backed_up():
        items = kube.custom.list_namespaced_custom_object(naming.GROUP, naming.VERSION, CHURN_NS,
                                                          naming.NODEBACKUP_PLURAL)["items"]
        new = [b for b in items if b["metadata"]["name"] not in before and b["spec"]["reason"] == "AfterChurn"
               and (b.get("status") or {}).get("phase") == "Completed"
               and f"bifrost/localstate-{vault}.json" in {i["name"] for i in b["status"].get("items") or []}]
        assert new, dump([(b["metadata"]["name"], b.get("status", {}).get("phase")) for b in items])
        return new[0]
    body = eventually(backed_up, timeout=45, message=lambda: operator.log_text()[-3000:])
    assert condition(body, "Verified")["status"] == "True"

    def fresh():
        mn = kube.mayanode(CHURN_NS, CHURN_NS)
        assert condition(mn, "BackupFresh").get("status") == "True", dump(mn.get("status", {}).get("backup"))
        return mn
    mn = eventually(fresh, timeout=30)
    assert mn["status"]["backup"]["lastSuccessful"]["name"] == body["metadata"]["name"]
    assert any(e["reason"] == "BackupCreated" for e in kube.events(CHURN_NS, CHURN_NS))


def test_export_import_verify(node, full_backup, world, kube, operator, tmp_path):
    exported = tmp_path / "full.mayabackup"
    result = cli(world, "export", "full", "-n", NS, "-o", str(exported))
    assert result.returncode == 0, result.stderr
    data = exported.read_bytes()
    assert (exported.stat().st_mode & 0o777) == 0o600
    assert node.identity.mnemonic.encode() not in data and node.password.encode() not in data
    kube.core.create_namespace({"metadata": {"name": IMPORT_NS}})
    create_secret(kube, IMPORT_NS, "age-identity", {"identity": IDENTITY})
    target = mayanode_manifest(node, name="migrated", backup={"afterChurn": False, "location": location()})
    target["metadata"]["namespace"] = IMPORT_NS
    kube.apply(target)
    result = cli(world, "import", str(exported), "-n", IMPORT_NS, "--node", "migrated")
    assert result.returncode == 0, result.stderr
    body = finished(kube, IMPORT_NS, "full", operator)
    assert body["spec"]["reason"] == "Imported" and body["status"]["phase"] == "Completed", dump(body["status"])
    verified = condition(body, "Verified")
    assert verified["status"] == "True", verified
    if world.mocknet.active_vault.pub_key != full_backup["status"]["node"]["vaultPubKey"]:
        assert verified["reason"] == "VerifiedOlderVault"        # a churn happened since: intact, but stale
    assert body["status"]["archive"]["sha256"] == full_backup["status"]["archive"]["sha256"]
    described = cli(world, "describe", "full", "-n", IMPORT_NS)
    assert described.returncode == 0 and "Phase:        Completed" in described.stdout
    assert "Next:  mayanode-operator backup export full" in described.stdout


def stored(kube, key: str) -> bool:
    return asyncio.run(SecretStore(kube.core, NS).exists(key))


def test_delete_policy_deletion_made_while_the_operator_is_down(node, kube, operator):
    """`kubectl delete` of a NodeBackup with deletionPolicy Delete while the operator is down: it waits on the
    operator's finalizer, and the restarted operator deletes the archive, then lets it go."""
    kube.apply(nodebackup(NS, "scratch", NS, deletionPolicy="Delete"))
    body = finished(kube, NS, "scratch", operator)
    assert body["metadata"]["finalizers"] == ["maya.nodeops.io/delete-archive"], body["metadata"]
    key = body["status"]["archive"]["key"]
    assert stored(kube, key)
    operator.kill()                                       # down, without any goodbye
    try:
        kube.kubectl("delete", "nbk", "scratch", "-n", NS, "--wait=false")
        assert kube.get_custom(naming.NODEBACKUP_PLURAL, NS, "scratch")["metadata"]["deletionTimestamp"]
        assert stored(kube, key)
    finally:
        operator.start()

    def gone():
        try:
            kube.get_custom(naming.NODEBACKUP_PLURAL, NS, "scratch")
        except ApiException as err:
            assert err.status == 404
            return True
        raise AssertionError("NodeBackup scratch is still there")
    eventually(gone, timeout=30, message=lambda: operator.log_text()[-3000:])
    assert not stored(kube, key)
    assert "ArchiveDeleted" in [e["reason"] for e in kube.events(NS, "scratch")]


def test_no_secret_material_in_logs_events_status_or_messages(node, full_backup, world, kube, operator):
    require(world, "volumes", "kubelet")
    tree = world.kubelet.volume(NS, "mayanode")
    key = json.loads(tree.read(".mayanode/config/priv_validator_key.json"))["priv_key"]["value"]
    secrets = [node.identity.mnemonic, node.password, IDENTITY, IDENTITY.lower(), WRONG_IDENTITY, key,
               base64.b64decode(key).hex()]
    haystack = operator.log_text()
    for namespace in (NS, CHURN_NS, IMPORT_NS):
        haystack += json.dumps(kube.events(namespace))
        for plural in (naming.NODEBACKUP_PLURAL, naming.MAYANODE_PLURAL):
            items = kube.custom.list_namespaced_custom_object(naming.GROUP, naming.VERSION, namespace, plural)["items"]
            haystack += json.dumps([(i.get("status"), i["metadata"].get("annotations")) for i in items])
    haystack += cli(world, "describe", "wrongid", "-n", NS).stdout
    assert "NodeBackup" in haystack and "WrongIdentity" in haystack
    for secret in secrets:
        assert secret not in haystack
