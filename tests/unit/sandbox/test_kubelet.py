"""The simulated kubelet against the real EmulatedApiServer and Mocknet (through the Sandbox)."""

from __future__ import annotations

import asyncio
import base64
import io
import ipaddress
import json
import tarfile

import pytest

from mayanode_operator import chainkeys
from mayanode_operator.sandbox import kubeclient as kc
from mayanode_operator.sandbox.world import Sandbox

FAST = {"ready_delay": 0.05, "stop_delay": 0.05, "lb_delay": 0.05, "crash_backoff": 0.1, "config_retry": 0.1}
STATE = ".mayanode/data/priv_validator_state.json"


@pytest.fixture
async def sb():
    async with Sandbox.start(block_interval=0.1, kubelet_options=FAST) as sandbox:
        yield sandbox


async def mayanode_pod(sb: Sandbox, ns: str, name: str = "mayanode", *, maybe: bool = False) -> dict:
    pods = await sb.pods(ns, f"app.kubernetes.io/name={name}")
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    if maybe and not live:
        return {}
    assert len(live) == 1, [p["metadata"]["name"] for p in pods]
    return live[0]


async def test_seeded_node_runs_and_signs(sb: Sandbox) -> None:
    node = await sb.seed_node("node-a", version="1.111.0", status="Active")
    await sb.wait_ready("node-a")
    pod = await mayanode_pod(sb, "node-a")
    assert pod["spec"]["nodeName"] == "sandbox-node"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert pod["metadata"]["name"].startswith("mayanode-")
    st = pod["status"]
    assert st["phase"] == "Running" and st["podIP"] and st["startTime"]
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"
    cs = st["containerStatuses"][0]
    assert (cs["name"], cs["ready"], cs["started"], cs["restartCount"]) == ("mayanode", True, True, 0)
    assert "running" in cs["state"]

    dep = await sb.client.get(kc.DEPLOYMENTS, "mayanode", "node-a")
    assert dep["status"]["observedGeneration"] == dep["metadata"]["generation"]
    assert {c["type"]: c["status"] for c in dep["status"]["conditions"]} == {"Available": "True",
                                                                            "Progressing": "True"}
    (process,) = sb.mocknet.running_processes("node-a")
    assert process.node_address == node.node_address and process.version == "1.111.0"
    assert process.validator_address == node.facts.validator_address
    assert [b.node_address for b in sb.mocknet.bifrosts.values()] == [node.node_address]
    height = await sb.mocknet.advance(2)
    assert node.facts.validator_address in sb.mocknet.signers_at(height)


async def test_recreate_replaces_the_pod_without_overlap(sb: Sandbox) -> None:
    await sb.seed_node("node-a")
    await sb.wait_ready("node-a", ["mayanode"])
    old = await mayanode_pod(sb, "node-a")
    listing = await sb.client.list(kc.PODS, "node-a")
    rv = listing["metadata"]["resourceVersion"]
    history: list[tuple[str, str, bool]] = []

    async def watch() -> None:
        async for etype, obj in sb.client.watch(kc.PODS, "node-a", resource_version=rv, timeout_seconds=30):
            if obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "mayanode":
                history.append((etype, obj["metadata"]["name"], bool(obj["metadata"].get("deletionTimestamp"))))

    watcher = asyncio.create_task(watch())
    image = "registry.gitlab.com/mayachain/mayanode:mocknet-1.112.0"
    await sb.client.patch(kc.DEPLOYMENTS, "mayanode", {"spec": {"template": {"spec": {"containers": [
        {"name": "mayanode", "image": image}]}}}}, "node-a", patch_type="strategic")

    async def new_version_running():
        procs = sb.mocknet.running_processes("node-a")
        return procs and procs[0].version == "1.112.0"

    await sb.wait_for(new_version_running, message="new mayanode version running")
    await sb.wait_ready("node-a", ["mayanode"])
    await asyncio.sleep(0.1)
    watcher.cancel()
    new = await mayanode_pod(sb, "node-a")
    assert new["metadata"]["name"] != old["metadata"]["name"]
    assert new["spec"]["containers"][0]["image"] == image

    existing: set[str] = {old["metadata"]["name"]}
    most = 1
    for etype, name, _ in history:
        if etype == "ADDED":
            existing.add(name)
        elif etype == "DELETED":
            existing.discard(name)
        most = max(most, len(existing))
    assert most == 1, history
    deleted_at = next(i for i, (e, n, _) in enumerate(history) if e == "DELETED" and n == old["metadata"]["name"])
    added_at = next(i for i, (e, n, _) in enumerate(history) if e == "ADDED" and n == new["metadata"]["name"])
    assert deleted_at < added_at
    assert sb.mocknet.double_signs == []


