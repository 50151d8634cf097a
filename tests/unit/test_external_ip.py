"""External-IP planner: address source, ConfigMaps, pod restarts, announcement (tables and properties)."""

import asyncio
import itertools
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mayanode_operator.api.mayanode import ExternalIPSpec, HaltKind, HaltPolicy
from mayanode_operator.observe.gateway import (
    ConfigMapState,
    ConsumerState,
    ExternalIPObservation,
    ServiceAddress,
    resolve,
)
from mayanode_operator.observe.snapshot import Halt
from mayanode_operator.plan.external_ip import (
    FAILURE_BACKOFF,
    PENDING_TIMEOUT,
    ExternalIPInputs,
    desired_address,
    iso,
    plan_config_maps,
    plan_deployments,
    plan_external_ip,
    record_outcome,
    record_sent,
    unusable,
)
from mayanode_operator.plan.transactions import TxOutcome, TxRequest

NOW = datetime(2026, 11, 21, 10, 0, 0, tzinfo=timezone.utc)
IP, OLD = "198.51.100.20", "198.51.100.9"
CM_NAMES = ("gateway-external-ip", "mayanode-external-ip", "bifrost-external-ip")
ANNOUNCE = ExternalIPSpec(announce=True)
QUIET = ExternalIPSpec()


def lb(ip=IP, hostname=None, resolved=(), error=None, type_="LoadBalancer", found=True):
    return ServiceAddress("gateway", found, type_, ip, hostname, tuple(resolved), error)


def cms(value=IP, written_at=None):
    return tuple(ConfigMapState(n, True, value, written_at) for n in CM_NAMES)


def consumer(name="mayanode", recorded=IP, pods=("2026-11-21T09:00:00Z",), literal=(), strategy="Recreate"):
    return ConsumerState(name, True, config_maps=() if literal else (f"{name}-external-ip",), literal=literal,
                         recorded=recorded, strategy=strategy, replicas=1, pods_created=tuple(pods))


def observation(source=None, config_maps=None, consumers=None):
    return ExternalIPObservation(source=source if source is not None else lb(),
                                 config_maps=config_maps if config_maps is not None else cms(),
                                 consumers=consumers if consumers is not None else (consumer(), consumer("bifrost")))


def inputs(spec=ANNOUNCE, observed=None, registered=IP, previous=None, halts=(), policy=HaltPolicy(), now=NOW,
           locked=None, previous_condition=None, account_expected=True):
    return ExternalIPInputs(spec=spec, observed=observed or observation(), registered_ip=registered,
                            previous=previous, previous_condition=previous_condition, halt_policy=policy,
                            halts=tuple(halts), now=now, height=1000, workloads_locked=locked,
                            account_expected=account_expected)


# --- where the address comes from --------------------------------------------------------------
@pytest.mark.parametrize("spec,source,address,reason", [
    (QUIET, lb(), IP, "Found"),
    (QUIET, lb(ip=None), None, "WaitingForLoadBalancer"),
    (QUIET, lb(ip=None, type_="ClusterIP"), None, "WaitingForLoadBalancer"),
    (QUIET, lb(found=False), None, "ServiceNotFound"),
    (QUIET, None, None, "ServiceNotFound"),
    (QUIET, lb(ip=None, hostname="a.elb.example", resolved=("2001:db8::1",)), "2001:db8::1", "Found"),
    (QUIET, lb(ip=None, hostname="a.elb.example", resolved=("2001:db8::1", "192.0.2.7")), "192.0.2.7", "Found"),
    (QUIET, lb(ip=None, hostname="a.elb.example", error="resolving a.elb.example took longer than 5s"), None,
     "ResolveFailed"),
    (QUIET, lb(ip=None, hostname="a.elb.example", resolved=("127.0.0.1",)), None, "InvalidAddress"),
    (QUIET, lb(ip="0.0.0.0"), None, "InvalidAddress"),
    (ExternalIPSpec(source="Static", address="192.0.2.55"), None, "192.0.2.55", "Found"),
    (ExternalIPSpec(source="Static", address="127.0.0.1"), None, None, "InvalidAddress"),
])
def test_desired_address(spec, source, address, reason):
    decision = desired_address(spec, source)
    assert (decision.address, decision.reason) == (address, reason)


