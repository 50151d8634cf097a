"""The mocknet over HTTP: response shapes (DOMAIN.md), signing, transactions, churn, failures."""

import asyncio
import json

import aiohttp
import pytest
from mayanode_operator import chainkeys
from mayanode_operator.sandbox.identity import NodeIdentity, key_share_file
from mayanode_operator.sandbox.mocknet import (
    ACTIVE_VAULT,
    BLOCK_ID_FLAG_ABSENT,
    BLOCK_ID_FLAG_COMMIT,
    HUGE_BODY_BYTES,
    INACTIVE_VAULT,
    RETIRING_VAULT,
    DoubleSign,
    Mocknet,
    node_account_for,
)

NS = "node-a"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def net(clock):
    mocknet = Mocknet(block_interval=3600, clock=clock)
    await mocknet.start()
    yield mocknet
    await mocknet.stop()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def add_identity(net: Mocknet, seed: str, *, status="Active", version="1.111.0", ip="1.2.3.4", keys_set=True):
    identity = NodeIdentity.from_seed(seed)
    net.add_node(node_account_for(identity, status=status, version=version, ip_address=ip, keys_set=keys_set))
    return identity


def start(net: Mocknet, identity: NodeIdentity, namespace: str = NS, instance: str = "pod-1",
          version: str = "1.111.0", signed: int = 0) -> None:
    net.process_started(namespace, instance, node_address=identity.node_address,
                        cons_pubkey_b64=identity.consensus_pubkey_base64, version=version,
                        signed_state_height=signed)


async def get(http, net, path, namespace=NS):
    async with http.get(f"{net.url}/ns/{namespace}/{path}") as response:
        return response.status, await response.json()


@pytest.fixture
def node_a(net) -> NodeIdentity:
    identity = add_identity(net, "node-a")
    start(net, identity)
    return identity


# --- REST shapes ------------------------------------------------------------------------------

NODE_KEYS = {
    "node_address": str, "status": str, "pub_key_set": dict, "validator_cons_pub_key": str, "bond": str,
    "active_block_height": int, "bond_address": str, "status_since": int, "signer_membership": list,
    "requested_to_leave": bool, "forced_to_leave": bool, "leave_height": int, "ip_address": str,
    "version": str, "slash_points": int, "jail": dict, "preflight_status": dict,
}


async def test_node_account_has_exactly_the_domain_shape(net, http, node_a):
    net.node(node_a.node_address).slash_points = 17
    status, body = await get(http, net, f"mayachain/node/{node_a.node_address}")
    assert status == 200
    assert {k: type(v) for k, v in body.items()} == NODE_KEYS
    assert body["bond"] == "10240000000000"
    assert body["slash_points"] == 17
    assert body["pub_key_set"] == {"secp256k1": node_a.secp256k1_pubkey, "ed25519": node_a.ed25519_pubkey}
    assert body["validator_cons_pub_key"] == node_a.consensus_pubkey_bech32
    assert body["jail"] == {"node_address": node_a.node_address, "release_height": 0, "reason": ""}
    assert body["preflight_status"] == {"status": "Ready", "reason": "OK", "code": 0}
    assert (await get(http, net, f"mayachain/nodeaccount/{node_a.node_address}"))[1] == body
    status, nodes = await get(http, net, "mayachain/nodes")
    assert status == 200 and nodes == [body]


async def test_unknown_and_malformed_node_addresses(net, http, node_a):
    stranger = NodeIdentity.from_seed("stranger").node_address
    assert await get(http, net, f"mayachain/node/{stranger}") == (
        404, {"code": 5, "message": f"node account {stranger} not found", "details": []})
    status, body = await get(http, net, "mayachain/node/maya1nonsense")
    assert status == 400 and body["code"] == 3 and body["details"] == []
    status, body = await get(http, net, "mayachain/no_such_route")
    assert status == 501 and body == {"code": 12, "message": "Not Implemented", "details": []}


async def test_preflight_reasons(net, http, node_a):
    net.set_network_versions(["1.112.0"] * 3)
    account = net.node(node_a.node_address)
    account.ip_address = ""
    _, body = await get(http, net, f"mayachain/node/{node_a.node_address}")
    assert body["preflight_status"] == {
        "status": "Standby", "reason": "node account has invalid registered IP address", "code": 1}
    account.ip_address = "1.2.3.4"
    _, body = await get(http, net, f"mayachain/node/{node_a.node_address}")
    assert "does not meet min version requirement" in body["preflight_status"]["reason"]