async def test_scale_to_zero_stops_the_process_and_persists_the_signed_height(sb: Sandbox) -> None:
    await sb.seed_node("node-a")
    await sb.wait_ready("node-a", ["mayanode"])
    height = await sb.mocknet.advance(3)
    await sb.client.patch(kc.DEPLOYMENTS, "mayanode", {"spec": {"replicas": 0}}, "node-a")

    async def gone():
        return not await sb.pods("node-a", "app.kubernetes.io/name=mayanode")

    await sb.wait_for(gone, message="mayanode pods gone")
    assert sb.mocknet.running_processes("node-a") == []
    state = chainkeys.parse_priv_validator_state(sb.kubelet.volume("node-a", "mayanode").read(STATE))
    assert state.height >= height
    assert sb.kubelet.volume("node-a", "mayanode").stat(STATE).mode == 0o600

    async def status_zero():
        dep = await sb.client.get(kc.DEPLOYMENTS, "mayanode", "node-a")
        return dep["status"].get("replicas", 0) == 0 and dep["status"]["observedGeneration"] == \
            dep["metadata"]["generation"]

    await sb.wait_for(status_zero, message="deployment status shows 0 replicas")

    # Back to 1: the node resumes above the persisted height (no double sign).
    await sb.client.patch(kc.DEPLOYMENTS, "mayanode", {"spec": {"replicas": 1}}, "node-a")
    await sb.wait_ready("node-a", ["mayanode"])
    (process,) = sb.mocknet.running_processes("node-a")
    assert process.last_signed_height >= state.height
    assert sb.mocknet.double_signs == []


async def test_missing_key_files_crash_loop_without_a_process(sb: Sandbox) -> None:
    await sb.seed_node("node-b", with_keys=False)

    async def crash_looping():
        pod = await mayanode_pod(sb, "node-b", maybe=True)
        cs = (pod.get("status", {}).get("containerStatuses") or [{}])[0]
        waiting = cs.get("state", {}).get("waiting", {})
        return waiting.get("reason") == "CrashLoopBackOff" and cs["restartCount"] >= 2 and cs

    cs = await sb.wait_for(crash_looping, message="CrashLoopBackOff")
    assert "priv_validator_key.json" in cs["lastState"]["terminated"]["message"]
    assert sb.mocknet.running_processes("node-b") == []

    # Restoring the key files lets the next restart come up.
    from mayanode_operator.sandbox import identity as ident

    who = sb.nodes["node-b"].identity
    tree = sb.kubelet.volume("node-b", "mayanode")
    for entry in ident.mayanode_home_entries(who):
        if not entry.is_dir:
            tree.write(f".mayanode/{entry.path}", entry.content, entry.mode)
    await sb.wait_for(lambda: sb.mocknet.running_processes("node-b"), message="process after restore")


async def test_image_behaviours_crash_and_never_ready(sb: Sandbox) -> None:
    sb.kubelet.set_image_behaviour("mocknet-1.200.0", crash=True)
    sb.kubelet.set_image_behaviour("nginx", ready=False)
    await sb.seed_node("node-c", version="1.200.0")

    async def statuses():
        may = await mayanode_pod(sb, "node-c", maybe=True)
        gw = await mayanode_pod(sb, "node-c", "gateway", maybe=True)
        mcs = (may.get("status", {}).get("containerStatuses") or [{}])[0]
        gcs = (gw.get("status", {}).get("containerStatuses") or [{}])[0]
        if mcs.get("restartCount", 0) >= 2 and "running" in gcs.get("state", {}):
            return mcs, gw
        return None

    mcs, gw = await sb.wait_for(statuses, message="crash loop and never-ready gateway")
    assert mcs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    await asyncio.sleep(0.2)
    gw = await mayanode_pod(sb, "node-c", "gateway")
    assert gw["status"]["phase"] == "Running"
    assert {c["type"]: c["status"] for c in gw["status"]["conditions"]}["Ready"] == "False"
    dep = await sb.client.get(kc.DEPLOYMENTS, "gateway", "node-c")
    assert dep["status"].get("readyReplicas", 0) == 0 and dep["status"]["unavailableReplicas"] == 1


