"""One-shot node actions (`spec.nodeActions`): each id is done at most once. Pure.

A request is recorded in `status.nodeActions` (state Sent) *before* its transaction is sent, so neither a
resync nor an operator restart sends it twice. What happens next:

    Sent ──chain shows the effect──▶ Succeeded
      └──no effect within CONFIRM_TIMEOUT──▶ Failed (never sent again: one-shot)
    refused by the chain ──▶ Failed;   refused before sending (node not Active, …) ──▶ Skipped

One transaction per pass, in spec order, and none while another is still Sent: a PauseChain followed by a
ResumeChain reaches the chain in that order. Upgrade requests belong to the upgrade facet; they are left alone
here (`HANDLED` says which actions this planner takes), and `upsert_record` is how that facet records them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..api.mayanode import HaltAction, HaltPolicy, NodeActionRequest, NodeActionType
from .conditions import Condition
from .events import EventSpec
from .halt_policy import HaltLike, blocking_halts, waiting_message
from .transactions import TxOutcome, TxRequest, may_have_been_broadcast

CONDITION = "NodeActionsDone"
CONFIRM_TIMEOUT = timedelta(minutes=5)
MAX_RECORDS = 64
HANDLED = (NodeActionType.PAUSE_CHAIN, NodeActionType.RESUME_CHAIN, NodeActionType.ANNOUNCE_IP)
SUBCOMMAND = {
    NodeActionType.PAUSE_CHAIN: "pause-chain",
    NodeActionType.RESUME_CHAIN: "resume-chain",
    NodeActionType.ANNOUNCE_IP: "set-ip-address",
}


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _age(now: datetime, stamp: Any) -> timedelta | None:
    try:
        return now.replace(tzinfo=None) - datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class NodeFacts:
    """What the planner needs to know about the node and the chain right now."""

    node_status: str | None = None            # Active, Standby, … (None: not observed)
    height: int | None = None
    node_pause_until: int = 0                 # NODEPAUSECHAINGLOBAL
    last_churn_height: int | None = None
    external_address: str | None = None       # status.externalIP.address (when the operator manages it)
    registered_ip: str | None = None
    announcement_pending: str | None = None   # status.externalIP.pending.address (the externalIP facet's)


@dataclass(frozen=True)
class NodeActionInputs:
    requests: Sequence[NodeActionRequest]
    records: Sequence[Mapping[str, Any]]       # status.nodeActions as stored
    facts: NodeFacts
    halt_policy: HaltPolicy
    halts: tuple[HaltLike, ...]
    now: datetime


@dataclass(frozen=True)
class NodeActionPlan:
    records: list[dict[str, Any]]              # status.nodeActions after this pass's decisions
    send: NodeActionRequest | None = None
    tx: TxRequest | None = None
    condition: Condition | None = None
    events: tuple[EventSpec, ...] = ()


def upsert_record(records: Iterable[Mapping[str, Any]], record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`records` with `record` put in place of the one with its id (or appended)."""
    out = [dict(r) for r in records if r.get("id") != record.get("id")]
    out.append(dict(record))
    return out


def prune_records(records: Iterable[Mapping[str, Any]], spec_ids: Iterable[str],
                  limit: int = MAX_RECORDS) -> list[dict[str, Any]]:
    """At most `limit` records; those whose id left the spec go first, oldest first. Records of removed ids are
    kept while there is room, so putting an id back never repeats its action."""
    keep = [dict(r) for r in records]
    ids = set(spec_ids)
    while len(keep) > limit:
        removable = [r for r in keep if r.get("id") not in ids] or keep
        oldest = min(removable, key=lambda r: str(r.get("at") or ""))
        keep.remove(oldest)
    return keep