def test_a_clusterip_service_says_why_it_gets_no_address():
    assert "type ClusterIP" in desired_address(QUIET, lb(ip=None, type_="ClusterIP")).message


@pytest.mark.parametrize("address,ok", [("203.0.113.7", True), ("10.1.2.3", True), ("2001:db8::7", True),
                                        ("127.0.0.1", False), ("::1", False), ("169.254.1.1", False),
                                        ("224.0.0.1", False), ("nonsense", False), ("::", False)])
def test_unusable(address, ok):
    assert (unusable(address) is None) == ok


# --- ConfigMaps and pod restarts -----------------------------------------------------------------
def test_config_maps_are_written_only_where_the_value_differs_and_missing_ones_are_created():
    current = (ConfigMapState("gateway-external-ip", True, IP), ConfigMapState("mayanode-external-ip", True, ""),
               ConfigMapState("bifrost-external-ip", False))
    writes = plan_config_maps(IP, current)
    assert [(w.name, w.create, w.previous) for w in writes] == [("mayanode-external-ip", False, ""),
                                                                ("bifrost-external-ip", True, None)]


WRITTEN = "2026-11-21T09:30:00Z"


@pytest.mark.parametrize("name,the_consumer,config_maps,written,restart", [
    ("recorded, nothing to do", consumer(recorded=IP), cms(), False, None),
    ("ConfigMap written now", consumer(recorded=None), cms(""), True, True),
    ("recorded another IP", consumer(recorded=OLD), cms(), False, True),
    ("adopted: ConfigMap already right", consumer(recorded=None), cms(), False, False),
    ("pods older than the operator's write", consumer(recorded=None), cms(written_at=WRITTEN), False, True),
    ("pods started after the write", consumer(recorded=None, pods=("2026-11-21T09:31:00Z",)),
     cms(written_at=WRITTEN), False, False),
    ("pod started in the same second: restarted", consumer(recorded=None, pods=(WRITTEN,)),
     cms(written_at=WRITTEN), False, True),
    ("scaled to 0: only recorded", consumer(recorded=OLD, pods=()), cms(""), True, False),
    ("literal env differs", consumer(literal=(("mayanode", OLD),), recorded=OLD), cms(), False, True),
    ("literal env right", consumer(literal=(("mayanode", IP),), recorded=None), cms(), False, None),
])
def test_pods_restart_only_when_their_value_really_changed(name, the_consumer, config_maps, written, restart):
    writes = plan_config_maps(IP, config_maps) if written else ()
    changes = plan_deployments(IP, (the_consumer,), config_maps, writes)
    if restart is None:
        assert changes == (), name
    else:
        assert [c.restart for c in changes] == [restart], name


def test_a_literal_env_is_patched_with_the_new_value():
    change, = plan_deployments(IP, (consumer(literal=(("mayanode", OLD),)),), cms(), ())
    assert change.env == (("mayanode", IP),) and change.restart


# --- announcement ------------------------------------------------------------------------------------
def test_steady_state_plans_nothing():
    plan = plan_external_ip(inputs(previous={"address": IP, "announcedAddress": IP}))
    assert plan.config_map_writes == () and plan.deployment_changes == () and plan.announce is None
    assert (plan.condition.status, plan.condition.reason) == ("True", "Announced")
    assert plan.events == ()