async def test_missing_secret_is_create_container_config_error(sb: Sandbox) -> None:
    await sb.seed_node("node-a")
    await sb.wait_ready("node-a", ["mayanode"])
    secret = await sb.client.get(kc.SECRETS, "mayanode-password", "node-a")
    await sb.client.delete(kc.SECRETS, "mayanode-password", "node-a")
    old = await mayanode_pod(sb, "node-a")
    await sb.client.delete(kc.PODS, old["metadata"]["name"], "node-a")

    async def config_error():
        pods = [p for p in await sb.pods("node-a", "app.kubernetes.io/name=mayanode")
                if p["metadata"]["name"] != old["metadata"]["name"]]
        for p in pods:
            for cs in p.get("status", {}).get("containerStatuses") or []:
                waiting = cs.get("state", {}).get("waiting", {})
                if waiting.get("reason") == "CreateContainerConfigError":
                    return p, waiting
        return None

    pod, waiting = await sb.wait_for(config_error, message="CreateContainerConfigError")
    assert waiting["message"] == 'secret "mayanode-password" not found'
    assert pod["status"]["phase"] == "Pending"
    assert sb.mocknet.running_processes("node-a") == []
    await sb.client.create(kc.SECRETS, {"metadata": {"name": "mayanode-password", "namespace": "node-a"},
                                        "data": secret["data"], "type": "Opaque"})
    await sb.wait_ready("node-a", ["mayanode"])


async def test_loadbalancer_gets_an_address_and_tests_can_change_it(sb: Sandbox) -> None:
    await sb.seed_node("node-a")

    async def ingress():
        svc = await sb.client.get(kc.SERVICES, "gateway", "node-a")
        return (svc.get("status", {}).get("loadBalancer") or {}).get("ingress")

    (entry,) = await sb.wait_for(ingress, message="LoadBalancer ingress")
    assert ipaddress.ip_address(entry["ip"]) in ipaddress.ip_network("203.0.113.0/24")
    mayanode_svc = await sb.client.get(kc.SERVICES, "mayanode", "node-a")
    assert not (mayanode_svc.get("status", {}).get("loadBalancer") or {}).get("ingress")

    await sb.kubelet.set_lb_address("node-a", "gateway", hostname="node-a.lb.example.com")
    assert await ingress() == [{"hostname": "node-a.lb.example.com"}]
    await sb.kubelet.set_lb_address("node-a", "gateway", ip="203.0.113.99")
    assert (await ingress())[0]["ip"] == "203.0.113.99"


async def test_churn_writes_key_shares_into_running_bifrosts(sb: Sandbox) -> None:
    node = await sb.seed_node("node-a", status="Active")
    await sb.seed_node("node-b", status="Standby")
    await sb.wait_ready("node-a", ["bifrost"])
    await sb.wait_ready("node-b", ["bifrost"])
    vault = sb.mocknet.churn()
    await sb.mocknet.settle()
    share = f"mayanode/localstate-{vault.pub_key}.json"
    tree = sb.kubelet.volume("node-a", "bifrost")
    assert tree.exists(share) and tree.stat(share).mode == 0o600
    doc = json.loads(tree.read(share))
    assert doc["PubKey"] == vault.pub_key and doc["NodeAddress"] == node.node_address
    assert not sb.kubelet.volume("node-b", "bifrost").exists(share)  # not a member


