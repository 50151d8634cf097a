"""The externalIP, mimir and nodeActions facets with fakes: what they write, in which order, and what they never leak."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any


from mayanode_operator.adapters.exec import ExecResult
from mayanode_operator.adapters.transactions import NodeTransactions, TransactionSender
from mayanode_operator.api.mayanode import MayaNodeSpec
from mayanode_operator.config import OperatorConfig
from mayanode_operator.observe.gateway import ANNOTATION_RECORDED, ANNOTATION_RESTART, ANNOTATION_WRITTEN_AT
from mayanode_operator.observe.kube import WorkloadObjects
from mayanode_operator.observe.snapshot import MayaNodeObservation
from mayanode_operator.plan.transactions import TxRequest, tx_command
from mayanode_operator.reconcile import facet_mimir
from mayanode_operator.reconcile.facet_external_ip import ExternalIPFacet
from mayanode_operator.reconcile.facet_mimir import MimirFacet
from mayanode_operator.reconcile.facet_node_actions import NodeActionsFacet
from mayanode_operator.reconcile.facet_order import FACETS
from mayanode_operator.reconcile.facets import NodeContext
from mayanode_operator.reconcile.status_writer import StatusWriter, apply_merge_patch
from mayanode_operator.sandbox.kubelet.commands import parse_mayanode_args

from mayanode_operator.sandbox.identity import NodeIdentity

from ..unit.test_mayanode_status import ACCOUNT, HEALTHY

NOW = datetime(2026, 11, 21, 10, 0, 0, tzinfo=timezone.utc)
NS = "node-a"
PASSWORD = "p4ss-w0rd in a sentence"
MNEMONIC = "abandon ability able about above absent absorb abstract absurd abuse access accident"
LB_IP = "198.51.100.20"
ADDRESS = NodeIdentity.from_seed("facets-node", network="mocknet").node_address


def deployment(name: str, env: list[dict], strategy: str = "Recreate") -> dict:
    return {"metadata": {"name": name, "annotations": {}},
            "spec": {"replicas": 1, "strategy": {"type": strategy},
                     "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                     "template": {"spec": {"containers": [{"name": name, "env": env}]}}}}


def cm_env(cm: str) -> list[dict]:
    return [{"name": "EXTERNAL_IP", "valueFrom": {"configMapKeyRef": {"name": cm, "key": "externalIP"}}},
            {"name": "SIGNER_PASSWD", "valueFrom": {"secretKeyRef": {"name": "mayanode-password", "key": "password"}}}]


def pod(name: str, created: str = "2026-11-21T09:00:00Z") -> dict:
    return {"metadata": {"name": f"{name}-abc", "creationTimestamp": created},
            "status": {"phase": "Running", "containerStatuses": [{"name": name, "ready": True}]}}


class Journal(list):
    """The order of everything the fakes saw."""


class FakeApps:
    def __init__(self, kube: "FakeKube") -> None:
        self.kube = kube

    def patch_namespaced_deployment(self, name, namespace, body, **kwargs):
        self.kube.journal.append(("patch-deployment", name, json.dumps(body, sort_keys=True)))
        dep = self.kube.deployments[name]
        if "metadata" in body:
            dep["metadata"]["annotations"].update(body["metadata"]["annotations"])
        return None


class FakeKube:
    def __init__(self, journal: Journal, *, ingress: dict | None = None, cm_value: str = "",
                 secret: bool = True, bifrost_strategy: str = "Recreate") -> None:
        self.journal = journal
        self.service = {"spec": {"type": "LoadBalancer"},
                        "status": {"loadBalancer": {"ingress": [ingress]} if ingress else {}}}
        self.configmaps = {n: {"metadata": {"name": n}, "data": {"externalIP": cm_value}}
                           for n in ("gateway-external-ip", "mayanode-external-ip", "bifrost-external-ip")}
        self.deployments = {"mayanode": deployment("mayanode", cm_env("mayanode-external-ip")),
                            "bifrost": deployment("bifrost", cm_env("bifrost-external-ip"), bifrost_strategy)}
        self.secret = secret
        self.apps = FakeApps(self)

    async def get_service(self, namespace, name):
        return self.service if name == "gateway" else None

    async def get_configmap(self, namespace, name):
        return self.configmaps.get(name)

    async def create_configmap(self, namespace, body):
        self.journal.append(("create-configmap", body["metadata"]["name"], body["data"]["externalIP"]))
        self.configmaps[body["metadata"]["name"]] = body

    async def patch_configmap(self, namespace, name, patch):
        self.journal.append(("patch-configmap", name, patch["data"]["externalIP"],
                             patch["metadata"]["annotations"][ANNOTATION_WRITTEN_AT]))
        self.configmaps[name] = apply_merge_patch(self.configmaps[name], patch)

    async def get_deployment(self, namespace, name):
        return self.deployments.get(name)

    async def list_pods(self, namespace, labels):
        return [pod(labels["app.kubernetes.io/name"])]

    async def read_secret(self, namespace, name):
        self.journal.append(("read-secret", name))
        if not self.secret:
            return None
        return {"password": PASSWORD.encode(), "mnemonic": MNEMONIC.encode()}


class FakeExec:
    def __init__(self, journal: Journal, answers: list[dict] | None = None) -> None:
        self.journal = journal
        self.answers = answers or []
        self.calls: list[tuple[list[str], bytes | None]] = []

    async def run(self, namespace, pod_name, container, command, stdin=None, timeout=120.0):
        self.calls.append((list(command), stdin))
        self.journal.append(("exec", " ".join(command[3:5])))
        answer = self.answers.pop(0) if self.answers else {"code": 0, "txhash": f"HASH{len(self.calls)}",
                                                            "raw_log": "[]", "height": "0"}
        return ExecResult(0 if answer["code"] == 0 else 1, json.dumps(answer).encode(), b"")


class FakeRuntime:
    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.http = None
        self.votes_looks: dict = {}
        self.config = OperatorConfig()

    def now(self) -> datetime:
        return NOW


def make_ctx(kube: FakeKube, journal: Journal, *, spec: dict[str, Any], previous: dict | None = None,
             observed: MayaNodeObservation = HEALTHY, status: dict | None = None,
             runtime: FakeRuntime | None = None, now: datetime = NOW) -> NodeContext:
    body_spec = {"network": "mocknet", "nodeAddress": ADDRESS, **spec}

    async def persist(part):
        journal.append(("persist", json.dumps(part, sort_keys=True)))

    return NodeContext(runtime=runtime or FakeRuntime(kube),
                       body={"metadata": {"name": NS, "namespace": NS, "generation": 2}},
                       spec=MayaNodeSpec.model_validate(body_spec), namespace=NS, name=NS, now=now,
                       observed=observed, previous_status=previous or {}, status=status or {"network": {}},
                       persist=persist)


def transactions(exec_: FakeExec):
    return lambda runtime: NodeTransactions(runtime.kube, TransactionSender(exec_, retry_delays=(0, 0)))


def registered(ip: str) -> MayaNodeObservation:
    return replace(HEALTHY, api=replace(HEALTHY.api, account=replace(ACCOUNT, ip_address=ip)))


def no_secret_in(*things: Any) -> None:
    text = json.dumps(things, default=str)
    assert PASSWORD not in text and MNEMONIC not in text


# --- externalIP --------------------------------------------------------------------------------------------
async def test_a_new_address_goes_to_the_configmaps_then_on_record_then_on_chain_then_the_pods(caplog):
    caplog.set_level(logging.DEBUG)
    journal = Journal()
    kube, exec_ = FakeKube(journal, ingress={"ip": LB_IP}), FakeExec(journal)
    facet = ExternalIPFacet(transactions=transactions(exec_))
    outcome = await facet.reconcile(make_ctx(kube, journal, spec={"externalIP": {"announce": True}},
                                             observed=registered("")))

    kinds = [entry[0] for entry in journal]
    assert kinds[:3] == ["patch-configmap"] * 3
    assert kinds.index("persist") < kinds.index("exec") < kinds.index("patch-deployment")
    persisted = json.loads(next(e[1] for e in journal if e[0] == "persist"))
    assert persisted["externalIP"]["pending"]["address"] == LB_IP and "txhash" not in persisted["externalIP"]["pending"]
    (command, stdin), = exec_.calls
    assert command == tx_command(TxRequest("set-ip-address", (LB_IP,)), "mayachain", "mayachain-mocknet")
    assert stdin == (PASSWORD + "\n").encode()
    restarts = [json.loads(e[2]) for e in journal if e[0] == "patch-deployment"]
    assert len(restarts) == 2
    for patch in restarts:
        assert patch["spec"]["template"]["metadata"]["annotations"] == {ANNOTATION_RESTART: LB_IP}
        assert patch["metadata"]["annotations"] == {ANNOTATION_RECORDED: LB_IP}

    status = outcome.status["externalIP"]
    assert status["address"] == LB_IP and status["pending"]["txhash"] == "HASH1"
    assert [(c.type, c.reason) for c in outcome.conditions] == [("ExternalIPAssigned", "Pending")]
    assert {"ExternalIPWritten", "IPAnnounced", "PodsRestarted"} <= {e.reason for e in outcome.events}
    assert outcome.requeue_after and outcome.requeue_after <= 5
    no_secret_in(outcome.status, [e.message for e in outcome.events], [c.message for c in outcome.conditions],
                 [c[0] for c in exec_.calls], caplog.text)


class CountingKube(FakeKube):
    """Counts the Deployment and pod reads."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.workload_reads = 0

    async def get_deployment(self, namespace, name):
        self.workload_reads += 1
        return await super().get_deployment(namespace, name)

    async def list_pods(self, namespace, labels):
        self.workload_reads += 1
        return await super().list_pods(namespace, labels)


