"""The upgrade facet at a flag day, pass after pass on fakes: the old binary halts having committed H-1 and its API
stops answering while status.chain.height is up to a minute old; and the rollout group's Lease after a flag day."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from mayanode_operator.api.mayanode import MayaNodeSpec
from mayanode_operator.config import OperatorConfig
from mayanode_operator.observe.snapshot import (
    ChainStatus,
    EndpointError,
    MayaNodeObservation,
    NetworkObservation,
    NodeAccount,
    NodeApiObservation,
    PodObservation,
    WorkloadObservation,
)
from mayanode_operator.plan import upgrade_rollout as r
from mayanode_operator.plan.transactions import TxOutcome
from mayanode_operator.reconcile.facet_upgrade import UpgradeFacet
from mayanode_operator.reconcile.facets import NodeContext

from .test_facet_upgrade import NEW, OLD, T, FakeKube, FakeLeases, FakeTransactions, FakeWorkloads, img, wl

FLAG_AT = 500
SPEC = {"network": "mainnet", "version": OLD, "upgrade": {"heightSchedule": [{"height": FLAG_AT, "version": NEW}],
                                                          "gates": {"adoption": {"mode": "None"}}}}


class Node:
    """One MayaNode and its Deployments as the fakes show them; `pass_` runs the facet once and keeps its status."""

    def __init__(self, upgrade, chain_height, *, spec=SPEC, leases=None, labels=None, name="node"):
        self.upgrade, self.chain_height, self.spec_doc = upgrade, chain_height, spec
        self.leases, self.labels, self.name = leases or FakeLeases(), labels or {}, name
        self.maya = self.bif = OLD
        self.now, self.journal, self.events = T, [], []

    def context(self, *, height, maya_ready, announced=OLD):
        spec = MayaNodeSpec.model_validate(self.spec_doc)
        if height is None:
            api = NodeApiObservation(errors=(EndpointError("version", "Unreachable", "down"),
                                             EndpointError("status", "Unreachable", "down")))
        else:
            api = NodeApiObservation(network=NetworkObservation(OLD, OLD, self.maya), chain=ChainStatus(height, False),
                                     account=NodeAccount("maya1x", "Standby", "1", 0, announced, "", ""))
        mayanode = WorkloadObservation("mayanode", True, 1, 1 if maya_ready else 0, 1, img(self.maya),
                                       (PodObservation("mayanode-0", "Running", maya_ready, 0,
                                                       images=(img(self.maya),)),), 2, 2)
        runtime = SimpleNamespace(config=OperatorConfig(), kube=FakeKube(), http=None, now=lambda: self.now,
                                  queue=SimpleNamespace(add=lambda *a, **k: None))
        body = {"metadata": {"name": self.name, "namespace": "ns", "generation": 1, "labels": self.labels},
                "spec": spec.model_dump(by_alias=True, exclude_none=True)}
        previous = {"upgrade": self.upgrade} if self.upgrade else {}

        async def persist(part):
            self.journal.append(("persist", part))

        ctx = NodeContext(runtime=runtime, body=body, spec=spec, namespace="ns", name=self.name, now=self.now,
                          observed=MayaNodeObservation(mayanode, wl("bifrost", self.bif), api),
                          previous_status=previous,
                          status={**previous, "chain": {"height": self.chain_height}, "nodeActions": []},
                          persist=persist)
        facet = UpgradeFacet(transactions=lambda rt: FakeTransactions(self.journal, TxOutcome("ok", 0, "A", "", "ok")),
                             leases=lambda rt: self.leases, workloads=lambda rt: FakeWorkloads(self.journal))
        return facet, ctx

    async def pass_(self, **observed):
        facet, ctx = self.context(**observed)
        outcome = await facet.reconcile(ctx)
        self.upgrade = outcome.status["upgrade"]
        self.events += [e.reason for e in outcome.events]
        for entry in self.journal:
            if entry[0] == "set_image":
                self.maya = entry[2].rsplit("-", 1)[1] if entry[1] == "mayanode" else self.maya
                self.bif = entry[2].rsplit("-", 1)[1] if entry[1] == "bifrost" else self.bif
        self.now += timedelta(seconds=outcome.requeue_after or 1)
        return outcome

    def patches(self):
        return [j for j in self.journal if j[0] == "set_image"]


async def test_the_old_binary_halted_and_a_stale_chain_height_the_upgrade_starts_once_and_changes_the_image():
    """status.upgrade.lastHeight is H-1, status.chain.height H-8 (refreshed 40 s ago), the API is gone."""
    node = Node({"lastHeight": FLAG_AT - 1, "nextFlagDay": {"height": FLAG_AT, "version": NEW}}, FLAG_AT - 8)
    for _ in range(10):
        outcome = await node.pass_(height=None, maya_ready=False)
        assert node.upgrade["lastHeight"] == FLAG_AT - 1                      # kept, and not creeping
    assert node.events.count("UpgradeStarted") == 1 and "UpgradeCancelled" not in node.events
    assert node.patches() == [("set_image", "mayanode", img(NEW))]
    assert node.upgrade["current"]["flagDayHeight"] == FLAG_AT
    upgrading = next(c for c in outcome.conditions if c.type == "Upgrading")
    assert upgrading.status == "True"


async def test_a_mayanode_pod_not_ready_near_a_flag_day_does_not_make_the_height_creep():
    """40 blocks before the flag day the pod is not ready for 45 s while the API answers 460: nothing starts."""
    node = Node({"lastHeight": 460, "nextFlagDay": {"height": FLAG_AT, "version": NEW}}, 460)
    for _ in range(45):
        await node.pass_(height=460, maya_ready=False)
        assert node.upgrade["lastHeight"] == 460
    assert node.events == [] and node.patches() == [] and node.upgrade.get("current") is None


async def test_a_flag_day_leaves_no_slot_in_the_lease_and_the_next_upgrade_waits_for_its_turn():
    group = {"maya.nodeops.io/rollout-group": "fleet"}
    leases = FakeLeases()
    node = Node({"lastHeight": FLAG_AT - 1}, FLAG_AT - 8, leases=leases, labels=group)
    await node.pass_(height=None, maya_ready=False)                       # started: AcquireBudget
    await node.pass_(height=None, maya_ready=False)                       # StopOld
    await node.pass_(height=None, maya_ready=False)                       # image patched
    assert node.maya == NEW and node.upgrade["current"]["step"] in ("StopOld", "MayanodeHealth")
    for _ in range(12):                                                   # the new binary is up; bifrost; set-version
        await node.pass_(height=FLAG_AT + 2, maya_ready=True, announced=NEW if node.bif == NEW else OLD)
        assert leases.state.holder("ns/node") is None                     # never took a slot
        if node.upgrade.get("current") is None:
            break
    assert node.upgrade["history"][-1]["result"] == "Succeeded" and node.bif == NEW
    assert leases.state.holders == ()

    later = T + timedelta(days=3)                                         # another node upgrades to 1.113.0 now
    leases.state = r.BudgetState((r.Holder("ns2/node2", "1.113.0", later, later),))
    spec = {"network": "mainnet", "version": "1.113.0", "upgrade": {
        "gates": {"adoption": {"mode": "None"}}, "rollout": {"group": "fleet", "maxConcurrent": 1, "canary": False}}}
    waiting = {"from": NEW, "to": "1.113.0", "step": "AcquireBudget", "startedAt": r.iso(later),
               "previousImages": {"mayanode": img(NEW), "bifrost": img(NEW)}}   # started, waiting for a slot
    nxt = Node({**node.upgrade, "current": waiting}, FLAG_AT + 100, spec=spec, leases=leases, labels=group)
    nxt.maya = nxt.bif = NEW
    nxt.now = later
    await nxt.pass_(height=FLAG_AT + 100, maya_ready=True, announced=NEW)
    assert nxt.upgrade["current"]["step"] == "AcquireBudget" and nxt.upgrade["gate"]["reason"] == "BudgetExhausted"
    assert nxt.patches() == []


async def test_a_slot_left_by_an_earlier_flag_day_is_dropped_when_the_flag_day_ends():
    """A Lease written by an operator before this fix: the flag day's node is still listed as a holder."""
    leases = FakeLeases(r.BudgetState((r.Holder("ns/node", NEW, T, T),)))
    node = Node({"lastHeight": FLAG_AT + 1, "current": {"from": OLD, "to": NEW, "step": "SetVersion",
                                                        "startedAt": r.iso(T), "flagDayHeight": FLAG_AT,
                                                        "previousImages": {"mayanode": img(OLD),
                                                                           "bifrost": img(OLD)}}},
                FLAG_AT + 1, leases=leases, labels={"maya.nodeops.io/rollout-group": "fleet"})
    node.maya = node.bif = NEW
    await node.pass_(height=FLAG_AT + 2, maya_ready=True, announced=NEW)
    assert node.upgrade["history"][-1]["result"] == "Succeeded" and leases.state.holders == ()
