"""MayaNode spec.backup (pure): cron schedule with an injected clock, after-churn, retention, freshness."""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mayanode_operator.api.mayanode import BackupPolicy
from mayanode_operator.plan.backup_policy import (
    BackupSummary,
    PolicyInputs,
    VaultView,
    after_churn_name,
    new_backup_body,
    plan_policy,
    previous_tick,
    prune_failures,
    scheduled_name,
    summarize,
)

RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
T0 = datetime(2026, 3, 1, 0, 0, 0, tzinfo=timezone.utc)


def policy(**extra):
    return BackupPolicy.model_validate({"location": {"secret": {}, "encryption": {"recipients": [RECIPIENT]}},
                                        "afterChurn": False, **extra})


def good(name, completed, *, vault=None, height=None, policy_made=True, shares=()):
    return BackupSummary(name=name, reason="Scheduled", phase="Completed", created=completed, completed=completed,
                         verified="True", vault_pub_key=vault, height=height, key_share_vaults=tuple(shares),
                         policy=policy_made)


def run(pol, now, previous=None, backups=(), **kw):
    return plan_policy(PolicyInputs(node="node-a", policy=pol, now=now, previous=previous or {},
                                    backups=tuple(backups), **kw))


class Clock:
    """The injected clock: the planner sees only the `now` it is given."""

    def __init__(self, start):
        self.now = start

    def advance(self, **delta):
        self.now += timedelta(**delta)
        return self.now


def test_schedule_fires_once_per_time_with_an_injected_clock():
    pol, clock, status, created = policy(schedule="0 */6 * * *"), Clock(T0 + timedelta(hours=1)), {}, []
    for _ in range(48):                                   # two days in 1 h steps
        result = run(pol, clock.now, status)
        created += [c.name for c in result.create]
        status = result.status
        clock.advance(hours=1)
    assert created[:3] == ["node-a-scheduled-202603010600", "node-a-scheduled-202603011200",
                           "node-a-scheduled-202603011800"]
    # 01:00 day 1 to 00:00 day 3: 06,12,18 / 00,06,12,18 / 00 (day 1's 00:00 was before the policy was seen)
    assert len(created) == 8 and len(set(created)) == 8 and created[-1] == "node-a-scheduled-202603030000"


def test_first_sight_records_the_last_time_without_firing():
    result = run(policy(schedule="@daily"), T0 + timedelta(hours=5))
    assert result.create == [] and result.status["lastScheduledAt"] == "2026-03-01T00:00:00Z"
    assert result.requeue == pytest.approx(19 * 3600)
    assert result.conditions[-1].reason == "Scheduled" and "2026-03-02T00:00:00Z" in result.conditions[-1].message


def test_missed_times_are_not_made_up_twice():
    pol = policy(schedule="0 * * * *")
    previous = {"lastScheduledAt": "2026-03-01T01:00:00Z"}
    down_until = T0 + timedelta(hours=7, minutes=30)       # the operator was down for 6 schedule times
    result = run(pol, down_until, previous)
    assert [c.name for c in result.create] == ["node-a-scheduled-202603010700"]
    again = run(pol, down_until + timedelta(minutes=10), result.status)
    assert again.create == []


def test_one_policy_backup_at_a_time_and_none_during_a_restore():
    pol = policy(schedule="0 * * * *")
    previous = {"lastScheduledAt": "2026-03-01T01:00:00Z"}
    running = BackupSummary("node-a-scheduled-x", "Scheduled", "InProgress", T0, policy=True)
    result = run(pol, T0 + timedelta(hours=3), previous, [running])
    assert result.create == [] and result.status["inProgress"] == "node-a-scheduled-x"
    assert result.status["lastScheduledAt"] == "2026-03-01T01:00:00Z"     # postponed, not skipped
    locked = run(pol, T0 + timedelta(hours=3), previous, workloads_locked="NodeRestore r is in progress")
    assert locked.create == [] and locked.conditions[-1].reason == "WorkloadsLocked"


def test_after_churn_creates_one_backup_per_vault():
    pol = policy(afterChurn=True)
    vault = VaultView("vault-2", 200, True)
    old = good("old", T0, vault="vault-1", height=100)
    first = run(pol, T0, {}, [old], vault=vault)
    assert [(c.name, c.reason) for c in first.create] == [(after_churn_name("node-a", "vault-2"), "AfterChurn")]
    assert first.status["lastAfterChurnVault"] == "vault-2"
    failed = BackupSummary(first.create[0].name, "AfterChurn", "Failed", T0, policy=True)
    again = run(pol, T0 + timedelta(minutes=1), first.status, [old, failed], vault=vault)
    assert again.create == []                              # one per vault: a failed one is not retried in a loop
    not_member = run(pol, T0, {}, [old], vault=VaultView("vault-2", 200, False))
    assert not_member.create == []


