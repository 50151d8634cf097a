"""The Sandbox world: CRDs installed, node-launcher namespaces seeded, kubectl and a thread-hosted variant."""

from __future__ import annotations

import asyncio
import json
import subprocess

import aiohttp
import pytest

from mayanode_operator.api import naming
from mayanode_operator.sandbox import kubeclient as kc
from mayanode_operator.sandbox.world import Sandbox, SandboxThread

FAST = {"ready_delay": 0.05, "stop_delay": 0.05, "lb_delay": 0.05}


async def kubectl(sb: Sandbox, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(sb.kubeconfig_path), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode(), err.decode()


async def test_seed_node_creates_the_node_launcher_stack() -> None:
    async with Sandbox.start(block_interval=0.1, kubelet_options=FAST) as sb:
        node = await sb.seed_node("node-a", version="1.111.0", status="Active")
        assert node.rest_url == f"{sb.mocknet.url}/ns/node-a" and node.rpc_url == f"{sb.mocknet.url}/ns/node-a/rpc"
        assert "mnemonic" not in repr(node) and node.identity.mnemonic not in repr(node)

        c = sb.client
        for res, name in [(kc.SECRETS, "mayanode-mnemonic"), (kc.SECRETS, "mayanode-password"),
                          *[(kc.CONFIGMAPS, n) for n in naming.EXTERNAL_IP_CONFIGMAPS],
                          (kc.SERVICES, "gateway"), (kc.SERVICES, "mayanode"), (kc.SERVICES, "bifrost"),
                          (kc.DEPLOYMENTS, "mayanode"), (kc.DEPLOYMENTS, "bifrost"), (kc.DEPLOYMENTS, "gateway")]:
            assert await c.get(res, name, "node-a") is not None, name
        assert (await c.get(kc.CONFIGMAPS, "mayanode-external-ip", "node-a"))["data"] == {"externalIP": ""}
        for claim in ("mayanode", "bifrost"):
            assert (await c.get(kc.PVCS, claim, "node-a"))["status"]["phase"] == "Bound"
        may = await c.get(kc.DEPLOYMENTS, "mayanode", "node-a")
        assert may["spec"]["strategy"]["type"] == "Recreate" and may["spec"]["replicas"] == 1
        container = may["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "registry.gitlab.com/mayachain/mayanode:mocknet-1.111.0"
        assert {e["name"] for e in container["env"]} >= {"EXTERNAL_IP", "SIGNER_NAME", "SIGNER_PASSWD",
                                                         "SIGNER_SEED_PHRASE", "CHAIN_ID"}
        bif = await c.get(kc.DEPLOYMENTS, "bifrost", "node-a")
        mount = bif["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]
        assert (mount["mountPath"], mount["subPath"]) == ("/root/.mayanode", "mayanode")
        assert (await c.get(kc.SERVICES, "gateway", "node-a"))["spec"]["type"] == "LoadBalancer"

        tree = sb.kubelet.volume("node-a", "mayanode")
        assert tree.stat(".mayanode/config/priv_validator_key.json").mode == 0o600
        assert tree.stat(".mayanode/keyring-file").mode == 0o700
        assert sb.kubelet.volume("node-a", "bifrost").exists("mayanode/MAYAChain-ED25519")

        account = sb.mocknet.node(node.node_address)
        assert (account.status, account.version) == ("Active", "1.111.0")
        assert account.validator_cons_pub_key == node.facts.consensus_pubkey_bech32

        await sb.wait_ready("node-a")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{node.rest_url}/mayachain/node/{node.node_address}") as resp:
                assert resp.status == 200
                assert (await resp.json())["node_address"] == node.node_address
            async with http.get(f"{node.rpc_url}/status") as resp:
                assert resp.status == 200

        # The project's CRDs are served.
        for crd in ("mayanodes", "nodebackups", "noderestores"):
            assert await c.get(kc.CRDS, f"{crd}.{naming.GROUP}") is not None
        await c.request("GET", f"/apis/{naming.GROUP}/{naming.VERSION}/namespaces/node-a/mayanodes")

        code, out, err = await kubectl(sb, "get", "pods", "-n", "node-a", "-o", "json")
        assert code == 0, err
        pods = json.loads(out)["items"]
        assert sorted(p["metadata"]["labels"]["app.kubernetes.io/name"] for p in pods) == \
            ["bifrost", "gateway", "mayanode"]
        code, out, err = await kubectl(sb, "get", "pods", "-n", "node-a")
        assert code == 0, err
        assert "Running" in out and "1/1" in out


def test_sandbox_thread_for_synchronous_callers() -> None:
    with SandboxThread(block_interval=0.1, kubelet_options=FAST) as st:
        assert st.sandbox is not None
        node = st.call(st.sandbox.seed_node("node-t"))
        st.call(st.sandbox.wait_ready("node-t", ["mayanode"]))
        result = subprocess.run(
            ["kubectl", "--kubeconfig", str(st.kubeconfig_path), "get", "deploy", "mayanode", "-n", "node-t",
             "-o", "jsonpath={.status.readyReplicas}"],
            capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "1"
        assert st.call(lambda: len(st.sandbox.mocknet.running_processes("node-t"))) == 1
        assert st.sandbox.kubelet.volume("node-t", "mayanode").exists(".mayanode/config/node_key.json")
        assert node.node_address
    assert st.loop is not None and st.loop.is_closed()


async def test_seed_node_rejects_a_duplicate_namespace_stack() -> None:
    async with Sandbox.start(block_interval=0.1, kubelet_options=FAST) as sb:
        await sb.seed_node("node-a", register=False)
        with pytest.raises(kc.ApiError) as info:
            await sb.seed_node("node-a", register=False)
        assert info.value.status == 409
