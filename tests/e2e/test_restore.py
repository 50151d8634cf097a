"""Issue 4: NodeRestore on the emulated cluster + mocknet, with the real operator process.

- a node is backed up, its PVC trees and Secrets are wiped, a NodeRestore brings back the identical files and
  Secrets, and the node comes back Ready with the same node address;
- migration: backup in namespace A, export/import into B, restore into B while A runs → refused (the key is in use);
  after A is suspended and the chain shows the key silent → succeeds; and the hand-off (doubleSignGuard.oldNode);
- spec.suspend scales both Deployments to 0 and back; a migrated-away node does not come back up;
- no secret material in logs, events or status.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

from mayanode_operator.api import naming
from mayanode_operator.backup import generate_identity

from .conftest import condition, dump, eventually, mayanode_manifest, require

IDENTITY, RECIPIENT = generate_identity()
PEER = "restore-peer"
IDENTITY_PATHS = {
    "mayanode": (".mayanode/MAYAChain-ED25519", ".mayanode/config/node_key.json",
                 ".mayanode/config/priv_validator_key.json", ".mayanode/keyring-file/"),
    "bifrost": ("mayanode/localstate-", "mayanode/MAYAChain-ED25519", "mayanode/keyring-file/"),
}


def location() -> dict:
    return {"secret": {}, "encryption": {"recipients": [RECIPIENT], "identitySecret": {"name": "age-identity"}}}


def create_secret(kube, namespace: str, name: str, data: dict[str, str]) -> None:
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "stringData": data})


def nodebackup(namespace: str, name: str, node: str) -> dict:
    return {"apiVersion": naming.API_VERSION, "kind": "NodeBackup", "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeRef": {"name": node}}}


def noderestore(namespace: str, name: str, node: str, backup: str, **spec) -> dict:
    guard = {"silentBlocks": 3, **spec.pop("guard", {})}
    timeouts = {"guardSeconds": 60, "readySeconds": 60, "scaleDownSeconds": 30, **spec.pop("timeouts", {})}
    return {"apiVersion": naming.API_VERSION, "kind": "NodeRestore", "metadata": {"name": name, "namespace": namespace},
            "spec": {"backupRef": {"name": backup}, "nodeRef": {"name": node}, "doubleSignGuard": guard,
                     "timeouts": timeouts, **spec}}


def phase_of(kube, namespace: str, plural: str, name: str) -> dict:
    return kube.get_custom(plural, namespace, name)


def finished(kube, plural: str, namespace: str, name: str, operator, timeout: float = 60,
             phases=("Completed", "PartiallyFailed", "Failed")) -> dict:
    def done():
        body = kube.get_custom(plural, namespace, name)
        assert (body.get("status") or {}).get("phase") in phases, dump(body.get("status"))
        return body
    return eventually(done, timeout=timeout, message=lambda: operator.log_text()[-3000:] + "\n" +
                      dump(kube.get_custom(plural, namespace, name).get("status")))


def identity_files(world, namespace: str) -> dict[str, tuple[bytes, int, int, int]]:
    """The node's identity files on its PVCs: path → (content, mode, uid, gid)."""
    out = {}
    for claim, prefixes in IDENTITY_PATHS.items():
        tree = world.kubelet.volume(namespace, claim)
        for path, entry in tree.walk():
            if entry.is_file and any(path.startswith(p) for p in prefixes) and ".replaced-" not in path:
                out[f"{claim}:{path}"] = (tree.read(path), entry.mode & 0o7777, entry.uid, entry.gid)
    return out


def secret_values(kube, namespace: str) -> dict[str, bytes]:
    out = {}
    for name, key in (("mayanode-mnemonic", "mnemonic"), ("mayanode-password", "password")):
        try:
            data = kube.core.read_namespaced_secret(name, namespace).data or {}
        except Exception:      # noqa: BLE001 - absent
            continue
        out[f"{name}/{key}"] = base64.b64decode(data.get(key, ""))
    return out