def test_a_new_address_is_written_restarted_and_announced():
    observed = observation(config_maps=cms(""), consumers=(consumer(recorded=None), consumer("bifrost", recorded=None)))
    plan = plan_external_ip(inputs(observed=observed, registered=""))
    assert len(plan.config_map_writes) == 3 and [c.restart for c in plan.deployment_changes] == [True, True]
    assert plan.announce == TxRequest("set-ip-address", (IP,))
    assert plan.status["address"] == IP and plan.status["configMapsAddress"] == IP


def test_without_announce_a_mismatch_is_reported_once():
    plan = plan_external_ip(inputs(spec=QUIET, registered=OLD))
    assert plan.announce is None and plan.condition.reason == "Mismatch" and OLD in plan.condition.message
    assert [e.reason for e in plan.events] == ["ExternalIPMismatch"]
    again = plan_external_ip(inputs(spec=QUIET, registered=OLD, previous_condition={
        "type": "ExternalIPAssigned", "status": "False", "reason": "Mismatch"}))
    assert again.events == ()


def pending(address=IP, sent=NOW - timedelta(seconds=30), attempts=1):
    return {"address": address, "sentAt": iso(sent), "attempts": attempts, "txhash": "ABC"}


def test_a_pending_announcement_is_not_sent_again():
    plan = plan_external_ip(inputs(registered=OLD, previous={"address": IP, "pending": pending()}))
    assert plan.announce is None and plan.condition.reason == "Pending" and "ABC" in plan.condition.message


def test_a_pending_announcement_past_the_timeout_is_sent_again_and_says_so():
    plan = plan_external_ip(inputs(registered=OLD, previous={
        "address": IP, "pending": pending(sent=NOW - PENDING_TIMEOUT - timedelta(seconds=1))}))
    assert plan.announce is not None and plan.attempts == 2 and "sent again" in plan.resend_note
    sent = record_sent(plan.status, plan.announce, now=NOW, height=1000, attempts=plan.attempts,
                       note=plan.resend_note)
    assert sent["pending"]["attempts"] == 2 and "did not show on chain" in sent["pending"]["message"]


def test_a_pending_announcement_for_an_older_address_does_not_hold_a_new_one():
    plan = plan_external_ip(inputs(registered=OLD, previous={"address": OLD, "pending": pending(address=OLD)}))
    assert plan.announce == TxRequest("set-ip-address", (IP,)) and plan.attempts == 1


def test_the_chain_showing_the_address_confirms_the_pending_announcement():
    plan = plan_external_ip(inputs(registered=IP, previous={"address": IP, "pending": pending()}))
    assert "pending" not in plan.status and plan.status["announcedAddress"] == IP
    assert plan.status["announcedAt"] == pending()["sentAt"]
    assert (plan.condition.status, plan.condition.reason) == ("True", "Announced")


def test_a_refused_announcement_waits_for_the_backoff_or_a_new_address():
    failure = {"what": f"set-ip-address {IP}", "at": iso(NOW - timedelta(minutes=1)), "transient": False,
               "message": "invalid request"}
    held = plan_external_ip(inputs(registered=OLD, previous={"address": IP, "lastFailure": failure}))
    assert held.announce is None and held.condition.reason == "AnnounceFailed"
    later = plan_external_ip(inputs(registered=OLD, previous={"address": IP, "lastFailure": failure},
                                    now=NOW + FAILURE_BACKOFF))
    assert later.announce is not None
    transient = plan_external_ip(inputs(registered=OLD, previous={"address": IP,
                                                                   "lastFailure": {**failure, "transient": True}}))
    assert transient.announce is not None


def test_an_announcement_waits_for_a_halt_in_the_policy():
    plan = plan_external_ip(inputs(registered=OLD, halts=[{"kind": "Chain", "key": "HALTCHAINGLOBAL"}],
                                   policy=HaltPolicy(announce_ip=[HaltKind.CHAIN])))
    assert plan.announce is None and plan.condition.reason == "WaitingForHalt"
    assert "HALTCHAINGLOBAL" in plan.condition.message
    assert [e.reason for e in plan.events] == ["ActionWaiting"]


