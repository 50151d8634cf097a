"""The rollout planner: every step of the state machine from tables, and hypothesis over node states."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mayanode_operator.api.mayanode import MayaNodeSpec
from mayanode_operator.observe.snapshot import (
    ChainStatus,
    EndpointError,
    NetworkObservation,
    NodeApiObservation,
    PodObservation,
    WorkloadObservation,
)
from mayanode_operator.plan import upgrade_rollout as r
from mayanode_operator.plan.upgrade_gates import GateOutcome

T = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
OLD, NEW = "1.111.0", "1.112.0"
REPO = "registry.gitlab.com/mayachain/mayanode"


def img(version):
    return f"{REPO}:mainnet-{version}"


def spec(**kw):
    return MayaNodeSpec.model_validate({"network": "mainnet", "version": NEW, **kw})


def workload(name, version=OLD, *, ready=True, pod_version=None, restarts=0, waiting=None, terminating=False,
             pods=1, generation=2, observed=2, exists=True):
    image = img(version) if version else None
    pod_image = img(pod_version or version) if version else ""
    return WorkloadObservation(
        name=name, exists=exists, desired_replicas=1, ready_replicas=1 if ready else 0,
        updated_replicas=1 if pods else 0, image=image, generation=generation, observed_generation=observed,
        pods=tuple(PodObservation(f"{name}-{i}", "Running", ready, restarts, waiting, terminating, (pod_image,))
                   for i in range(pods)))


def api(querier=OLD, catching_up=False, height=1000, reachable=True, next_=NEW):
    if not reachable:
        return NodeApiObservation(errors=(EndpointError("version", "Unreachable", "down"),
                                          EndpointError("status", "Unreachable", "down")))
    return NodeApiObservation(network=NetworkObservation(OLD, next_, querier),
                              chain=ChainStatus(height, catching_up))


PASS = [GateOutcome.ok("VersionSanity", "ok")]


def inputs(*, s=None, maya=None, bif=None, a=None, previous=None, target=NEW, **kw):
    return r.RolloutInputs(spec=s or spec(), node="ns/node", now=kw.pop("now", T), mayanode=maya or workload("mayanode"),
                           bifrost=bif or workload("bifrost"), api=a or api(), previous=previous, target=target,
                           gates=kw.pop("gates", PASS), **kw)


def current(step, **kw):
    return {"current": {"from": OLD, "to": NEW, "step": step, "startedAt": "2024-06-01T11:59:00Z",
                        "previousImages": {"mayanode": img(OLD), "bifrost": img(OLD)}, **kw}}


def cond(plan, type_):
    return next(c for c in plan.conditions if c.type == type_)


# ---- idle --------------------------------------------------------------------------------------
def test_up_to_date_is_idle():
    plan = r.plan_rollout(inputs(maya=workload("mayanode", NEW), bif=workload("bifrost", NEW)))
    assert plan.upgrade["state"] == "Idle" and not plan.actions
    assert cond(plan, "UpgradeBlocked").status == "False" and cond(plan, "UpgradeBlocked").reason == "UpToDate"


def test_no_target_is_observe_only():
    plan = r.plan_rollout(inputs(target=None))
    assert plan.upgrade["state"] == "Idle" and cond(plan, "UpgradeBlocked").reason == "ObserveOnly"


def test_a_blocking_gate_names_itself_and_emits_one_event():
    gate = GateOutcome.block("Adoption", "WaitingForAdoption", "network next is 1.111.0")
    plan = r.plan_rollout(inputs(gates=[*PASS, gate]))
    assert plan.upgrade["state"] == "Blocked" and not plan.actions
    assert plan.upgrade["gate"] == {"name": "Adoption", "reason": "WaitingForAdoption",
                                    "message": "network next is 1.111.0"}
    blocked = cond(plan, "UpgradeBlocked")
    assert blocked.status == "True" and blocked.reason == "WaitingForAdoption" and blocked.message.startswith("Adoption")
    assert [e.reason for e in plan.events] == ["UpgradeBlocked"]
    again = r.plan_rollout(inputs(gates=[*PASS, gate], previous=plan.upgrade))
    assert again.events == []                                          # not repeated while the same gate holds


def test_all_gates_pass_starts_with_the_budget_step_and_records_previous_images():
    plan = r.plan_rollout(inputs())
    cur = plan.upgrade["current"]
    assert plan.upgrade["state"] == "InProgress" and cur["step"] == "AcquireBudget"
    assert cur["from"] == OLD and cur["to"] == NEW and cur["previousImages"] == {"mayanode": img(OLD),
                                                                                 "bifrost": img(OLD)}
    assert not plan.actions and plan.requeue_after == r.STEP_ADVANCE_REQUEUE
    assert [e.reason for e in plan.events] == ["UpgradeStarted"]


def test_pre_upgrade_backup_comes_first_when_asked():
    s = spec(backup={"location": {"secret": {}, "encryption": {"recipients": [
        "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]}}},
        upgrade={"gates": {"preUpgradeBackup": True}})
    plan = r.plan_rollout(inputs(s=s, backup=r.BackupView("node-preupgrade-1-112-0", False)))
    assert plan.upgrade["current"]["step"] == "PreUpgradeBackup"
    assert plan.upgrade["current"]["backupName"] == "node-preupgrade-1-112-0"


def test_manual_strategy_waits_for_an_upgrade_node_action():
    s = spec(upgrade={"strategy": "Manual"})
    plan = r.plan_rollout(inputs(s=s))
    assert plan.upgrade["gate"]["name"] == "Approval" and plan.upgrade["gate"]["reason"] == "WaitingForApproval"
    approved = r.plan_rollout(inputs(s=s, approval="go-1"))
    assert approved.upgrade["current"]["requestId"] == "go-1"


def test_manual_strategy_still_applies_the_gates():
    gate = GateOutcome.block("Sync", "CatchingUp", "catching up")
    plan = r.plan_rollout(inputs(s=spec(upgrade={"strategy": "Manual"}), approval="go", gates=[*PASS, gate]))
    assert plan.upgrade["gate"]["name"] == "Sync"


def test_pending_approval_skips_used_ids():
    s = spec(nodeActions=[{"id": "a", "action": "Upgrade"}, {"id": "b", "action": "PauseChain"},
                          {"id": "c", "action": "Upgrade"}])
    assert r.pending_approval(s, None) == "a"
    assert r.pending_approval(s, {"history": [{"requestId": "a"}]}) == "c"
    assert r.pending_approval(s, {"current": {"requestId": "a"}}, ["c"]) is None


def test_workloads_locked_by_a_restore_blocks():
    plan = r.plan_rollout(inputs(locked="NodeRestore r1 is in progress"))
    assert plan.upgrade["gate"]["name"] == "WorkloadsLocked" and not plan.actions


def test_missing_deployment_blocks():
    plan = r.plan_rollout(inputs(bif=workload("bifrost", exists=False)))
    assert plan.upgrade["gate"]["reason"] == "DeploymentMissing"


def test_a_rolled_back_target_is_not_retried_until_asked():
    previous = {"history": [{"from": OLD, "to": NEW, "result": "RolledBack", "reason": "CrashLoop",
                             "startedAt": "x", "message": "boom"}]}
    plan = r.plan_rollout(inputs(previous=previous))
    assert plan.upgrade["state"] == "Failed" and not plan.actions
    assert cond(plan, "Degraded").status == "True" and cond(plan, "Degraded").reason == "CrashLoop"
    retry = r.plan_rollout(inputs(previous=previous, approval="retry"))
    assert retry.upgrade["current"]["step"] == "AcquireBudget"
    other = r.plan_rollout(inputs(previous=previous, target="1.112.1"))
    assert other.upgrade["current"]["to"] == "1.112.1"


def test_an_image_changed_by_someone_else_is_reported_not_overwritten():
    previous = {"history": [{"from": OLD, "to": NEW, "result": "Succeeded", "image": img(NEW), "startedAt": "x"}]}
    plan = r.plan_rollout(inputs(previous=previous, maya=workload("mayanode", OLD), bif=workload("bifrost", NEW)))
    assert plan.upgrade["gate"]["reason"] == "ImageChangedExternally" and not plan.actions
    again = r.plan_rollout(inputs(previous=previous, approval="reapply"))
    assert again.upgrade["current"]["step"] == "AcquireBudget"


# ---- before any change -------------------------------------------------------------------------
@pytest.mark.parametrize("backup,step,action,reason", [
    (r.BackupView("b", False), "PreUpgradeBackup", "CreateBackup", "CreatingBackup"),
    (r.BackupView("b", True, "InProgress"), "PreUpgradeBackup", None, "WaitingForBackup"),
    (r.BackupView("b", True, "Failed"), "PreUpgradeBackup", None, "BackupFailed"),
    (r.BackupView("b", True, "Completed"), "AcquireBudget", None, None),
    (None, "AcquireBudget", None, None),                    # no longer asked for
])
def test_pre_upgrade_backup_step(backup, step, action, reason):
    plan = r.plan_rollout(inputs(previous=current("PreUpgradeBackup", backupName="b"), backup=backup))
    assert plan.upgrade["current"]["step"] == step
    assert [a.kind for a in plan.actions] == ([action] if action else [])
    if reason:
        assert plan.upgrade["gate"] == {"name": "PreUpgradeBackup", "reason": reason,
                                        "message": plan.upgrade["gate"]["message"]}
        assert cond(plan, "UpgradeBlocked").status == "True"


@pytest.mark.parametrize("decision,step,actions,gate", [
    (None, "Mayanode", [], None),                                                         # no rollout group
    (r.BudgetDecision("held"), "Mayanode", [], None),
    (r.BudgetDecision("held", new_state=r.BudgetState()), "Mayanode", ["RenewBudget"], None),
    (r.BudgetDecision("acquire", new_state=r.BudgetState()), "AcquireBudget", ["AcquireBudget"], "RolloutBudget"),
    (r.BudgetDecision("blocked", "RolloutBudget", "BudgetExhausted", "1/1"), "AcquireBudget", [], "RolloutBudget"),
    (r.BudgetDecision("blocked", "Canary", "WaitingForCanary", "c"), "AcquireBudget", [], "Canary"),
])
def test_acquire_budget_step(decision, step, actions, gate):
    plan = r.plan_rollout(inputs(previous=current("AcquireBudget"), budget=decision))
    assert plan.upgrade["current"]["step"] == step
    assert [a.kind for a in plan.actions] == actions
    assert (plan.upgrade.get("gate") or {}).get("name") == gate


def test_flag_day_skips_the_budget_and_stops_the_old_pod_first():
    plan = r.plan_rollout(inputs(previous=current("AcquireBudget", flagDayHeight=500),
                                 budget=r.BudgetDecision("blocked", "RolloutBudget", "BudgetExhausted", "x")))
    assert plan.upgrade["current"]["step"] == "StopOld"


@pytest.mark.parametrize("why", ["target", "gate", "locked", "manual"])
def test_called_off_before_any_change(why):
    kw = {"target": "1.113.0"} if why == "target" else \
        {"gates": [*PASS, GateOutcome.block("MaintenanceWindow", "OutsideMaintenanceWindow", "closed")]} \
        if why == "gate" else {"locked": "restore"} if why == "locked" else {"s": spec(upgrade={"strategy": "Manual"})}
    plan = r.plan_rollout(inputs(previous=current("AcquireBudget"), budget=r.BudgetDecision("held"), **kw))
    assert plan.upgrade["current"] is None and plan.upgrade["state"] == "Idle"
    assert [a.kind for a in plan.actions] == ["ReleaseBudget"]
    assert [e.reason for e in plan.events] == ["UpgradeCancelled"]


# ---- changing the images -----------------------------------------------------------------------
def test_mayanode_step_sets_the_image_then_waits_for_the_old_pod():
    plan = r.plan_rollout(inputs(previous=current("Mayanode")))
    assert [(a.kind, a.deployment, a.image) for a in plan.actions] == [("SetImage", "mayanode", img(NEW))]
    assert plan.upgrade["current"]["step"] == "Mayanode" and cond(plan, "Upgrading").status == "True"
    stopping = r.plan_rollout(inputs(previous=current("Mayanode"), maya=workload("mayanode", NEW, terminating=True)))
    assert not stopping.actions and stopping.upgrade["current"]["step"] == "Mayanode"
    entered = r.plan_rollout(inputs(previous=current("Mayanode"), maya=workload("mayanode", NEW, ready=False)))
    cur = entered.upgrade["current"]
    assert cur["step"] == "MayanodeHealth" and cur["deadline"] == "2024-06-01T12:10:00Z"


HEALTH_NEW = dict(maya=workload("mayanode", NEW), a=api(querier=NEW))


@pytest.mark.parametrize("maya,a,step,state,reason", [
    (workload("mayanode", NEW), api(querier=NEW), "Bifrost", "InProgress", None),
    (workload("mayanode", NEW, ready=False), api(querier=NEW), "MayanodeHealth", "InProgress", None),
    (workload("mayanode", NEW), api(querier=OLD), "MayanodeHealth", "InProgress", None),
    (workload("mayanode", NEW), api(querier=NEW, catching_up=True), "MayanodeHealth", "InProgress", None),
    (workload("mayanode", NEW, observed=1), api(querier=NEW), "MayanodeHealth", "InProgress", None),   # stale status
    (workload("mayanode", NEW, pod_version=OLD), api(querier=NEW), "MayanodeHealth", "InProgress", None),
    (workload("mayanode", NEW, ready=False, restarts=3, waiting="CrashLoopBackOff"), api(reachable=False),
     "Rollback", "RollingBack", "CrashLoop"),
    (workload("mayanode", NEW, ready=False, restarts=1, waiting="CrashLoopBackOff"), api(reachable=False),
     "MayanodeHealth", "InProgress", None),
])
def test_mayanode_health(maya, a, step, state, reason):
    plan = r.plan_rollout(inputs(previous=current("MayanodeHealth", deadline="2024-06-01T12:10:00Z"), maya=maya, a=a))
    assert plan.upgrade["current"]["step"] == step and plan.upgrade["state"] == state
    if reason:
        assert plan.upgrade["current"]["reason"] == reason and cond(plan, "Degraded").status == "True"


@pytest.mark.parametrize("maya,a,reason", [
    (workload("mayanode", NEW, ready=False), api(querier=NEW), "HealthTimeout"),
    (workload("mayanode", NEW), api(querier=OLD), "VersionMismatch"),
    (workload("mayanode", NEW), api(querier=NEW, catching_up=True), "NotSyncing"),
    (workload("mayanode", NEW, ready=False), api(reachable=False), "HealthTimeout"),
])
def test_health_timeout_reasons(maya, a, reason):
    plan = r.plan_rollout(inputs(previous=current("MayanodeHealth", deadline="2024-06-01T11:59:59Z"), maya=maya, a=a))
    assert plan.upgrade["current"]["step"] == "Rollback" and plan.upgrade["current"]["reason"] == reason
    assert [e.reason for e in plan.events] == ["UpgradeFailed"]


def test_health_failure_without_rollback_fails_in_place():
    s = spec(upgrade={"rollbackOnFailure": False})
    plan = r.plan_rollout(inputs(s=s, previous=current("MayanodeHealth", deadline="2024-06-01T11:00:00Z"),
                                 maya=workload("mayanode", NEW, ready=False), a=api(querier=NEW),
                                 budget=r.BudgetDecision("held")))
    assert plan.upgrade["state"] == "Failed" and plan.upgrade["current"] is None
    assert plan.upgrade["history"][-1]["result"] == "Failed"
    assert [(a.kind, a.result) for a in plan.actions] == [("ReleaseBudget", "Failed")]


def test_bifrost_steps():
    plan = r.plan_rollout(inputs(previous=current("Bifrost"), **HEALTH_NEW))
    assert [(a.kind, a.deployment) for a in plan.actions] == [("SetImage", "bifrost")]
    entered = r.plan_rollout(inputs(previous=current("Bifrost"), bif=workload("bifrost", NEW, ready=False),
                                    **HEALTH_NEW))
    assert entered.upgrade["current"]["step"] == "BifrostHealth"
    waiting = r.plan_rollout(inputs(previous=current("BifrostHealth", deadline="2024-06-01T12:10:00Z"),
                                    bif=workload("bifrost", NEW, ready=False), **HEALTH_NEW))
    assert waiting.upgrade["current"]["step"] == "BifrostHealth"
    healthy = r.plan_rollout(inputs(previous=current("BifrostHealth"), bif=workload("bifrost", NEW), **HEALTH_NEW))
    assert healthy.upgrade["current"]["step"] == "SetVersion"
    broken = r.plan_rollout(inputs(previous=current("BifrostHealth", deadline="2024-06-01T11:00:00Z"),
                                   bif=workload("bifrost", NEW, ready=False), **HEALTH_NEW))
    assert broken.upgrade["current"]["step"] == "Rollback"


def test_set_version_is_recorded_before_it_is_sent_and_sent_once():
    both_new = dict(bif=workload("bifrost", NEW), **HEALTH_NEW)
    plan = r.plan_rollout(inputs(previous=current("SetVersion"), budget=r.BudgetDecision("held"), **both_new))
    assert plan.checkpoint and plan.upgrade["current"]["versionAnnounced"] is True
    assert [a.kind for a in plan.actions] == ["SendSetVersion"]
    # The facet records the send's answer in `message` (in place of the checkpoint's SET_VERSION_SENDING).
    answered = {**plan.upgrade["current"], "message": "set-version sent (txhash ABC)"}
    done = r.plan_rollout(inputs(previous={"current": answered}, budget=r.BudgetDecision("held"), **both_new))
    assert not done.checkpoint and [a.kind for a in done.actions] == ["ReleaseBudget"]
    assert done.upgrade["state"] == "Idle" and done.upgrade["current"] is None
    entry = done.upgrade["history"][-1]
    assert entry["result"] == "Succeeded" and entry["from"] == OLD and entry["to"] == NEW and entry["image"] == img(NEW)
    assert [e.reason for e in done.events] == ["UpgradeSucceeded"]


def test_set_version_not_sent_when_the_chain_has_it():
    plan = r.plan_rollout(inputs(previous=current("SetVersion"), announced_version=NEW,
                                 bif=workload("bifrost", NEW), **HEALTH_NEW))
    assert not plan.checkpoint and "SendSetVersion" not in [a.kind for a in plan.actions]
    assert plan.upgrade["history"][-1]["result"] == "Succeeded"


def test_a_restore_pauses_an_upgrade_under_way():
    plan = r.plan_rollout(inputs(previous=current("Bifrost"), locked="NodeRestore r", **HEALTH_NEW))
    assert not plan.actions and plan.upgrade["current"]["step"] == "Bifrost"
    assert cond(plan, "UpgradeBlocked").reason == "WorkloadsLocked"


# ---- rollback ----------------------------------------------------------------------------------
def test_rollback_puts_both_images_back_then_waits_for_health():
    previous = current("Rollback", reason="CrashLoop", message="boom", deadline="2024-06-01T12:10:00Z")
    plan = r.plan_rollout(inputs(previous=previous, maya=workload("mayanode", NEW), bif=workload("bifrost", NEW)))
    assert [(a.deployment, a.image) for a in plan.actions] == [("mayanode", img(OLD)), ("bifrost", img(OLD))]
    assert plan.upgrade["state"] == "RollingBack" and cond(plan, "Degraded").status == "True"
    waiting = r.plan_rollout(inputs(previous=previous, maya=workload("mayanode", OLD, ready=False)))
    assert not waiting.actions and waiting.upgrade["state"] == "RollingBack"
    back = r.plan_rollout(inputs(previous=previous, budget=r.BudgetDecision("held")))
    assert back.upgrade["state"] == "Failed" and back.upgrade["history"][-1]["result"] == "RolledBack"
    assert cond(back, "Degraded").reason == "CrashLoop" and [a.kind for a in back.actions] == ["ReleaseBudget"]
    assert back.actions[0].result == "Failed"


def test_rollback_that_does_not_recover_fails():
    previous = current("Rollback", reason="CrashLoop", message="boom", deadline="2024-06-01T11:00:00Z")
    plan = r.plan_rollout(inputs(previous=previous, maya=workload("mayanode", OLD, ready=False)))
    assert plan.upgrade["history"][-1]["result"] == "Failed" and plan.upgrade["history"][-1]["reason"] == "RollbackFailed"


def test_history_is_capped():
    previous = {**current("SetVersion", versionAnnounced=True),
                "history": [{"to": f"1.0.{i}", "result": "Succeeded", "startedAt": "x"} for i in range(20)]}
    plan = r.plan_rollout(inputs(previous=previous, bif=workload("bifrost", NEW), **HEALTH_NEW))
    assert len(plan.upgrade["history"]) == 20 and plan.upgrade["history"][-1]["to"] == NEW


# ---- flag days ---------------------------------------------------------------------------------
FLAG = spec(version=OLD, upgrade={"heightSchedule": [{"height": 500, "version": NEW}]})


@pytest.mark.parametrize("height,last,halted,target,flag_height", [
    (499, None, False, OLD, None),
    (500, None, False, NEW, 500),
    (None, 499, True, NEW, 500),          # the old binary halted at 499: it is at the height
    (499, None, True, NEW, 500),
    (498, None, True, OLD, None),
    (None, None, True, OLD, None),
    (500 + r.FLAG_DAY_GRACE_BLOCKS + 1, None, False, NEW, None),   # long past: an ordinary upgrade
])
def test_flag_day_view(height, last, halted, target, flag_height):
    view = r.flag_day_view(FLAG, height, last, halted)
    assert (view.target, view.flag_day_height) == (target, flag_height)


def test_near_a_flag_day_the_height_is_recorded_and_watched():
    plan = r.plan_rollout(inputs(s=FLAG, target=OLD, next_flag_day=(500, NEW), last_height=480))
    assert plan.upgrade["nextFlagDay"] == {"height": 500, "version": NEW} and plan.upgrade["lastHeight"] == 480
    assert plan.requeue_after == r.NEAR_FLAG_DAY_REQUEUE
    far = r.plan_rollout(inputs(s=FLAG, target=OLD, next_flag_day=(500, NEW), last_height=100))
    assert far.upgrade["lastHeight"] is None and far.requeue_after is None


def test_a_flag_day_starts_without_waiting_for_manual_approval():
    s = spec(version=OLD, upgrade={"strategy": "Manual", "heightSchedule": [{"height": 500, "version": NEW}]})
    plan = r.plan_rollout(inputs(s=s, flag_day_height=500))
    assert plan.upgrade["current"]["flagDayHeight"] == 500 and plan.upgrade["current"]["step"] == "AcquireBudget"


def test_backup_names_are_deterministic():
    assert r.backup_name("node-a", "1.112.0", 1234) == "node-a-preupgrade-1-112-0-c1234"
    assert r.backup_name("node-a", "1.112.0", None) == "node-a-preupgrade-1-112-0"


# ---- hypothesis: no crash on random versions, heights, node states and stored status -------------
version_st = st.one_of(st.sampled_from([OLD, NEW, "1.110.0", "2.0.0"]), st.text(max_size=8))
steps = st.one_of(st.sampled_from([s.value for s in r.UpgradeStep]), st.text(max_size=6))
time_st = st.one_of(st.none(), st.text(max_size=10), st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")))
pods_st = st.lists(st.builds(PodObservation, name=st.text(max_size=4), phase=st.sampled_from(["Running", "Pending"]),
                             ready=st.booleans(), restarts=st.integers(0, 9),
                             waiting_reason=st.sampled_from([None, "CrashLoopBackOff", "ErrImagePull"]),
                             terminating=st.booleans(), images=st.lists(version_st.map(img), max_size=2).map(tuple)),
                   max_size=3).map(tuple)
workload_st = st.builds(WorkloadObservation, name=st.sampled_from(["mayanode", "bifrost"]), exists=st.booleans(),
                        desired_replicas=st.integers(0, 1), ready_replicas=st.integers(0, 1),
                        updated_replicas=st.integers(0, 1), image=st.one_of(st.none(), version_st.map(img)),
                        pods=pods_st, generation=st.integers(0, 3), observed_generation=st.integers(0, 3))
api_st = st.builds(NodeApiObservation,
                   network=st.builds(NetworkObservation, current_version=st.one_of(st.none(), version_st),
                                     next_version=st.one_of(st.none(), version_st),
                                     querier_version=st.one_of(st.none(), version_st)),
                   chain=st.one_of(st.none(), st.builds(ChainStatus, height=st.integers(0, 10**6),
                                                        catching_up=st.booleans())),
                   errors=st.sampled_from([(), (EndpointError("version", "Unreachable", "x"),
                                                EndpointError("status", "Unreachable", "x"))]))
previous_st = st.one_of(st.none(), st.fixed_dictionaries({
    "current": st.one_of(st.none(), st.fixed_dictionaries({
        "from": st.one_of(st.none(), version_st), "to": version_st, "step": steps, "startedAt": time_st,
        "deadline": time_st, "versionAnnounced": st.one_of(st.none(), st.booleans()),
        "flagDayHeight": st.one_of(st.none(), st.integers(1, 10**6)),
        "previousImages": st.one_of(st.none(), st.fixed_dictionaries({"mayanode": version_st.map(img),
                                                                      "bifrost": version_st.map(img)})),
    })),
    "history": st.lists(st.fixed_dictionaries({"to": version_st, "result": st.sampled_from(
        ["Succeeded", "RolledBack", "Failed"]), "image": version_st.map(img)}), max_size=3),
    "gate": st.one_of(st.none(), st.fixed_dictionaries({"name": st.just("Adoption"), "reason": st.just("x")})),
}))
budget_st = st.one_of(st.none(), st.sampled_from([
    r.BudgetDecision("held"), r.BudgetDecision("acquire", new_state=r.BudgetState()),
    r.BudgetDecision("blocked", "Canary", "WaitingForCanary", "x")]))


@settings(max_examples=300)
@given(maya=workload_st, bif=workload_st, a=api_st, previous=previous_st, target=st.one_of(st.none(), version_st),
       budget=budget_st, gate_passes=st.booleans(), locked=st.sampled_from([None, "restore"]),
       announced=st.one_of(st.none(), version_st), minutes=st.integers(-100, 100),
       manual=st.booleans(), approval=st.sampled_from([None, "go"]),
       backup=st.one_of(st.none(), st.builds(r.BackupView, st.just("b"), st.booleans(),
                                             st.sampled_from([None, "Completed", "Failed", "InProgress"]))))
def test_planner_never_crashes_and_keeps_its_promises(maya, bif, a, previous, target, budget, gate_passes, locked,
                                                      announced, minutes, manual, approval, backup):
    s = spec(upgrade={"strategy": "Manual" if manual else "Auto"})
    gates = PASS if gate_passes else [GateOutcome.block("Sync", "CatchingUp", "x")]
    if target is not None and r.versions.parse_version(target) is None:
        target = None                 # spec.version is validated: a target is always a version
    plan = r.plan_rollout(inputs(s=s, maya=maya, bif=bif, a=a, previous=previous, target=target, budget=budget,
                                 gates=gates, locked=locked, announced_version=announced, approval=approval,
                                 backup=backup, now=T + timedelta(minutes=minutes)))
    assert plan.upgrade["state"] in ("Idle", "Blocked", "InProgress", "RollingBack", "Failed")
    kinds = [x.kind for x in plan.actions]
    if locked:
        assert "SetImage" not in kinds                   # never while a NodeRestore holds the workloads
    assert kinds.count("SendSetVersion") <= 1
    if "SendSetVersion" in kinds:
        assert plan.checkpoint and plan.upgrade["current"]["versionAnnounced"] is True
    prev_current = (previous or {}).get("current") or {}
    if "SendSetVersion" in kinds:
        assert not prev_current.get("versionAnnounced")   # never sent again once recorded
    for action in plan.actions:
        if action.kind == "SetImage":
            assert action.deployment in ("mayanode", "bifrost") and action.image
    assert len(plan.upgrade.get("history") or []) <= r.HISTORY_LIMIT
    types = {c.type for c in plan.conditions}
    assert types <= {"UpgradeBlocked", "Upgrading", "Degraded"}


# ---- flag days: the height known, a halted old binary, a stale status.chain.height ----------------
def test_the_known_height_is_what_was_seen_never_the_halted_plus_one():
    view = r.flag_day_view(FLAG, 460, 455, True)          # mayanode not ready 40 blocks before the flag day
    assert (view.effective_height, view.known_height, view.target) == (461, 460, OLD)
    assert r.flag_day_view(FLAG, None, 499, True).known_height == 499
    assert r.highest_height(499, 492, None, True) == 499 and r.highest_height(None, "x") is None


@pytest.mark.parametrize("height,last,halted,in_flight,target,flag_height", [
    (None, 492, False, 500, NEW, 500),     # halted binary unreachable, status.chain.height 40 s old
    (480, None, False, 500, NEW, 500),     # a lower height seen afterwards does not undo the flag day
    (None, 492, False, 600, OLD, None),    # not a flag day of the schedule (hand-edited status): ignored
    (None, 492, False, None, OLD, None),
])
def test_a_flag_day_under_way_stays_reached(height, last, halted, in_flight, target, flag_height):
    view = r.flag_day_view(FLAG, height, last, halted, in_flight=in_flight)
    assert (view.target, view.flag_day_height) == (target, flag_height)


def test_the_last_height_is_kept_while_a_flag_day_upgrade_starts_and_runs():
    down = api(reachable=False)
    halted = workload("mayanode", ready=False)
    start = r.plan_rollout(inputs(s=FLAG, target=NEW, flag_day_height=500, last_height=499, maya=halted, a=down))
    assert start.upgrade["current"]["flagDayHeight"] == 500 and start.upgrade["lastHeight"] == 499
    assert start.upgrade["nextFlagDay"] is None                          # no flag day ahead any more
    running = r.plan_rollout(inputs(s=FLAG, target=NEW, flag_day_height=500, last_height=499, maya=halted, a=down,
                                    previous=start.upgrade))
    assert running.upgrade["current"]["step"] == "StopOld" and running.upgrade["lastHeight"] == 499
    after = r.plan_rollout(inputs(s=FLAG, target=NEW, last_height=520, maya=workload("mayanode", NEW),
                                  bif=workload("bifrost", NEW)))
    assert after.upgrade["lastHeight"] == 520                            # within the grace after the flag day
    long_after = r.plan_rollout(inputs(s=FLAG, target=NEW, last_height=500 + r.FLAG_DAY_GRACE_BLOCKS + 1,
                                       maya=workload("mayanode", NEW), bif=workload("bifrost", NEW)))
    assert long_after.upgrade["lastHeight"] is None


def test_a_flag_day_upgrade_is_not_called_off_by_a_stale_lower_height():
    previous = current("AcquireBudget", flagDayHeight=500)
    plan = r.plan_rollout(inputs(s=FLAG, target=OLD, previous=previous, budget=r.BudgetDecision("held")))
    assert plan.upgrade["current"]["step"] == "StopOld" and "UpgradeCancelled" not in [e.reason for e in plan.events]
    unscheduled = spec(version=OLD, upgrade={"heightSchedule": [{"height": 900, "version": NEW}]})
    dropped = r.plan_rollout(inputs(s=unscheduled, target=OLD, previous=previous, budget=r.BudgetDecision("held")))
    assert dropped.upgrade["current"] is None and [e.reason for e in dropped.events] == ["UpgradeCancelled"]


def _wire(s, *, observed, chain_height, halted, previous, maya, bif):
    """What the upgrade facet feeds the planner: the same three pure steps (see reconcile/facet_upgrade.py)."""
    prev_current = (previous or {}).get("current") or {}
    view = r.flag_day_view(s, observed, r.highest_height((previous or {}).get("lastHeight"), chain_height), halted,
                           in_flight=prev_current.get("flagDayHeight"))
    up_to_date = maya.image == img(view.target) and bif.image == img(view.target)
    return r.plan_rollout(inputs(
        s=s, target=view.target, flag_day_height=None if up_to_date else view.flag_day_height, previous=previous,
        maya=maya, bif=bif, a=api(reachable=False) if observed is None else api(height=observed),
        next_flag_day=(view.next_height, view.next_version) if view.next_height else None,
        last_height=view.known_height))


def test_a_halted_old_binary_and_a_stale_chain_height_start_the_flag_day_once_and_never_cancel_it():
    s = spec(version=OLD, upgrade={"heightSchedule": [{"height": 500, "version": NEW}]})
    previous = {"lastHeight": 499, "nextFlagDay": {"height": 500, "version": NEW}}
    halted = workload("mayanode", ready=False)
    events, steps = [], []
    for _ in range(30):
        plan = _wire(s, observed=None, chain_height=492, halted=True, previous=previous, maya=halted,
                     bif=workload("bifrost"))
        previous = plan.upgrade
        events += [e.reason for e in plan.events]
        steps.append((plan.upgrade.get("current") or {}).get("step"))
        assert plan.upgrade["lastHeight"] == 499                         # neither dropped nor creeping
    assert events.count("UpgradeStarted") == 1 and "UpgradeCancelled" not in events
    assert steps[-1] == "StopOld" and any(a.kind == "SetImage" for a in plan.actions)


@settings(max_examples=200)
@given(seen=st.lists(st.tuples(st.one_of(st.none(), st.integers(440, 499)), st.booleans()), min_size=1, max_size=40),
       chain=st.integers(400, 499))
def test_the_recorded_height_never_exceeds_a_height_seen_nor_moves_backwards(seen, chain):
    """Before the flag day (heights < 500 only): whatever the node API answers and whether mayanode is ready,
    status.upgrade.lastHeight is one of the heights seen, never lower than before, and no upgrade starts."""
    s = spec(version=OLD, upgrade={"heightSchedule": [{"height": 500, "version": NEW}]})
    previous: dict = {}
    highest = chain
    for observed, ready in seen:
        highest = max(highest, observed if observed is not None else highest)
        before = previous.get("lastHeight")
        plan = _wire(s, observed=observed, chain_height=chain, halted=not ready or observed is None,
                     previous=previous, maya=workload("mayanode", ready=ready), bif=workload("bifrost"))
        previous = plan.upgrade
        last = plan.upgrade.get("lastHeight")
        if last is not None:
            assert last <= highest and (before is None or last >= before)
        if highest < 499:
            assert plan.upgrade.get("current") is None


# ---- flag days and the rollout budget --------------------------------------------------------------
@pytest.mark.parametrize("step,maya,bif,a", [
    ("StopOld", workload("mayanode"), workload("bifrost"), api()),
    ("MayanodeHealth", workload("mayanode", NEW, ready=False), workload("bifrost"), api(reachable=False)),
    ("Bifrost", workload("mayanode", NEW), workload("bifrost"), api(querier=NEW)),
    ("BifrostHealth", workload("mayanode", NEW), workload("bifrost", NEW, ready=False), api(querier=NEW)),
    ("Rollback", workload("mayanode", NEW), workload("bifrost", NEW), api(querier=NEW)),
])
def test_a_flag_day_takes_no_rollout_slot(step, maya, bif, a):
    extra = {"reason": "CrashLoop", "message": "boom", "deadline": "2024-06-01T12:10:00Z"}
    previous = current(step, flagDayHeight=500, **(extra if step == "Rollback" else
                                                    {"deadline": "2024-06-01T12:10:00Z"}))
    held = r.BudgetDecision("held", new_state=r.BudgetState((r.Holder("ns/node", NEW, T, T),)))
    plan = r.plan_rollout(inputs(s=FLAG, previous=previous, budget=held, maya=maya, bif=bif, a=a))
    assert not {"RenewBudget", "AcquireBudget"} & {x.kind for x in plan.actions}
    ordinary = r.plan_rollout(inputs(previous=current(step, **(extra if step == "Rollback" else
                                                                {"deadline": "2024-06-01T12:10:00Z"})),
                                     budget=held, maya=maya, bif=bif, a=a))
    assert "RenewBudget" in {x.kind for x in ordinary.actions}          # an ordinary upgrade keeps renewing


def test_the_end_of_a_flag_day_drops_any_slot_without_judging_a_canary():
    both_new = dict(maya=workload("mayanode", NEW), bif=workload("bifrost", NEW), a=api(querier=NEW))
    plan = r.plan_rollout(inputs(s=FLAG, previous=current("SetVersion", flagDayHeight=500), announced_version=NEW,
                                 budget=r.BudgetDecision("held"), **both_new))
    assert plan.upgrade["history"][-1]["result"] == "Succeeded"
    assert [(x.kind, x.result) for x in plan.actions] == [("ReleaseBudget", None)]


# ---- Upgrade node actions: used up only by an upgrade that ended ----------------------------------
DONE_BEFORE = {"from": "1.110.0", "to": OLD, "startedAt": "a", "result": "Succeeded", "message": "earlier"}


@pytest.mark.parametrize("entry,expected", [
    (None, None),                                                         # called off before any change: pending
    ({"to": NEW, "startedAt": "b", "result": "Succeeded", "message": "ok", "requestId": "go"}, ("go", "Succeeded", "ok")),
    ({"to": NEW, "startedAt": "b", "result": "RolledBack", "message": "bad", "requestId": "go"}, ("go", "Failed", "bad")),
    ({"to": NEW, "startedAt": "b", "result": "Failed", "message": "bad", "requestId": "go"}, ("go", "Failed", "bad")),
    ({"to": NEW, "startedAt": "b", "result": "Succeeded", "message": "x", "requestId": "other"}, None),
])
def test_finished_request(entry, expected):
    previous = {"current": {"to": NEW, "step": "AcquireBudget", "requestId": "go"}, "history": [DONE_BEFORE]}
    upgrade = {"current": None, "history": [DONE_BEFORE, *([entry] if entry else [])]}
    assert r.finished_request(previous, upgrade) == expected
    assert r.finished_request(previous, {**upgrade, "current": previous["current"]}) is None     # still under way


def test_an_approved_upgrade_called_off_leaves_no_history():
    plan = r.plan_rollout(inputs(s=spec(upgrade={"strategy": "Manual"}), previous={
        **current("AcquireBudget", requestId="go"), "history": [DONE_BEFORE]},
        gates=[*PASS, GateOutcome.block("Sync", "CatchingUp", "x")]))
    assert plan.upgrade["current"] is None and plan.upgrade["history"] == [DONE_BEFORE]
    assert r.finished_request({**current("AcquireBudget", requestId="go"), "history": [DONE_BEFORE]},
                              plan.upgrade) is None
    assert r.pending_approval(spec(nodeActions=[{"id": "go", "action": "Upgrade"}]), plan.upgrade) == "go"


@pytest.mark.parametrize("height, status, halted, expected", [
    (None, {"upgrade": {"lastHeight": 499}, "chain": {"height": 493}}, True, NEW),     # the old binary halted at 500
    (None, {"chain": {"height": 493}}, False, OLD),                                    # only down, far from 500
    (None, {"upgrade": {"current": {"flagDayHeight": 500}}, "chain": {"height": 493}}, False, NEW),   # under way
    (480, {"upgrade": {"lastHeight": 499}}, False, OLD),     # 499 known, 500 not reached yet
    (501, {"chain": {"height": 493}}, False, NEW),
    (None, {}, False, OLD),
])
def test_the_status_target_is_the_upgrade_facets_target(height, status, halted, expected):
    from mayanode_operator.plan.upgrade_rollout import status_target_version

    assert status_target_version(FLAG, height, status, halted) == expected