def cli(world, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mayanode_operator.cli", "backup", *args,
                           "--kubeconfig", str(world.kubeconfig_path)], capture_output=True, text=True, timeout=60)


def moved(world, manifest: dict, namespace: str) -> dict:
    """A MayaNode manifest for another namespace, its API pointed at that namespace's node."""
    manifest["metadata"]["namespace"] = namespace
    manifest["spec"]["api"].update(rest=f"{world.mocknet.url}/ns/{namespace}",
                                   rpc=f"{world.mocknet.url}/ns/{namespace}/rpc")
    return manifest


def serving_address(world, namespace: str) -> str | None:
    process = world.mocknet.serving_process(namespace)
    return process.node_address if process else None


@pytest.fixture(scope="module")
def peer(world, operator, kube):
    """Another node of the network: its RPC answers while the restored node is down."""
    seeded = world.seed_node(PEER)
    kube.apply(mayanode_manifest(seeded))
    return seeded


def backed_up(world, kube, operator, namespace: str, *, churn: bool = False):
    seeded = world.seed_node(namespace)
    if churn:
        world.call(_churn(world.mocknet))
    create_secret(kube, namespace, "age-identity", {"identity": IDENTITY})
    kube.apply(mayanode_manifest(seeded, backup={"afterChurn": False, "location": location()}))
    kube.apply(nodebackup(namespace, "full", namespace))
    body = finished(kube, naming.NODEBACKUP_PLURAL, namespace, "full", operator)
    assert body["status"]["phase"] == "Completed", dump(body["status"])
    return seeded


def backed_up_many(world, kube, operator, namespaces) -> dict:
    """Seed, apply and back up several nodes at once (their backups run concurrently)."""
    nodes = {ns: world.seed_node(ns) for ns in namespaces}
    for ns, seeded in nodes.items():
        create_secret(kube, ns, "age-identity", {"identity": IDENTITY})
        kube.apply(mayanode_manifest(seeded, backup={"afterChurn": False, "location": location()}))
        kube.apply(nodebackup(ns, "full", ns))
    for ns in namespaces:
        body = finished(kube, naming.NODEBACKUP_PLURAL, ns, "full", operator)
        assert body["status"]["phase"] == "Completed", dump(body["status"])
    return nodes


async def _churn(net) -> None:
    net.churn()
    await net.settle()