@pytest.mark.parametrize(
    ("network", "own", "expected_current", "expected_next"),
    [
        (["1.110.0", "1.111.0", "1.111.0"], None, "1.110.0", "1.111.0"),
        (["1.111.0", "1.111.0"], "1.110.0", "1.110.0", "1.111.0"),       # our Active node counts too
        (["1.110.0", "1.110.0"], "1.111.0", "1.110.0", "1.110.0"),
        ({"1.111.0": 8, "1.112.0": 1}, None, "1.111.0", "1.111.0"),
    ],
)
async def test_version_route(net, http, network, own, expected_current, expected_next):
    identity = add_identity(net, "node-a", status="Active" if own else "Standby", version=own or "1.0.0")
    start(net, identity, version="1.113.0")
    net.set_network_versions(network)
    assert await get(http, net, "mayachain/version") == (
        200, {"current": expected_current, "next": expected_next, "querier": "1.113.0"})


async def test_virtual_active_versions_can_be_edited(net, http, node_a):
    virtual = net.set_network_versions(["1.111.0", "1.111.0"])
    assert all(v.virtual and v.status == "Active" for v in virtual)
    for account in virtual:
        account.version = "1.112.0"
    _, body = await get(http, net, "mayachain/version")
    assert body == {"current": "1.111.0", "next": "1.112.0", "querier": "1.111.0"}
    assert len(net.set_network_versions(["1.0.0"])) == 1
    assert len([n for n in net.nodes.values() if n.virtual]) == 1


async def test_mimir_routes_upper_case_keys(net, http, node_a):
    net.set_mimir("HaltSigningBTC", 1)
    _, mimirs = await get(http, net, "mayachain/mimir")
    assert mimirs["HALTSIGNINGBTC"] == 1 and mimirs["HALTTRADING"] == 0
    assert all(k == k.upper() for k in mimirs)
    assert await get(http, net, "mayachain/mimir/nodes_all") == (200, {"mimirs": []})
    net.set_mimir("HaltSigningBTC", None)
    assert "HALTSIGNINGBTC" not in (await get(http, net, "mayachain/mimir"))[1]


async def test_lastblock_and_inbound_addresses(net, http, node_a):
    net.churn()
    await net.advance(3)
    _, last = await get(http, net, "mayachain/lastblock")
    assert [c["chain"] for c in last] == ["BTC", "ETH", "DASH", "KUJI", "THOR", "ARB"]
    assert all(set(c) == {"chain", "last_observed_in", "last_signed_out", "mayachain"} for c in last)
    assert all(c["mayachain"] == net.height and isinstance(c["last_observed_in"], int) for c in last)
    _, inbound = await get(http, net, "mayachain/inbound_addresses")
    btc = inbound[0]
    assert btc["chain"] == "BTC" and btc["pub_key"] == net.active_vault.pub_key
    assert btc["address"].startswith("bc1q")
    for flag in ("halted", "global_trading_paused", "chain_trading_paused", "chain_lp_actions_paused"):
        assert btc[flag] is False


async def test_chain_halt_freezes_observation_and_shows_in_inbound(net, http, node_a):
    eth_before = next(c for c in net.external_chains if c.chain == "ETH").last_observed_in
    net.set_mimir("HALTETHCHAIN", net.height)
    net.set_mimir("HALTSIGNINGBTC", net.height)
    net.set_mimir("HaltTrading", net.height)
    signed_out_before = net.external_chains[0].last_signed_out
    await net.advance(24)
    eth = next(c for c in net.external_chains if c.chain == "ETH")
    kuji = next(c for c in net.external_chains if c.chain == "KUJI")
    assert eth.last_observed_in == eth_before
    assert kuji.last_observed_in > kuji.start_height
    assert net.external_chains[0].last_signed_out == signed_out_before   # BTC signing halted
    _, inbound = await get(http, net, "mayachain/inbound_addresses")
    by_chain = {e["chain"]: e for e in inbound}
    assert by_chain["ETH"]["halted"] and by_chain["ETH"]["chain_trading_paused"]
    assert not by_chain["BTC"]["halted"]
    assert all(e["global_trading_paused"] for e in inbound)