async def test_the_deployments_and_pods_the_pass_read_are_not_read_again():
    """The core observation read both Deployments and their pods moments ago: the facet plans from them (one read of
    each per pass), and plans exactly what it plans from reads of its own."""
    async def run(with_objects: bool):
        journal = Journal()
        kube, exec_ = CountingKube(journal, ingress={"ip": LB_IP}), FakeExec(journal)
        observed = registered("")
        if with_objects:
            objects = {name: WorkloadObjects(kube.deployments[name], (pod(name),)) for name in ("mayanode", "bifrost")}
            observed = replace(observed, objects=objects)
        outcome = await ExternalIPFacet(transactions=transactions(exec_)).reconcile(
            make_ctx(kube, journal, spec={"externalIP": {"announce": True}}, observed=observed))
        return kube.workload_reads, journal, outcome

    reads_alone, journal_alone, alone = await run(with_objects=False)
    reads, journal, outcome = await run(with_objects=True)
    # alone: 2 Deployments + 2 pod lists to observe, then the transaction's ready pod (Deployment, pods) and each
    # restart's own Deployment read before its patch (its checks are made on what is there at that moment)
    assert reads_alone == 8 and reads == 4
    assert journal == journal_alone and outcome == alone
    assert [e[0] for e in journal].count("patch-deployment") == 2      # the restarts were planned from them