def test_locked_workloads_get_the_configmaps_but_no_restart_and_no_announcement():
    observed = observation(config_maps=cms(""), consumers=(consumer(recorded=OLD),))
    plan = plan_external_ip(inputs(observed=observed, registered=OLD, locked="NodeRestore r1 is in progress"))
    assert len(plan.config_map_writes) == 3 and plan.deployment_changes == () and plan.announce is None
    assert plan.condition.reason == "WorkloadsLocked" and "r1" in plan.condition.message


def test_a_rolling_update_deployment_is_not_restarted():
    observed = observation(config_maps=cms(""), consumers=(consumer(recorded=OLD, strategy="RollingUpdate"),))
    plan = plan_external_ip(inputs(observed=observed, registered=IP))
    assert plan.condition.reason == "RestartRefused" and "Recreate" in plan.condition.message


def test_an_unobserved_account_is_not_compared_and_nothing_is_announced():
    plan = plan_external_ip(inputs(registered=None))
    assert plan.announce is None and (plan.condition.status, plan.condition.reason) == ("Unknown",
                                                                                        "RegistrationUnknown")
    plan = plan_external_ip(inputs(registered=None, account_expected=False))
    assert (plan.condition.status, plan.condition.reason) == ("True", "Assigned")


def test_no_address_keeps_what_was_announced():
    plan = plan_external_ip(inputs(observed=observation(source=lb(ip=None)),
                                   previous={"address": IP, "announcedAddress": IP}))
    assert plan.condition.reason == "WaitingForLoadBalancer" and "address" not in plan.status
    assert plan.status["announcedAddress"] == IP and plan.config_map_writes == ()


def test_an_address_change_is_an_event():
    plan = plan_external_ip(inputs(registered=OLD, previous={"address": OLD}))
    assert any(e.reason == "ExternalIPChanged" and OLD in e.message and IP in e.message for e in plan.events)


# --- several addresses behind one hostname (a multi-AZ NLB) ---------------------------------------------
A, B, C = "203.0.113.10", "203.0.113.11", "203.0.113.9"      # C is the lowest in numeric order (not as text)
NLB = "gw-0123.elb.us-east-1.amazonaws.com"


def nlb(*resolved):
    return lb(ip=None, hostname=NLB, resolved=resolved)


def settled(address, resolved, **kwargs):
    """`address` announced, registered, in the ConfigMaps, the pods started with it; DNS now answers `resolved`."""
    observed = observation(source=nlb(*resolved), config_maps=cms(address),
                           consumers=(consumer(recorded=address), consumer("bifrost", recorded=address)))
    return inputs(observed=observed, registered=address, previous={"address": address, "announcedAddress": address},
                  **kwargs)


@pytest.mark.parametrize("resolved", [(A, B), (B, A), (C, B, A), (B, C, A), ("2001:db8::1", B, A), (A,)])
def test_a_rotated_dns_answer_keeps_the_address_in_use_and_plans_nothing(resolved):
    plan = plan_external_ip(settled(A, resolved))
    assert plan.address.address == A
    assert plan.config_map_writes == () and plan.deployment_changes == () and plan.announce is None
    assert (plan.condition.status, plan.condition.reason) == ("True", "Announced") and plan.events == ()


SPLIT = (ConfigMapState(CM_NAMES[0], True, B), ConfigMapState(CM_NAMES[1], True, ""),
         ConfigMapState(CM_NAMES[2], False))


