"""NodeRestore safety against the sandbox, where the world moves under a restore: a second restore of the same node,
the node scaled back up by someone while the guard waits, its files changed behind the restore's back, another node's
identity on the target, and a scale-down refused before it scaled anything."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from mayanode_operator import chainkeys
from mayanode_operator.api import naming
from mayanode_operator.reconcile.facets import active_restore_for
from mayanode_operator.reconcile.noderestore import reconcile_noderestore
from mayanode_operator.sandbox import identity as ident

from .backup_world import condition

PEER = "hg-peer"
MAYANODE_HOME, BIFROST_HOME = naming.DEFAULT_MAYANODE_SUBPATH, naming.DEFAULT_BIFROST_SUBPATH


@pytest.fixture(scope="module")
def peer(world):
    return world.seed(PEER)


def restore(world, namespace: str, name: str, peer, *, backup: tuple[str, str] | None = None, node: str | None = None,
            **spec: Any) -> None:
    guard = {"silentBlocks": 3, "rpc": [peer.rpc_url], **spec.pop("guard", {})}
    backup_ns, backup_name = backup or (namespace, "full")
    world.create(naming.NODERESTORE_PLURAL, {
        "apiVersion": naming.API_VERSION, "kind": "NodeRestore", "metadata": {"name": name, "namespace": namespace},
        "spec": {"backupRef": {"name": backup_name, "namespace": backup_ns}, "nodeRef": {"name": node or namespace},
                 "doubleSignGuard": guard, **spec}})


def status_of(world, namespace: str, name: str) -> dict[str, Any]:
    return (world.get(naming.NODERESTORE_PLURAL, namespace, name) or {}).get("status") or {}


def one_pass(world, namespace: str, name: str) -> dict[str, Any]:
    delay = world.call(reconcile_noderestore(world.runtime, namespace, name))
    world.call(asyncio.sleep(min(delay or 0.05, 0.3)))
    return status_of(world, namespace, name)


def drive(world, namespace: str, name: str, *, until: str | None = None, max_passes: int = 200) -> dict[str, Any]:
    status: dict[str, Any] = {}
    for _ in range(max_passes):
        delay = world.call(reconcile_noderestore(world.runtime, namespace, name))
        status = status_of(world, namespace, name)
        if delay is None or status.get("phase") in ("Completed", "Failed") or (until and status.get("step") == until):
            return status
        world.call(asyncio.sleep(min(delay, 0.3)))
    return status


def replicas(world, namespace: str, deployment: str) -> int:
    return int(world.call(world.runtime.kube.get_deployment(namespace, deployment))["spec"]["replicas"])


def scale(world, namespace: str, deployment: str, n: int) -> None:
    world.call(asyncio.to_thread(world.runtime.kube.apps.patch_namespaced_deployment_scale, deployment, namespace,
                                 {"spec": {"replicas": n}}))


def volume_key(world, namespace: str) -> str:
    data = world.sandbox.kubelet.volume(namespace, naming.DEFAULT_MAYANODE_PVC).read(
        f"{MAYANODE_HOME}/config/priv_validator_key.json")
    return chainkeys.parse_priv_validator_key(data).pubkey_bech32


def eventually(check, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def running(world, namespace: str) -> list[Any]:
    return world.sandbox.mocknet.running_processes(namespace)


def backed_up(world, node, *restore_namespaces: str) -> None:
    """A MayaNode for a seeded node, and a Completed NodeBackup `full` of it (restorable in `restore_namespaces` too)."""
    world.mayanode(node, backup={"afterChurn": False, "location": world.location()})
    world.nodebackup(node.namespace, "full", node.namespace, restoreNamespaces=list(restore_namespaces))
    assert world.drive(node.namespace, "full")["status"]["phase"] == "Completed"


def empty_target(world, namespace: str, **seed: Any):
    """A node with empty volumes at 0 replicas, and its MayaNode (no spec.nodeAddress: any backup may go onto it)."""
    node = world.seed(namespace, with_keys=False, register=False, replicas=0, **seed)
    world.create(naming.MAYANODE_PLURAL, {
        "apiVersion": naming.API_VERSION, "kind": "MayaNode", "metadata": {"name": namespace, "namespace": namespace},
        "spec": {"network": node.network, "api": {"rest": f"{world.sandbox.mocknet.url}/ns/{namespace}",
                                                  "rpc": f"{world.sandbox.mocknet.url}/ns/{namespace}/rpc",
                                                  "timeoutSeconds": 2}}})
    return node


# --------------------------------------------------------------------------------------------------
# 1. Two NodeRestores of one MayaNode
# --------------------------------------------------------------------------------------------------
def test_a_second_restore_of_the_same_node_waits_until_the_first_has_finished(world, peer):
    """r1 (node A's backup) waits for A's key to fall silent; r2 (node B's backup, same target) must not write B's
    keys meanwhile, or r1's guard, proven for A's key, would start the node with B's key while B runs."""
    a, b = world.seed("hg-c-a"), world.seed("hg-c-b")
    for node in (a, b):
        backed_up(world, node, "hg-c-t")
    empty_target(world, "hg-c-t")
    restore(world, "hg-c-t", "r1", peer, backup=("hg-c-a", "full"))
    restore(world, "hg-c-t", "r2", peer, backup=("hg-c-b", "full"))
    assert drive(world, "hg-c-t", "r1", until="WaitKeySilent")["step"] == "WaitKeySilent"   # A still runs

    for _ in range(4):
        second = one_pass(world, "hg-c-t", "r2")
    assert second["phase"] == "Pending" and not second.get("steps"), second
    assert "NodeRestore r1" in second["message"] and "nothing was touched" in second["message"]
    assert any(e["reason"] == "WaitingForRestore" and "r1" in e["message"] for e in world.events("hg-c-t", "r2"))
    assert volume_key(world, "hg-c-t") == a.identity.consensus_pubkey_bech32          # r1's files, untouched
    restores = world.call(world.runtime.kube.list_custom(naming.NODERESTORE_PLURAL, "hg-c-t"))
    assert active_restore_for("hg-c-t", restores) == "r1"                           # the MayaNode agrees

    scale(world, "hg-c-a", "bifrost", 0)
    scale(world, "hg-c-a", "mayanode", 0)
    first = drive(world, "hg-c-t", "r1")
    assert first["phase"] == "Completed" and first["guard"]["method"] == "Silent", first
    assert [p.validator_address for p in running(world, "hg-c-t")] == [a.identity.validator_address]

    # r1 has finished: r2 goes on, finds A's identity on the node and refuses to overwrite it (B still runs).
    second = drive(world, "hg-c-t", "r2")
    assert second["phase"] == "Failed" and second["failedStep"] == "VerifyBackup", second
    assert second["message"].startswith("OtherIdentity:") and not second["nodeLeftDown"]
    assert replicas(world, "hg-c-t", "mayanode") == 1 and volume_key(world, "hg-c-t") == a.identity.consensus_pubkey_bech32
    assert not world.sandbox.mocknet.double_signs


# --------------------------------------------------------------------------------------------------
# 2. The node scaled back up by someone while the guard waits
# --------------------------------------------------------------------------------------------------
def test_the_node_scaled_up_during_a_hand_off_wait_is_scaled_down_and_its_signing_raises_the_mark(world, peer):
    old = world.seed("hg-r-a")
    backed_up(world, old, "hg-r-b")
    world.seed("hg-r-b", identity=old.identity, with_keys=False, register=False, replicas=0)
    world.create(naming.MAYANODE_PLURAL, {
        "apiVersion": naming.API_VERSION, "kind": "MayaNode", "metadata": {"name": "new", "namespace": "hg-r-b"},
        "spec": {"network": old.network, "nodeAddress": old.node_address,
                 "api": {"rest": f"{world.sandbox.mocknet.url}/ns/hg-r-b",
                         "rpc": f"{world.sandbox.mocknet.url}/ns/hg-r-b/rpc", "timeoutSeconds": 2}}})
    restore(world, "hg-r-b", "move", peer, backup=("hg-r-a", "full"), node="new",
            guard={"oldNode": {"name": "hg-r-a", "namespace": "hg-r-a", "suspend": False}})
    assert drive(world, "hg-r-b", "move", until="StopOldNode")["step"] == "StopOldNode"

    # A helm upgrade (or a GitOps self-heal) brings the new node up beside the old one while the restore waits.
    scale(world, "hg-r-b", "mayanode", 1)
    eventually(lambda: running(world, "hg-r-b"))
    # What it signs is on its volume when it stops (here: far ahead, as if it had signed there).
    revived = world.sandbox.mocknet.height + 40
    world.sandbox.kubelet.volume("hg-r-b", naming.DEFAULT_MAYANODE_PVC).write(
        f"{MAYANODE_HOME}/data/priv_validator_state.json", ident.priv_validator_state_json(revived, 0, 3))

    status = one_pass(world, "hg-r-b", "move")
    assert replicas(world, "hg-r-b", "mayanode") == 0 and status["step"] == "StopOldNode", status
    assert "run again: scaled back to 0" in status["message"], status["message"]
    assert any(e["type"] == "Warning" and e["reason"] == "NodeScaledUpDuringRestore"
               for e in world.events("hg-r-b", "move"))
    eventually(lambda: not running(world, "hg-r-b"))

    scale(world, "hg-r-a", "bifrost", 0)
    scale(world, "hg-r-a", "mayanode", 0)
    status = drive(world, "hg-r-b", "move")
    assert status["phase"] == "Completed", status
    sources = {i["source"]: i["height"] for i in status["signStateInputs"]}
    assert sources.get("TargetVolume") == revived, status["signStateInputs"]
    assert status["highWaterMark"]["height"] >= revived, status["highWaterMark"]


def test_the_node_scaled_up_while_the_key_must_fall_silent_is_scaled_down_again(world, peer):
    node = world.seed("hg-s")
    backed_up(world, node)
    account = world.sandbox.mocknet.node(node.node_address)
    world.call(asyncio.to_thread(lambda: setattr(account, "virtual", True)))      # the key keeps signing elsewhere
    try:
        restore(world, "hg-s", "silent", peer)
        assert drive(world, "hg-s", "silent", until="WaitKeySilent")["step"] == "WaitKeySilent"
        scale(world, "hg-s", "mayanode", 1)
        eventually(lambda: world.pods("hg-s", "app.kubernetes.io/name=mayanode"))
        status = one_pass(world, "hg-s", "silent")
        assert replicas(world, "hg-s", "mayanode") == 0 and status["step"] == "WaitKeySilent", status
        assert "run again: scaled back to 0" in status["message"], status["message"]
        assert any(e["reason"] == "NodeScaledUpDuringRestore" for e in world.events("hg-s", "silent"))
    finally:
        world.call(asyncio.to_thread(lambda: setattr(account, "virtual", False)))
    status = drive(world, "hg-s", "silent")
    assert status["phase"] == "Completed", status


def test_a_consensus_key_changed_on_the_volume_before_the_sign_state_fails_with_the_node_held_down(world, peer):
    """The guard proved one key silent; if the node's volume holds another one when the sign state is to be written,
    the node must not start: it stays down, and says why."""
    node = world.seed("hg-k")
    backed_up(world, node)
    account = world.sandbox.mocknet.node(node.node_address)
    world.call(asyncio.to_thread(lambda: setattr(account, "virtual", True)))
    try:
        restore(world, "hg-k", "swapped", peer)
        assert drive(world, "hg-k", "swapped", until="WaitKeySilent")["step"] == "WaitKeySilent"
        other = ident.NodeIdentity.from_seed("hg-k-someone-else")
        world.sandbox.kubelet.volume("hg-k", naming.DEFAULT_MAYANODE_PVC).write(
            f"{MAYANODE_HOME}/config/priv_validator_key.json", ident.priv_validator_key_json(other))
    finally:
        world.call(asyncio.to_thread(lambda: setattr(account, "virtual", False)))
    status = drive(world, "hg-k", "swapped")
    assert status["phase"] == "Failed" and status["failedStep"] == "WriteSignState", status
    assert status["message"].startswith("ConsensusKeyChanged:") and other.consensus_pubkey_bech32 in status["message"]
    assert status["nodeLeftDown"] and "0 replicas" in status["nextAction"]
    body = world.get(naming.NODERESTORE_PLURAL, "hg-k", "swapped")
    assert condition(body, "ScaledDown")["reason"] == "NodeHeldDown"
    assert replicas(world, "hg-k", "mayanode") == 0 and not running(world, "hg-k")


# --------------------------------------------------------------------------------------------------
# 3. Another node's identity on the target
# --------------------------------------------------------------------------------------------------
@dataclass
class Vault:
    pub_key: str
    membership: list


def test_a_target_holding_another_identity_is_refused_unless_its_replacement_is_asked_for(world, peer):
    source, target = world.seed("hg-i-a"), world.seed("hg-i-t")
    vault = Vault("mayapub1hgsharedvault", [source.identity.secp256k1_pubkey, target.identity.secp256k1_pubkey])
    share_name, source_share = ident.key_share_file(source.identity, vault)
    _, target_share = ident.key_share_file(target.identity, vault)
    kubelet = world.sandbox.kubelet
    kubelet.volume("hg-i-a", naming.DEFAULT_BIFROST_PVC).write(f"{BIFROST_HOME}/{share_name}", source_share)
    kubelet.volume("hg-i-t", naming.DEFAULT_BIFROST_PVC).write(f"{BIFROST_HOME}/{share_name}", target_share)
    backed_up(world, source, "hg-i-t")
    world.create(naming.MAYANODE_PLURAL, {       # no spec.nodeAddress: the node address check cannot tell
        "apiVersion": naming.API_VERSION, "kind": "MayaNode", "metadata": {"name": "hg-i-t", "namespace": "hg-i-t"},
        "spec": {"network": target.network, "api": {"rest": target.rest_url, "rpc": target.rpc_url,
                                                    "timeoutSeconds": 2}}})
    restore(world, "hg-i-t", "r", peer, backup=("hg-i-a", "full"))
    status = drive(world, "hg-i-t", "r")
    assert status["phase"] == "Failed" and status["failedStep"] == "VerifyBackup", status
    assert status["message"].startswith("OtherIdentity:") and not status["nodeLeftDown"], status
    assert target.identity.consensus_pubkey_bech32 in status["message"] and share_name in status["message"]
    assert "replaceOtherIdentity" in status["message"]
    assert condition(world.get(naming.NODERESTORE_PLURAL, "hg-i-t", "r"), "Verified")["reason"] == "OtherIdentity"
    assert replicas(world, "hg-i-t", "mayanode") == 1
    assert volume_key(world, "hg-i-t") == target.identity.consensus_pubkey_bech32
    bifrost = kubelet.volume("hg-i-t", naming.DEFAULT_BIFROST_PVC)
    assert bifrost.read(f"{BIFROST_HOME}/{share_name}") == target_share
    assert world.pods("hg-i-t", f"{naming.GROUP}/restore=r") == []

    # Asked for (and the source node stopped, so its key can fall silent): the share is moved aside, not overwritten.
    scale(world, "hg-i-a", "bifrost", 0)
    scale(world, "hg-i-a", "mayanode", 0)
    world.patch_spec(naming.NODERESTORE_PLURAL, "hg-i-t", "r", {"replaceOtherIdentity": True})
    status = drive(world, "hg-i-t", "r")
    assert status["phase"] == "Completed", status
    assert any(e["type"] == "Warning" and e["reason"] == "ReplacingOtherIdentity" for e in world.events("hg-i-t", "r"))
    assert bifrost.read(f"{BIFROST_HOME}/{share_name}.replaced-r") == target_share
    assert json.loads(bifrost.read(f"{BIFROST_HOME}/{share_name}"))["LocalPartyKey"] == \
        source.identity.secp256k1_pubkey
    assert volume_key(world, "hg-i-t") == source.identity.consensus_pubkey_bech32


def test_a_same_named_key_share_that_names_no_party_is_kept_beside_the_backups(world, peer):
    """Not proven another node's, so no refusal; but it differs from the backup's, and a key share cannot be made
    again: it is kept under a new name, and a Warning says so."""
    node = world.seed("hg-u")
    vault = Vault("mayapub1hgunnamedvault", [node.identity.secp256k1_pubkey])
    share_name, own_share = ident.key_share_file(node.identity, vault)
    bifrost = world.sandbox.kubelet.volume("hg-u", naming.DEFAULT_BIFROST_PVC)
    bifrost.write(f"{BIFROST_HOME}/{share_name}", own_share)
    backed_up(world, node)
    unnamed = json.dumps({"PubKey": vault.pub_key, "note": "a share written by hand"}).encode()
    bifrost.write(f"{BIFROST_HOME}/{share_name}", unnamed)
    restore(world, "hg-u", "r", peer)
    status = drive(world, "hg-u", "r")
    assert status["phase"] == "Completed", status
    assert bifrost.read(f"{BIFROST_HOME}/{share_name}") == own_share
    assert bifrost.read(f"{BIFROST_HOME}/{share_name}.replaced-r") == unnamed
    warnings = [e for e in world.events("hg-u", "r") if e["type"] == "Warning" and e["reason"] == "KeySharesFound"]
    assert warnings and f"{share_name} → {share_name}.replaced-r" in warnings[0]["message"], warnings


# --------------------------------------------------------------------------------------------------
# 4. A scale-down refused before it scaled anything
# --------------------------------------------------------------------------------------------------
def test_a_scale_down_refused_before_anything_was_scaled_does_not_say_the_node_is_left_down(world, peer):
    from aiohttp import web

    from mayanode_operator.sandbox.apiserver.handlers import request_info

    node = world.seed("hg-d")
    backed_up(world, node)

    async def forbid_scaling(request, call_next):
        info = request_info(request)
        if (info.resource, info.subresource, info.namespace) == ("deployments", "scale", "hg-d") \
                and info.verb in ("patch", "update"):
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
                                      "reason": "Forbidden", "message": "deployments.apps \"bifrost\" is forbidden: "
                                      "cannot patch resource \"deployments/scale\""}, status=403)
        return await call_next(request)

    world.sandbox.api.add_request_hook(forbid_scaling)
    try:
        restore(world, "hg-d", "refused", peer)
        status = drive(world, "hg-d", "refused")
    finally:
        world.sandbox.api.remove_request_hook(forbid_scaling)
    assert status["phase"] == "Failed" and status["failedStep"] == "ScaleDown", status
    assert status["message"].startswith("Forbidden:") and status["nodeLeftDown"] is False, status
    assert replicas(world, "hg-d", "mayanode") == 1 and replicas(world, "hg-d", "bifrost") == 1
    body = world.get(naming.NODERESTORE_PLURAL, "hg-d", "refused")
    assert condition(body, "ScaledDown")["status"] == "False"
    warning = [e for e in world.events("hg-d", "refused") if e["type"] == "Warning"]
    assert warning and "LEFT SCALED DOWN" not in warning[-1]["message"] and "nothing was changed" in \
        warning[-1]["message"]
    assert "stays at 0 replicas" not in status["nextAction"]