class RefusedExec(FakeExec):
    """Every exec is refused at its upgrade: the command never runs."""

    async def run(self, namespace, pod_name, container, command, stdin=None, timeout=120.0):
        from mayanode_operator.adapters.exec import ExecError

        self.calls.append((list(command), stdin))
        raise ExecError(f"exec into {namespace}/{pod_name} ({container}) refused: HTTP 500 Internal Server Error")


async def test_what_the_send_taught_reaches_the_status_when_the_restart_after_it_fails(monkeypatch):
    from kubernetes.client.exceptions import ApiException

    journal = Journal()
    kube, exec_ = FakeKube(journal, ingress={"ip": LB_IP}), RefusedExec(journal)

    def failing_patch(name, namespace, body, **kwargs):
        raise ApiException(status=500, reason="Internal Server Error")

    monkeypatch.setattr(kube.apps, "patch_namespaced_deployment", failing_patch)
    facet = ExternalIPFacet(transactions=transactions(exec_))
    outcome = await facet.reconcile(make_ctx(kube, journal, spec={"externalIP": {"announce": True}},
                                             observed=registered("")))
    assert len(exec_.calls) == 3                                         # refused before it ran: tried again
    assert "pending" not in outcome.status["externalIP"]                  # not sent: not left "sent" on record
    assert outcome.status["externalIP"]["lastFailure"]["transient"] is True
    assert [(c.type, c.reason) for c in outcome.conditions] == [("ExternalIPAssigned", "RestartFailed")]