# --- 503, failure modes -----------------------------------------------------------------------

async def test_namespace_answers_only_while_a_process_runs(net, http):
    identity = add_identity(net, "node-a")
    async with http.get(f"{net.rest_url(NS)}/mayachain/version") as response:
        assert response.status == 503 and "no endpoints" in await response.text()
    start(net, identity)
    assert (await get(http, net, "mayachain/version"))[0] == 200
    async with http.get(f"{net.rpc_url('other-ns')}/status") as response:
        assert response.status == 503
    net.process_stopped("pod-1")
    async with http.get(f"{net.rpc_url(NS)}/status") as response:
        assert response.status == 503


async def test_failure_modes(net, http, node_a):
    url = f"{net.rest_url(NS)}/mayachain/version"
    net.fail(NS, "garbage")
    async with http.get(url) as response:
        assert response.status == 200
        with pytest.raises(ValueError):
            json.loads(await response.text())
    net.fail(NS, "huge")
    async with http.get(url) as response:
        assert response.status == 200 and response.content_length is None
        assert len(await response.read()) >= HUGE_BODY_BYTES
    net.fail(NS, "down")
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(url) as response:
            await response.read()
    async with http.get(f"{net.rest_url('other')}/mayachain/version") as response:
        assert response.status == 503                                  # other namespaces unaffected
    net.fail(NS, None)
    assert (await get(http, net, "mayachain/version"))[0] == 200
    with pytest.raises(ValueError):
        net.fail(NS, "sideways")


# --- RPC --------------------------------------------------------------------------------------

async def test_rpc_status_shape_catch_up_and_lag(net, http, clock):
    net.configure_namespace(NS, catch_up_seconds=30, height_lag=2)
    identity = add_identity(net, "node-a")
    await net.advance(5)
    start(net, identity)
    status, body = await get(http, net, "rpc/status")
    assert status == 200 and body["jsonrpc"] == "2.0"
    sync, validator = body["result"]["sync_info"], body["result"]["validator_info"]
    assert sync["latest_block_height"] == str(net.height - 2)
    assert isinstance(sync["earliest_block_height"], str)
    assert sync["catching_up"] is True
    assert validator == {
        "address": identity.validator_address,
        "pub_key": {"type": "tendermint/PubKeyEd25519", "value": identity.consensus_pubkey_base64},
        "voting_power": "100",
    }
    clock.now += 31
    assert (await get(http, net, "rpc/status"))[1]["result"]["sync_info"]["catching_up"] is False


async def test_catching_up_process_does_not_sign(net, clock):
    net.configure_namespace(NS, catch_up_seconds=10)
    identity = add_identity(net, "node-a")
    start(net, identity)
    await net.advance(1)
    assert identity.validator_address not in net.signers_at(net.height)
    clock.now += 10
    await net.advance(1)
    assert identity.validator_address in net.signers_at(net.height)


async def test_block_signatures_follow_running_processes(net, http, node_a):
    node_b = add_identity(net, "node-b")        # Active, no process: absent
    await net.advance(2)
    status, body = await get(http, net, f"rpc/block?height={net.height}")
    assert status == 200
    block = body["result"]["block"]
    assert block["header"]["height"] == str(net.height)
    signatures = block["last_commit"]["signatures"]
    assert all(set(s) == {"block_id_flag", "validator_address", "timestamp", "signature"} for s in signatures)
    committed = [s["validator_address"] for s in signatures if s["block_id_flag"] == BLOCK_ID_FLAG_COMMIT]
    assert committed == [node_a.validator_address]
    assert [s["block_id_flag"] for s in signatures].count(BLOCK_ID_FLAG_ABSENT) == 1
    assert node_b.validator_address not in committed

    assert net.process_stopped("pod-1") == net.height
    start(net, node_b, namespace="node-b", instance="pod-b")
    await net.advance(1)
    assert net.signers_at(net.height) == {node_b.validator_address}


async def test_signed_state_height_holds_back_signing(net, node_a):
    net.process_stopped("pod-1")
    start(net, node_a, instance="pod-2", signed=net.height + 2)
    await net.advance(2)
    assert node_a.validator_address not in net.signers_at(net.height)
    await net.advance(1)
    assert node_a.validator_address in net.signers_at(net.height)
    assert net.process_stopped("pod-2") == net.height


