"""The upgrade facet on fakes: what it writes, in which order, and what it does when a write fails."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from mayanode_operator.adapters.leases import LeaseConflict, LeaseRead
from mayanode_operator.adapters.workloads import UnsafeWorkloadChange
from mayanode_operator.api.mayanode import MayaNodeSpec
from mayanode_operator.config import OperatorConfig
from mayanode_operator.observe.snapshot import (
    ChainStatus,
    MayaNodeObservation,
    NetworkObservation,
    NodeAccount,
    NodeApiObservation,
    PodObservation,
    WorkloadObservation,
)
from mayanode_operator.plan import upgrade_rollout as r
from mayanode_operator.plan.transactions import TxOutcome
from mayanode_operator.reconcile.facet_order import FACETS
from mayanode_operator.reconcile.facets import NodeContext
from mayanode_operator.reconcile.facet_upgrade import UpgradeFacet, rollout_group  # isort: skip

T = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
OLD, NEW = "1.111.0", "1.112.0"


def img(v):
    return f"registry.gitlab.com/mayachain/mayanode:mainnet-{v}"


def wl(name, version):
    return WorkloadObservation(name, True, 1, 1, 1, img(version), (PodObservation(f"{name}-0", "Running", True, 0,
                                                                                  images=(img(version),)),), 2, 2)


class FakeKube:
    def __init__(self, objects=None, fleet=()):
        self.objects = dict(objects or {})
        self.created: list[dict] = []
        self.fleet = list(fleet)
        self.custom = SimpleNamespace(create_namespaced_custom_object=self._create,
                                      list_cluster_custom_object=self._list_cluster)
        self.api_client = None

    async def get_custom(self, plural, namespace, name):
        return self.objects.get((plural, name))

    async def list_custom(self, plural, namespace):
        return [b for b in self.fleet if b["metadata"]["namespace"] == namespace]

    def _create(self, group, version, namespace, plural, body, **_):
        self.created.append(body)
        self.objects[(plural, body["metadata"]["name"])] = body
        return SimpleNamespace(data=b"{}")

    def _list_cluster(self, group, version, plural, **_):
        return SimpleNamespace(data=json.dumps({"items": self.fleet}).encode())


class FakeLeases:
    def __init__(self, state=r.BudgetState(), conflict=False):
        self.state, self.rv, self.conflict, self.writes = state, "1", conflict, []

    async def read(self, group):
        return LeaseRead(self.state, self.rv)

    async def write(self, group, state, rv, now):
        if self.conflict:
            raise LeaseConflict("x")
        self.writes.append(state)
        self.state = state

    async def update(self, group, change, now):
        self.state = change(self.state)
        self.writes.append(self.state)
        return self.state


class FakeWorkloads:
    def __init__(self, journal, unsafe=False):
        self.journal, self.unsafe = journal, unsafe

    async def set_image(self, namespace, deployment, container, image):
        if self.unsafe:
            raise UnsafeWorkloadChange("deployment mayanode uses strategy RollingUpdate")
        self.journal.append(("set_image", deployment, image))


class FakeTransactions:
    def __init__(self, journal, outcome):
        self.journal, self.outcome = journal, outcome

    async def send(self, signer, request):
        self.journal.append(("send", request.subcommand))
        return self.outcome


def make(spec_doc=None, upgrade_status=None, *, maya=OLD, bif=OLD, kube=None, leases=None, unsafe=False,
         outcome=TxOutcome("ok", 0, "ABC", "", "accepted"), labels=None, node_actions=None, announced=None):
    journal: list[Any] = []
    spec = MayaNodeSpec.model_validate({"network": "mainnet", "version": NEW,
                                        "upgrade": {"gates": {"adoption": {"mode": "None"}}}, **(spec_doc or {})})
    api = NodeApiObservation(network=NetworkObservation(OLD, NEW, maya), chain=ChainStatus(1000, False),
                             account=NodeAccount("maya1x", "Standby", "1", 0, announced or OLD, "", "") )
    runtime = SimpleNamespace(config=OperatorConfig(), kube=kube or FakeKube(), http=None, now=lambda: T)

    async def persist(part):
        journal.append(("persist", json.loads(json.dumps(part))))

    body = {"metadata": {"name": "node", "namespace": "ns", "generation": 1, "labels": labels or {}},
            "spec": spec.model_dump(by_alias=True, exclude_none=True)}
    status = {"upgrade": upgrade_status} if upgrade_status else {}
    ctx = NodeContext(runtime=runtime, body=body, spec=spec, namespace="ns", name="node", now=T,
                      observed=MayaNodeObservation(wl("mayanode", maya), wl("bifrost", bif), api),
                      previous_status=status, status={**status, "nodeActions": node_actions or []}, persist=persist)
    facet = UpgradeFacet(transactions=lambda rt: FakeTransactions(journal, outcome),
                         leases=lambda rt: leases or FakeLeases(),
                         workloads=lambda rt: FakeWorkloads(journal, unsafe))
    return facet, ctx, journal


def current(step, **kw):
    return {"state": "InProgress", "current": {"from": OLD, "to": NEW, "step": step, "startedAt": "2024-06-01T11:00:00Z",
                                               "previousImages": {"mayanode": img(OLD), "bifrost": img(OLD)}, **kw}}


def test_the_facet_runs_last():
    assert FACETS[-1].name == "Upgrade"


async def test_set_version_is_on_record_before_it_is_sent():
    facet, ctx, journal = make(upgrade_status=current("SetVersion"), maya=NEW, bif=NEW)
    outcome = await facet.reconcile(ctx)
    assert [j[0] for j in journal] == ["persist", "send"]
    assert journal[0][1]["upgrade"]["current"]["versionAnnounced"] is True
    assert outcome.status["upgrade"]["current"]["message"].startswith("set-version sent")
    assert [e.reason for e in outcome.events] == ["VersionAnnounced"]


async def test_set_version_not_broadcast_is_cleared_for_another_try():
    facet, ctx, journal = make(upgrade_status=current("SetVersion"), maya=NEW, bif=NEW,
                               outcome=TxOutcome("transient", None, None, "", "not sent: no ready pod"))
    outcome = await facet.reconcile(ctx)
    assert [j[0] for j in journal] == ["persist", "send", "persist"]
    assert "versionAnnounced" not in journal[-1][1]["upgrade"]["current"]
    assert "versionAnnounced" not in outcome.status["upgrade"]["current"]


async def test_an_image_patch_goes_through_the_workloads_adapter():
    facet, ctx, journal = make(upgrade_status=current("Mayanode"))
    outcome = await facet.reconcile(ctx)
    assert journal == [("set_image", "mayanode", img(NEW))]
    assert outcome.status["upgrade"]["current"]["step"] == "Mayanode"


async def test_an_unsafe_deployment_is_refused_and_reported():
    facet, ctx, journal = make(upgrade_status=current("Mayanode"), unsafe=True)
    outcome = await facet.reconcile(ctx)
    blocked = next(c for c in outcome.conditions if c.type == "UpgradeBlocked")
    assert blocked.status == "True" and blocked.reason == "UnsafeWorkloadChange"
    assert [e.reason for e in outcome.events] == ["UpgradeRefused"]


async def test_budget_acquired_through_the_lease_and_a_conflict_retries_soon():
    leases = FakeLeases()
    facet, ctx, _ = make({"upgrade": {"gates": {"adoption": {"mode": "None"}}, "rollout": {"group": "g"}}},
                         upgrade_status=current("AcquireBudget"), leases=leases)
    outcome = await facet.reconcile(ctx)
    assert leases.state.holder("ns/node") is not None
    assert outcome.status["upgrade"]["current"]["step"] == "AcquireBudget"
    again = await facet.reconcile(ctx)        # next pass: it holds the slot
    assert again.status["upgrade"]["current"]["step"] == "Mayanode"

    busy = FakeLeases(conflict=True)
    facet, ctx, _ = make({"upgrade": {"gates": {"adoption": {"mode": "None"}}, "rollout": {"group": "g"}}},
                         upgrade_status=current("AcquireBudget"), leases=busy)
    outcome = await facet.reconcile(ctx)
    assert outcome.requeue_after == 0.2 and outcome.status["upgrade"]["current"]["step"] == "AcquireBudget"


async def test_finishing_releases_the_slot():
    leases = FakeLeases(r.BudgetState((r.Holder("ns/node", NEW, T, T),)))
    facet, ctx, _ = make({"upgrade": {"gates": {"adoption": {"mode": "None"}}, "rollout": {"group": "g"}}},
                         upgrade_status=current("SetVersion", versionAnnounced=True), maya=NEW, bif=NEW, leases=leases)
    outcome = await facet.reconcile(ctx)
    assert outcome.status["upgrade"]["state"] == "Idle" and leases.state.holders == ()


async def test_pre_upgrade_backup_is_created_once_with_reason_pre_upgrade():
    kube = FakeKube()
    doc = {"backup": {"location": {"secret": {}, "encryption": {"recipients": [
        "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]}}},
        "upgrade": {"gates": {"adoption": {"mode": "None"}, "preUpgradeBackup": True}}}
    facet, ctx, _ = make(doc, kube=kube)
    started = await facet.reconcile(ctx)
    assert started.status["upgrade"]["current"]["step"] == "PreUpgradeBackup"
    facet, ctx, _ = make(doc, upgrade_status=started.status["upgrade"], kube=kube)
    waiting = await facet.reconcile(ctx)
    assert [b["spec"]["reason"] for b in kube.created] == ["PreUpgrade"]
    assert waiting.status["upgrade"]["gate"]["name"] == "PreUpgradeBackup"
    name = kube.created[0]["metadata"]["name"]
    kube.objects[("nodebackups", name)]["status"] = {"phase": "Completed"}
    facet, ctx, _ = make(doc, upgrade_status=waiting.status["upgrade"], kube=kube)
    done = await facet.reconcile(ctx)
    assert done.status["upgrade"]["current"]["step"] == "AcquireBudget" and len(kube.created) == 1


async def test_an_upgrade_request_with_nothing_to_do_is_recorded_skipped():
    facet, ctx, _ = make({"nodeActions": [{"id": "up-1", "action": "Upgrade"}]}, maya=NEW, bif=NEW,
                         node_actions=[{"id": "other", "action": "PauseChain", "state": "Succeeded", "at": "x"}])
    outcome = await facet.reconcile(ctx)
    records = {rec["id"]: rec for rec in outcome.status["nodeActions"]}
    assert records["up-1"]["state"] == "Skipped" and "other" in records


async def test_observe_only_writes_nothing():
    facet, ctx, journal = make()
    ctx = ctx.__class__(**{**ctx.__dict__, "spec": MayaNodeSpec.model_validate({"network": "mainnet"})})
    outcome = await facet.reconcile(ctx)
    assert outcome.status == {} and outcome.conditions == [] and journal == []


@pytest.mark.parametrize("body,group", [
    ({"spec": {"upgrade": {"rollout": {"group": "a"}}}}, "a"),
    ({"metadata": {"labels": {"maya.nodeops.io/rollout-group": "b"}}, "spec": {}}, "b"),
    ({"metadata": {"labels": {"maya.nodeops.io/rollout-group": "b"}}, "spec": {"upgrade": {"rollout": {"group": "a"}}}},
     "a"),
    ({"spec": {}}, None),
])
def test_rollout_group(body, group):
    assert rollout_group(body) == group


HISTORY = [{"from": "1.110.0", "to": OLD, "startedAt": "2024-05-01T00:00:00Z", "finishedAt": "2024-05-01T00:10:00Z",
            "result": "Succeeded", "message": f"mayanode and bifrost run {OLD}", "image": img(OLD)}]
MANUAL = {"upgrade": {"strategy": "Manual", "gates": {"adoption": {"mode": "None"}}},
          "nodeActions": [{"id": "approve-112", "action": "Upgrade"}]}


def catching_up(ctx):
    api = dataclasses.replace(ctx.observed.api, chain=ChainStatus(1000, True))
    return dataclasses.replace(ctx, observed=dataclasses.replace(ctx.observed, api=api))


async def test_an_approved_upgrade_called_off_before_any_change_keeps_its_approval():
    """The sync gate closes while the approved upgrade waits for a slot: called off, and the approval is neither
    recorded (least of all as the previous upgrade's Succeeded) nor used up; the upgrade starts again with it."""
    facet, ctx, journal = make(MANUAL, {**current("AcquireBudget", requestId="approve-112"), "history": HISTORY})
    outcome = await facet.reconcile(catching_up(ctx))
    assert [e.reason for e in outcome.events] == ["UpgradeCancelled"] and journal == []
    assert "approve-112" not in {rec["id"] for rec in outcome.status.get("nodeActions") or []}
    facet, ctx, _ = make(MANUAL, outcome.status["upgrade"], node_actions=outcome.status.get("nodeActions"))
    again = await facet.reconcile(ctx)
    assert again.status["upgrade"]["current"]["requestId"] == "approve-112"
    assert [e.reason for e in again.events] == ["UpgradeStarted"]


async def test_an_approved_upgrade_is_recorded_with_its_own_result_when_it_ends():
    facet, ctx, _ = make(MANUAL, {**current("SetVersion", requestId="approve-112", versionAnnounced=True),
                                  "history": HISTORY}, maya=NEW, bif=NEW)
    outcome = await facet.reconcile(ctx)
    record = next(rec for rec in outcome.status["nodeActions"] if rec["id"] == "approve-112")
    assert record["state"] == "Succeeded" and NEW in record["message"]


async def test_upgrade_records_keep_the_other_records_when_the_node_actions_facet_wrote_none():
    """The NodeActions facet failed in this pass (its key is missing from the new status): the list the upgrade
    facet writes starts from the stored one, and a request stored as done is not taken for a pending approval."""
    stored = [{"id": "pause-1", "action": "PauseChain", "state": "Succeeded", "at": "2024-06-01T11:00:00Z"},
              {"id": "old-up", "action": "Upgrade", "state": "Skipped", "at": "2024-06-01T10:00:00Z"}]
    facet, ctx, _ = make(MANUAL, {**current("SetVersion", requestId="approve-112", versionAnnounced=True),
                                  "history": HISTORY}, maya=NEW, bif=NEW)
    ctx = dataclasses.replace(ctx, previous_status={**ctx.previous_status, "nodeActions": stored},
                              status={k: v for k, v in ctx.status.items() if k != "nodeActions"})
    outcome = await facet.reconcile(ctx)
    assert [rec["id"] for rec in outcome.status["nodeActions"]] == ["pause-1", "old-up", "approve-112"]

    spec = {**MANUAL, "version": "1.113.0", "nodeActions": [{"id": "old-up", "action": "Upgrade"}]}
    facet, ctx, journal = make(spec, {"history": HISTORY})
    ctx = dataclasses.replace(ctx, previous_status={**ctx.previous_status, "nodeActions": stored},
                              status={k: v for k, v in ctx.status.items() if k != "nodeActions"})
    waiting = await facet.reconcile(ctx)
    assert waiting.status["upgrade"]["gate"]["reason"] == "WaitingForApproval" and journal == []
