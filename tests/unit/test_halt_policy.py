"""Halt policy: which operator action waits during which halt; halt start/end events for every kind."""

from dataclasses import replace
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mayanode_operator.api.mayanode import HaltAction, HaltKind, HaltPolicy
from mayanode_operator.observe.snapshot import Halt, NetworkObservation
from mayanode_operator.plan.halt_policy import blocking_halt, blocking_halts, describe, waiting_message
from mayanode_operator.plan.mayanode_status import plan_mayanode_status

from .test_mayanode_status import HEALTHY, INPUTS

SIGNING_BTC = Halt("Signing", "HALTSIGNINGBTC", "BTC")
TRADING = Halt("Trading", "HALTTRADING")
CHURNING = {"kind": "Churning", "key": "HALTCHURNING"}        # the status form
DEFAULT = HaltPolicy()


@pytest.mark.parametrize("policy,action,halts,force,expected", [
    (DEFAULT, HaltAction.RESTORE, [SIGNING_BTC], False, SIGNING_BTC),        # the default: no restore while signing halts
    (DEFAULT, HaltAction.RESTORE, [SIGNING_BTC], True, None),                # ... unless forced
    (DEFAULT, HaltAction.RESTORE, [TRADING], False, None),
    (DEFAULT, HaltAction.UPGRADE, [SIGNING_BTC, TRADING], False, None),      # upgrades wait for nothing by default
    (DEFAULT, HaltAction.ANNOUNCE_IP, [TRADING], False, None),
    (HaltPolicy(upgrade=[HaltKind.CHURNING]), HaltAction.UPGRADE, [CHURNING], False,
     Halt("Churning", "HALTCHURNING")),
    (HaltPolicy(mimir_votes=[HaltKind.TRADING]), "MimirVote", [CHURNING, TRADING], False, TRADING),
    (HaltPolicy(node_actions=[HaltKind.NODE_PAUSE]), HaltAction.NODE_ACTION, [], False, None),
    (DEFAULT, HaltAction.RESTORE, None, False, None),
])
def test_blocking_halt(policy, action, halts, force, expected):
    assert blocking_halt(policy, action, halts, force=force) == expected


def test_the_first_blocking_halt_is_stable_whatever_the_order():
    policy = HaltPolicy(backup=[HaltKind.CHAIN, HaltKind.SIGNING])
    halts = [Halt("Signing", "HALTSIGNINGETH", "ETH"), Halt("Chain", "HALTBTCCHAIN", "BTC"), SIGNING_BTC]
    first = blocking_halt(policy, HaltAction.BACKUP, halts)
    assert first == Halt("Chain", "HALTBTCCHAIN", "BTC")
    assert blocking_halt(policy, HaltAction.BACKUP, list(reversed(halts))) == first
    assert len(blocking_halts(policy, HaltAction.BACKUP, halts)) == 3


def test_the_waiting_message_names_the_halt_and_the_policy_field():
    text = waiting_message(HaltAction.RESTORE, SIGNING_BTC, more=1)
    assert "Signing halt on BTC (HALTSIGNINGBTC)" in text and "spec.haltPolicy.restore" in text and "1 more" in text
    assert describe(TRADING) == "Trading halt network-wide (HALTTRADING)"
    assert "spec.haltPolicy.announceIP" in waiting_message(HaltAction.ANNOUNCE_IP, TRADING)


KINDS = [k.value for k in HaltKind]
halt_strategy = st.builds(Halt, kind=st.sampled_from(KINDS), key=st.from_regex(r"[A-Z]{4,12}", fullmatch=True),
                          chain=st.none() | st.sampled_from(["BTC", "ETH", "DASH"]))


@given(policy_kinds=st.lists(st.sampled_from(list(HaltKind)), unique=True),
       halts=st.lists(halt_strategy, max_size=6), action=st.sampled_from(list(HaltAction)), force=st.booleans())
def test_an_action_waits_exactly_when_a_halt_of_a_listed_kind_is_in_effect(policy_kinds, halts, action, force):
    field = {HaltAction.RESTORE: "restore", HaltAction.UPGRADE: "upgrade", HaltAction.BACKUP: "backup",
             HaltAction.ANNOUNCE_IP: "announce_ip", HaltAction.MIMIR_VOTE: "mimir_votes",
             HaltAction.NODE_ACTION: "node_actions"}[action]
    policy = HaltPolicy(**{field: policy_kinds})
    found = blocking_halt(policy, action, halts, force=force)
    listed = {k.value for k in policy_kinds}
    if force or not any(h.kind in listed for h in halts):
        assert found is None
    else:
        assert found in halts and found.kind in listed


@pytest.mark.parametrize("key,kind", [
    ("HALTTRADING", "Trading"), ("HALTBTCTRADING", "Trading"), ("HALTCHAINGLOBAL", "Chain"),
    ("HALTETHCHAIN", "Chain"), ("HALTSIGNINGBTC", "Signing"), ("SOLVENCYHALTDASHCHAIN", "Solvency"),
    ("HALTCHURNING", "Churning"), ("PAUSELPBTC", "LP"),
])
def test_every_halt_kind_starts_and_ends_with_an_event(key, kind):
    now = datetime(2026, 11, 21, 10, tzinfo=timezone.utc)
    quiet = plan_mayanode_status(INPUTS, HEALTHY, {}, now).status
    network = replace(HEALTHY.api.network, mimir=((key, 10),))
    halted_obs = replace(HEALTHY, api=replace(HEALTHY.api, network=network))
    started = plan_mayanode_status(INPUTS, halted_obs, quiet, now)
    assert [h["kind"] for h in started.status["network"]["halts"]] == [kind]
    assert [(e.reason, kind in e.message) for e in started.events] == [("HaltStarted", True)]
    ended = plan_mayanode_status(INPUTS, HEALTHY, started.status, now)
    assert [(e.reason, key in e.message) for e in ended.events] == [("HaltEnded", True)]


def test_a_node_pause_is_a_halt_until_its_height():
    now = datetime(2026, 11, 21, 10, tzinfo=timezone.utc)
    network = NetworkObservation(mimir=(("NODEPAUSECHAINGLOBAL", 1500),))
    obs = replace(HEALTHY, api=replace(HEALTHY.api, network=network))
    status = plan_mayanode_status(INPUTS, obs, {}, now).status
    assert [h["kind"] for h in status["network"]["halts"]] == ["NodePause"]