async def test_the_next_pass_confirms_and_sends_nothing():
    journal = Journal()
    kube, exec_ = FakeKube(journal, ingress={"ip": LB_IP}, cm_value=LB_IP), FakeExec(journal)
    for dep in kube.deployments.values():
        dep["metadata"]["annotations"][ANNOTATION_RECORDED] = LB_IP
    previous = {"externalIP": {"address": LB_IP, "pending": {"address": LB_IP, "sentAt": "2026-11-21T09:59:50Z",
                                                             "attempts": 1, "txhash": "HASH1"}}}
    outcome = await ExternalIPFacet(transactions=transactions(exec_)).reconcile(
        make_ctx(kube, journal, spec={"externalIP": {"announce": True}}, previous=previous,
                 observed=registered(LB_IP)))
    assert journal == [] and exec_.calls == []
    assert outcome.status["externalIP"]["announcedAddress"] == LB_IP and "pending" not in outcome.status["externalIP"]
    assert [(c.status, c.reason) for c in outcome.conditions] == [("True", "Announced")]


async def test_a_hostname_is_resolved_and_a_slow_resolver_times_out():
    journal = Journal()
    kube = FakeKube(journal, ingress={"hostname": "abc.elb.example.com"}, cm_value="192.0.2.44")

    async def resolver(host):
        assert host == "abc.elb.example.com"
        return ["2001:db8::44", "192.0.2.44"]

    ctx = make_ctx(kube, journal, spec={"externalIP": {}}, observed=registered("192.0.2.44"))
    outcome = await ExternalIPFacet(resolver=resolver).reconcile(ctx)
    assert outcome.status["externalIP"]["address"] == "192.0.2.44"
    assert outcome.conditions[0].reason == "Registered"

    async def stuck(host):
        await asyncio.sleep(30)

    ctx = make_ctx(kube, journal, spec={"externalIP": {}, "api": {"timeoutSeconds": 1}})
    outcome = await ExternalIPFacet(resolver=stuck).reconcile(ctx)
    assert outcome.conditions[0].reason == "ResolveFailed" and "longer than 1s" in outcome.conditions[0].message
    assert "address" not in outcome.status["externalIP"]


async def test_rotating_dns_answers_of_a_multi_zone_load_balancer_change_nothing_and_a_lost_zone_moves_once():
    """The gateway's hostname (an NLB in three zones) answers its addresses in another order at each pass: the
    address in use stays, nothing is written, restarted or announced. When its zone's address leaves the answer,
    the node moves once, to the lowest remaining address, and stays there when the old one comes back."""
    a, b, c = "203.0.113.10", "203.0.113.11", "203.0.113.9"
    journal = Journal()
    kube, exec_ = FakeKube(journal, ingress={"hostname": "gw-0123.elb.example.com"}, cm_value=a), FakeExec(journal)
    for dep in kube.deployments.values():
        dep["metadata"]["annotations"][ANNOTATION_RECORDED] = a
    answer: list[str] = []

    async def resolver(host):
        return list(answer)

    facet = ExternalIPFacet(transactions=transactions(exec_), resolver=resolver)
    state = {"previous": {"externalIP": {"address": a, "announcedAddress": a}}, "chain": a}

    async def one_pass(answered: list[str]):
        answer[:] = answered
        outcome = await facet.reconcile(make_ctx(kube, journal, spec={"externalIP": {"announce": True}},
                                                 previous=state["previous"], observed=registered(state["chain"])))
        state["previous"] = {"externalIP": outcome.status["externalIP"]}
        return outcome

    for answered in ([a, b, c], [b, c, a], [c, a, b], [b, a], [c, b, a]):
        outcome = await one_pass(answered)
        assert outcome.status["externalIP"]["address"] == a
        assert [(cond.status, cond.reason) for cond in outcome.conditions] == [("True", "Announced")]
    assert journal == [] and exec_.calls == []

    await one_pass([b, c])                                    # a's zone is gone
    assert [(e[0], e[2]) for e in journal if e[0] == "patch-configmap"] == [("patch-configmap", c)] * 3
    assert [e[1] for e in journal if e[0] == "patch-deployment"] == ["mayanode", "bifrost"]
    (command, _), = exec_.calls
    assert command == tx_command(TxRequest("set-ip-address", (c,)), "mayachain", "mayachain-mocknet")

    journal.clear()
    state["chain"] = c                                        # the chain applied it
    for answered in ([a, b, c], [b, a, c], [a, c]):
        outcome = await one_pass(answered)
        assert outcome.status["externalIP"]["address"] == c
    assert journal == [] and len(exec_.calls) == 1
    assert outcome.status["externalIP"]["announcedAddress"] == c


