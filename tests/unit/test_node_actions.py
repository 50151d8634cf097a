"""One-shot node actions: done at most once, recorded before sending, refused with a reason."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mayanode_operator.api.mayanode import HaltKind, HaltPolicy, MayaNodeSpec, NodeActionRequest
from mayanode_operator.plan.node_actions import (
    CONFIRM_TIMEOUT,
    MAX_RECORDS,
    NodeActionInputs,
    NodeFacts,
    iso,
    pending_record,
    plan_node_actions,
    prune_records,
    record_outcome,
    upsert_record,
)
from mayanode_operator.plan.transactions import TxOutcome, TxRequest

NOW = datetime(2026, 11, 21, 10, 0, 0, tzinfo=timezone.utc)
ACTIVE = NodeFacts(node_status="Active", height=1000, node_pause_until=0, last_churn_height=500,
                   external_address="198.51.100.20", registered_ip="198.51.100.9")


def req(id_, action, reason=None):
    return NodeActionRequest(id=id_, action=action, reason=reason)


def plan(requests, records=(), facts=ACTIVE, halts=(), policy=HaltPolicy(), now=NOW):
    return plan_node_actions(NodeActionInputs(requests=requests, records=list(records), facts=facts,
                                              halt_policy=policy, halts=tuple(halts), now=now))


def states(p):
    return {r["id"]: r["state"] for r in p.records}


@pytest.mark.parametrize("action,tx", [
    ("PauseChain", TxRequest("pause-chain")),
    ("ResumeChain", TxRequest("resume-chain")),
    ("AnnounceIP", TxRequest("set-ip-address", ("198.51.100.20",))),
])
def test_a_new_request_is_sent(action, tx):
    p = plan([req("a", action)])
    assert p.send.id == "a" and p.tx == tx and p.condition.reason == "InProgress"


def test_recorded_requests_are_never_sent_again():
    for state in ("Sent", "Succeeded", "Failed", "Skipped"):
        record = {"id": "a", "action": "PauseChain", "state": state, "at": iso(NOW), "height": 999}
        assert plan([req("a", "PauseChain")], [record]).send is None, state


def test_one_transaction_per_pass_and_none_while_one_is_in_flight():
    requests = [req("p", "PauseChain"), req("r", "ResumeChain")]
    first = plan(requests)
    assert first.send.id == "p"
    in_flight = upsert_record(first.records, pending_record(first.send, NOW, ACTIVE))
    assert plan(requests, in_flight, facts=replace(ACTIVE, height=1001)).send is None
    paused = replace(ACTIVE, height=1002, node_pause_until=1720)
    after = plan(requests, in_flight, facts=paused)
    assert states(after)["p"] == "Succeeded" and after.send.id == "r"


def test_upgrade_requests_are_left_to_the_upgrade_facet():
    p = plan([req("u", "Upgrade")])
    assert p.send is None and p.records == [] and p.condition is None
    assert plan([], []).condition is None


@pytest.mark.parametrize("facts,action,state,words", [
    (replace(ACTIVE, node_status="Standby"), "PauseChain", "Skipped", "Standby"),
    (replace(ACTIVE, node_status=None), "ResumeChain", "Skipped", "not observed"),
    (replace(ACTIVE, external_address=None), "AnnounceIP", "Skipped", "spec.externalIP"),
    (replace(ACTIVE, registered_ip="198.51.100.20"), "AnnounceIP", "Succeeded", "already registered"),
    (replace(ACTIVE, announcement_pending="198.51.100.20"), "AnnounceIP", "Skipped", "not sent twice"),
])
def test_refused_before_sending_with_the_reason(facts, action, state, words):
    p = plan([req("a", action)], facts=facts)
    assert p.send is None and states(p) == {"a": state} and words in p.records[0]["message"]
    assert p.events and ("ActionRefused" if state != "Succeeded" else "NodeActionSucceeded") == p.events[0].reason


def test_a_node_pauses_once_per_churn():
    earlier = {"id": "p1", "action": "PauseChain", "state": "Succeeded", "at": iso(NOW), "height": 600}
    p = plan([req("p1", "PauseChain"), req("p2", "PauseChain")], [earlier])
    assert states(p)["p2"] == "Skipped" and "once per churn" in p.records[-1]["message"]
    after_churn = plan([req("p2", "PauseChain")], [earlier], facts=replace(ACTIVE, last_churn_height=700))
    assert after_churn.send.id == "p2"


def test_actions_wait_for_a_halt_in_the_policy():
    p = plan([req("a", "PauseChain")], halts=[{"kind": "Chain", "key": "HALTCHAINGLOBAL"}],
             policy=HaltPolicy(node_actions=[HaltKind.CHAIN]))
    assert p.send is None and p.records == [] and p.condition.reason == "WaitingForHalt"


@pytest.mark.parametrize("action,before,facts,confirmed", [
    ("PauseChain", 0, replace(ACTIVE, height=1002, node_pause_until=1721), True),
    ("PauseChain", 0, replace(ACTIVE, height=1001, node_pause_until=1721), False),   # not a block later yet
    ("PauseChain", 0, replace(ACTIVE, height=1002, node_pause_until=0), False),
    ("ResumeChain", 1720, replace(ACTIVE, height=1002, node_pause_until=1002), True),
    ("ResumeChain", 2440, replace(ACTIVE, height=1002, node_pause_until=1720), True),  # others still pause
    ("ResumeChain", 1720, replace(ACTIVE, height=1002, node_pause_until=1720), False),
    ("AnnounceIP", None, replace(ACTIVE, registered_ip="198.51.100.20"), True),
    ("AnnounceIP", None, ACTIVE, False),
])
def test_a_sent_action_is_confirmed_by_the_chain(action, before, facts, confirmed):
    record = {"id": "a", "action": action, "state": "Sent", "at": iso(NOW), "height": 1000,
              **({"nodePauseUntil": before} if before is not None else {})}
    p = plan([req("a", action)], [record], facts=facts)
    assert states(p)["a"] == ("Succeeded" if confirmed else "Sent")


def test_an_action_never_confirmed_fails_after_the_timeout_and_is_not_resent():
    record = {"id": "a", "action": "PauseChain", "state": "Sent", "at": iso(NOW), "height": 1000}
    p = plan([req("a", "PauseChain")], [record], now=NOW + CONFIRM_TIMEOUT)
    assert states(p) == {"a": "Failed"} and p.send is None and "not sent again" in p.records[0]["message"]
    assert p.condition.reason == "ActionFailed"


@pytest.mark.parametrize("outcome,state,event", [
    (TxOutcome("ok", 0, "TXH", "", "accepted"), "Sent", "NodePaused"),
    (TxOutcome("failed", 4, "TXH", "", "unauthorized: node has already paused the chain this churn"), "Failed",
     "ActionRefused"),
    (TxOutcome("transient", None, None, "", "exec timed out after 60s"), "Sent", None),
    (TxOutcome("transient", 32, "TXH", "", "account sequence mismatch"), None, "NodeActionRetrying"),
])
def test_record_outcome(outcome, state, event):
    request = req("a", "PauseChain", "suspicious outbound")
    records = upsert_record([], pending_record(request, NOW, ACTIVE))
    assert records[0]["state"] == "Sent" and records[0]["nodePauseUntil"] == 0
    records, events = record_outcome(records, request, TxRequest("pause-chain"), outcome, NOW, ACTIVE)
    assert {r["id"]: r["state"] for r in records}.get("a") == state
    assert [e.reason for e in events] == ([event] if event else [])
    if outcome.ok:
        assert records[0]["txhash"] == "TXH" and "suspicious outbound" in events[0].message


def test_records_of_removed_ids_are_kept_while_there_is_room():
    records = [{"id": f"old-{i}", "action": "PauseChain", "state": "Succeeded", "at": iso(NOW + timedelta(i))}
               for i in range(MAX_RECORDS)]
    records.append({"id": "new", "action": "PauseChain", "state": "Succeeded", "at": iso(NOW)})
    kept = prune_records(records, ["new", "old-0"])
    assert len(kept) == MAX_RECORDS and {"new", "old-0"} <= {r["id"] for r in kept}
    assert "old-1" not in {r["id"] for r in kept}                           # the oldest removed one went
    assert prune_records(records[:3], []) == records[:3]


def test_the_records_fit_the_status_schema():
    request = req("a", "ResumeChain")
    spec_status = {"nodeActions": upsert_record([], pending_record(request, NOW, ACTIVE))}
    from mayanode_operator.api.mayanode import MayaNodeStatus
    MayaNodeStatus.model_validate(spec_status)
    spec = MayaNodeSpec.model_validate({"network": "mocknet", "nodeActions": [{"id": "a", "action": "ResumeChain"}]})
    assert spec.pending_node_actions(MayaNodeStatus.model_validate(spec_status)) == []


ids = st.sampled_from(["a", "b", "c", "d"])
actions = st.sampled_from(["PauseChain", "ResumeChain", "AnnounceIP", "Upgrade"])


@given(requests=st.lists(st.tuples(ids, actions), unique_by=lambda t: t[0], max_size=4),
       outcomes=st.lists(st.sampled_from(["ok", "failed", "transient-unknown", "transient-refused"]), min_size=8,
                         max_size=8),
       facts=st.builds(NodeFacts, node_status=st.sampled_from(["Active", "Standby", None]),
                       height=st.just(1000), node_pause_until=st.sampled_from([0, 1500]),
                       last_churn_height=st.sampled_from([None, 10]),
                       external_address=st.sampled_from([None, "198.51.100.20"]),
                       registered_ip=st.sampled_from([None, "198.51.100.20"])))
def test_each_id_is_sent_at_most_once_whatever_happens(requests, outcomes, facts):
    """Passes over time with any outcomes: an id whose transaction may have reached the chain is never sent again."""
    spec = [req(i, a) for i, a in requests]
    records: list = []
    may_have_reached: dict[str, int] = {}
    answers = {"ok": TxOutcome("ok", 0, "H", "", "ok"), "failed": TxOutcome("failed", 4, "H", "", "no"),
               "transient-unknown": TxOutcome("transient", None, None, "", "timed out"),
               "transient-refused": TxOutcome("transient", 32, "H", "", "account sequence mismatch")}
    for step, kind in enumerate(outcomes):
        now = NOW + timedelta(minutes=3 * step)
        p = plan(spec, records, facts=facts, now=now)
        records = p.records
        if p.send is None:
            continue
        assert may_have_reached.get(p.send.id, 0) == 0, f"{p.send.id} sent twice"
        records = upsert_record(records, pending_record(p.send, now, facts))
        records, _ = record_outcome(records, p.send, p.tx, answers[kind], now, facts)
        if kind != "transient-refused":
            may_have_reached[p.send.id] = 1


@pytest.mark.parametrize("outcome,maybe", [
    (TxOutcome("ok", 0, "H", "", "accepted"), True),
    (TxOutcome("failed", 4, "H", "unauthorized", "unauthorized"), False),            # refused at CheckTx
    (TxOutcome("transient", 32, "H", "", "account sequence mismatch"), False),
    (TxOutcome("transient", 19, "H", "", "tx already exists in cache"), True),       # it is in the mempool
    (TxOutcome("transient", None, None, "", "Error: post failed: connection refused"), False),
    (TxOutcome("transient", None, None, "", "not sent: no ready pod of deployment mayanode to run it in"), False),
    (TxOutcome("transient", None, None, "", "exec mayanode in n/p timed out after 60s"), True),
    (TxOutcome("transient", None, None, "", "exec into n/p failed: ConnectionResetError"), True),
    # the command never started: the exec's upgrade was refused, or the runtime could not start it
    (TxOutcome("transient", None, None, "", "exec into n/p (mayanode) refused: HTTP 500 Internal Server Error"), False),
    (TxOutcome("transient", None, None, "", "OCI runtime exec failed: exec failed: unable to start container "
                                           "process: container is restarting: unknown"), False),
])
def test_may_have_been_broadcast(outcome, maybe):
    from mayanode_operator.plan.transactions import may_have_been_broadcast

    assert may_have_been_broadcast(outcome) is maybe
