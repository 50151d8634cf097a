"""A transaction's record whose write lost its answer: the write landed, the operator did not send. The same process
sends at the next pass (it knows it never sent); a restarted process cannot know, and waits out the pending timeout.
Through the real MayaNode reconcile against the sandbox (API server, kubelet, mocknet)."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from mayanode_operator.adapters.kube import THROTTLE_RETRIES
from mayanode_operator.api import naming
from mayanode_operator.reconcile.mayanode import UNSENT_RETRY_SECONDS, reconcile_mayanode
from mayanode_operator.reconcile.status_writer import StatusWriter, UnsentRecords
from mayanode_operator.sandbox.apiserver.handlers import request_info

IP = "198.51.100.31"
READ_ATTEMPTS = THROTTLE_RETRIES + 1           # the adapter tries a read that met a 5xx this often
VOTES = {"MAXSYNTHPERPOOLDEPTH": 3500, "MINIMUMBONDINCACAO": 100000}


class LoseTheRecordsAnswer:
    """Applies the first MayaNode status write that records a pending transaction under `key`, then answers 504; the
    reads that follow (the operator reading back whether the write landed) fail too, so the operator cannot know."""

    def __init__(self, namespace: str, key: str, fail_read_back: bool = True) -> None:
        self.namespace, self.key, self.lost, self.read_back_failed = namespace, key, 0, 0
        self.fail_read_back = fail_read_back

    async def __call__(self, request, call_next):
        info = request_info(request)
        if info.namespace != self.namespace or info.resource != naming.MAYANODE_PLURAL:
            return await call_next(request)
        if self.lost and self.fail_read_back and self.read_back_failed < READ_ATTEMPTS and info.verb == "get":
            self.read_back_failed += 1
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": "InternalError", "code": 500, "message": "etcd leader changed"},
                                     status=500)
        if self.lost or info.subresource != "status" or info.verb != "patch":
            return await call_next(request)
        if not (json.loads(await request.read()).get("status", {}).get(self.key) or {}).get("pending"):
            return await call_next(request)
        response = await call_next(request)
        assert response.status == 200, response.status
        self.lost += 1
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Timeout",
                                  "code": 504, "message": "the server was unable to return a response in time"},
                                 status=504)


def setup_node(world, namespace, *, announce_ip=True):
    node = world.seed(namespace, ip_address="")
    world.call(world.sandbox.kubelet.set_lb_address(namespace, naming.DEFAULT_GATEWAY_SERVICE, ip=IP))
    spec = {"externalIP": {"announce": True}} if announce_ip else {}
    world.mayanode(node, mimir={"votes": dict(VOTES)}, **spec)
    return node


def sent(world, namespace):
    return sorted(tuple(t.argv) for t in world.sandbox.mocknet.transactions if t.namespace == namespace)


IP_TX = [("set-ip-address", IP)]
VOTE_TXS = sorted(("mimir", k, str(v)) for k, v in VOTES.items())


def lose_first_record(world, namespace, key):
    """One pass in which the record under `key` lands but its write answers 504."""
    hook = LoseTheRecordsAnswer(namespace, key)
    world.sandbox.api.add_request_hook(hook)
    try:
        next_pass = world.call(reconcile_mayanode(world.runtime, namespace, namespace))
    finally:
        world.sandbox.api.remove_request_hook(hook)
    assert hook.lost == 1 and hook.read_back_failed == READ_ATTEMPTS
    assert next_pass <= 1.1 * UNSENT_RETRY_SECONDS                           # the next pass comes soon
    return world.get(naming.MAYANODE_PLURAL, namespace, namespace)["status"]


def test_a_lost_ip_record_is_sent_by_the_same_process_at_the_next_pass_and_only_once(world):
    ns = "unsent-ip"
    setup_node(world, ns)
    status = lose_first_record(world, ns, "externalIP")
    assert status["externalIP"]["pending"]["address"] == IP                  # the record landed…
    assert sent(world, ns) == VOTE_TXS                                       # …the IP was not sent, the votes were
    world.call(reconcile_mayanode(world.runtime, ns, ns))
    assert sent(world, ns) == sorted(IP_TX + VOTE_TXS)
    status = world.get(naming.MAYANODE_PLURAL, ns, ns)["status"]
    assert status["externalIP"]["pending"]["attempts"] == 1                   # a first send, not a resend
    assert "message" not in status["externalIP"]["pending"]
    world.call(world.sandbox.mocknet.advance(2))
    world.call(world.sandbox.wait_ready(ns))                                 # the pods restarted for the new IP
    for _ in range(3):                                                       # confirmed on chain; never again
        world.call(reconcile_mayanode(world.runtime, ns, ns))
    assert sent(world, ns) == sorted(IP_TX + VOTE_TXS)
    status = world.get(naming.MAYANODE_PLURAL, ns, ns)["status"]
    assert "pending" not in status["externalIP"], status
    assert {c["type"]: c["reason"] for c in status["conditions"]}["ExternalIPAssigned"] == "Announced"
    assert len(world.runtime.unsent) == 0


def test_lost_vote_records_are_sent_by_the_same_process_at_the_next_pass_and_only_once(world):
    ns = "unsent-mimir"
    setup_node(world, ns, announce_ip=False)
    status = lose_first_record(world, ns, "mimir")
    assert {p["key"] for p in status["mimir"]["pending"]} == set(VOTES)
    assert sent(world, ns) == []
    world.call(reconcile_mayanode(world.runtime, ns, ns))
    assert sent(world, ns) == VOTE_TXS
    status = world.get(naming.MAYANODE_PLURAL, ns, ns)["status"]
    assert all(p["attempts"] == 1 for p in status["mimir"]["pending"]), status["mimir"]
    world.call(world.sandbox.mocknet.advance(2))
    for _ in range(3):
        world.call(reconcile_mayanode(world.runtime, ns, ns))
    assert sent(world, ns) == VOTE_TXS
    status = world.get(naming.MAYANODE_PLURAL, ns, ns)["status"]
    assert not status["mimir"].get("pending") and status["mimir"]["inEffect"] == VOTES, status["mimir"]
    assert len(world.runtime.unsent) == 0


def test_a_restarted_process_does_not_know_and_waits_for_the_pending_timeout(world):
    ns = "unsent-restart"
    setup_node(world, ns)
    assert lose_first_record(world, ns, "externalIP")["externalIP"]["pending"]["address"] == IP
    world.runtime.unsent = UnsentRecords()                                   # what a new process knows
    world.call(reconcile_mayanode(world.runtime, ns, ns))
    assert sent(world, ns) == VOTE_TXS
    status = world.get(naming.MAYANODE_PLURAL, ns, ns)["status"]
    reason = {c["type"]: c["reason"] for c in status["conditions"]}["ExternalIPAssigned"]
    assert reason == "Pending"


async def test_a_failed_record_is_undone_for_planning_only_while_it_is_what_is_stored():
    unsent, writes = UnsentRecords(), []

    async def lost(part):
        writes.append(part)
        raise TimeoutError("answer lost")

    before = {"phase": "Running", "mimir": {"inEffect": {"A": 1}}}
    writer = StatusWriter(before, lost, unsent, "uid-1")
    record = {"inEffect": {"A": 1}, "pending": [{"key": "B", "value": 2, "sentAt": "2026-11-21T10:00:00Z"}]}
    try:
        await writer.persist({"mimir": record})
    except TimeoutError:
        pass
    assert len(unsent) == 1
    landed = {**before, "mimir": record}
    assert unsent.as_planned_from("uid-1", landed) == before                 # planned as if never recorded
    assert unsent.as_planned_from("uid-2", landed) == landed                 # another object is not touched
    assert unsent.as_planned_from("uid-1", before) == before and len(unsent) == 1   # a read from before the write
    other = {**before, "mimir": {"inEffect": {"A": 1, "B": 2}}}
    assert unsent.as_planned_from("uid-1", other) == other and len(unsent) == 0     # anything else: forgotten

    async def ok(part):
        writes.append(part)

    try:
        await StatusWriter(before, lost, unsent, "uid-1").persist({"mimir": record})
    except TimeoutError:
        pass
    await StatusWriter(landed, ok, unsent, "uid-1").persist({"mimir": {**record, "pending": []}})
    assert len(unsent) == 0                                                  # a later write of the key replaces it


def test_a_lost_answer_read_back_as_landed_is_sent_in_the_same_pass(world):
    ns = "unsent-readback"
    setup_node(world, ns, announce_ip=False)
    hook = LoseTheRecordsAnswer(ns, "mimir", fail_read_back=False)
    world.sandbox.api.add_request_hook(hook)
    try:
        world.call(reconcile_mayanode(world.runtime, ns, ns))
    finally:
        world.sandbox.api.remove_request_hook(hook)
    assert hook.lost == 1 and sent(world, ns) == VOTE_TXS
    assert len(world.runtime.unsent) == 0


async def test_a_failed_end_of_pass_write_leaves_the_pass_s_knowledge_for_the_next_one():
    """Vote A went out, vote B was refused before its exec started; the end-of-pass write saying so failed. The next
    pass plans from what the pass learned (B not pending, so it is sent again; A pending, so it is not)."""
    unsent, stored = UnsentRecords(), {"phase": "Running"}

    async def first_ok_then_lost(part):
        if calls:
            raise TimeoutError("answer lost")
        calls.append(part)

    calls: list = []
    writer = StatusWriter(stored, first_ok_then_lost, unsent, "uid-1")
    record = {"pending": [{"key": "A", "value": 1, "sentAt": "t"}, {"key": "B", "value": 2, "sentAt": "t"}]}
    await writer.persist({"mimir": record})
    learned = {"pending": [{"key": "A", "value": 1, "sentAt": "t", "txhash": "H"}]}
    try:
        await writer.write_final({"phase": "Running", "mimir": learned})
    except TimeoutError:
        pass
    on_server = {"phase": "Running", "mimir": record}
    assert unsent.as_planned_from("uid-1", on_server) == {"phase": "Running", "mimir": learned}
    assert not writer.left_unsent                                        # the record itself was written
    unchanged = UnsentRecords()
    ok_writer = StatusWriter(stored, lambda part: asyncio.sleep(0), unchanged, "uid-1")
    await ok_writer.persist({"mimir": record})
    await ok_writer.write_final({"phase": "Running", "mimir": learned})
    assert len(unchanged) == 0                                           # written: nothing to remember