async def test_a_missing_password_secret_fails_clearly_without_exec():
    journal = Journal()
    kube, exec_ = FakeKube(journal, ingress={"ip": LB_IP}, cm_value=LB_IP, secret=False), FakeExec(journal)
    outcome = await ExternalIPFacet(transactions=transactions(exec_)).reconcile(
        make_ctx(kube, journal, spec={"externalIP": {"announce": True}}, observed=registered("")))
    assert exec_.calls == []
    assert outcome.conditions[0].reason == "AnnounceFailed"
    assert "mayanode-password" in outcome.status["externalIP"]["lastFailure"]["message"]
    assert "pending" not in outcome.status["externalIP"]


async def test_a_rolling_update_deployment_is_refused_and_said():
    journal = Journal()
    kube = FakeKube(journal, ingress={"ip": LB_IP}, bifrost_strategy="RollingUpdate")
    outcome = await ExternalIPFacet(transactions=transactions(FakeExec(journal))).reconcile(
        make_ctx(kube, journal, spec={"externalIP": {}}, observed=registered(LB_IP)))
    assert outcome.conditions[0].reason == "RestartRefused" and "bifrost" in outcome.conditions[0].message
    assert [e[1] for e in journal if e[0] == "patch-deployment"] == ["mayanode"]     # the safe one only
    assert [e.reason for e in outcome.events].count("ActionRefused") == 1


async def test_locked_workloads_are_not_touched():
    journal = Journal()
    kube = FakeKube(journal, ingress={"ip": LB_IP})
    ctx = replace(make_ctx(kube, journal, spec={"externalIP": {"announce": True}}, observed=registered("")),
                  active_restore="restore-1")
    outcome = await ExternalIPFacet(transactions=transactions(FakeExec(journal))).reconcile(ctx)
    assert [e[0] for e in journal] == ["patch-configmap"] * 3
    assert outcome.conditions[0].reason == "WorkloadsLocked"


async def test_external_ip_not_managed_leaves_status_to_the_core():
    journal = Journal()
    outcome = await ExternalIPFacet().reconcile(make_ctx(FakeKube(journal), journal, spec={}))
    assert outcome.status == {} and journal == []