@pytest.mark.parametrize("name,config_maps,previous,registered,expected", [
    ("the ConfigMaps hold it", cms(B), None, "", B),
    ("the operator chose it last pass (ConfigMaps half written)", SPLIT, {"address": B}, "", B),
    ("its announcement is pending", cms(""), {"pending": pending(address=B)}, "", B),
    ("the chain has it registered", cms(""), None, B, B),
    ("the operator announced it", cms(""), {"announcedAddress": B}, "", B),
    ("the pods' address before the chain's", cms(B), {"address": B}, A, B),
    ("the ConfigMaps' address before the operator's last choice", cms(B), {"address": A}, "", B),
    ("none in use: the lowest in numeric order", cms(""), None, "", C),
    ("the one in use left the answer: the lowest of the rest", cms(OLD), {"address": OLD, "announcedAddress": OLD},
     OLD, C),
])
def test_among_several_addresses_the_one_in_use_is_kept_else_the_lowest(name, config_maps, previous, registered,
                                                                         expected):
    for order in itertools.permutations((A, B, C)):
        plan = plan_external_ip(inputs(observed=observation(source=nlb(*order), config_maps=config_maps),
                                       registered=registered, previous=previous))
        assert plan.address.address == expected, (name, order)


@pytest.mark.parametrize("resolved,expected", [
    (("2001:db8::2", "2001:db8::1"), "2001:db8::1"),
    (("2001:db8::1", B, A), A),                       # IPv4 before IPv6
    (("127.0.0.1", B, "169.254.1.1"), B),             # unusable ones are never chosen
])
def test_with_nothing_in_use_the_choice_does_not_depend_on_the_dns_order(resolved, expected):
    for order in itertools.permutations(resolved):
        assert desired_address(QUIET, nlb(*order)).address == expected


def test_when_the_address_in_use_leaves_the_dns_answer_the_node_moves_once():
    moved = plan_external_ip(settled(A, (B, C)))                       # A's zone went away
    assert moved.address.address == C and len(moved.config_map_writes) == 3 and len(moved.restarts) == 2
    assert moved.announce == TxRequest("set-ip-address", (C,))
    status = record_sent(moved.status, moved.announce, now=NOW, height=1000, attempts=1, note=None)
    # applied: C in the ConfigMaps, the pods started with C, the chain still shows A; A comes back, DNS rotates
    for resolved in [(A, B, C), (B, A, C), (C, A), (A, C, B)]:
        observed = observation(source=nlb(*resolved), config_maps=cms(C),
                               consumers=(consumer(recorded=C), consumer("bifrost", recorded=C)))
        plan = plan_external_ip(inputs(observed=observed, registered=A, previous=status))
        assert plan.address.address == C and plan.config_map_writes == () and plan.restarts == ()
        assert plan.announce is None and plan.condition.reason == "Pending"
        status = plan.status


async def _resolved(answer):
    async def resolver(host):
        return list(answer)
    return await resolve(NLB, 1, resolver)


def test_the_resolved_addresses_are_observed_in_one_order_whatever_the_dns_order():
    answers = list(itertools.permutations((A, B, C, "2001:db8::1")))
    seen = {asyncio.run(_resolved(answer)) for answer in answers}
    assert seen == {((C, A, B, "2001:db8::1"), None)}


# --- folding the transaction back ----------------------------------------------------------------------
REQUEST = TxRequest("set-ip-address", (IP,))


@pytest.mark.parametrize("outcome,reason,pending_kept,failure,event", [
    (TxOutcome("ok", 0, "HASH", "", "accepted"), "Pending", True, False, "IPAnnounced"),
    (TxOutcome("failed", 18, "H", "invalid", "invalid request"), "AnnounceFailed", False, True, "IPAnnounceFailed"),
    (TxOutcome("transient", 32, "H", "", "account sequence mismatch"), "AnnounceRetrying", False, True,
     "IPAnnounceFailed"),
    (TxOutcome("transient", None, None, "", "exec timed out after 60s"), "Pending", True, True, None),
])
def test_record_outcome(outcome, reason, pending_kept, failure, event):
    sent = record_sent({"address": IP}, REQUEST, now=NOW, height=5, attempts=1, note=None)
    status, condition, events = record_outcome(sent, REQUEST, outcome, now=NOW)
    assert condition.reason == reason
    assert ("pending" in status) == pending_kept and ("lastFailure" in status) == failure
    assert [e.reason for e in events] == ([event] if event else [])
    if outcome.ok:
        assert status["pending"]["txhash"] == "HASH" and status["pending"]["height"] == 5