async def test_virtual_active_nodes_sign(net):
    virtual = net.set_network_versions(["1.111.0"] * 2)
    await net.advance(1)
    expected = {
        chainkeys.validator_address(chainkeys.consensus_pubkey_bytes(v.validator_cons_pub_key)) for v in virtual
    }
    assert net.signers_at(net.height) == expected


async def test_two_instances_with_one_key_double_sign(net, http, node_a):
    await net.advance(1)
    start(net, node_a, namespace="node-a-copy", instance="pod-copy")
    await net.advance(1)
    assert net.double_signs == [DoubleSign(net.height, node_a.validator_address, ("pod-1", "pod-copy"))]
    await net.advance(1)
    _, body = await get(http, net, f"rpc/block?height={net.height}")
    evidence = body["result"]["block"]["evidence"]["evidence"]
    assert evidence[0]["type"] == "tendermint/DuplicateVoteEvidence"
    assert len(net.double_signs) == 2


async def test_block_errors_and_bounded_history(clock, http):
    async with Mocknet(block_interval=3600, block_history=5, clock=clock) as net:
        start(net, add_identity(net, "node-a"))
        await net.advance(10)
        assert net.earliest_height == net.height - 4
        status, body = await get(http, net, f"rpc/block?height={net.height + 1}")
        assert status == 500 and body["error"]["data"] == (
            f"height {net.height + 1} must be less than or equal to the current blockchain height {net.height}")
        status, body = await get(http, net, "rpc/block?height=2")
        assert status == 500
        assert body["error"]["data"] == f"height 2 is not available, lowest height is {net.earliest_height}"
        status, body = await get(http, net, "rpc/block?height=abc")
        assert status == 500 and body["error"]["message"] == "Invalid params"
        status, body = await get(http, net, "rpc/block")
        assert body["result"]["block"]["header"]["height"] == str(net.height)


async def test_timer_produces_blocks(clock):
    async with Mocknet(block_interval=0.02, clock=clock) as net:
        start_height = net.height
        for _ in range(100):
            await asyncio.sleep(0.02)
            if net.height >= start_height + 3:
                break
        assert net.height >= start_height + 3


# --- transactions -----------------------------------------------------------------------------

async def test_tx_is_pending_until_the_next_block(net, http, node_a):
    result = net.submit_tx(NS, node_a.node_address, ["set-ip-address", "5.6.7.8"])
    assert result.code == 0 and result.height == 0 and len(result.txhash) == 64
    assert net.node(node_a.node_address).ip_address == "1.2.3.4"
    assert net.pending_transactions == [net.transactions[-1]]
    tx = net.transactions[-1]
    assert (tx.namespace, tx.signer, tx.argv, tx.submitted_height, tx.applied_height) == (
        NS, node_a.node_address, ["set-ip-address", "5.6.7.8"], net.height, None)
    await net.advance(1)
    assert tx.applied_height == net.height and not net.pending_transactions
    _, body = await get(http, net, f"mayachain/node/{node_a.node_address}")
    assert body["ip_address"] == "5.6.7.8"


async def test_set_version_only_raises(net, node_a):
    account = net.node(node_a.node_address)
    account.version = "1.110.0"
    net.submit_tx(NS, node_a.node_address, ["set-version"])
    await net.advance(1)
    assert account.version == "1.111.0"                  # the running binary's version
    account.version = "1.115.0"
    assert net.submit_tx(NS, node_a.node_address, ["set-version"]).code == 0
    await net.advance(1)
    assert account.version == "1.115.0"


async def test_set_node_keys(net):
    identity = add_identity(net, "fresh", status="Whitelisted", keys_set=False)
    start(net, identity)
    argv = ["set-node-keys", identity.secp256k1_pubkey, identity.ed25519_pubkey, identity.consensus_pubkey_bech32]
    assert net.submit_tx(NS, identity.node_address, argv).code == 0
    await net.advance(1)
    account = net.node(identity.node_address)
    assert account.status == "Standby" and account.status_since == net.height
    assert account.validator_cons_pub_key == identity.consensus_pubkey_bech32
    again = net.submit_tx(NS, identity.node_address, argv)
    assert again.code == 4 and "already has pubkey set" in again.raw_log
    bad = net.submit_tx(NS, identity.node_address, ["set-node-keys", "x", "y", "z"])
    assert bad.code != 0