async def test_snapshot_and_restore_pvc_from_it(sb: Sandbox) -> None:
    await sb.seed_node("node-a", with_keys=True)
    await sb.client.create(kc.VOLUMESNAPSHOTS, {"metadata": {"name": "snap", "namespace": "node-a"},
                                                "spec": {"source": {"persistentVolumeClaimName": "mayanode"}}})

    async def ready():
        snap = await sb.client.get(kc.VOLUMESNAPSHOTS, "snap", "node-a")
        return (snap.get("status") or {}).get("readyToUse")

    await sb.wait_for(ready, message="snapshot ready")
    await sb.client.create(kc.PVCS, {"metadata": {"name": "restored", "namespace": "node-a"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
        "dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap"}}})

    async def bound():
        pvc = await sb.client.get(kc.PVCS, "restored", "node-a")
        return pvc["status"].get("phase") == "Bound"

    await sb.wait_for(bound, message="restored PVC bound")
    assert sb.kubelet.volume("node-a", "restored").read(".mayanode/config/priv_validator_key.json") == \
        sb.kubelet.volume("node-a", "mayanode").read(".mayanode/config/priv_validator_key.json")


# ------------------------------------------------------------------------------------------------
# exec through the official kubernetes client (websocket, v5 with close_channel; v4 never sends EOF)

def _k8s_api(kubeconfig: str):
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))


def _exec(api, ns: str, pod: str, command: list[str], *, container: str | None = None,
          stdin: bytes | None = None, close_stdin: bool = True) -> tuple[int, bytes, bytes]:
    from kubernetes.stream import stream

    from mayanode_operator.adapters.exec import CONNECTION_CLOSED, exit_code_from_status

    kwargs = {"container": container} if container else {}
    resp = stream(api.connect_get_namespaced_pod_exec, pod, ns, command=command, stdin=stdin is not None,
                  stdout=True, stderr=True, tty=False, _preload_content=False, binary=True, **kwargs)
    out, err = io.BytesIO(), io.BytesIO()
    try:
        if stdin is not None:
            resp.write_stdin(stdin)
            if close_stdin:
                resp.close_channel(0)
        while resp.is_open():
            try:
                resp.update(timeout=1)
            except CONNECTION_CLOSED:
                break       # the server hung up after its close frame, as the operator's adapter allows
            if resp.peek_stdout():
                out.write(resp.read_stdout())
            if resp.peek_stderr():
                err.write(resp.read_stderr())
        out.write(resp.read_stdout() or b"")
        err.write(resp.read_stderr() or b"")
        code = exit_code_from_status(resp.read_channel(3), f"exec {command[0]}")
    finally:
        try:
            resp.close()
            if resp.sock is not None:
                resp.sock.shutdown()
        except CONNECTION_CLOSED + (OSError,):
            pass
    return code, out.getvalue(), err.getvalue()