# --- properties ----------------------------------------------------------------------------------------------
ips = st.sampled_from(["198.51.100.1", "198.51.100.2", "203.0.113.9", ""])


@given(cm_values=st.lists(ips, min_size=3, max_size=3), recorded=st.none() | ips, registered=st.none() | ips,
       lb_ip=st.sampled_from(["198.51.100.1", "198.51.100.2"]), age=st.integers(0, 900), announce=st.booleans())
def test_never_sends_while_the_same_address_is_pending_within_the_timeout(cm_values, recorded, registered, lb_ip,
                                                                        age, announce):
    config_maps = tuple(ConfigMapState(n, True, v) for n, v in zip(CM_NAMES, cm_values))
    observed = observation(source=lb(ip=lb_ip), config_maps=config_maps,
                           consumers=(consumer(recorded=recorded or None),))
    previous = {"address": lb_ip, "pending": pending(address=lb_ip, sent=NOW - timedelta(seconds=age))}
    plan = plan_external_ip(inputs(spec=ExternalIPSpec(announce=announce), observed=observed,
                                   registered=registered, previous=previous))
    if plan.announce is not None:
        assert announce and age >= PENDING_TIMEOUT.total_seconds() and registered != lb_ip
    assert all(w.value == lb_ip for w in plan.config_map_writes)


@given(cm_values=st.lists(ips, min_size=3, max_size=3), recorded=st.none() | ips,
       lb_ip=st.sampled_from(["198.51.100.1", "198.51.100.2"]))
def test_once_applied_a_second_pass_changes_nothing(cm_values, recorded, lb_ip):
    config_maps = tuple(ConfigMapState(n, True, v) for n, v in zip(CM_NAMES, cm_values))
    observed = observation(source=lb(ip=lb_ip), config_maps=config_maps, consumers=(consumer(recorded=recorded),))
    first = plan_external_ip(inputs(observed=observed, registered=lb_ip))
    applied = observation(source=lb(ip=lb_ip), config_maps=cms(lb_ip),
                          consumers=(replace(consumer(recorded=recorded), recorded=lb_ip)
                                     if first.deployment_changes else consumer(recorded=recorded),))
    second = plan_external_ip(inputs(observed=applied, registered=lb_ip, previous=first.status))
    assert second.config_map_writes == () and second.announce is None
    assert all(not c.restart for c in second.deployment_changes)


pool = st.sampled_from([A, B, C, "2001:db8::1", "2001:db8::2", "127.0.0.1"])
maybe = st.sampled_from([None, "", A, B, C, OLD, "2001:db8::2"])


@given(data=st.data(), resolved=st.lists(pool, min_size=1, max_size=5, unique=True), cm_value=maybe,
       recorded=maybe, registered=maybe, last=maybe, pending_address=maybe, announced=maybe)
def test_any_order_of_the_same_dns_answer_gives_the_same_plan(data, resolved, cm_value, recorded, registered, last,
                                                             pending_address, announced):
    previous = {k: v for k, v in (("address", last), ("announcedAddress", announced)) if v}
    if pending_address:
        previous["pending"] = pending(address=pending_address)

    def plan(order):
        observed = observation(source=nlb(*order), config_maps=cms(cm_value or ""),
                               consumers=(consumer(recorded=recorded or None),))
        return plan_external_ip(inputs(observed=observed, registered=registered, previous=previous or None))

    first, other = plan(resolved), plan(data.draw(st.permutations(resolved)))
    assert first == other
    if cm_value in resolved and unusable(cm_value) is None:
        assert first.address.address == cm_value and first.config_map_writes == ()