async def test_mimir_votes_need_two_thirds_of_active_nodes(net, http, node_a):
    node_b = add_identity(net, "node-b")
    add_identity(net, "node-c")
    start(net, node_b, namespace="node-b", instance="pod-b")
    net.submit_tx(NS, node_a.node_address, ["mimir", "haltTrading", "1"])
    await net.advance(1)
    _, votes = await get(http, net, "mayachain/mimir/nodes_all")
    assert votes == {"mimirs": [{"key": "HALTTRADING", "value": 1, "signer": node_a.node_address}]}
    assert (await get(http, net, "mayachain/mimir"))[1]["HALTTRADING"] == 0          # 1 of 3
    net.submit_tx("node-b", node_b.node_address, ["mimir", "HALTTRADING", "1"])
    await net.advance(1)
    assert (await get(http, net, "mayachain/mimir"))[1]["HALTTRADING"] == 1          # 2 of 3
    net.submit_tx(NS, node_a.node_address, ["mimir", "HALTTRADING", "-1"])
    await net.advance(1)
    _, votes = await get(http, net, "mayachain/mimir/nodes_all")
    assert [v["signer"] for v in votes["mimirs"]] == [node_b.node_address]
    assert (await get(http, net, "mayachain/mimir"))[1]["HALTTRADING"] == 0


async def test_pause_chain_once_per_churn(net, http, node_a):
    assert net.submit_tx(NS, node_a.node_address, ["pause-chain"]).code == 0
    await net.advance(1)
    _, inbound = await get(http, net, "mayachain/inbound_addresses")
    assert all(e["halted"] and e["global_trading_paused"] for e in inbound)
    assert net.mimirs()["NODEPAUSECHAINGLOBAL"] == net.height + 720
    assert net.submit_tx(NS, node_a.node_address, ["pause-chain"]).code == 4
    net.submit_tx(NS, node_a.node_address, ["resume-chain"])
    await net.advance(1)
    _, inbound = await get(http, net, "mayachain/inbound_addresses")
    assert not any(e["halted"] for e in inbound)
    net.churn()
    assert net.submit_tx(NS, node_a.node_address, ["pause-chain"]).code == 0


async def test_injected_sequence_mismatch(net, node_a):
    net.inject_tx_error("account sequence mismatch", times=2)
    for _ in range(2):
        failed = net.submit_tx(NS, node_a.node_address, ["set-ip-address", "9.9.9.9"])
        assert (failed.code, failed.raw_log) == (32, "account sequence mismatch")
    assert net.submit_tx(NS, node_a.node_address, ["set-ip-address", "9.9.9.9"]).code == 0
    assert [t.result.code for t in net.transactions] == [32, 32, 0]
    await net.advance(1)
    assert net.node(node_a.node_address).ip_address == "9.9.9.9"
    assert [t.applied_height for t in net.transactions] == [None, None, net.height]


@pytest.mark.parametrize(
    ("argv", "code", "log_part"),
    [
        (["set-ip-address"], 1, "accepts 1 arg(s), received 0"),
        (["fly"], 1, 'unknown command "fly"'),
        (["set-ip-address", "not-an-ip"], 18, "invalid IP address"),
        (["mimir", "HALTTRADING", "yes"], 1, "not an integer"),
    ],
)
async def test_refused_txs(net, node_a, argv, code, log_part):
    result = net.submit_tx(NS, node_a.node_address, argv)
    assert result.code == code and log_part in result.raw_log
    assert net.transactions[-1].result == result and not net.pending_transactions


async def test_unknown_signer_and_missing_process(net, node_a):
    stranger = NodeIdentity.from_seed("stranger").node_address
    result = net.submit_tx(NS, stranger, ["set-version"])
    assert result.code == 4 and f"{stranger} is not a node account" in result.raw_log
    result = net.submit_tx("nowhere", node_a.node_address, ["set-version"])
    assert result.code == 1 and "connection refused" in result.raw_log


# --- churn ------------------------------------------------------------------------------------