def plan_node_actions(inputs: NodeActionInputs) -> NodeActionPlan:
    facts, now = inputs.facts, inputs.now
    records = [dict(r) for r in inputs.records]
    events: list[EventSpec] = []

    # Sent ones: confirmed by what the chain shows, or given up after the timeout (never sent again).
    for index, record in enumerate(records):
        if record.get("state") != "Sent":
            continue
        verdict = _confirmation(record, facts)
        if verdict is True:
            records[index] = {**record, "state": "Succeeded", "at": iso(now), "message": _done_text(record, facts)}
            events.append(EventSpec("Normal", "NodeActionSucceeded",
                                    f"node action {record['id']} ({record['action']}): {_done_text(record, facts)}"))
        else:
            age = _age(now, record.get("at"))
            if age is not None and age >= CONFIRM_TIMEOUT:
                message = (f"not seen on chain within {int(CONFIRM_TIMEOUT.total_seconds())}s; not sent again "
                           "(a node action is done at most once: use a new id to try again)")
                records[index] = {**record, "state": "Failed", "at": iso(now), "message": message}
                events.append(EventSpec("Warning", "ActionRefused", f"node action {record['id']}: {message}"))

    done = {r.get("id") for r in records}
    ours = [r for r in inputs.requests if r.action in HANDLED]
    todo = [r for r in ours if r.id not in done]
    in_flight = [r for r in records if r.get("state") == "Sent"]
    spec_ids = [r.id for r in inputs.requests]

    send = tx = None
    waiting_halt: str | None = None
    while todo and not in_flight and send is None:
        request = todo[0]
        refusal = _refusal(request, records, facts)
        if refusal is not None:
            state, message = refusal
            records = upsert_record(records, _record(request, state, now, facts, message))
            events.append(EventSpec("Warning" if state == "Failed" else "Normal",
                                    "ActionRefused" if state != "Succeeded" else "NodeActionSucceeded",
                                    f"node action {request.id} ({request.action}): {message}"))
            todo.pop(0)
            continue
        halts = blocking_halts(inputs.halt_policy, HaltAction.NODE_ACTION, inputs.halts)
        if halts:
            waiting_halt = waiting_message(HaltAction.NODE_ACTION, halts[0], more=len(halts) - 1)
            break
        send, tx = request, _tx(request, facts)

    records = prune_records(records, spec_ids)
    condition = condition_for(ours, records, send, waiting_halt, todo)
    return NodeActionPlan(records, send, tx, condition, tuple(events))


def _tx(request: NodeActionRequest, facts: NodeFacts) -> TxRequest:
    if request.action == NodeActionType.ANNOUNCE_IP:
        return TxRequest("set-ip-address", (str(facts.external_address),))
    return TxRequest(SUBCOMMAND[request.action])


def _refusal(request: NodeActionRequest, records: Sequence[Mapping[str, Any]], facts: NodeFacts
             ) -> tuple[str, str] | None:
    """(state, why) when the request is settled without sending anything."""
    if request.action == NodeActionType.ANNOUNCE_IP:
        if not facts.external_address:
            return "Skipped", ("no external address to announce: set spec.externalIP (and wait for its address) "
                               "before an AnnounceIP request")
        if facts.registered_ip == facts.external_address:
            return "Succeeded", f"{facts.external_address} is already registered on chain: nothing sent"
        if facts.announcement_pending == facts.external_address:
            return "Skipped", (f"set-ip-address {facts.external_address} was just sent (spec.externalIP.announce) "
                               "and waits for the chain: not sent twice")
        return None
    if facts.node_status is None:
        return "Skipped", ("the node account is not observed (spec.nodeAddress unset or not found): only an "
                           "Active node may pause or resume the chain")
    if facts.node_status != "Active":
        return "Skipped", f"the node is {facts.node_status}: only an Active node may pause or resume the chain"
    if request.action == NodeActionType.PAUSE_CHAIN:
        since = facts.last_churn_height or 0          # no churn seen yet: every earlier pause counts
        for record in records:
            if (record.get("action") == NodeActionType.PAUSE_CHAIN and record.get("state") in ("Sent", "Succeeded")
                    and int(record.get("height") or 0) >= since):
                return "Skipped", (f"this node already paused the chain since the last churn (request "
                                   f"{record['id']}): a node may pause once per churn")
    return None


def _confirmation(record: Mapping[str, Any], facts: NodeFacts) -> bool:
    action = record.get("action")
    if action == NodeActionType.ANNOUNCE_IP:
        return bool(facts.registered_ip) and facts.registered_ip == facts.external_address
    if facts.height is None or facts.height < int(record.get("height") or 0) + 2:
        return False                            # the chain applies it at the next block
    before = int(record.get("nodePauseUntil") or 0)
    if action == NodeActionType.PAUSE_CHAIN:
        return facts.node_pause_until > facts.height and facts.node_pause_until >= before
    if action == NodeActionType.RESUME_CHAIN:
        return facts.node_pause_until < before or facts.node_pause_until <= facts.height
    return False