async def test_exec_tar_roundtrip_find_and_tx_over_websockets(sb: Sandbox) -> None:
    node = await sb.seed_node("node-a")
    await sb.wait_ready("node-a", ["mayanode"])
    pod = (await mayanode_pod(sb, "node-a"))["metadata"]["name"]
    # A helper pod on a fresh PVC, like the seed's recovery pods.
    await sb.client.create(kc.PVCS, {"metadata": {"name": "restore", "namespace": "node-a"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    await sb.client.create(kc.PODS, {"metadata": {"name": "mayanode-recovery", "namespace": "node-a"}, "spec": {
        "volumes": [{"name": "volume-to-debug", "persistentVolumeClaim": {"claimName": "restore"}}],
        "containers": [{"name": "debugger", "image": "busybox", "command": ["sleep", "3600"],
                        "volumeMounts": [{"mountPath": "/data", "name": "volume-to-debug"}]}]}})

    async def helper_running():
        p = await sb.client.get(kc.PODS, "mayanode-recovery", "node-a")
        return p.get("status", {}).get("phase") == "Running"

    await sb.wait_for(helper_running, message="helper pod running")
    api = await asyncio.to_thread(_k8s_api, str(sb.kubeconfig_path))
    try:
        await _exec_scenarios(sb, api, node, pod)
    finally:
        await asyncio.to_thread(api.api_client.close)


async def _exec_scenarios(sb: Sandbox, api, node, pod: str) -> None:
    code, tar_bytes, err = await asyncio.to_thread(
        _exec, api, "node-a", pod, ["tar", "cf", "-", "-C", "/root/.mayanode", "config", "keyring-file", "data"])
    assert code == 0, err
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as archive:
        names = archive.getnames()
    assert "config/priv_validator_key.json" in names and "keyring-file/mayachain.info" in names

    code, _, err = await asyncio.to_thread(
        _exec, api, "node-a", "mayanode-recovery", ["tar", "xpf", "-", "--same-owner", "-C", "/data"],
        stdin=tar_bytes)
    assert code == 0, err
    restored = sb.kubelet.volume("node-a", "restore")
    source = sb.kubelet.volume("node-a", "mayanode")
    for path in ("config/priv_validator_key.json", "keyring-file/mayachain.info", "data/priv_validator_state.json"):
        assert restored.read(path) == source.read(f".mayanode/{path}")
        assert restored.stat(path).mode == source.stat(f".mayanode/{path}").mode == 0o600
    assert restored.stat("keyring-file").mode == 0o700

    code, out, _ = await asyncio.to_thread(
        _exec, api, "node-a", "mayanode-recovery", ["find", "/data", "-maxdepth", "2", "-type", "f",
                                                    "-name", "*.json"])
    assert code == 0
    found = out.decode().splitlines()
    assert found == sorted(found) and all(f.endswith(".json") for f in found)
    assert {"/data/config/priv_validator_key.json", "/data/data/priv_validator_state.json"} <= set(found)
    code, _, err = await asyncio.to_thread(_exec, api, "node-a", "mayanode-recovery", ["find", "/nope"])
    assert code == 1 and b"No such file or directory" in err

    tx = ["mayanode", "tx", "mayachain", "set-ip-address", "203.0.113.50", "--from", "mayachain",
          "--keyring-backend", "file", "--chain-id", "mayachain-mocknet", "--yes", "--output", "json"]
    code, out, err = await asyncio.to_thread(_exec, api, "node-a", pod, tx, stdin=node.password.encode() + b"\n")
    assert code == 0, err
    result = json.loads(out)
    assert result["code"] == 0 and result["txhash"]
    assert sb.mocknet.transactions[-1].argv == ["set-ip-address", "203.0.113.50"]
    await sb.mocknet.advance(1)
    assert sb.mocknet.node(node.node_address).ip_address == "203.0.113.50"

    before = len(sb.mocknet.transactions)
    code, out, err = await asyncio.to_thread(_exec, api, "node-a", pod, tx, stdin=b"not-the-password\n",
                                             close_stdin=False)
    assert code == 1
    assert b"incorrect passphrase" in err
    assert len(sb.mocknet.transactions) == before

    # The bifrost container has no mayanode binary; exec into a missing container is refused.
    bifrost = (await mayanode_pod(sb, "node-a", "bifrost"))["metadata"]["name"]
    code, _, err = await asyncio.to_thread(_exec, api, "node-a", bifrost, tx, stdin=node.password.encode() + b"\n")
    assert code == 127
    from kubernetes.client.rest import ApiException

    with pytest.raises(ApiException) as info:
        await asyncio.to_thread(_exec, api, "node-a", pod, ["true"], container="nope")
    assert "container nope is not valid" in str(info.value.body or info.value)


async def test_helper_pod_deleted_at_once(sb: Sandbox) -> None:
    await sb.client.create(kc.NAMESPACES, {"metadata": {"name": "tools"}})
    await sb.client.create(kc.PODS, {"metadata": {"name": "helper", "namespace": "tools"}, "spec": {
        "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}})

    async def running():
        p = await sb.client.get(kc.PODS, "helper", "tools")
        return p.get("status", {}).get("phase") == "Running"

    await sb.wait_for(running, message="helper running")
    await sb.client.delete(kc.PODS, "helper", "tools")

    async def gone():
        return await sb.client.get(kc.PODS, "helper", "tools") is None

    await sb.wait_for(gone, timeout=2, message="helper gone")


def test_secret_is_base64(tmp_path) -> None:
    # The seeded Secrets hold the identity's mnemonic/password base64-encoded (like `kubectl create secret`).
    from mayanode_operator.sandbox.seed import mnemonic_secret

    assert base64.b64decode(mnemonic_secret("ns", "a b c")["data"]["mnemonic"]) == b"a b c"