# --- mimir ----------------------------------------------------------------------------------------------------
async def test_mimir_votes_are_recorded_then_sent_and_a_withdrawal_ends_the_flags(monkeypatch):
    journal = Journal()
    kube, exec_ = FakeKube(journal), FakeExec(journal)

    async def votes(session, rest, signer, timeout):
        assert signer == ADDRESS
        return {"A": 1, "OLD": 5, "HAND": 2}

    monkeypatch.setattr(facet_mimir, "fetch_node_votes", votes)
    ctx = make_ctx(kube, journal, spec={"mimir": {"votes": {"A": 1, "b": 7}, "withdrawRemoved": True}},
                   previous={"mimir": {"managedKeys": ["A", "OLD"], "inEffect": {"A": 1, "OLD": 5}}})
    outcome = await MimirFacet(transactions=transactions(exec_)).reconcile(ctx)
    assert [e[0] for e in journal if e[0] != "read-secret"] == ["persist", "exec", "exec"]
    commands = [c for c, _ in exec_.calls]
    assert commands[0][:6] == ["mayanode", "tx", "mayachain", "mimir", "B", "7"]
    assert commands[1][-3:] == ["--", "OLD", "-1"] and "--from" in commands[1][:commands[1].index("--")]
    status = outcome.status["mimir"]
    assert [p["key"] for p in status["pending"]] == ["B", "OLD"] and status["managedKeys"] == ["A", "B", "OLD"]
    assert sorted(e.reason for e in outcome.events) == ["MimirVoteSent", "VoteWithdrawn"]
    assert outcome.conditions[0].reason == "Pending"
    no_secret_in(outcome.status, commands)


VOTES_RECHECK_SECONDS = OperatorConfig().mimir_recheck_seconds


async def test_settled_votes_are_read_again_only_after_the_recheck_period_or_a_spec_change(monkeypatch):
    journal = Journal()
    kube, exec_ = FakeKube(journal), FakeExec(journal)
    runtime, on_chain, reads = FakeRuntime(kube), {}, []

    async def votes(session, rest, signer, timeout):
        reads.append(dict(on_chain))
        return dict(on_chain)

    monkeypatch.setattr(facet_mimir, "fetch_node_votes", votes)
    facet, previous = MimirFacet(transactions=transactions(exec_)), {}

    async def a_pass(seconds: float, votes=None):
        nonlocal previous
        outcome = await facet.reconcile(make_ctx(kube, journal, spec={"mimir": {"votes": votes or {"A": 1}}},
                                                 previous=previous, runtime=runtime,
                                                 now=NOW + timedelta(seconds=seconds)))
        previous = {"mimir": outcome.status["mimir"]}
        return outcome

    assert (await a_pass(0)).conditions[0].reason == "Pending" and len(exec_.calls) == 1
    on_chain["A"] = 1
    assert (await a_pass(3)).conditions[0].reason == "Applied" and len(reads) == 2   # pending: read again
    on_chain["A"] = 9                                  # voted by hand, outside the operator
    for seconds in (33, 63, 93):
        assert (await a_pass(seconds)).conditions[0].reason == "Applied"
    assert len(reads) == 2 and len(exec_.calls) == 1   # settled: planned from the last read
    changed = await a_pass(3 + VOTES_RECHECK_SECONDS)
    assert len(reads) == 3 and [e.reason for e in changed.events] == ["MimirVoteChanged", "MimirVoteSent"]
    on_chain["A"] = 1
    assert (await a_pass(6 + VOTES_RECHECK_SECONDS)).conditions[0].reason == "Applied" and len(reads) == 4
    await a_pass(36 + VOTES_RECHECK_SECONDS, votes={"A": 1, "B": 2})                  # the spec changed
    assert len(reads) == 5


def test_a_negative_value_reaches_the_chain_as_an_argument():
    argv = tx_command(TxRequest("mimir", ("KEY", "-1")), "mayachain", "mayachain-mocknet")
    parsed = parse_mayanode_args(argv)
    assert parsed.positionals == ["tx", "mayachain", "mimir", "KEY", "-1"] and parsed.flags["from"] == "mayachain"


async def test_unreadable_votes_are_unknown_and_nothing_is_sent(monkeypatch):
    from mayanode_operator.observe.nodeapi import EndpointFailure

    async def down(*args):
        raise EndpointFailure("Unreachable", "http://x/mayachain/mimir/nodes_all: refused")

    monkeypatch.setattr(facet_mimir, "fetch_node_votes", down)
    journal = Journal()
    exec_ = FakeExec(journal)
    outcome = await MimirFacet(transactions=transactions(exec_)).reconcile(
        make_ctx(FakeKube(journal), journal, spec={"mimir": {"votes": {"A": 1}}}))
    assert exec_.calls == [] and outcome.conditions[0].status == "Unknown" and outcome.status == {}


