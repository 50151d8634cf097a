"""set-version across an operator restart: the checkpoint is on record, the send's answer is not.

Found by the crash sweep of the upgrade scenario (tests/crash/scenarios.py UPGRADE): an operator killed right after
writing the checkpoint (`versionAnnounced: true`) and before sending recorded the upgrade as Succeeded, "set-version
sent", though nothing was sent and the chain kept the old version. Now the checkpoint carries SET_VERSION_SENDING until
the answer replaces it; without an answer on record the chain decides: the version on chain → Succeeded; not within
SET_VERSION_CONFIRM_TIMEOUT of the checkpoint → sent again (as a pending IP announcement or mimir vote is).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mayanode_operator.api.mayanode import MayaNodeSpec
from mayanode_operator.observe.snapshot import ChainStatus, NetworkObservation, NodeApiObservation, PodObservation, \
    WorkloadObservation
from mayanode_operator.plan import upgrade_rollout as r

T = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
OLD, NEW = "1.111.0", "1.112.0"
WINDOW = r.SET_VERSION_CONFIRM_TIMEOUT


def img(version):
    return f"registry.gitlab.com/mayachain/mayanode:mainnet-{version}"


def workload(name, version=NEW):
    return WorkloadObservation(name=name, exists=True, desired_replicas=1, ready_replicas=1, updated_replicas=1,
                               image=img(version), generation=2, observed_generation=2,
                               pods=(PodObservation(f"{name}-0", "Running", True, 0, None, False, (img(version),)),))


ADDRESS = "maya1626qqv4w7fucnhfvgjldl6y8gsdz79xswww5at"


def plan(previous, *, now=T, announced=OLD, budget=None, node_address=None):
    """Both images on NEW and healthy: the SetVersion step."""
    doc = {"network": "mainnet", "version": NEW, **({"nodeAddress": node_address} if node_address else {})}
    return r.plan_rollout(r.RolloutInputs(
        spec=MayaNodeSpec.model_validate(doc), node="ns/node", now=now,
        mayanode=workload("mayanode"), bifrost=workload("bifrost"),
        api=NodeApiObservation(network=NetworkObservation(OLD, NEW, NEW), chain=ChainStatus(1000, False)),
        previous=previous, target=NEW, announced_version=announced, budget=budget))


def at_set_version(**kw):
    return {"current": {"from": OLD, "to": NEW, "step": "SetVersion", "startedAt": "2024-06-01T11:50:00Z",
                        "stepStartedAt": "2024-06-01T11:59:00Z",
                        "previousImages": {"mayanode": img(OLD), "bifrost": img(OLD)}, **kw}}


def checkpoint(at=T):
    """What is on record after the checkpoint write, when the answer never was."""
    return {"current": plan(at_set_version(), now=at).upgrade["current"]}


def kinds(p):
    return [a.kind for a in p.actions]


def test_the_checkpoint_says_it_is_being_sent_and_when():
    p = plan(at_set_version(), budget=r.BudgetDecision("held"))
    assert p.checkpoint and kinds(p) == ["SendSetVersion"]
    current = p.upgrade["current"]
    assert current["versionAnnounced"] is True and current["message"] == r.SET_VERSION_SENDING
    assert current["stepStartedAt"] == r.iso(T)


def test_an_answer_lost_before_the_record_is_not_taken_for_a_success():
    later = plan(checkpoint(), now=T + timedelta(seconds=5), budget=r.BudgetDecision("held"))
    assert "SendSetVersion" not in kinds(later) and not later.checkpoint
    assert later.upgrade["state"] == "InProgress" and later.upgrade["current"]["step"] == "SetVersion"
    assert not later.upgrade.get("history")
    upgrading = next(c for c in later.conditions if c.type == "Upgrading")
    assert upgrading.status == "True" and "waiting for the chain to record version 1.112.0" in upgrading.message
    assert 1.0 <= later.requeue_after <= r.SET_VERSION_CONFIRM_REQUEUE


def test_the_chain_showing_the_version_finishes_it_without_sending():
    done = plan(checkpoint(), now=T + timedelta(seconds=5), announced=NEW, budget=r.BudgetDecision("held"))
    assert kinds(done) == ["ReleaseBudget"] and not done.checkpoint
    assert done.upgrade["history"][-1]["result"] == "Succeeded"


def test_not_on_chain_after_the_window_it_is_sent_again_once():
    again = plan(checkpoint(), now=T + WINDOW, budget=r.BudgetDecision("held"))
    assert kinds(again) == ["SendSetVersion"] and again.checkpoint
    assert again.upgrade["current"]["stepStartedAt"] == r.iso(T + WINDOW)      # a new window for the new send
    still = plan({"current": again.upgrade["current"]}, now=T + WINDOW + timedelta(minutes=1))
    assert "SendSetVersion" not in kinds(still)


def test_not_sent_again_while_the_chains_record_cannot_be_read():
    """The window is over but the node account (the chain's record of this node's version) cannot be read: whether
    the first send reached the chain is unknown, so nothing is sent; a condition says why; the step stays."""
    for address, why in ((None, "spec.nodeAddress is not set"), (ADDRESS, "the node account could not be read")):
        p = plan(checkpoint(), now=T + 2 * WINDOW, announced=None, node_address=address,
                 budget=r.BudgetDecision("held", new_state=r.BudgetState()))
        assert "SendSetVersion" not in kinds(p) and not p.checkpoint
        assert p.upgrade["state"] == "InProgress" and p.upgrade["current"]["step"] == "SetVersion"
        assert p.upgrade["current"]["message"] == r.SET_VERSION_SENDING      # still unknown: the marker stays
        assert not p.upgrade.get("history")
        blocked = next(c for c in p.conditions if c.type == "UpgradeBlocked")
        assert (blocked.status, blocked.reason) == ("True", "SetVersionUnconfirmed") and why in blocked.message
        assert kinds(p) == ["RenewBudget"] and p.requeue_after == r.SET_VERSION_CONFIRM_REQUEUE
        readable = plan({"current": p.upgrade["current"]}, now=T + 2 * WINDOW, announced=OLD, node_address=address)
        assert kinds(readable) == ["SendSetVersion"]                            # readable, not on chain: sent
        shown = plan({"current": p.upgrade["current"]}, now=T + 2 * WINDOW, announced=NEW, node_address=address)
        assert "SendSetVersion" not in kinds(shown) and shown.upgrade["history"][-1]["result"] == "Succeeded"


def test_an_answer_on_record_is_never_sent_again():
    for answer in ("set-version sent (txhash ABC)", "set-version answer: insufficient funds"):
        recorded = {"current": {**checkpoint()["current"], "message": answer}}
        done = plan(recorded, now=T + 2 * WINDOW)
        assert "SendSetVersion" not in kinds(done) and done.upgrade["history"][-1]["result"] == "Succeeded"
        assert answer in done.upgrade["history"][-1]["message"]


def test_no_time_on_record_starts_the_wait_now():
    previous = {"current": {**checkpoint()["current"], "stepStartedAt": None}}
    p = plan(previous, now=T + 2 * WINDOW)
    assert "SendSetVersion" not in kinds(p) and p.upgrade["current"]["stepStartedAt"] == r.iso(T + 2 * WINDOW)


@settings(max_examples=200)
@example(minutes=10, announced=None, message=r.SET_VERSION_SENDING, announced_flag=True, started=r.iso(T))
@given(minutes=st.integers(-10, 20), announced=st.sampled_from([None, OLD, NEW]),
       message=st.sampled_from([None, r.SET_VERSION_SENDING, "set-version sent (txhash A)", "x"]),
       announced_flag=st.sampled_from([None, False, True]),
       started=st.one_of(st.none(), st.integers(-10, 10).map(lambda m: r.iso(T + timedelta(minutes=m)))))
def test_sent_again_only_when_the_answer_is_unknown_and_the_chain_did_not_show_it_in_time(
        minutes, announced, message, announced_flag, started):
    previous = at_set_version(versionAnnounced=announced_flag, message=message, stepStartedAt=started)
    now = T + timedelta(minutes=minutes)
    p = plan(previous, now=now, announced=announced)
    if "SendSetVersion" not in kinds(p):
        return
    assert announced != NEW                                    # never when the chain records it
    assert p.checkpoint and p.upgrade["current"]["message"] == r.SET_VERSION_SENDING
    if announced_flag:                                         # on record as sent: only an unknown answer, expired,
        assert message == r.SET_VERSION_SENDING                # and the chain's record read and without it
        assert started is not None and now - r.parse_time(started) >= WINDOW
        assert announced is not None