def test_wiped_node_is_restored_identically(world, operator, kube, peer):
    require(world, "volumes", "kubelet", "exec")
    ns = "restore-wipe"
    node = backed_up(world, kube, operator, ns, churn=True)
    before_files, before_secrets = identity_files(world, ns), secret_values(kube, ns)
    assert any("localstate-" in p for p in before_files) and len(before_secrets) == 2
    kube.apps.patch_namespaced_deployment_scale("mayanode", ns, {"spec": {"replicas": 0}})
    kube.apps.patch_namespaced_deployment_scale("bifrost", ns, {"spec": {"replicas": 0}})
    eventually(lambda: not world.mocknet.running_processes(ns), timeout=15)
    for claim in ("mayanode", "bifrost"):
        world.kubelet.volume(ns, claim).wipe()
    kube.core.delete_namespaced_secret("mayanode-mnemonic", ns)
    kube.core.patch_namespaced_secret("mayanode-password", ns, {"data": {"password": ""}})
    kube.apps.patch_namespaced_deployment_scale("mayanode", ns, {"spec": {"replicas": 1}})
    kube.apps.patch_namespaced_deployment_scale("bifrost", ns, {"spec": {"replicas": 1}})
    assert identity_files(world, ns) == {}

    kube.apply(noderestore(ns, "back", ns, "full", guard={"rpc": [peer.rpc_url]}))
    body = finished(kube, naming.NODERESTORE_PLURAL, ns, "back", operator)
    status = body["status"]
    assert status["phase"] == "Completed", dump(status)
    assert identity_files(world, ns) == before_files
    assert secret_values(kube, ns) == before_secrets
    eventually(lambda: serving_address(world, ns) == node.node_address, timeout=20)
    assert [s["name"] for s in status["steps"]] == [
        "VerifyBackup", "AcquireKeyLock", "ScaleDown", "WriteFiles", "SwapSecrets", "WaitKeySilent",
        "WriteSignState", "RemoveHelpers", "ScaleUp", "WaitReady"]
    assert all(s.get("completedAt") for s in status["steps"])
    assert status["guard"]["method"] == "Silent" and status["highWaterMark"]["source"] == "ChainTip"
    assert status["downtimeSeconds"] > 0 and condition(body, "Completed")["status"] == "True"
    state = json.loads(world.kubelet.volume(ns, "mayanode").read(".mayanode/data/priv_validator_state.json"))
    assert int(state["height"]) >= status["highWaterMark"]["height"]
    wanted = {"BackupVerified", "ScaledDown", "FilesWritten", "SecretsSwapped", "KeySilent", "SignStateWritten",
              "ScaledUp", "NodeReady", "RestoreCompleted"}
    # Events follow the status write they describe: wait for the last one.
    reasons = eventually(lambda: wanted <= (r := {e["reason"] for e in kube.events(ns, "back")}) and r, timeout=10,
                         message=f"events {wanted}")
    assert wanted <= reasons, reasons
    mn = eventually(lambda: (m := kube.mayanode(ns, ns)) and condition(m, "Suspended").get("status") == "False"
                    and m, timeout=20)
    assert mn["status"]["replicas"]["suspended"] is False
    assert not world.mocknet.double_signs
    # Re-applying a finished restore does nothing.
    kube.patch_spec(naming.NODERESTORE_PLURAL, ns, "back", {"force": False})
    assert kube.get_custom(naming.NODERESTORE_PLURAL, ns, "back")["status"]["steps"] == status["steps"]


