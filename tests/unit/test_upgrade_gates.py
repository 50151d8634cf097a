"""Upgrade gates: one table per gate, then all of them together (and hypothesis over wide inputs)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mayanode_operator.api.mayanode import AdoptionMode, HaltPolicy
from mayanode_operator.observe.snapshot import Halt
from mayanode_operator.plan import upgrade_gates as g

T = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("target,running,allow,current,passed,reason", [
    ("1.112.0", "1.111.0", False, "1.111.0", True, "Passed"),
    ("1.111.0", "1.111.0", False, "1.111.0", True, "Passed"),             # same version: an image change only
    ("1.110.0", "1.111.0", False, None, False, "DowngradeNotAllowed"),
    ("1.111.0", "1.111.1", True, "1.110.0", True, "Passed"),              # allowed downgrade
    ("1.110.0", "1.111.0", True, "1.111.0", False, "UnsupportedByNetwork"),  # would panic even when allowed
    ("1.112.0", None, False, None, False, "RunningVersionUnknown"),
    ("nope", "1.111.0", False, None, False, "InvalidTarget"),
    ("2.0.0", "1.111.0", False, "1.111.0", True, "Passed"),
])
def test_version_sanity(target, running, allow, current, passed, reason):
    out = g.version_sanity(target, running, allow_downgrade=allow, network_current=current)
    assert (out.passed, out.reason) == (passed, reason)
    assert out.gate == "VersionSanity" and out.message


@pytest.mark.parametrize("mode,next_,active,share,passed,reason", [
    ("None", None, None, 67, True, "Passed"),
    ("Next", "1.112.0", None, 67, True, "Passed"),
    ("Next", "1.113.0", None, 67, True, "Passed"),
    ("Next", "1.111.0", None, 67, False, "WaitingForAdoption"),
    ("Next", None, None, 67, False, "NetworkVersionUnknown"),
    ("Share", None, ("1.112.0", "1.112.0", "1.111.0"), 67, False, "WaitingForAdoption"),   # 66%
    ("Share", None, ("1.112.0", "1.112.0", "1.111.0"), 66, True, "Passed"),
    ("Share", None, ("1.113.0",) * 3, 100, True, "Passed"),
    ("Share", None, (), 67, False, "NoActiveNodes"),
    ("Share", None, None, 67, False, "NetworkVersionUnknown"),
])
def test_adoption(mode, next_, active, share, passed, reason):
    out = g.adoption(mode, "1.112.0", network_next=next_, active_versions=active, min_active_share=share)
    assert (out.passed, out.reason) == (passed, reason)


@pytest.mark.parametrize("catching_up,height,network,lag,passed,reason", [
    (False, 100, None, 10, True, "Passed"),
    (False, 100, 110, 10, True, "Passed"),
    (False, 100, 111, 10, False, "HeightLag"),
    (True, 100, None, 10, False, "CatchingUp"),
    (None, None, None, 10, False, "SyncUnknown"),
    (False, 100, 90, 0, True, "Passed"),            # ahead of a stale network height
])
def test_sync(catching_up, height, network, lag, passed, reason):
    out = g.synced(catching_up=catching_up, height=height, network_height=network, max_height_lag=lag)
    assert (out.passed, out.reason) == (passed, reason)


@pytest.mark.parametrize("status,avoid,standby,within,height,churn,migrating,passed,reason", [
    ("Active", True, False, None, 100, 90, False, True, "Passed"),
    ("Active", True, False, None, 100, 90, True, False, "ChurnInProgress"),
    ("Active", True, False, None, 100, 90, None, False, "ChurnStateUnknown"),
    ("Active", False, False, None, 100, 90, True, True, "Passed"),
    ("Standby", True, False, None, 100, 90, True, True, "Passed"),        # migration does not concern it
    ("Active", True, True, None, 100, 90, False, False, "NodeActive"),
    ("Standby", True, True, None, 100, 90, None, True, "Passed"),
    ("Standby", True, False, 20, 100, 90, None, True, "Passed"),
    ("Standby", True, False, 5, 100, 90, None, False, "OutsideChurnWindow"),
    ("Standby", True, False, 5, 100, None, None, False, "LastChurnUnknown"),
    (None, True, False, None, None, None, None, True, "Passed"),
])
def test_churn(status, avoid, standby, within, height, churn, migrating, passed, reason):
    out = g.churn(node_status=status, avoid_while_active=avoid, only_when_standby=standby,
                  within_blocks_after_churn=within, height=height, last_churn_height=churn,
                  churn_in_progress=migrating)
    assert (out.passed, out.reason) == (passed, reason)


@pytest.mark.parametrize("policy,halts,passed", [
    ([], [Halt("Trading", "HALTTRADING")], True),                       # default: upgrades ignore halts
    (["Trading"], [Halt("Trading", "HALTTRADING")], False),
    (["Solvency"], [{"kind": "Trading", "key": "HALTTRADING"}], True),
    (["Solvency"], [{"kind": "Solvency", "key": "SOLVENCYHALTBTCCHAIN", "chain": "BTC"}], False),
    (["Chain"], [], True),
])
def test_halts(policy, halts, passed):
    out = g.halts(HaltPolicy(upgrade=policy), halts)
    assert out.passed == passed
    if not passed:
        assert out.reason == "NetworkHalted" and "spec.haltPolicy.upgrade" in out.message


@pytest.mark.parametrize("windows,now,passed", [
    ([], T, True),
    ([("0 12 * * *", 60)], T, True),                                     # opens exactly now
    ([("0 12 * * *", 60)], T.replace(hour=12, minute=59), True),
    ([("0 12 * * *", 60)], T.replace(hour=13), False),                   # closed at the end of the duration
    ([("0 2 * * *", 120)], T, False),
    ([("0 2 * * *", 120), ("30 11 * * *", 45)], T, True),
    ([("0 0 * * SUN", 1440)], datetime(2024, 6, 2, 23, 59, tzinfo=timezone.utc), True),   # a Sunday
    ([("0 0 * * SUN", 1440)], datetime(2024, 6, 3, 0, 0, tzinfo=timezone.utc), False),
    ([("@daily", 30)], T.replace(hour=0, minute=10), True),
])
def test_maintenance_window(windows, now, passed):
    out = g.maintenance_window([g.Window(s, d) for s, d in windows], now)
    assert out.passed == passed
    if not passed:
        assert out.reason == "OutsideMaintenanceWindow" and "next opens at" in out.message


def test_seconds_until_window():
    assert g.seconds_until_window([], T) is None
    assert g.seconds_until_window([g.Window("0 12 * * *", 60)], T) is None          # open
    assert g.seconds_until_window([g.Window("0 14 * * *", 60)], T) == 7200
    naive = T.replace(tzinfo=None)
    assert g.seconds_until_window([g.Window("0 14 * * *", 60)], naive) == 7200


@pytest.mark.parametrize("enabled,name,exists,phase,passed,reason", [
    (False, None, False, None, True, "Passed"),
    (True, "b", False, None, False, "BackupNotCreated"),
    (True, "b", True, None, False, "WaitingForBackup"),
    (True, "b", True, "InProgress", False, "WaitingForBackup"),
    (True, "b", True, "Completed", True, "Passed"),
    (True, "b", True, "Failed", False, "BackupFailed"),
    (True, "b", True, "PartiallyFailed", False, "BackupFailed"),
])
def test_pre_upgrade_backup(enabled, name, exists, phase, passed, reason):
    out = g.pre_upgrade_backup(enabled=enabled, name=name, exists=exists, phase=phase)
    assert (out.passed, out.reason) == (passed, reason)


def inputs(**kw):
    base = dict(target="1.112.0", running="1.111.0", network_current="1.111.0", network_next="1.112.0",
                catching_up=False, height=100, node_status="Standby", now=T)
    return g.GateInputs(**{**base, **kw})


@pytest.mark.parametrize("kw,first", [
    ({}, None),
    ({"network_next": "1.111.0"}, "Adoption"),
    ({"network_next": "1.111.0", "running": "1.113.0"}, "VersionSanity"),      # order: sanity first
    ({"catching_up": True}, "Sync"),
    ({"node_status": "Active", "churn_in_progress": True}, "Churn"),
    ({"halt_policy": HaltPolicy(upgrade=["Trading"]), "halts": (Halt("Trading", "HALTTRADING"),)}, "Halts"),
    ({"windows": (g.Window("0 2 * * *", 60),)}, "MaintenanceWindow"),
    ({"flag_day": True, "network_next": "1.111.0", "catching_up": True,
      "windows": (g.Window("0 2 * * *", 60),)}, None),                        # a flag day skips them
    ({"flag_day": True, "running": "1.113.0"}, "VersionSanity"),               # but never version sanity
])
def test_evaluate_gates(kw, first):
    blocking = g.first_blocking(g.evaluate_gates(inputs(**kw)))
    assert (blocking.gate.value if blocking else None) == first


versions_st = st.one_of(st.none(), st.text(max_size=12),
                        st.tuples(st.integers(0, 3), st.integers(0, 200), st.integers(0, 5)).map(
                            lambda t: ".".join(map(str, t))))


@given(target=versions_st.filter(lambda v: v is not None), running=versions_st, current=versions_st,
       next_=versions_st, active=st.one_of(st.none(), st.lists(versions_st.map(str), max_size=6).map(tuple)),
       mode=st.sampled_from(list(AdoptionMode)), share=st.integers(1, 100),
       catching_up=st.one_of(st.none(), st.booleans()), height=st.one_of(st.none(), st.integers(0, 10**7)),
       network_height=st.one_of(st.none(), st.integers(0, 10**7)), lag=st.integers(0, 1000),
       status=st.sampled_from([None, "Active", "Standby", "Ready", "Disabled", "Whitelisted", ""]),
       within=st.one_of(st.none(), st.integers(1, 10**6)), churn=st.one_of(st.none(), st.integers(0, 10**7)),
       migrating=st.one_of(st.none(), st.booleans()), flag_day=st.booleans(),
       minute=st.integers(0, 60 * 24 * 7))
def test_gates_never_crash(target, running, current, next_, active, mode, share, catching_up, height,
                           network_height, lag, status, within, churn, migrating, flag_day, minute):
    from datetime import timedelta

    out = g.evaluate_gates(g.GateInputs(
        target=target, running=running, network_current=current, network_next=next_, active_versions=active,
        adoption_mode=mode, min_active_share=share, catching_up=catching_up, height=height,
        network_height=network_height, max_height_lag=lag, node_status=status, within_blocks_after_churn=within,
        last_churn_height=churn, churn_in_progress=migrating, windows=(g.Window("*/30 1-5 * * MON-FRI", 20),),
        now=T + timedelta(minutes=minute), flag_day=flag_day))
    assert out and all(o.reason and o.message for o in out)
    assert out[0].gate == "VersionSanity"
