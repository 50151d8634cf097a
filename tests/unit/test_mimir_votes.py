"""Mimir votes planner: only the differences are sent; withdrawals of own keys only; drift corrected."""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mayanode_operator.api.mayanode import HaltKind, HaltPolicy, MimirSpec
from mayanode_operator.plan.mimir_votes import (
    FAILURE_BACKOFF,
    PENDING_TIMEOUT,
    MimirInputs,
    Vote,
    iso,
    outcome_condition,
    plan_mimir,
    record_outcome,
    record_sent,
)
from mayanode_operator.plan.transactions import TxOutcome, TxRequest

NOW = datetime(2026, 11, 21, 10, 0, 0, tzinfo=timezone.utc)
ADDRESS = "maya1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"


def plan(votes=None, own=None, previous=None, withdraw=False, spec=True, halts=(), policy=HaltPolicy(), now=NOW,
         address=ADDRESS):
    mimir = MimirSpec(votes=votes or {}, withdraw_removed=withdraw) if spec else None
    return plan_mimir(MimirInputs(spec=mimir, node_address=address, own_votes=own, previous=previous,
                                  halt_policy=policy, halts=tuple(halts), now=now))


def sent(p):
    return [(v.key, v.value) for v in p.votes]


@pytest.mark.parametrize("votes,own,previous,withdraw,expected", [
    ({"A": 1, "b": 2}, {}, None, False, [("A", 1), ("B", 2)]),                     # keys are upper-cased
    ({"A": 1, "B": 2}, {"A": 1}, None, False, [("B", 2)]),                         # only the difference
    ({"A": 1}, {"A": 5}, None, False, [("A", 1)]),
    ({"A": 1}, {"A": 1, "X": 7}, None, False, []),                                 # a vote by hand on X stays
    ({}, {"A": 1}, {"managedKeys": ["A"]}, True, [("A", -1)]),                     # removed + withdrawRemoved
    ({}, {"A": 1}, {"managedKeys": ["A"]}, False, []),                             # removed, kept
    ({}, {"X": 1}, {"managedKeys": ["A"]}, True, []),                              # never withdraws foreign keys
    ({}, {}, {"managedKeys": ["A"]}, True, []),                                    # already gone
])
def test_only_differences_are_sent(votes, own, previous, withdraw, expected):
    assert sent(plan(votes, own, previous, withdraw)) == expected


def test_votes_requests_are_mimir_transactions():
    assert Vote("A", -1, "Withdraw").request == TxRequest("mimir", ("A", "-1"))


def test_applied_votes_give_a_true_condition_and_list_what_is_in_effect():
    p = plan({"A": 1}, {"A": 1, "X": 3}, {"managedKeys": ["A"]})
    assert (p.condition.status, p.condition.reason) == ("True", "Applied")
    assert p.status == {"inEffect": {"A": 1, "X": 3}, "managedKeys": ["A"], "pending": [], "failed": []}


def test_a_removed_key_whose_vote_stays_is_named():
    p = plan({}, {"A": 1}, {"managedKeys": ["A"]}, withdraw=False)
    assert p.condition.reason == "Applied" and "A" in p.condition.message and p.status["managedKeys"] == ["A"]


def test_a_pending_vote_is_not_sent_again_until_the_timeout():
    pending = {"key": "A", "value": 1, "sentAt": iso(NOW - timedelta(seconds=20)), "attempts": 1}
    p = plan({"A": 1}, {}, {"pending": [pending], "managedKeys": ["A"]})
    assert p.votes == () and p.condition.reason == "Pending"
    late = plan({"A": 1}, {}, {"pending": [pending], "managedKeys": ["A"]}, now=NOW + PENDING_TIMEOUT)
    assert [(v.key, v.reason) for v in late.votes] == [("A", "Resend")]
    assert record_sent(late.status, late.votes, NOW)["pending"][0]["attempts"] == 2


def test_a_pending_vote_shown_on_chain_is_done():
    pending = {"key": "A", "value": 1, "sentAt": iso(NOW), "attempts": 1}
    p = plan({"A": 1}, {"A": 1}, {"pending": [pending], "managedKeys": ["A"]})
    assert p.status["pending"] == [] and p.condition.reason == "Applied"
    withdrawal = {"key": "B", "value": -1, "sentAt": iso(NOW), "attempts": 1}
    p = plan({}, {}, {"pending": [withdrawal], "managedKeys": ["B"]}, withdraw=True)
    assert p.status["pending"] == [] and p.status["managedKeys"] == []


def test_a_spec_change_while_pending_sends_the_new_value():
    pending = {"key": "A", "value": 1, "sentAt": iso(NOW), "attempts": 1}
    assert sent(plan({"A": 2}, {}, {"pending": [pending], "managedKeys": ["A"]})) == [("A", 2)]


