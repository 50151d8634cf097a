"""Hypothesis over the core planners and parsers that had only tables: any input gives an answer, never
an exception, and the answers keep the status rules (a second pass changes nothing, Ready sums up the
rest, reasons are CamelCase, lastTransitionTime moves only when a status flips)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from mayanode_operator.observe import nodeapi
from mayanode_operator.observe.snapshot import (
    ChainStatus,
    EndpointError,
    InboundChain,
    Jail,
    MayaNodeObservation,
    NetworkObservation,
    NodeAccount,
    NodeApiObservation,
    PodObservation,
    WorkloadObservation,
)
from mayanode_operator.plan.halts import classify_mimir_key, describe_halt, halts_in_effect
from mayanode_operator.plan.mayanode_status import StatusInputs, plan_mayanode_status
from mayanode_operator.plan.patches import merge_patch
from mayanode_operator.plan.transactions import classify_tx
from mayanode_operator.reconcile.status_writer import apply_merge_patch

CAMEL = re.compile(r"^[A-Z][A-Za-z0-9]*$")
VERSIONS = st.sampled_from(["1.110.0", "1.111.0", "1.112.0", None])
ADDRESS = "maya1qqqsyqcyq5rqwzqfpg9scrgwpugpzysnqqqqqq"
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)

pods = st.builds(PodObservation, name=st.text("abc", min_size=1, max_size=4),
                 phase=st.sampled_from(["Running", "Pending", "Failed"]), ready=st.booleans(),
                 restarts=st.integers(0, 5), waiting_reason=st.sampled_from([None, "CrashLoopBackOff"]),
                 terminating=st.booleans())
workloads = st.builds(WorkloadObservation, name=st.sampled_from(["mayanode", "bifrost"]), exists=st.booleans(),
                      desired_replicas=st.integers(0, 1), ready_replicas=st.integers(0, 1),
                      updated_replicas=st.integers(0, 1),
                      image=st.sampled_from([None, "registry.gitlab.com/mayachain/mayanode:mocknet-1.111.0"]),
                      pods=st.lists(pods, max_size=2).map(tuple), generation=st.integers(0, 3),
                      observed_generation=st.integers(0, 3))
accounts = st.builds(NodeAccount, address=st.just(ADDRESS), status=st.sampled_from(["Active", "Standby", "Disabled"]),
                     bond=st.just("100"), slash_points=st.integers(0, 100), version=st.sampled_from(["1.111.0", ""]),
                     ip_address=st.sampled_from(["", "203.0.113.7"]), validator_cons_pub_key=st.just("mayacpub1x"),
                     jail=st.none() | st.builds(Jail, release_height=st.integers(0, 500), reason=st.text(max_size=5)))
errors = st.lists(st.builds(EndpointError, endpoint=st.sampled_from(["version", "status", "node", "mimir", "asgard"]),
                            reason=st.sampled_from(["Unreachable", "Timeout", "InvalidResponse", "TooLarge"]),
                            message=st.text(min_size=1, max_size=20)), max_size=3,
                  unique_by=lambda e: e.endpoint).map(tuple)
mimirs = st.lists(st.tuples(st.sampled_from(["HALTBTCCHAIN", "HALTTRADING", "NODEPAUSECHAINGLOBAL", "PAUSELP",
                                            "HALTCHAINGLOBAL", "SOLVENCYHALTETHCHAIN", "OTHER"]),
                            st.integers(-1, 300)), max_size=4, unique_by=lambda kv: kv[0]).map(lambda x: tuple(sorted(x)))
inbound = st.lists(st.builds(InboundChain, chain=st.sampled_from(["BTC", "ETH"]), halted=st.booleans(),
                             global_trading_paused=st.booleans(), chain_trading_paused=st.booleans(),
                             chain_lp_actions_paused=st.booleans()), max_size=2).map(tuple)
apis = st.builds(NodeApiObservation,
                 network=st.builds(NetworkObservation, current_version=VERSIONS, next_version=VERSIONS,
                                   mimir=mimirs, inbound=inbound),
                 account=st.none() | accounts,
                 chain=st.none() | st.builds(ChainStatus, height=st.integers(1, 300), catching_up=st.booleans()),
                 errors=errors)
observations = st.builds(MayaNodeObservation, mayanode=workloads, bifrost=workloads, api=apis)
inputs = st.builds(StatusInputs, generation=st.integers(1, 3), node_address=st.sampled_from([ADDRESS, None]),
                   target_version=VERSIONS, suspend=st.booleans(), rest_url=st.just("http://n:1317"))
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


@given(inputs, observations, observations)
def test_status_plan_is_stable_and_well_formed(spec, first, second):
    plan = plan_mayanode_status(spec, first, {}, NOW)
    stored = apply_merge_patch({}, plan.patch)                             # what the API server keeps
    again = plan_mayanode_status(spec, first, stored, NOW + timedelta(seconds=1))
    assert again.patch == {} and again.events == ()                       # an idle pass writes nothing
    conditions = {c["type"]: c for c in plan.status["conditions"]}
    assert all(CAMEL.match(c["reason"]) for c in conditions.values()), conditions
    assert all(c["status"] in ("True", "False", "Unknown") and c["message"] for c in conditions.values())
    if conditions["Ready"]["status"] == "True":
        assert all(conditions[t]["status"] == "True" for t in ("WorkloadsReady", "NodeAPIReachable"))
    later = plan_mayanode_status(spec, second, stored, NOW + timedelta(minutes=5))
    for cond in later.status["conditions"]:
        before = conditions.get(cond["type"])
        if before and before["status"] == cond["status"]:
            assert cond["lastTransitionTime"] == before["lastTransitionTime"], (before, cond)
    assert apply_merge_patch(stored, later.patch) == apply_merge_patch(stored, merge_patch(stored, later.status))


@given(mimirs, inbound, st.none() | st.integers(0, 400))
def test_halts_are_found_for_any_mimir_and_inbound(mimir, chains, height):
    halts = halts_in_effect(mimir, chains, height)
    assert len(set(halts)) == len(halts)
    assert all(describe_halt(h) for h in halts)


@given(st.text(max_size=40))
def test_any_mimir_key_classifies_or_not(key):
    halt = classify_mimir_key(key)
    assert halt is None or halt.key == key.upper()


PARSERS = [nodeapi.parse_version, nodeapi.parse_node_account, nodeapi.parse_rpc_status, nodeapi.parse_mimir,
           nodeapi.parse_inbound, nodeapi.parse_asgard]


@given(st.sampled_from(PARSERS), JSON)
def test_node_api_parsers_take_any_json(parse, doc):
    try:
        parse(doc)
    except nodeapi.EndpointFailure as failure:
        assert failure.reason == "InvalidResponse" and failure.message


@given(st.integers(-1, 255), st.binary(max_size=200) | JSON.map(lambda d: str(d).encode()), st.binary(max_size=100))
def test_any_cli_answer_is_classified(exit_code, stdout, stderr):
    outcome = classify_tx(exit_code, stdout, stderr)
    assert outcome.kind in ("ok", "transient", "failed") if hasattr(outcome, "kind") else outcome