def _done_text(record: Mapping[str, Any], facts: NodeFacts) -> str:
    action = record.get("action")
    if action == NodeActionType.PAUSE_CHAIN:
        return f"the chain is paused until height {facts.node_pause_until}"
    if action == NodeActionType.RESUME_CHAIN:
        still = facts.node_pause_until > (facts.height or 0)
        return (f"resume applied; other nodes' pauses last until height {facts.node_pause_until}" if still
                else "the chain is no longer paused by nodes")
    return f"{facts.registered_ip} is registered on chain"


def _record(request: NodeActionRequest, state: str, now: datetime, facts: NodeFacts, message: str | None = None
            ) -> dict[str, Any]:
    record: dict[str, Any] = {"id": request.id, "action": str(request.action), "state": state, "at": iso(now)}
    if facts.height is not None:
        record["height"] = facts.height
    if message:
        record["message"] = message
    if request.action in (NodeActionType.PAUSE_CHAIN, NodeActionType.RESUME_CHAIN):
        record["nodePauseUntil"] = facts.node_pause_until
    return record


def condition_for(ours: Sequence[NodeActionRequest], records: Sequence[Mapping[str, Any]],
                  send: NodeActionRequest | None = None, waiting_halt: str | None = None,
                  todo: Sequence[NodeActionRequest] = ()) -> Condition | None:
    if not ours and not records:
        return None
    if waiting_halt:
        return Condition(CONDITION, "False", "WaitingForHalt", waiting_halt)
    in_flight = [r for r in records if r.get("state") == "Sent"]
    if send is not None or in_flight:
        names = [send.id] if send is not None else [str(r["id"]) for r in in_flight]
        return Condition(CONDITION, "False", "InProgress", f"waiting for the chain: {', '.join(names)}")
    if todo:
        return Condition(CONDITION, "False", "Pending", f"to do: {', '.join(r.id for r in todo)}")
    current = {r.id for r in ours}
    failed = [r for r in records if r.get("id") in current and r.get("state") == "Failed"]
    if failed:
        return Condition(CONDITION, "False", "ActionFailed", "; ".join(
            f"{r['id']}: {r.get('message', '')}" for r in failed))
    return Condition(CONDITION, "True", "Done", f"{len(current)} node action request(s) done")


def pending_record(request: NodeActionRequest, now: datetime, facts: NodeFacts) -> dict[str, Any]:
    """The record persisted *before* the transaction is sent."""
    return _record(request, "Sent", now, facts, "sending")


def record_outcome(records: Sequence[Mapping[str, Any]], request: NodeActionRequest, tx: TxRequest,
                   outcome: TxOutcome, now: datetime, facts: NodeFacts
                   ) -> tuple[list[dict[str, Any]], tuple[EventSpec, ...]]:
    base = pending_record(request, now, facts)
    what = f"node action {request.id} ({tx.describe()})"
    why = f" — {request.reason}" if request.reason else ""
    if outcome.ok:
        txhash = f", txhash {outcome.txhash}" if outcome.txhash else ""
        record = {**base, "message": f"sent{txhash}; waiting for the chain",
                  **({"txhash": outcome.txhash} if outcome.txhash else {})}
        reason = {NodeActionType.PAUSE_CHAIN: "NodePaused", NodeActionType.RESUME_CHAIN: "NodeResumed",
                  NodeActionType.ANNOUNCE_IP: "IPAnnounced"}[request.action]
        return upsert_record(records, record), (EventSpec("Normal", reason, f"{what} sent{txhash}{why}"),)
    if outcome.kind == "transient" and may_have_been_broadcast(outcome):
        record = {**base, "message": f"no clear answer ({outcome.message}); waiting for the chain, not sent again"}
        return upsert_record(records, record), ()
    if outcome.kind == "transient":
        kept = [dict(r) for r in records if r.get("id") != request.id]      # nothing reached the chain: retry
        return kept, (EventSpec("Warning", "NodeActionRetrying", f"{what} did not go through ({outcome.message}); "
                                "retrying at the next pass"),)
    record = {**base, "state": "Failed", "message": f"refused: {outcome.message}"}
    return upsert_record(records, record), (EventSpec("Warning", "ActionRefused",
                                                      f"{what} refused: {outcome.message}"),)
