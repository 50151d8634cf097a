"""Mimir votes planner: only the differences are sent; withdrawals of own keys only; drift corrected."""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from mayanode_operator.api.mayanode import HaltKind, HaltPolicy, MimirSpec
from mayanode_operator.plan.mimir_votes import (
    FAILURE_BACKOFF,
    PENDING_TIMEOUT,
    MimirInputs,
    Vote,
    VotesLook,
    iso,
    outcome_condition,
    plan_mimir,
    record_outcome,
    record_sent,
    votes_due,
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


# --- when the node's votes are read again -----------------------------------------------------------------------
VOTES_RECHECK_SECONDS = 600.0
def look(own, desired=None, age=timedelta(seconds=30)):
    return VotesLook(NOW - age, {k.upper(): v for k, v in (desired if desired is not None else own).items()}, own)


SETTLED = {"inEffect": {"A": 1}, "managedKeys": ["A"], "pending": [], "failed": []}


@pytest.mark.parametrize("last, votes, previous, withdraw, due", [
    (None, {"A": 1}, None, False, True),                                         # never read
    (look({"A": 1}), {"A": 1}, SETTLED, False, False),                           # settled: the last read holds
    (look({"A": 1}), {"a": 1}, SETTLED, False, False),                           # keys compare upper-cased
    (look({"A": 1}, age=timedelta(seconds=VOTES_RECHECK_SECONDS)), {"A": 1}, SETTLED, False, True),  # a vote by hand
    (look({"A": 1}), {"A": 2}, SETTLED, False, True),                            # the spec changed
    (look({"A": 1}), {"A": 1, "B": 2}, SETTLED, False, True),
    (look({}, {"A": 1}), {"A": 1}, SETTLED, False, True),                        # not as the spec wants yet
    (look({"A": 1}), {"A": 1}, {**SETTLED, "pending": [{"key": "A", "value": 1}]}, False, True),   # waiting
    (look({"A": 1}), {"A": 1}, {**SETTLED, "failed": [{"key": "B", "value": 2}]}, False, True),    # held back
    (look({"A": 1, "B": 5}, {"A": 1}), {"A": 1}, {**SETTLED, "managedKeys": ["A", "B"]}, True, True),  # to withdraw
    (look({"A": 1, "B": 5}, {"A": 1}), {"A": 1}, {**SETTLED, "managedKeys": ["A", "B"]}, False, False),  # kept
    (look({"A": 1, "X": 7}, {"A": 1}), {"A": 1}, SETTLED, True, False),          # a vote by hand on X stays
])
def test_votes_are_read_again_only_when_something_may_be_to_do(last, votes, previous, withdraw, due):
    assert votes_due(last, MimirSpec(votes=votes, withdraw_removed=withdraw), previous, NOW,
                     VOTES_RECHECK_SECONDS) is due


@given(st.dictionaries(st.sampled_from("ABC"), st.integers(0, 3), max_size=3),
       st.dictionaries(st.sampled_from("ABC"), st.integers(0, 3), max_size=3),
       st.booleans(), st.booleans())
def test_a_settled_node_plans_from_the_last_read_as_from_a_new_one(votes, others, managed_all, withdraw):
    """Whenever the last read is not due again, planning with it sends nothing and changes nothing: it is what a
    new read of unchanged votes would plan."""
    own = {**others, **votes}                     # mostly settled: the spec's votes on chain, maybe others beside
    spec = MimirSpec(votes=votes, withdraw_removed=withdraw)
    previous = plan(votes, own, withdraw=withdraw).status
    if managed_all:
        previous = {**previous, "managedKeys": sorted(set(previous["managedKeys"]) | set(own))}
    due = votes_due(VotesLook(NOW, {k.upper(): v for k, v in votes.items()}, own), spec, previous,
                    NOW + timedelta(seconds=30), VOTES_RECHECK_SECONDS)
    event("due" if due else "planned from the last read")
    if not due:
        again = plan(votes, own, previous, withdraw=withdraw, now=NOW + timedelta(seconds=30))
        assert again.votes == () and again.condition.reason == "Applied" and again.status == previous
