"""The NodeRestore state machine (plan/restore.py): every step and resume point, failures, re-arming."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mayanode_operator.api.restore import NodeRestoreSpec, NodeRestoreStatus
from mayanode_operator.plan import restore as plan

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
BASE = {"backupRef": {"name": "b"}, "nodeRef": {"name": "n"}}
SPEC = NodeRestoreSpec.model_validate(BASE)
HANDOFF = NodeRestoreSpec.model_validate({**BASE, "doubleSignGuard": {"oldNode": {"name": "old"}}})
HANDOFF_CHAIN_PROOF = NodeRestoreSpec.model_validate(
    {**BASE, "doubleSignGuard": {"oldNode": {"name": "old", "proveSilentOnChain": True}}})
FILES_ONLY = NodeRestoreSpec.model_validate({**BASE, "restoreSecrets": False})
ACK = NodeRestoreSpec.model_validate({**BASE, "doubleSignGuard": {"oldNodeDestroyed": {
    "acknowledged": True, "reason": "VM deleted"}}})

ORDER = ["VerifyBackup", "AcquireKeyLock", "ScaleDown", "WriteFiles", "SwapSecrets", "WaitKeySilent",
         "WriteSignState", "RemoveHelpers", "ScaleUp", "WaitReady"]


def done(*names: str, started: str | None = None, **extra) -> dict:
    steps = [{"name": n, "startedAt": "2024-06-01T11:00:00.000000Z", "completedAt": "2024-06-01T11:00:01.000000Z"}
             for n in names]
    if started:
        steps.append({"name": started, "startedAt": "2024-06-01T11:59:00.000000Z"})
    return {"phase": "Verifying", "observedGeneration": 1, "steps": steps, **extra}


def decide(status: dict, spec: NodeRestoreSpec = SPEC, **kw) -> plan.Decision:
    return plan.decide(plan.RestoreInputs(spec=spec, status=status, generation=kw.pop("generation", 1), now=NOW,
                                          **kw))


def test_step_order():
    assert plan.steps_for(SPEC, announce=False) == ORDER
    assert plan.steps_for(FILES_ONLY, announce=False) == [s for s in ORDER if s != "SwapSecrets"]
    for spec in (HANDOFF, HANDOFF_CHAIN_PROOF):
        assert plan.steps_for(spec, announce=True) == [*ORDER[:5], "StopOldNode", *ORDER[5:], "AnnounceIP"]
    # The old node stops only after the slow, safe work (verify, scale down, write, Secrets).
    for spec in (HANDOFF, HANDOFF_CHAIN_PROOF):
        handoff = plan.steps_for(spec, announce=False)
        assert handoff.index("StopOldNode") > handoff.index("WriteFiles")
        assert handoff.index("StopOldNode") > handoff.index("SwapSecrets")
        assert handoff.index("StopOldNode") < handoff.index("WriteSignState") < handoff.index("ScaleUp")
    handoff = plan.steps_for(HANDOFF_CHAIN_PROOF, announce=False)
    assert handoff.index("WaitKeySilent") < handoff.index("WriteSignState") < handoff.index("ScaleUp")


def test_a_hand_off_that_saw_the_stop_skips_the_silent_blocks():
    stopped = done(*ORDER[:5], "StopOldNode", guard={"method": "HandOff", "passedAt": "2024-06-01T11:00:01Z"})
    assert (decide(stopped, HANDOFF).action, decide(stopped, HANDOFF).step) == (plan.Action.STEP, "WriteSignState")
    # Stopped without the proof (its Deployments could not be seen, or proveSilentOnChain): the chain must show it.
    unproven = done(*ORDER[:5], "StopOldNode", guard={"stopHeight": 9})
    assert decide(unproven, HANDOFF).step == "WaitKeySilent"
    assert decide(unproven, HANDOFF_CHAIN_PROOF).step == "WaitKeySilent"
    # Every step but the skipped one done: complete.
    finished = done(*ORDER[:5], "StopOldNode", *ORDER[6:], guard={"method": "HandOff", "passedAt": "x"})
    assert decide(finished, HANDOFF).action == plan.Action.COMPLETE


HANDED_OFF = {"method": "HandOff", "passedAt": "2024-06-01T11:00:01Z"}


@pytest.mark.parametrize("stored, guard, expected", [
    # The guard's record rides on ScaleUp's start: lost with it, StopOldNode is run again (the stop is seen again).
    (done(*ORDER[:5], started="StopOldNode"), {}, ("StopOldNode", True)),
    # ScaleUp's start carries the guard's, the sign state's and the helpers' records; its own completion rides on
    # WaitReady's start: lost, ScaleUp is resumed (helpers left are deleted, then scale to 1 again).
    (done(*ORDER[:5], "StopOldNode", "WriteSignState", "RemoveHelpers", started="ScaleUp"), HANDED_OFF,
     ("ScaleUp", True)),
    (done(*ORDER[:5], "StopOldNode", "WriteSignState", "RemoveHelpers", "ScaleUp", started="WaitReady"), HANDED_OFF,
     ("WaitReady", True)),
], ids=["guard-record-lost", "scale-up-started", "ready-started"])
def test_a_hand_off_resumes_where_its_last_write_left_it(stored, guard, expected):
    decision = decide({**stored, "guard": guard} if guard else stored, HANDOFF)
    assert (decision.action, decision.step, decision.resume) == (plan.Action.STEP, *expected)


def test_guarded_condition_by_the_step_that_proved_it():
    before = done(*ORDER[:5], "StopOldNode", guard={"stopHeight": 9})
    conditions = {c.type: c for c in plan.conditions_for(before)}
    assert conditions["Guarded"].status == "Unknown"            # stopped, but no proof recorded (chain proof next)
    handoff = done(*ORDER[:5], "StopOldNode", guard={"method": "HandOff", "passedAt": "2024-06-01T11:00:01Z"})
    conditions = {c.type: c for c in plan.conditions_for(handoff)}
    assert (conditions["Guarded"].status, conditions["Guarded"].reason) == ("True", "HandOff")
    assert plan.guard_passed_at(handoff) == "StopOldNode"
    silent = done(*ORDER[:6], guard={"method": "Silent", "passedAt": "2024-06-01T11:00:01Z"})
    assert plan.guard_passed_at(silent) == "WaitKeySilent"
    assert plan.guard_passed_at(done(*ORDER[:5])) is None


@pytest.mark.parametrize("index", range(len(ORDER)))
def test_every_step_and_every_resume_point(index):
    step = ORDER[index]
    fresh = decide(done(*ORDER[:index]))
    assert (fresh.action, fresh.step, fresh.resume) == (plan.Action.STEP, step, False)
    resumed = decide(done(*ORDER[:index], started=step))
    assert (resumed.action, resumed.step, resumed.resume) == (plan.Action.STEP, step, True)


def test_first_sight_all_done_and_finished():
    assert decide({}).action == plan.Action.ACCEPT
    assert decide(done(*ORDER)).action == plan.Action.COMPLETE
    assert decide({**done(*ORDER), "phase": "Completed"}).action == plan.Action.IDLE
    # Re-applying a Completed restore (even a changed spec) does nothing.
    assert decide({**done(*ORDER), "phase": "Completed"}, generation=5).action == plan.Action.IDLE


def test_announce_step_only_when_asked():
    assert decide(done(*ORDER), announce=True).step == "AnnounceIP"


def test_halts_hold_back_only_before_anything_is_touched():
    assert decide(done(), halt="Signing halt").action == plan.Action.WAIT_HALT
    assert decide(done(started="VerifyBackup"), halt="Signing halt").action == plan.Action.STEP
    assert decide(done(*ORDER[:3]), halt="Signing halt").step == "WriteFiles"


def test_missing_node_or_invalid_spec_fails():
    assert decide(done(), node_found=False).action == plan.Action.FAIL
    d = plan.decide(plan.RestoreInputs(spec=None, status={"phase": "Pending"}, generation=1, now=NOW,
                                       spec_error="bad"))
    assert (d.action, d.reason, d.message) == (plan.Action.FAIL, "InvalidSpec", "bad")


def test_failed_is_idle_until_the_spec_changes():
    failed = {**done("VerifyBackup"), "phase": "Failed", "failedStep": "AcquireKeyLock", "observedGeneration": 1}
    assert decide(failed).action == plan.Action.IDLE
    assert decide(failed, generation=2).action == plan.Action.REARM


def test_rearm_before_anything_was_touched_starts_over():
    failed = {**done("VerifyBackup", started="AcquireKeyLock"), "phase": "Failed", "failedStep": "AcquireKeyLock",
              "guard": {"lockHolder": "a/a", "consensusPubKey": "k"}, "nextAction": "x"}
    new = plan.rearmed(failed, NOW, 2)
    assert new["steps"] == [] and new["phase"] == "Pending" and new["guard"] == {"consensusPubKey": "k"}
    assert new["failedStep"] is None and new["nextAction"] is None and new["observedGeneration"] == 2


def test_rearm_after_scale_down_resumes_the_failed_step():
    failed = {**done(*ORDER[:5], started="WaitKeySilent"), "phase": "Failed", "failedStep": "WaitKeySilent",
              "nodeLeftDown": True}
    new = plan.rearmed(failed, NOW, 3)
    assert [s["name"] for s in new["steps"]] == ORDER[:5]
    assert new["phase"] == "Guarding" and new["step"] == "WaitKeySilent" and new["nodeLeftDown"] is None
    assert decide(new, generation=3).step == "WaitKeySilent"


def test_begin_and_complete_record_times_in_order():
    s1 = plan.begin({}, "ScaleDown", NOW, "scaling", previousReplicas={"mayanode": 1})
    assert s1["phase"] == "ScalingDown" and s1["previousReplicas"] == {"mayanode": 1}
    assert plan.step_record(s1, "ScaleDown")["startedAt"].startswith("2024-06-01T12:00:00")
    later = NOW + timedelta(seconds=3)
    s2 = plan.begin(s1, "ScaleDown", later, "again")              # a second begin keeps the first start
    assert plan.step_started_at(s2, "ScaleDown") == NOW
    s3 = plan.complete(s2, "ScaleDown", later, "gone")
    assert plan.step_done(s3, "ScaleDown") and plan.step_record(s3, "ScaleDown")["message"] == "gone"
    assert not plan.step_done(s1, "ScaleDown")


def test_deadlines():
    status = plan.begin({}, "WaitKeySilent", NOW)
    assert not plan.deadline_passed(status, "WaitKeySilent", 60, NOW + timedelta(seconds=59))
    assert plan.deadline_passed(status, "WaitKeySilent", 60, NOW + timedelta(seconds=61))
    assert not plan.deadline_passed(status, "WaitReady", 1, NOW + timedelta(days=1))


def test_failure_before_scale_down_says_nothing_changed():
    status = done("VerifyBackup", started="AcquireKeyLock")
    action = plan.next_action("AcquireKeyLock", namespace="ns", restore="r", node="n", spec=SPEC, node_down=False)
    new = plan.failed(status, "AcquireKeyLock", NOW, "KeyInUse", "held by a/a", action, 1)
    assert new["phase"] == "Failed" and new["nodeLeftDown"] is False and "nothing was changed" in new["nextAction"]
    event = plan.failure_event(new)
    assert event.type == "Warning" and event.reason == "KeyInUse" and "nothing was changed" in event.message
    conditions = {c.type: c for c in plan.conditions_for(new)}
    assert conditions["Failed"].status == "True" and conditions["Guarded"].reason == "KeyInUse"
    assert conditions["ScaledDown"].status == "False"


def test_failure_after_scale_down_says_the_node_is_down_and_how_to_recover():
    status = done(*ORDER[:5], started="WaitKeySilent")
    action = plan.next_action("WaitKeySilent", namespace="ns", restore="r", node="n", spec=HANDOFF, node_down=True,
                              cons_pub_key="mayacpub1x")
    new = plan.failed(status, "WaitKeySilent", NOW, "GuardTimeout", "not silent", action, 1)
    assert new["nodeLeftDown"] is True
    assert "oldNodeDestroyed" in action and "MayaNode ns/old" in action and "--replicas=1" in action
    assert "LEFT SCALED DOWN" in plan.failure_event(new).message
    conditions = {c.type: c for c in plan.conditions_for(new)}
    assert (conditions["ScaledDown"].status, conditions["ScaledDown"].reason) == ("True", "NodeHeldDown")
    assert conditions["Completed"].status == "False" and conditions["Guarded"].status == "False"


def test_next_action_for_late_steps():
    ready = plan.next_action("WaitReady", namespace="ns", restore="r", node="n", spec=SPEC, node_down=False)
    assert "readySeconds" in ready
    assert "AnnounceIP" in plan.next_action("AnnounceIP", namespace="ns", restore="r", node="n", spec=SPEC,
                                            node_down=False)
    other = plan.next_action("WriteFiles", namespace="ns", restore="r", node="n", spec=SPEC, node_down=True)
    assert "stays at 0 replicas" in other and "resume at WriteFiles" in other


def test_conditions_through_a_successful_restore():
    status = plan.completed({**done(*ORDER), "guard": {"method": "Silent"}, "downtimeSeconds": 2.5}, NOW, 1)
    conditions = {c.type: c for c in plan.conditions_for(status)}
    assert conditions["Verified"].status == "True" and conditions["Guarded"].reason == "Silent"
    assert conditions["Completed"].status == "True" and conditions["Failed"].status == "False"
    assert conditions["ScaledDown"].reason == "ScaledBackUp"
    assert "2.5s" in status["message"]


def test_statuses_are_accepted_by_the_model():
    status = plan.completed(done(*ORDER, guard={"method": "HandOff", "stopHeight": 5}), NOW, 1)
    model = NodeRestoreStatus.model_validate(status)
    assert model.phase == "Completed" and all(model.step_done(s) for s in ORDER)


def test_events_for_steps():
    assert plan.step_done_event("ScaleDown", "m").reason == "ScaledDown"
    assert plan.step_start_event("SwapSecrets", "m").reason == "SwappingSecrets"
    assert plan.step_start_event("WaitKeySilent", "m") is None


def _node(ns: str, name: str, *, reachable: bool, halts=(), network: str = "mainnet") -> dict:
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"network": network},
            "status": {"conditions": [{"type": "NodeAPIReachable", "status": "True" if reachable else "False"}],
                       "network": {"halts": [dict(h) for h in halts]}}}


SIGNING = {"kind": "Signing", "key": "HALTSIGNINGBTC", "chain": "BTC"}


@pytest.mark.parametrize("target, peers, expected_halts, source_has", [
    # The target sees the network itself: its view, whatever the others say.
    (_node("a", "n", reachable=True), [_node("b", "p", reachable=True, halts=[SIGNING])], [], ""),
    (_node("a", "n", reachable=True, halts=[SIGNING]), [], [SIGNING], ""),
    # Its API is down: a live MayaNode of the same network is asked (the first by namespace/name).
    (_node("a", "n", reachable=False), [_node("c", "q", reachable=True),
                                        _node("b", "p", reachable=True, halts=[SIGNING])], [SIGNING], "b/p"),
    # ... never one of another network, nor one whose API is down too, nor itself.
    (_node("a", "n", reachable=False, halts=[SIGNING]),
     [_node("b", "p", reachable=True, network="stagenet"), _node("c", "q", reachable=False), _node("a", "n",
                                                                                                   reachable=False)],
     [SIGNING], "last saw"),
    (_node("a", "n", reachable=False), [], [], "no other MayaNode of mainnet"),
])
def test_restore_halts_come_from_a_node_that_sees_the_network(target, peers, expected_halts, source_has):
    halts, source = plan.restore_halts(target, peers)
    assert halts == expected_halts
    assert (source_has in source) if source_has else source == ""


# --------------------------------------------------------------------------------------------------
# Several NodeRestores of one MayaNode, and a ScaleDown that scaled nothing
# --------------------------------------------------------------------------------------------------
def _restore(name: str, created: str, *, node: str = "n", phase: str | None = None, engaged: bool = False,
             deleting: bool = False) -> dict:
    meta = {"name": name, "creationTimestamp": created, **({"deletionTimestamp": created} if deleting else {})}
    status = {**({"phase": phase} if phase else {}),
              **({"steps": [{"name": "ScaleDown", "startedAt": "2024-06-01T11:00:00.000000Z"}]} if engaged else {})}
    return {"metadata": meta, "spec": {"nodeRef": {"name": node}}, "status": status}


@pytest.mark.parametrize("restores, expected", [
    ([], None),
    ([_restore("r1", "2024-06-01T10:00:00Z", node="other", phase="Writing")], None),
    ([_restore("r1", "2024-06-01T10:00:00Z", phase="Completed"), _restore("r2", "2024-06-01T11:00:00Z",
                                                                          phase="Failed")], None),
    # The oldest unfinished one, whatever the order listed.
    ([_restore("r2", "2024-06-01T11:00:00Z", phase="Verifying"), _restore("r1", "2024-06-01T10:00:00Z")], "r1"),
    # Created in the same second: by name, so every reader agrees.
    ([_restore("rb", "2024-06-01T10:00:00Z", phase="Pending"), _restore("ra", "2024-06-01T10:00:00Z")], "ra"),
    # One that already changes the node goes first, even if younger (it cannot step back).
    ([_restore("ra", "2024-06-01T10:00:00Z"), _restore("rb", "2024-06-01T10:00:00Z", phase="ScalingDown",
                                                       engaged=True)], "rb"),
    # Finished ones and one deleted before it started do not count.
    ([_restore("r0", "2024-06-01T09:00:00Z", phase="Failed", engaged=True),
      _restore("r1", "2024-06-01T10:00:00Z", deleting=True), _restore("r2", "2024-06-01T11:00:00Z")], "r2"),
])
def test_which_restore_of_a_node_goes_first(restores, expected):
    from mayanode_operator.reconcile.facets import active_restore_for
    assert plan.active_restore("n", restores) == expected
    assert active_restore_for("n", restores) == expected              # the MayaNode's reconcile agrees
    for restore in restores:
        name = restore["metadata"]["name"]
        assert plan.restore_ahead(name, "n", restores) == (None if expected in (None, name) else expected)


def test_a_restore_waits_for_the_one_ahead_before_touching_the_node():
    for status in ({"phase": "Pending", "observedGeneration": 1}, done(), done("VerifyBackup", "AcquireKeyLock"),
                   done(started="VerifyBackup")):
        d = decide(status, ahead="r1")
        assert (d.action, d.reason) == (plan.Action.WAIT_RESTORE, "WaitingForRestore"), status
        assert "NodeRestore r1" in d.message
    assert decide({}, ahead="r1").action == plan.Action.ACCEPT        # accepting touches nothing
    # One that already changes the node (both did: created in the same second) stops, and says why.
    engaged = decide(done(*ORDER[:3], started="WriteFiles"), ahead="r1")
    assert (engaged.action, engaged.reason, engaged.step) == (plan.Action.FAIL, "ConcurrentRestore", "WriteFiles")
    assert decide(done(*ORDER[:3]), ahead=None).step == "WriteFiles"


def test_a_failed_restore_does_not_resume_while_another_restore_of_its_node_runs():
    failed = {**done(*ORDER[:5], started="WaitKeySilent"), "phase": "Failed", "failedStep": "WaitKeySilent",
              "nodeLeftDown": True, "observedGeneration": 1}
    held = decide(failed, generation=2, ahead="r2")
    assert held.action == plan.Action.WAIT_RESTORE and "r2" in held.message
    assert decide(failed, generation=2).action == plan.Action.REARM
    assert decide(failed, ahead="r2").action == plan.Action.IDLE     # no spec change: nothing to do anyway


@pytest.mark.parametrize("previous, current, down", [
    (None, {"mayanode": 1, "bifrost": 1}, False),                    # failed before recording: nothing scaled
    ({"mayanode": 1, "bifrost": 1}, {"mayanode": 1, "bifrost": 1}, False),   # the scale itself was refused
    ({"mayanode": 1, "bifrost": 1}, {"mayanode": 1, "bifrost": 0}, True),    # bifrost went first
    ({"mayanode": 0, "bifrost": 0}, {"mayanode": 0, "bifrost": 0}, False),   # down before the restore
    ({"mayanode": 1, "bifrost": 1}, {"mayanode": None, "bifrost": 1}, True),  # unknown: assume scaled
])
def test_a_failed_scale_down_leaves_the_node_down_only_if_it_scaled_something(previous, current, down):
    assert plan.scale_down_left_node_down(previous, current) is down


def test_a_failed_scale_down_that_scaled_nothing_says_so_in_its_conditions():
    status = done("VerifyBackup", "AcquireKeyLock", started="ScaleDown", previousReplicas={"mayanode": 1,
                                                                                          "bifrost": 1})
    new = plan.failed(status, "ScaleDown", NOW, "Forbidden", "no scale", "x", 1, nodeLeftDown=False)
    conditions = {c.type: c for c in plan.conditions_for(new)}
    assert new["nodeLeftDown"] is False and conditions["ScaledDown"].status == "False"
    assert "nothing was changed" in plan.failure_event(new).message