async def test_churn_makes_a_vault_and_notifies(net, http, node_a):
    node_b = add_identity(net, "node-b")
    standby = add_identity(net, "node-s", status="Standby")
    seen_sync, seen_async = [], []

    async def async_listener(vault):
        await asyncio.sleep(0)
        seen_async.append(vault)

    net.on_churn(seen_sync.append)
    net.on_churn(async_listener)
    first = net.churn()
    await net.settle()
    assert seen_sync == [first] and seen_async == [first]
    assert first.status == ACTIVE_VAULT and first.block_height == net.height
    assert sorted(first.membership) == sorted([node_a.secp256k1_pubkey, node_b.secp256k1_pubkey])
    assert net.node(node_a.node_address).signer_membership == [first.pub_key]
    assert net.node(standby.node_address).signer_membership == []
    name, _ = key_share_file(node_a, first)
    assert name == f"localstate-{first.pub_key}.json"

    await net.advance(2)
    second = net.churn()
    await net.settle()
    assert first.status == RETIRING_VAULT and second.pub_key != first.pub_key
    assert net.churn_heights == [first.block_height, second.block_height]
    _, asgard = await get(http, net, "mayachain/vaults/asgard")
    assert [(v["pub_key"], v["status"]) for v in asgard] == [
        (second.pub_key, ACTIVE_VAULT), (first.pub_key, RETIRING_VAULT)]
    assert all({"pub_key", "status", "membership", "block_height"} <= set(v) for v in asgard)
    assert set(net.node(node_a.node_address).signer_membership) == {first.pub_key, second.pub_key}
    net.churn()
    assert first.status == INACTIVE_VAULT
    await net.settle()
    assert len(seen_async) == 3


async def test_failing_listener_does_not_stop_the_others(net, node_a):
    seen = []

    def broken(vault):
        raise RuntimeError("listener bug")

    net.on_churn(broken)
    net.on_churn(seen.append)
    vault = net.churn()
    assert seen == [vault]


async def test_automatic_churn_respects_haltchurning(clock):
    async with Mocknet(block_interval=3600, churn_interval_blocks=5, start_height=1, clock=clock) as net:
        await net.advance(4)
        assert [v.block_height for v in net.vaults] == [5]
        net.set_mimir("HALTCHURNING", 1)
        await net.advance(5)
        assert len(net.vaults) == 1


async def test_public_full_node_answers_without_any_process_and_is_no_validator():
    from mayanode_operator.sandbox.mocknet import Mocknet

    net = Mocknet(block_interval=1000)
    await net.start()
    try:
        await net.advance(2)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{net.public_rpc_url}/status") as response:
                status = await response.json()
            async with session.get(f"{net.public_rpc_url}/block?height=2") as response:
                block = await response.json()
        assert status["result"]["sync_info"]["catching_up"] is False
        assert status["result"]["validator_info"]["address"] == ""
        assert block["result"]["block"]["header"]["height"] == "2"
    finally:
        await net.stop()


async def test_serves_at_other_loopback_addresses(clock):
    """Each node of a real fleet is a host of its own, so a client keeps a connection pool for each."""
    async with Mocknet(block_interval=3600, clock=clock) as net:
        start(net, add_identity(net, "node-a"))
        base = await net.serve_at("127.0.3.7")
        assert base == f"http://127.0.3.7:{net.url.rsplit(':', 1)[1]}"
        assert await net.serve_at("127.0.3.7") == base          # once per address
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/ns/{NS}/rpc/status") as response:
                assert response.status == 200
                assert (await response.json())["result"]["sync_info"]["latest_block_height"] == str(net.height)
        with pytest.raises(ValueError, match="not a loopback address"):
            await net.serve_at("10.0.0.1")


async def test_closes_a_connection_left_idle_as_a_node_does(clock):
    """A node's servers close a keep-alive connection idle for 10 s (Go's net/http with CometBFT's read timeout):
    a client polling every 30 s connects anew at each pass."""
    from mayanode_operator.sandbox.mocknet import network

    assert Mocknet().idle_seconds == network.SERVER_IDLE_SECONDS == 10.0
    async with Mocknet(block_interval=3600, clock=clock, idle_seconds=0.3) as net:
        host, port = net.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(f"GET /ns/{NS}/rpc/status HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            await writer.drain()
            assert (await reader.readline()).startswith(b"HTTP/1.1 ")
            opened = asyncio.get_running_loop().time()
            while await asyncio.wait_for(reader.read(65536), 5):    # the answer, then the end when the server closes
                pass
            assert asyncio.get_running_loop().time() - opened >= 0.25
        finally:
            writer.close()