def test_migration_refused_while_old_runs_then_succeeds(world, operator, kube, peer, tmp_path):
    require(world, "volumes", "kubelet", "exec")
    old_ns, new_ns = "restore-mig-a", "restore-mig-b"
    old = backed_up(world, kube, operator, old_ns)
    eventually(lambda: (kube.mayanode(old_ns, old_ns).get("status") or {}).get("node", {}).get("validatorConsPubKey"),
               timeout=20)
    exported = tmp_path / "full.mayabackup"
    result = cli(world, "export", "full", "-n", old_ns, "-o", str(exported))
    assert result.returncode == 0, result.stderr
    # B: a new, empty node (no keys on its volumes: its mayanode crash-loops) for the same node account.
    world.seed_node(new_ns, identity=old.identity, with_keys=False, register=False, wait_ready=False)
    create_secret(kube, new_ns, "age-identity", {"identity": IDENTITY})
    kube.apply(moved(world, mayanode_manifest(old, name="migrated", backup={"afterChurn": False,
                                                                            "location": location()}), new_ns))
    result = cli(world, "import", str(exported), "-n", new_ns, "--node", "migrated")
    assert result.returncode == 0, result.stderr
    finished(kube, naming.NODEBACKUP_PLURAL, new_ns, "full", operator)

    kube.apply(noderestore(new_ns, "too-early", "migrated", "full", guard={"rpc": [peer.rpc_url]}))
    refused = finished(kube, naming.NODERESTORE_PLURAL, new_ns, "too-early", operator)["status"]
    assert refused["phase"] == "Failed" and refused["failedStep"] == "AcquireKeyLock", dump(refused)
    assert refused["guard"]["lockHolder"] == f"{old_ns}/{old_ns}" and not refused.get("nodeLeftDown")
    assert "nothing was changed" in refused["nextAction"]
    eventually(lambda: any(e["reason"] == "KeyInUse" and e["type"] == "Warning"
                           for e in kube.events(new_ns, "too-early")), timeout=10, message="a KeyInUse Warning")
    assert kube.apps.read_namespaced_deployment("mayanode", new_ns).spec.replicas == 1      # untouched
    assert world.mocknet.serving_process(old_ns) is not None          # A untouched

    kube.patch_spec(naming.MAYANODE_PLURAL, old_ns, old_ns, {"suspend": True})
    eventually(lambda: not world.mocknet.running_processes(old_ns), timeout=20)
    kube.apply(noderestore(new_ns, "migrate", "migrated", "full", guard={"rpc": [peer.rpc_url]}))
    status = finished(kube, naming.NODERESTORE_PLURAL, new_ns, "migrate", operator)["status"]
    assert status["phase"] == "Completed", dump(status)
    assert status["guard"]["method"] == "Silent"
    assert status["guard"]["silentToHeight"] - status["guard"]["silentFromHeight"] >= 3
    eventually(lambda: serving_address(world, new_ns) == old.node_address, timeout=20)
    assert not world.mocknet.double_signs
    # A stays down when unsuspended: B holds its consensus key now.
    kube.patch_spec(naming.MAYANODE_PLURAL, old_ns, old_ns, {"suspend": False})
    mn = eventually(lambda: (m := kube.mayanode(old_ns, old_ns)) and
                    condition(m, "Suspended").get("reason") == "KeyHeldElsewhere" and m, timeout=20)
    assert f"{new_ns}/migrated" in condition(mn, "Suspended")["message"]
    # ... also once A's own API is long gone from its status (its consensus key is remembered in status.replicas).
    mn = eventually(lambda: (m := kube.mayanode(old_ns, old_ns)) and
                    not (m["status"].get("node") or {}).get("validatorConsPubKey") and m, timeout=20)
    kube.patch_spec(naming.MAYANODE_PLURAL, old_ns, old_ns, {"observe": {"intervalSeconds": 6}})
    eventually(lambda: kube.mayanode(old_ns, old_ns)["status"].get("observedGeneration") ==
               kube.mayanode(old_ns, old_ns)["metadata"]["generation"], timeout=20)
    mn = kube.mayanode(old_ns, old_ns)
    assert condition(mn, "Suspended")["reason"] == "KeyHeldElsewhere", dump(mn["status"])
    assert mn["status"]["replicas"]["consensusPubKey"] == status["guard"]["consensusPubKey"]
    assert kube.apps.read_namespaced_deployment("mayanode", old_ns).spec.replicas == 0
    assert not world.mocknet.running_processes(old_ns) and not world.mocknet.double_signs