def test_a_vote_changed_by_hand_is_detected_and_corrected():
    previous = {"inEffect": {"A": 1}, "managedKeys": ["A"]}
    p = plan({"A": 1}, {"A": 9}, previous)
    assert [(v.key, v.value, v.reason) for v in p.votes] == [("A", 1, "ChangedOnChain")]
    assert [e.reason for e in p.events] == ["MimirVoteChanged"] and "9" in p.events[0].message
    gone = plan({"A": 1}, {}, previous)
    assert gone.votes[0].reason == "ChangedOnChain" and "withdrawn" in gone.events[0].message


def test_a_failed_vote_waits_for_the_backoff_or_a_new_value():
    failure = {"key": "A", "value": 1, "at": iso(NOW - timedelta(minutes=1)), "message": "unauthorized"}
    held = plan({"A": 1}, {}, {"failed": [failure]})
    assert held.votes == () and held.condition.reason == "VoteFailed" and "unauthorized" in held.condition.message
    assert sent(plan({"A": 1}, {}, {"failed": [failure]}, now=NOW + FAILURE_BACKOFF)) == [("A", 1)]
    moved_on = plan({"A": 2}, {}, {"failed": [failure]})
    assert sent(moved_on) == [("A", 2)] and moved_on.status["failed"] == []


def test_votes_wait_for_a_halt_in_the_policy():
    p = plan({"A": 1}, {}, None, halts=[{"kind": "Trading", "key": "HALTTRADING"}],
             policy=HaltPolicy(mimir_votes=[HaltKind.TRADING]))
    assert p.votes == () and p.condition.reason == "WaitingForHalt"
    assert sent(plan({"A": 1}, {}, None, halts=[{"kind": "Trading", "key": "HALTTRADING"}])) == [("A", 1)]


@pytest.mark.parametrize("kwargs,status,reason", [
    ({"own": None}, "Unknown", "MimirUnavailable"),
    ({"address": None, "own": {}}, "False", "NodeAddressNotSet"),
])
def test_what_cannot_be_compared_is_not_voted(kwargs, status, reason):
    p = plan({"A": 1}, **kwargs)
    assert p.votes == () and (p.condition.status, p.condition.reason) == (status, reason) and p.status is None


def test_without_spec_nothing_happens():
    assert plan(spec=False, own={}) .condition is None
    assert plan(spec=False, own={}, previous={"managedKeys": ["A"]}).condition.reason == "NotManaged"


@pytest.mark.parametrize("outcome,pending,failed,event", [
    (TxOutcome("ok", 0, "H1", "", "accepted"), True, False, "MimirVoteSent"),
    (TxOutcome("failed", 4, "H", "unauthorized", "unauthorized"), False, True, "MimirVoteFailed"),
    (TxOutcome("transient", 32, "H", "", "account sequence mismatch"), False, False, "MimirVoteFailed"),
    (TxOutcome("transient", None, None, "", "connection lost"), True, False, None),
])
def test_record_outcome(outcome, pending, failed, event):
    vote = Vote("A", 1, "Missing")
    status = record_sent({"inEffect": {}, "managedKeys": [], "pending": [], "failed": []}, (vote,), NOW)
    assert status["managedKeys"] == ["A"]
    status, events = record_outcome(status, vote, outcome, NOW)
    assert bool(status["pending"]) == pending and bool(status["failed"]) == failed
    assert [e.reason for e in events] == ([event] if event else [])
    if outcome.ok:
        assert status["pending"][0]["txhash"] == "H1"
        assert outcome_condition(status, (vote,)).reason == "Pending"


def test_a_withdrawal_is_its_own_event():
    vote = Vote("A", -1, "Withdraw")
    _, events = record_outcome({"pending": [], "failed": []}, vote, TxOutcome("ok", 0, "H", "", "ok"), NOW)
    assert [e.reason for e in events] == ["VoteWithdrawn"]


# --- convergence: the chain applies what was sent; a second pass sends nothing ----------------------------
keys = st.sampled_from(["A", "B", "C", "D", "E"])
values = st.integers(0, 3)


@given(desired=st.dictionaries(keys, values), own=st.dictionaries(keys, values),
       managed=st.sets(keys), withdraw=st.booleans())
def test_votes_converge_with_the_minimum_of_transactions(desired, own, managed, withdraw):
    previous = {"managedKeys": sorted(managed), "inEffect": {}}
    first = plan(desired, own, previous, withdraw)
    needed = {k for k, v in desired.items() if own.get(k) != v}
    withdrawals = {k for k in managed - desired.keys() if k in own} if withdraw else set()
    assert {v.key for v in first.votes} == needed | withdrawals
    assert len(first.votes) == len(needed) + len(withdrawals)

    status = record_sent(first.status, first.votes, NOW)
    chain = dict(own)
    for vote in first.votes:
        status, _ = record_outcome(status, vote, TxOutcome("ok", 0, "H", "", "ok"), NOW)
        if vote.value == -1:
            chain.pop(vote.key, None)
        else:
            chain[vote.key] = vote.value
    second = plan(desired, chain, status, withdraw, now=NOW + timedelta(seconds=10))
    assert second.votes == () and second.condition.reason == "Applied"
    assert second.status["pending"] == []
    assert {k: v for k, v in chain.items() if k in desired} == desired
