"""Mimir votes as code: the smallest set of `mimir KEY VALUE` transactions that makes this node's votes on chain
match `spec.mimir.votes`. Pure.

- A key whose vote on chain already has the spec's value costs nothing.
- A vote sent and not yet on chain is pending; it is not sent again until `PENDING_TIMEOUT` passed.
- A vote the chain refused is not sent again until `FAILURE_BACKOFF` passed or the spec's value changes.
- `withdrawRemoved`: a key removed from the spec is withdrawn (`-1`) only if this operator voted on it before
  (`status.mimir.managedKeys`); votes made by hand stay.
- A managed vote that changed on chain (by hand, with the CLI) is detected and set back.
- The node's votes are read again only while something is to be done or waited for, when the spec's votes
  change, or when the last read is `recheck_seconds` old (`votes_due`; the operator's `mimir_recheck_seconds`):
  `/mayachain/mimir/nodes_all` holds every node's votes (tens of KiB on mainnet), and they change only by a vote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..api.mayanode import HaltAction, HaltPolicy, MimirSpec
from .conditions import Condition
from .events import EventSpec
from .halt_policy import HaltLike, blocking_halts, waiting_message
from .transactions import TxOutcome, TxRequest, may_have_been_broadcast

CONDITION = "MimirVotesApplied"
WITHDRAW = -1
PENDING_TIMEOUT = timedelta(minutes=5)
FAILURE_BACKOFF = timedelta(minutes=10)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: Any) -> datetime | None:
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return None


def _age(now: datetime, stamp: Any) -> timedelta | None:
    moment = _parse(stamp)
    return None if moment is None else now.replace(tzinfo=None) - moment


@dataclass(frozen=True)
class Vote:
    key: str
    value: int
    reason: str            # Missing | Differs | ChangedOnChain | Withdraw | Resend

    @property
    def request(self) -> TxRequest:
        return TxRequest("mimir", (self.key, str(self.value)))


@dataclass(frozen=True)
class MimirInputs:
    spec: MimirSpec | None
    node_address: str | None
    own_votes: Mapping[str, int] | None      # this node's votes on chain (KEY → value); None: not observed
    previous: Mapping[str, Any] | None       # status.mimir as stored
    halt_policy: HaltPolicy
    halts: tuple[HaltLike, ...]
    now: datetime


@dataclass(frozen=True)
class MimirPlan:
    votes: tuple[Vote, ...] = ()
    status: dict[str, Any] | None = None      # None: leave status.mimir as it is
    condition: Condition | None = None
    events: tuple[EventSpec, ...] = ()


def desired_votes(spec: MimirSpec | None) -> dict[str, int]:
    return {key.upper(): int(value) for key, value in (spec.votes if spec else {}).items()}


@dataclass(frozen=True)
class VotesLook:
    """This node's votes as read from the chain, when, and the spec's votes then."""

    at: datetime
    desired: Mapping[str, int]
    own: Mapping[str, int]


def votes_due(last: VotesLook | None, spec: MimirSpec | None, previous: Mapping[str, Any] | None,
              now: datetime, recheck_seconds: float) -> bool:
    """Whether to read the node's votes again, or to plan with the last read's: only a settled node (its votes on
    chain as the spec wants, nothing pending, failed or to withdraw) is planned from a read younger than
    `recheck_seconds` (how late a vote made outside the operator may be noticed), and only for the same spec."""
    if last is None or dict(last.desired) != desired_votes(spec):
        return True
    previous = previous or {}
    if previous.get("pending") or previous.get("failed"):
        return True
    own = {key.upper(): int(value) for key, value in last.own.items()}
    if any(own.get(key) != value for key, value in last.desired.items()):
        return True
    managed = {str(key).upper() for key in previous.get("managedKeys") or ()}
    if spec is not None and spec.withdraw_removed and any(key in own for key in managed - last.desired.keys()):
        return True
    return (now - last.at).total_seconds() >= recheck_seconds


def plan_mimir(inputs: MimirInputs) -> MimirPlan:
    previous = dict(inputs.previous or {})
    if inputs.spec is None:
        if not previous:
            return MimirPlan()
        return MimirPlan(condition=Condition(CONDITION, "True", "NotManaged",
                                             "spec.mimir is not set: the operator does not vote"))
    if not inputs.node_address:
        return MimirPlan(condition=Condition(CONDITION, "False", "NodeAddressNotSet",
                                             "spec.nodeAddress is not set: this node's votes cannot be read"))
    if inputs.own_votes is None:
        return MimirPlan(condition=Condition(CONDITION, "Unknown", "MimirUnavailable",
                                             "this node's votes (/mayachain/mimir/nodes_all) could not be read"))
    own = {k.upper(): int(v) for k, v in inputs.own_votes.items()}
    desired = desired_votes(inputs.spec)
    managed = {str(k).upper() for k in previous.get("managedKeys") or ()}
    last_seen = {str(k).upper(): v for k, v in (previous.get("inEffect") or {}).items()}
    pending = {p["key"]: dict(p) for p in previous.get("pending") or () if p.get("key")}
    failed = {f["key"]: dict(f) for f in previous.get("failed") or () if f.get("key")}
    now = inputs.now
    events: list[EventSpec] = []

    # Pending votes the chain now shows are done; those past the timeout may be sent again.
    for key, vote in list(pending.items()):
        on_chain = own.get(key, WITHDRAW)
        if on_chain == int(vote["value"]):
            del pending[key]
    for key in [k for k, f in failed.items() if desired.get(k) != f.get("value") and not _withdrawing(k, f, desired,
                                                                                                     inputs.spec)]:
        del failed[key]                       # the spec moved on: the old failure no longer holds it back

    wanted: dict[str, tuple[int, str]] = {}
    for key, value in sorted(desired.items()):
        if own.get(key) == value:
            failed.pop(key, None)
            continue
        if key in managed and last_seen.get(key) == value and key not in pending:
            reason = "ChangedOnChain"
            now_text = f"is {own[key]}" if key in own else "was withdrawn"
            events.append(EventSpec("Warning", "MimirVoteChanged",
                                    f"this node's vote for {key} {now_text} on chain, not {value} as in "
                                    f"spec.mimir.votes (changed outside the operator); voting {value} again"))
        else:
            reason = "Differs" if key in own else "Missing"
        wanted[key] = (value, reason)
    for key in sorted(managed - desired.keys()):
        if key in own and inputs.spec.withdraw_removed:
            wanted[key] = (WITHDRAW, "Withdraw")

    for key in [k for k in pending if k not in wanted]:
        age = _age(now, pending[key].get("sentAt"))
        if age is None or age >= PENDING_TIMEOUT:
            del pending[key]                  # no longer wanted and never shown: forget it

    votes: list[Vote] = []
    waiting: list[str] = []
    held: list[str] = []
    for key, (value, reason) in wanted.items():
        vote = pending.get(key)
        if vote and int(vote["value"]) == value:
            age = _age(now, vote.get("sentAt"))
            if age is not None and age < PENDING_TIMEOUT:
                waiting.append(key)
                continue
            reason = "Resend"
        failure = failed.get(key)
        if failure and int(failure.get("value", 0)) == value:
            age = _age(now, failure.get("at"))
            if age is not None and age < FAILURE_BACKOFF:
                held.append(key)
                continue
        votes.append(Vote(key, value, reason))

    halts = blocking_halts(inputs.halt_policy, HaltAction.MIMIR_VOTE, inputs.halts)
    if halts and votes:
        condition = Condition(CONDITION, "False", "WaitingForHalt",
                              waiting_message(HaltAction.MIMIR_VOTE, halts[0], more=len(halts) - 1))
        votes = []
    elif votes:
        condition = Condition(CONDITION, "False", "Voting", "sending " + ", ".join(
            f"{v.key}={v.value}" for v in votes))
    elif waiting:
        condition = Condition(CONDITION, "False", "Pending", "waiting for the chain to show " + ", ".join(
            f"{k}={pending[k]['value']}" for k in waiting))
    elif held:
        condition = Condition(CONDITION, "False", "VoteFailed", "; ".join(
            f"{k}={failed[k]['value']}: {failed[k].get('message', '')}" for k in held))
    else:
        kept = sorted(k for k in managed - desired.keys() if k in own)
        extra = f"; votes kept on chain for keys removed from the spec: {', '.join(kept)}" if kept else ""
        condition = Condition(CONDITION, "True", "Applied",
                              f"{len(desired)} vote(s) in effect as in spec.mimir.votes{extra}")

    managed = {k for k in managed if k in desired or k in own or k in pending}
    status = _status(own, managed, pending, failed)
    return MimirPlan(tuple(votes), status, condition, tuple(events))


def _withdrawing(key: str, failure: Mapping[str, Any], desired: Mapping[str, int], spec: MimirSpec) -> bool:
    return key not in desired and int(failure.get("value", 0)) == WITHDRAW and spec.withdraw_removed


def _status(own: Mapping[str, int], managed: set[str], pending: Mapping[str, Mapping[str, Any]],
            failed: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "inEffect": dict(sorted(own.items())),
        "managedKeys": sorted(managed),
        "pending": [dict(pending[k]) for k in sorted(pending)],
        "failed": [dict(failed[k]) for k in sorted(failed)],
    }


def record_sent(status: Mapping[str, Any], votes: tuple[Vote, ...], now: datetime) -> dict[str, Any]:
    """The status to persist before sending: every vote pending, its key managed by the operator."""
    pending = {p["key"]: dict(p) for p in status.get("pending") or ()}
    for vote in votes:
        attempts = int(pending[vote.key].get("attempts") or 1) + 1 if vote.key in pending else 1
        pending[vote.key] = {"key": vote.key, "value": vote.value, "sentAt": iso(now), "attempts": attempts}
    managed = sorted(set(status.get("managedKeys") or ()) | {v.key for v in votes})
    return {**status, "managedKeys": managed, "pending": [pending[k] for k in sorted(pending)]}


def record_outcome(status: Mapping[str, Any], vote: Vote, outcome: TxOutcome, now: datetime
                   ) -> tuple[dict[str, Any], tuple[EventSpec, ...]]:
    pending = {p["key"]: dict(p) for p in status.get("pending") or ()}
    failed = {f["key"]: dict(f) for f in status.get("failed") or ()}
    what = f"{vote.key}={vote.value}"
    if outcome.ok:
        if vote.key in pending and outcome.txhash:
            pending[vote.key]["txhash"] = outcome.txhash
        failed.pop(vote.key, None)
        txhash = f", txhash {outcome.txhash}" if outcome.txhash else ""
        event = (EventSpec("Normal", "VoteWithdrawn", f"withdrew this node's mimir vote for {vote.key}{txhash}")
                 if vote.value == WITHDRAW else
                 EventSpec("Normal", "MimirVoteSent", f"voted {what}{txhash}"))
        events: tuple[EventSpec, ...] = (event,)
    elif outcome.kind == "transient" and may_have_been_broadcast(outcome):
        events = ()                      # no clear answer: stays pending, judged by what the chain shows
    else:
        pending.pop(vote.key, None)
        if outcome.kind == "failed":
            failed[vote.key] = {"key": vote.key, "value": vote.value, "at": iso(now), "message": outcome.message}
        events = (EventSpec("Warning", "MimirVoteFailed", f"mimir vote {what} did not go through: {outcome.message}"),)
    return ({**status, "pending": [pending[k] for k in sorted(pending)],
             "failed": [failed[k] for k in sorted(failed)]}, events)


def outcome_condition(status: Mapping[str, Any], sent: tuple[Vote, ...]) -> Condition:
    """The condition after this pass's votes were sent."""
    failed = [f for f in status.get("failed") or () if any(v.key == f["key"] for v in sent)]
    if failed:
        return Condition(CONDITION, "False", "VoteFailed", "; ".join(
            f"{f['key']}={f['value']}: {f.get('message', '')}" for f in failed))
    pending = status.get("pending") or []
    if pending:
        return Condition(CONDITION, "False", "Pending", "waiting for the chain to show " + ", ".join(
            f"{p['key']}={p['value']}" for p in pending))
    return Condition(CONDITION, "False", "Retrying", "votes did not go through; retrying at the next pass")