@pytest.mark.parametrize("chain_proof", [False, True], ids=["stop-proven", "chain-proof"])
def test_hand_off(world, operator, kube, peer, chain_proof):
    require(world, "volumes", "kubelet", "exec")
    old_ns, new_ns = ("restore-hc-a", "restore-hc-b") if chain_proof else ("restore-ho-a", "restore-ho-b")
    old = backed_up(world, kube, operator, old_ns)
    world.seed_node(new_ns, identity=old.identity, with_keys=False, register=False, replicas=0)
    kube.apply(moved(world, mayanode_manifest(old, name="new"), new_ns))
    restore = noderestore(new_ns, "handoff", "new", "full",
                          guard={"oldNode": {"name": old_ns, "namespace": old_ns, "proveSilentOnChain": chain_proof}})
    restore["spec"]["backupRef"]["namespace"] = old_ns
    kube.patch_spec(naming.NODEBACKUP_PLURAL, old_ns, "full", {"restoreNamespaces": [new_ns]})
    kube.apply(restore)
    status = finished(kube, naming.NODERESTORE_PLURAL, new_ns, "handoff", operator)["status"]
    assert status["phase"] == "Completed", dump(status)
    assert status["guard"]["method"] == "HandOff" and status["guard"]["passedAt"]
    steps = [s["name"] for s in status["steps"]]
    guarded = next(c for c in status["conditions"] if c["type"] == "Guarded")
    assert (guarded["status"], guarded["reason"]) == ("True", "HandOff")
    if chain_proof:
        assert "WaitKeySilent" in steps
        assert status["guard"]["silentToHeight"] - status["guard"]["silentFromHeight"] >= 3
    else:
        # The operator proved the stop itself: the new node started without waiting for silent blocks.
        assert "WaitKeySilent" not in steps and steps.index("StopOldNode") < steps.index("WriteSignState")
        assert status["guard"]["chainTip"] >= status["guard"]["stopHeight"]
    sources = {i["source"]: i["height"] for i in status["signStateInputs"]}
    assert "OldNodeVolume" in sources and sources["OldNodeVolume"] > 0, sources
    assert {"Backup", "OldNodeVolume", "ChainTip"} <= set(sources), sources
    assert status["highWaterMark"]["height"] >= max(sources.values())
    # The restored node never signs a height the old one may have signed.
    validator = status["guard"]["validatorAddress"]
    first = eventually(lambda: next((b.height for b in list(world.mocknet.blocks) if b.height >
                                     sources["OldNodeVolume"] and validator in
                                     {s.validator_address for s in b.signatures}), None), timeout=20)
    assert first > status["highWaterMark"]["height"]
    assert kube.mayanode(old_ns, old_ns)["spec"]["suspend"] is True
    eventually(lambda: serving_address(world, new_ns) == old.node_address, timeout=20)
    assert not world.mocknet.running_processes(old_ns)
    assert not world.mocknet.double_signs


def test_suspend_and_resume(world, operator, kube):
    require(world, "kubelet")
    ns = "restore-suspend"
    seeded = world.seed_node(ns)
    kube.apply(mayanode_manifest(seeded, suspend=True))
    mn = eventually(lambda: (m := kube.mayanode(ns, ns)) and condition(m, "Suspended").get("status") == "True" and m,
                    timeout=20)
    assert mn["status"]["replicas"]["reason"] == "Suspended"
    eventually(lambda: not world.mocknet.running_processes(ns), timeout=20)
    assert kube.apps.read_namespaced_deployment("bifrost", ns).spec.replicas == 0
    kube.patch_spec(naming.MAYANODE_PLURAL, ns, ns, {"suspend": False})
    eventually(lambda: world.mocknet.running_processes(ns), timeout=20)
    mn = eventually(lambda: (m := kube.mayanode(ns, ns)) and condition(m, "Suspended").get("status") == "False" and m,
                    timeout=20)
    assert kube.apps.read_namespaced_deployment("bifrost", ns).spec.replicas == 1
    eventually(lambda: {"Suspended", "Resumed"} <= {e["reason"] for e in kube.events(ns, ns)}, timeout=10,
               message="Suspended and Resumed events")


def test_no_secret_material_in_logs_events_or_status(world, operator, kube):
    require(world, "volumes", "kubelet")
    secrets = []
    for namespace, seeded in world.sandbox.nodes.items():
        if namespace.startswith("restore-"):
            secrets += [seeded.identity.mnemonic, seeded.password]
            tree = world.kubelet.volume(namespace, "mayanode")
            if tree.exists(".mayanode/config/priv_validator_key.json"):
                secrets.append(json.loads(tree.read(".mayanode/config/priv_validator_key.json"))["priv_key"]["value"])
    haystack = operator.log_text()
    for namespace in {n for n in world.sandbox.nodes if n.startswith("restore-")}:
        haystack += json.dumps(kube.events(namespace))
        items = kube.custom.list_namespaced_custom_object(naming.GROUP, naming.VERSION, namespace,
                                                          naming.NODERESTORE_PLURAL)["items"]
        haystack += json.dumps([i.get("status") for i in items])
    assert "NodeRestore" in haystack or "restore" in haystack
    for secret in secrets:
        assert secret not in haystack