# --- node actions ------------------------------------------------------------------------------------------------
async def test_a_pause_is_recorded_before_it_is_sent_and_never_sent_again():
    journal = Journal()
    kube, exec_ = FakeKube(journal), FakeExec(journal)
    facet = NodeActionsFacet(transactions=transactions(exec_))
    spec = {"nodeActions": [{"id": "pause-1", "action": "PauseChain", "reason": "suspicious"}]}
    outcome = await facet.reconcile(make_ctx(kube, journal, spec=spec))
    kinds = [e[0] for e in journal if e[0] != "read-secret"]
    assert kinds == ["persist", "exec"]
    persisted = json.loads(journal[0][1])["nodeActions"]
    assert persisted[0]["id"] == "pause-1" and persisted[0]["state"] == "Sent"
    records = outcome.status["nodeActions"]
    assert records[0]["state"] == "Sent" and records[0]["txhash"] == "HASH1"
    assert [e.reason for e in outcome.events] == ["NodePaused"]

    again = await facet.reconcile(make_ctx(kube, journal, spec=spec, previous={"nodeActions": records}))
    assert len(exec_.calls) == 1 and again.status["nodeActions"][0]["state"] == "Sent"


async def test_announce_ip_uses_the_address_the_externalip_facet_found():
    journal = Journal()
    exec_ = FakeExec(journal)
    spec = {"externalIP": {}, "nodeActions": [{"id": "ip-1", "action": "AnnounceIP"}]}
    outcome = await NodeActionsFacet(transactions=transactions(exec_)).reconcile(
        make_ctx(FakeKube(journal), journal, spec=spec, status={"network": {}, "externalIP": {"address": LB_IP}}))
    assert exec_.calls[0][0][3:5] == ["set-ip-address", LB_IP]
    assert outcome.status["nodeActions"][0]["state"] == "Sent"


async def test_a_chain_refusal_is_recorded_as_failed():
    journal = Journal()
    exec_ = FakeExec(journal, answers=[{"code": 4, "txhash": "X", "raw_log": "unauthorized: not an active node"}])
    outcome = await NodeActionsFacet(transactions=transactions(exec_)).reconcile(
        make_ctx(FakeKube(journal), journal, spec={"nodeActions": [{"id": "r", "action": "ResumeChain"}]}))
    record, = outcome.status["nodeActions"]
    assert record["state"] == "Failed" and "not an active node" in record["message"]
    assert [e.reason for e in outcome.events] == ["ActionRefused"]
    assert outcome.conditions[0].reason == "ActionFailed"


# --- wiring -----------------------------------------------------------------------------------------------
def test_facets_are_registered_in_the_documented_order():
    names = [f.name for f in FACETS]
    mine = [names.index(n) for n in ("ExternalIP", "Mimir", "NodeActions")]
    assert mine == sorted(mine) and mine == list(range(mine[0], mine[0] + 3))
    for later in ("Backup", "Upgrade"):
        if later in names:
            assert names.index(later) > mine[-1]


async def test_status_written_mid_pass_keeps_the_final_patch_exact():
    writes = []

    async def patch(part):
        writes.append(part)

    writer = StatusWriter({"phase": "Running", "externalIP": {"address": "a"}}, patch)
    await writer.persist({"externalIP": {"address": "a", "pending": {"address": "a"}}})
    assert writes == [{"externalIP": {"pending": {"address": "a"}}}]
    await writer.persist({"externalIP": {"address": "a", "pending": {"address": "a"}}})
    assert len(writes) == 1                                     # nothing new: nothing written
    final = writer.final_patch({"phase": "Running", "externalIP": {"address": "a"}})
    assert final == {"externalIP": {"pending": None}}           # the persisted pending is removed at the end


def test_secrets_are_base64_in_a_secret_and_never_decoded_into_output():
    assert base64.b64encode(PASSWORD.encode()).decode() not in PASSWORD