def test_a_new_key_share_file_also_triggers():
    pol = policy(afterChurn=True)
    result = run(pol, T0, {}, [good("old", T0, shares=("vault-1",))], vault=None,
                 local_key_shares=("localstate-vault-1.json", "localstate-vault-3.json"))
    assert [c.detail for c in result.create] == ["new key shares for vault vault-3"]


@pytest.mark.parametrize("backups,vault,status,reason", [
    ([], VaultView("v2", 200, True), "False", "NoBackup"),
    ([good("a", T0, vault="v1", height=100)], VaultView("v2", 200, True), "False", "OlderThanChurn"),
    ([good("a", T0, vault="v1", height=100), good("b", T0, shares=("v2",), height=201)],
     VaultView("v2", 200, True), "True", "Fresh"),
    ([good("a", T0, height=250)], VaultView("v2", 200, False), "True", "Fresh"),
    ([good("a", T0, height=150)], VaultView("v2", 200, False), "False", "OlderThanChurn"),
    ([good("a", T0)], None, "True", "NoChurnYet"),
])
def test_backup_fresh(backups, vault, status, reason):
    result = run(policy(), T0, {}, backups, vault=vault)
    fresh = next(c for c in result.conditions if c.type == "BackupFresh")
    assert (fresh.status, fresh.reason) == (status, reason)


def test_stale_after_churn_is_an_event():
    backups = [good("a", T0, vault="v1", height=100)]
    result = run(policy(), T0, {"fresh": True}, backups, vault=VaultView("v2", 200, True))
    assert [e.reason for e in result.events] == ["BackupStale"]


def test_retention_keeps_count_and_never_the_newest_good_one():
    pol = policy(retention={"count": 2, "maxAge": "72h"})
    backups = [good(f"b{i}", T0 + timedelta(hours=i)) for i in range(4)]
    failed = BackupSummary("f", "Scheduled", "Failed", T0 + timedelta(minutes=30), T0 + timedelta(minutes=30),
                           policy=True)
    manual = good("manual", T0 - timedelta(days=10), policy_made=False)
    result = run(pol, T0 + timedelta(hours=4), {}, [*backups, failed, manual])
    assert sorted(name for name, _ in result.delete) == ["b0", "b1", "f"]
    aged = run(pol, T0 + timedelta(days=30), {}, backups)
    assert sorted(name for name, _ in aged.delete) == ["b0", "b1", "b2"]           # b3 is the newest good one
    assert result.status["lastSuccessful"]["name"] == "b3"


def test_no_policy_and_no_backups_says_nothing():
    result = run(None, T0, {}, [])
    assert result.status is None and result.conditions == []


def test_summarize_and_the_body_of_a_policy_backup():
    body = {"metadata": {"name": "x", "creationTimestamp": "2026-03-01T00:00:00Z",
                         "labels": {"maya.nodeops.io/backup-policy": "true"}},
            "spec": {"reason": "AfterChurn"},
            "status": {"phase": "Completed", "completedAt": "2026-03-01T00:01:00Z", "node": {"height": 7},
                       "conditions": [{"type": "Verified", "status": "False"}],
                       "items": [{"component": "bifrost", "path": "localstate-v9.json"}]}}
    summary = summarize(body)
    assert (summary.policy, summary.good, summary.key_share_vaults, summary.height) == (True, False, ("v9",), 7)
    new = new_backup_body("ns", "node-a", policy(volumeSnapshots={"enabled": True}),
                          run(policy(schedule="@hourly"), T0, {"lastScheduledAt": "2026-02-28T00:00:00Z"}).create[0])
    assert new["spec"]["reason"] == "Scheduled" and new["spec"]["volumeSnapshots"] == {"enabled": True}
    assert new["spec"]["location"]["encryption"]["recipients"] == [RECIPIENT]
    assert new["metadata"]["labels"]["maya.nodeops.io/node"] == "node-a"


@given(st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2030, 1, 1)))
def test_previous_tick_is_never_after_now(moment):
    now = moment.replace(tzinfo=timezone.utc)
    tick = previous_tick("*/15 * * * *", now)
    assert tick <= now and now - tick < timedelta(minutes=15) and tick.minute % 15 == 0


