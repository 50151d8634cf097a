"""Fleet budget: the pure planner (tables, hypothesis) and the Lease adapter against the emulated API server."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mayanode_operator.adapters.leases import LeaseConflict, RolloutLeases, lease_body, state_from_lease
from mayanode_operator.plan import upgrade_rollout as r
from mayanode_operator.sandbox.apiserver import ServerThread
from mayanode_operator.sandbox.apiserver.testing import api_client

T = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
LEASE = 120


def holder(node, age=0.0, version="1.112.0"):
    return r.Holder(node, version, T - timedelta(seconds=age), T - timedelta(seconds=age))


def decide(state, me="ns/a", max_concurrent=1, canary=False, fleet=None, version="1.112.0"):
    return r.plan_budget(state, me=me, version=version, max_concurrent=max_concurrent, canary=canary, now=T,
                         lease_seconds=LEASE, fleet=fleet or {})


@pytest.mark.parametrize("holders,max_c,fleet,kind,reason", [
    ((), 1, {}, "acquire", ""),
    ((holder("ns/b"),), 1, {}, "blocked", "BudgetExhausted"),
    ((holder("ns/b"),), 2, {}, "acquire", ""),
    ((holder("ns/b", age=LEASE + 1),), 1, {}, "acquire", ""),                          # expired: reclaimed
    ((holder("ns/b", age=LEASE + 1),), 1, {"ns/b": r.FleetMember("ns/b", True)}, "blocked", "BudgetExhausted"),
    ((holder("ns/a", age=10),), 1, {}, "held", ""),
    ((holder("ns/a", age=LEASE + 1),), 1, {}, "acquire", ""),             # its own entry expired: asks again
    ((holder("ns/a", age=LEASE + 1), holder("ns/b")), 1, {}, "blocked", "BudgetExhausted"),   # a leftover is no slot
    ((holder("ns/a", age=3 * 86400), holder("ns/b")), 1, {}, "blocked", "BudgetExhausted"),
    ((holder("ns/b"), holder("ns/c")), 2, {}, "blocked", "BudgetExhausted"),
])
def test_budget_table(holders, max_c, fleet, kind, reason):
    decision = decide(r.BudgetState(holders), max_concurrent=max_c, fleet=fleet)
    assert (decision.kind, decision.reason) == (kind, reason)
    if kind == "acquire":
        assert decision.new_state.holder("ns/a") is not None
        assert all(h.node == "ns/a" or (T - h.renewed).total_seconds() < LEASE or fleet.get(h.node)
                   for h in decision.new_state.holders)


def test_renewal_only_when_due():
    assert decide(r.BudgetState((holder("ns/a", age=10),))).new_state is None
    renewed = decide(r.BudgetState((holder("ns/a", age=LEASE / 2),))).new_state
    assert renewed.holder("ns/a").renewed == T


@pytest.mark.parametrize("canaries,fleet,kind,reason", [
    ((), {}, "acquire", ""),                                                            # becomes the canary
    ((r.CanaryRecord("1.112.0", "ns/b", "InProgress"),), {}, "blocked", "WaitingForCanary"),
    ((r.CanaryRecord("1.112.0", "ns/b", "Failed"),), {}, "blocked", "CanaryFailed"),
    ((r.CanaryRecord("1.112.0", "ns/b", "Succeeded"),), {}, "acquire", ""),
    ((r.CanaryRecord("1.111.0", "ns/b", "InProgress"),), {}, "acquire", ""),           # another version's canary
    ((r.CanaryRecord("1.112.0", "ns/b", "InProgress"),),
     {"ns/b": r.FleetMember("ns/b", False, succeeded=("1.112.0",))}, "acquire", ""),     # its status says it is done
    ((r.CanaryRecord("1.112.0", "ns/b", "InProgress"),),
     {"ns/b": r.FleetMember("ns/b", False, failed=("1.112.0",))}, "blocked", "CanaryFailed"),
    ((r.CanaryRecord("1.112.0", "ns/a", "InProgress"),), {}, "acquire", ""),           # it is the canary
])
def test_canary_table(canaries, fleet, kind, reason):
    decision = decide(r.BudgetState((), canaries), max_concurrent=5, canary=True, fleet=fleet)
    assert (decision.kind, decision.reason) == (kind, reason)
    if not canaries:
        assert decision.new_state.canary("1.112.0") == r.CanaryRecord("1.112.0", "ns/a", "InProgress")


def test_release_records_the_canary_result():
    state = r.BudgetState((holder("ns/a"), holder("ns/b")), (r.CanaryRecord("1.112.0", "ns/a", "InProgress"),))
    after = r.release_budget(state, me="ns/a", version="1.112.0", result="Succeeded")
    assert [h.node for h in after.holders] == ["ns/b"] and after.canary("1.112.0").result == "Succeeded"
    untouched = r.release_budget(state, me="ns/b", version="1.112.0", result="Failed")
    assert untouched.canary("1.112.0").result == "InProgress"


def test_an_expired_own_entry_does_not_bypass_the_canary():
    """A slot left in the Lease (e.g. by a flag day) three days ago: the next upgrade waits for the canary."""
    state = r.BudgetState((holder("ns/a", age=3 * 86400, version="1.112.0"),),
                          (r.CanaryRecord("1.113.0", "ns/b", "InProgress"),))
    decision = decide(state, version="1.113.0", max_concurrent=5, canary=True)
    assert (decision.kind, decision.reason) == ("blocked", "WaitingForCanary")


def test_renew_holder_re_adds_a_committed_node():
    assert r.renew_holder(r.BudgetState(), me="ns/a", version="v", now=T, lease_seconds=LEASE).holder("ns/a")
    fresh = r.BudgetState((holder("ns/a", age=1, version="v"),))
    assert r.renew_holder(fresh, me="ns/a", version="v", now=T, lease_seconds=LEASE) == fresh


def test_json_round_trip_and_tolerance():
    state = r.BudgetState((holder("ns/a"),), (r.CanaryRecord("1.112.0", "ns/a", "Succeeded"),))
    assert r.budget_from_json(*r.budget_to_json(state)) == state
    assert r.budget_from_json("not json", "[{]") == r.BudgetState()
    assert r.budget_from_json('[{"node": "x"}]', '[{"version": 1}]') == r.BudgetState()
    body = lease_body("ops", "fleet", state, lease_seconds=LEASE, now=T, resource_version="7")
    assert state_from_lease(body) == state and body["spec"]["holderIdentity"] == "ns/a"
    assert body["metadata"]["resourceVersion"] == "7"


nodes = st.sampled_from([f"ns/n{i}" for i in range(6)])
holders_st = st.lists(st.builds(lambda n, age: holder(n, age), nodes, st.floats(0, 400)), max_size=6,
                      unique_by=lambda h: h.node)


@given(holders=holders_st, me=nodes, max_c=st.integers(1, 4), canary=st.booleans(),
       upgrading=st.sets(nodes), canary_rec=st.sampled_from([None, "InProgress", "Succeeded", "Failed"]))
def test_budget_never_grants_beyond_the_limit(holders, me, max_c, canary, upgrading, canary_rec):
    canaries = (r.CanaryRecord("1.112.0", "ns/n5", canary_rec),) if canary_rec else ()
    fleet = {n: r.FleetMember(n, True) for n in upgrading}
    state = r.BudgetState(tuple(holders), canaries)
    decision = decide(state, me=me, max_concurrent=max_c, canary=canary, fleet=fleet)
    if decision.kind == "acquire":
        live = r.live_holders(decision.new_state, T, LEASE, fleet)
        assert len(live) <= max(max_c, 1) and decision.new_state.holder(me) is not None
        before = [h for h in r.live_holders(state, T, LEASE, fleet) if h.node != me]
        assert len(before) < max_c
    if decision.kind == "held":
        assert state.holder(me) is not None and (T - state.holder(me).renewed).total_seconds() < LEASE


# ---- the Lease adapter against the emulated API server -------------------------------------------
@pytest.fixture(scope="module")
def server():
    st_ = ServerThread().start()
    st_.server.store.create("namespaces", {"metadata": {"name": "ops"}})
    yield st_
    st_.stop()


def test_lease_create_replace_and_conflict(server):
    with api_client(server.url) as client:
        leases = RolloutLeases(client, "ops", LEASE)

        async def scenario():
            empty = await leases.read("g1")
            assert empty.resource_version is None and empty.state == r.BudgetState()
            mine = r.BudgetState((holder("ns/a"),))
            await leases.write("g1", mine, None, T)
            with pytest.raises(LeaseConflict):                 # created meanwhile by someone else
                await leases.write("g1", mine, None, T)
            read = await leases.read("g1")
            assert read.state == mine and read.resource_version
            both = r.BudgetState((holder("ns/a"), holder("ns/b")))
            await leases.write("g1", both, read.resource_version, T)
            with pytest.raises(LeaseConflict):                 # stale resourceVersion
                await leases.write("g1", mine, read.resource_version, T)
            after = await leases.update("g1", lambda s: r.release_budget(s, me="ns/a", version="1.112.0",
                                                                         result=None), T)
            assert [h.node for h in after.holders] == ["ns/b"]
            assert (await leases.read("g1")).state == after

        asyncio.run(scenario())


def test_two_deciders_at_once_take_one_slot(server):
    """Two workers read the same Lease and both decide to acquire the last slot: exactly one write wins."""
    with api_client(server.url) as client:
        leases = RolloutLeases(client, "ops", LEASE)

        async def scenario():
            read = await leases.read("g2")
            outcomes = []
            for me in ("ns/a", "ns/b"):
                decision = decide(read.state, me=me)
                assert decision.kind == "acquire"
                try:
                    await leases.write("g2", decision.new_state, read.resource_version, T)
                    outcomes.append(me)
                except LeaseConflict:
                    pass
            assert outcomes == ["ns/a"]
            fresh = await leases.read("g2")
            assert decide(fresh.state, me="ns/b").kind == "blocked"

        asyncio.run(scenario())
