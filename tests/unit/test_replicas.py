"""Replica control (plan/replicas.py): spec.suspend, restores holding the node, the key lock, ≤ 1 replica."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from mayanode_operator.plan.replicas import ReplicasInputs, plan_replicas, wants_scale_up

NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)


def inputs(**kw) -> ReplicasInputs:
    base = {"suspend": False, "mayanode": 1, "bifrost": 1, "previous": {}, "now": NOW}
    return ReplicasInputs(**{**base, **kw})


SUSPENDED_BY_US = {"suspended": True, "reason": "Suspended"}


@pytest.mark.parametrize("kw, scale, condition, reason", [
    ({}, [], "False", "NotSuspended"),
    ({"suspend": True}, [("mayanode", 0), ("bifrost", 0)], "True", "Suspended"),
    ({"suspend": True, "mayanode": 0, "bifrost": 0}, [], "True", "Suspended"),
    ({"suspend": True, "bifrost": 0}, [("mayanode", 0)], "True", "Suspended"),
    ({"mayanode": 0, "bifrost": 0, "previous": SUSPENDED_BY_US}, [("mayanode", 1), ("bifrost", 1)], "False",
     "NotSuspended"),
    # Scaled to 0 by someone else (not by suspend): left alone.
    ({"mayanode": 0, "bifrost": 0}, [], "False", "NotSuspended"),
    # A restore owns the workloads: nothing changes, whatever the spec says.
    ({"suspend": True, "active_restore": "r1"}, [], "True", "RestoreInProgress"),
    ({"mayanode": 0, "bifrost": 0, "previous": SUSPENDED_BY_US, "active_restore": "r1"}, [], "True",
     "RestoreInProgress"),
    # A failed restore that left the node down holds it there.
    ({"mayanode": 0, "bifrost": 0, "failed_restore": "r1", "failed_next_action": "do x"}, [], "True",
     "RestoreFailed"),
    # The key moved to another MayaNode: it stays down.
    ({"mayanode": 0, "bifrost": 0, "previous": SUSPENDED_BY_US, "key_held_by": "b/new"}, [], "True",
     "KeyHeldElsewhere"),
    # Never more than one replica.
    ({"mayanode": 2}, [("mayanode", 1)], "False", "NotSuspended"),
])
def test_replicas_table(kw, scale, condition, reason):
    plan = plan_replicas(inputs(**kw))
    assert plan.scale == scale
    assert (plan.condition.status, plan.condition.reason) == (condition, reason)
    assert all(r in (0, 1) for _, r in plan.scale)


def test_status_and_events():
    plan = plan_replicas(inputs(suspend=True))
    assert plan.status["suspended"] is True and plan.status["mayanode"] == 0 and plan.status["changedAt"]
    assert [e.reason for e in plan.events] == ["Suspended"]
    back = plan_replicas(inputs(mayanode=0, bifrost=0, previous=plan.status))
    assert back.status["suspended"] is False and back.status["reason"] is None and back.status["mayanode"] == 1
    assert [e.reason for e in back.events] == ["Resumed"]
    held = plan_replicas(inputs(mayanode=0, bifrost=0, failed_restore="r1", failed_next_action="scale it"))
    assert held.events[0].type == "Warning" and "scale it" in held.status["message"]
    again = plan_replicas(inputs(mayanode=0, bifrost=0, failed_restore="r1", previous=held.status))
    assert again.events == []                                       # said once
    moved = plan_replicas(inputs(mayanode=0, bifrost=0, previous=SUSPENDED_BY_US, key_held_by="b/new"))
    assert moved.events[0].reason == "KeyHeldElsewhere" and "b/new" in moved.status["message"]


def test_the_lock_is_looked_at_only_before_scaling_up():
    assert wants_scale_up(inputs(previous=SUSPENDED_BY_US))
    assert wants_scale_up(inputs(previous={"suspended": True, "reason": "KeyHeldElsewhere"}))
    assert not wants_scale_up(inputs())
    assert not wants_scale_up(inputs(suspend=True, previous=SUSPENDED_BY_US))
    assert not wants_scale_up(inputs(previous={"suspended": True, "reason": "RestoreInProgress"}))
    assert not wants_scale_up(inputs(previous=SUSPENDED_BY_US, active_restore="r"))