def test_names_are_dns_names():
    assert scheduled_name("x" * 250, T0).startswith("x" * 40 + "-scheduled-")
    assert len(after_churn_name("n" * 253, "vault")) < 63


# --- when to look for key shares in bifrost ---------------------------------------------------------------------------
from mayanode_operator.plan.backup_policy import (  # noqa: E402
    KEY_SHARES_RECHECK_SECONDS,
    KeyShareLook,
    KeyShareSignals,
    key_share_signals,
    key_shares_due,
)

LOOKED_AT = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
SIGNALS = KeyShareSignals(("bifrost-7d9f-abcde",), "mayapub1vault", ("mayapub1vault",))
LAST = KeyShareLook(SIGNALS, LOOKED_AT, ("localstate-mayapub1vault.json",))


@pytest.mark.parametrize("last,signals,seconds_later,due", [
    (None, SIGNALS, 0, True),                                                          # never looked
    (LAST, SIGNALS, 0, False),
    (LAST, SIGNALS, KEY_SHARES_RECHECK_SECONDS - 1, False),
    (LAST, SIGNALS, KEY_SHARES_RECHECK_SECONDS, True),                                  # the recheck
    (LAST, KeyShareSignals(("bifrost-7d9f-fghij",), "mayapub1vault", ("mayapub1vault",)), 0, True),  # a new pod
    (LAST, KeyShareSignals(("bifrost-7d9f-abcde",), "mayapub1new", ("mayapub1vault",)), 0, True),    # a new vault
    (LAST, KeyShareSignals(("bifrost-7d9f-abcde",), "mayapub1vault", ("mayapub1new", "mayapub1vault")), 0, True),
    (LAST, KeyShareSignals((), "mayapub1vault", ("mayapub1vault",)), 0, True),          # bifrost's pod went away
])
def test_key_shares_are_looked_for_when_a_signal_changed_or_the_look_is_old(last, signals, seconds_later, due):
    assert key_shares_due(last, signals, LOOKED_AT + timedelta(seconds=seconds_later)) is due


def test_a_signal_not_observed_in_this_pass_is_no_reason_to_look_again():
    unobserved = KeyShareSignals(("bifrost-7d9f-abcde",), None, None)                # the node API did not answer
    assert key_share_signals(unobserved, LAST) == SIGNALS
    assert not key_shares_due(LAST, key_share_signals(unobserved, LAST), LOOKED_AT)
    assert key_share_signals(unobserved, None) == unobserved


@given(st.lists(st.sampled_from(["bifrost-a", "bifrost-b"]), max_size=2).map(tuple),
       st.one_of(st.none(), st.sampled_from(["v1", "v2"])),
       st.one_of(st.none(), st.lists(st.sampled_from(["v1", "v2"]), max_size=2).map(tuple)),
       st.floats(min_value=0, max_value=3 * KEY_SHARES_RECHECK_SECONDS))
def test_an_unchanged_world_is_looked_at_again_only_after_the_recheck(pods, vault, membership, seconds):
    last = KeyShareLook(KeyShareSignals(("bifrost-a",), "v1", ("v1",)), LOOKED_AT, ())
    signals = key_share_signals(KeyShareSignals(pods, vault, membership), last)
    changed = pods != ("bifrost-a",) or vault not in (None, "v1") or membership not in (None, ("v1",))
    assert key_shares_due(last, signals, LOOKED_AT + timedelta(seconds=seconds)) is \
        (changed or seconds >= KEY_SHARES_RECHECK_SECONDS)


def test_backups_that_could_not_be_pruned_are_named_once():
    assert prune_failures([], []) == ([], [])
    conditions, events = prune_failures([], [("b-1", "AccessDenied: denied"), ("b-2", "503 Service Unavailable")])
    assert [(c.type, c.status, c.reason) for c in conditions] == [("BackupHealthy", "False", "PruneFailed")]
    assert "NodeBackup b-1 (AccessDenied: denied)" in conditions[0].message
    assert "NodeBackup b-2 (503 Service Unavailable)" in conditions[0].message
    assert [e.reason for e in events] == ["PruneFailed"]
    previous = [{"type": "BackupHealthy", "status": "False", "reason": "PruneFailed", "message": conditions[0].message}]
    assert prune_failures(previous, [("b-1", "AccessDenied: denied"), ("b-2", "503 Service Unavailable")]) == \
        (conditions, [])
    assert prune_failures(previous, [("b-1", "AccessDenied: denied")])[1] != []
