"""Metrics: the status → gauge mapping, series removal, the reconcile wrapper and the HTTP endpoint."""

from __future__ import annotations

import asyncio
import json
import socket
import tracemalloc
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mayanode_operator import metrics
from mayanode_operator.config import OperatorConfig
from mayanode_operator.reconcile.queue import WorkQueue

STATUS = {
    "phase": "Running",
    "version": "1.111.0",
    "targetVersion": "1.112.0",
    "node": {"address": "maya1abc", "status": "Active", "bond": "150000000000000", "slashPoints": 42,
             "jail": None, "validatorConsPubKey": "mayacpub1xyz"},
    "chain": {"height": 1000, "networkHeight": 1003, "catchingUp": False, "heightObservedAt": "2025-01-01T00:00:00Z"},
    "network": {"lastChurnHeight": 900, "vault": {"pubKey": "mayapub1vault", "height": 900}},
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "NodeReady", "message": "ok"},
        {"type": "Jailed", "status": "False", "reason": "NotJailed", "message": "not jailed"},
        {"type": "BackupFresh", "status": "Unknown", "reason": "X", "message": "y"},
    ],
    "backup": {"fresh": True, "lastSuccessful": {"name": "b1", "completedAt": "2025-01-01T00:00:00Z", "height": 950,
                                                 "vaultPubKey": "mayapub1vault"}},
    "upgrade": {"state": "Blocked", "gate": {"name": "Churn", "reason": "WaitingForChurn"}},
}


def samples_by_metric(status) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for sample in metrics.node_samples(status):
        assert sample.labels not in out.setdefault(sample.metric, {}), f"duplicate series {sample}"
        out[sample.metric][sample.labels] = sample.value
    return out


def value(metric: str, /, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(metric, labels)


@pytest.fixture(autouse=True)
def clean_nodes():
    yield
    for namespace, name in list(metrics._node_series):
        metrics.forget_mayanode(namespace, name)


def test_full_status_maps_to_every_node_gauge():
    got = samples_by_metric(STATUS)
    assert got["mayanode_node_info"] == {(("version", "1.111.0"), ("target_version", "1.112.0")): 1.0}
    assert got["mayanode_node_status"] == {(("status", s),): float(s == "Active") for s in metrics.NODE_STATUSES}
    assert got["mayanode_node_phase"] == {(("phase", p),): float(p == "Running") for p in metrics.PHASES}
    assert got["mayanode_node_ready"] == {(): 1.0}
    assert got["mayanode_node_jailed"] == {(): 0.0}
    assert got["mayanode_node_catching_up"] == {(): 0.0}
    assert got["mayanode_node_height"] == {(): 1000.0}
    assert got["mayanode_node_network_height"] == {(): 1003.0}
    assert got["mayanode_node_height_lag_blocks"] == {(): 3.0}
    assert got["mayanode_node_slash_points"] == {(): 42.0}
    assert got["mayanode_node_bond_cacao"] == {(): 15000.0}
    assert got["mayanode_node_last_churn_height"] == {(): 900.0}
    assert got["mayanode_backup_last_success_timestamp_seconds"] == {(): 1735689600.0}
    assert got["mayanode_backup_last_success_height"] == {(): 950.0}
    assert got["mayanode_backup_fresh"] == {(): 1.0}
    assert got["mayanode_upgrade_state"] == {(("state", s),): float(s == "Blocked") for s in metrics.UPGRADE_STATES}
    assert got["mayanode_upgrade_blocked_gate"] == {(("gate", "Churn"),): 1.0}
    assert got["mayanode_node_condition"][(("type", "BackupFresh"), ("status", "Unknown"))] == 1.0
    assert got["mayanode_node_condition"][(("type", "Ready"), ("status", "False"))] == 0.0
    assert len(got["mayanode_node_condition"]) == 3 * 3
    assert set(got) == set(metrics.NODE_GAUGES)


@pytest.mark.parametrize("status, absent", [
    ({}, set(metrics.NODE_GAUGES)),
    ({"chain": {"height": 5}}, {"mayanode_node_height_lag_blocks", "mayanode_node_network_height",
                                "mayanode_node_catching_up"}),
    ({"upgrade": {"state": "InProgress", "gate": {"name": "Churn", "reason": "x"}}}, {"mayanode_upgrade_blocked_gate"}),
    ({"backup": {"lastSuccessful": {"name": "b", "completedAt": "not a time"}}},
     {"mayanode_backup_last_success_timestamp_seconds", "mayanode_backup_fresh"}),
    ({"node": {"address": "maya1abc"}}, {"mayanode_node_status", "mayanode_node_slash_points", "mayanode_node_jailed"}),
])
def test_absent_sources_give_no_series(status, absent):
    assert not absent & set(samples_by_metric(status))


def test_values_outside_the_known_sets_stay_bounded():
    got = samples_by_metric({"node": {"status": "Brand-New"}, "phase": "Weird", "upgrade": {"state": "Odd"}})
    assert got["mayanode_node_status"][(("status", "Unknown"),)] == 1.0
    assert got["mayanode_node_phase"][(("phase", "Unknown"),)] == 1.0
    assert sum(got["mayanode_upgrade_state"].values()) == 0.0
    assert len(got["mayanode_node_status"]) == len(metrics.NODE_STATUSES)


def test_jailed_falls_back_to_the_jail_record_without_a_condition():
    got = samples_by_metric({"node": {"status": "Active", "jail": {"releaseHeight": 10, "reason": "failed keygen"}}})
    assert got["mayanode_node_jailed"] == {(): 1.0}


def test_lag_never_negative():
    assert samples_by_metric({"chain": {"height": 20, "networkHeight": 10}})["mayanode_node_height_lag_blocks"] == {(): 0.0}


def test_observe_sets_and_replaces_series():
    metrics.observe_mayanode("ns-a", "node-a", STATUS)
    assert value("mayanode_node_height", namespace="ns-a", name="node-a") == 1000.0
    assert value("mayanode_node_info", namespace="ns-a", name="node-a", version="1.111.0", target_version="1.112.0") == 1
    assert value("mayanode_upgrade_blocked_gate", namespace="ns-a", name="node-a", gate="Churn") == 1

    upgraded = {**STATUS, "version": "1.112.0", "upgrade": {"state": "Idle"}, "chain": {"height": 1010}}
    metrics.observe_mayanode("ns-a", "node-a", upgraded)
    assert value("mayanode_node_info", namespace="ns-a", name="node-a", version="1.111.0", target_version="1.112.0") is None
    assert value("mayanode_node_info", namespace="ns-a", name="node-a", version="1.112.0", target_version="1.112.0") == 1
    assert value("mayanode_upgrade_blocked_gate", namespace="ns-a", name="node-a", gate="Churn") is None
    assert value("mayanode_node_height_lag_blocks", namespace="ns-a", name="node-a") is None
    assert value("mayanode_node_height", namespace="ns-a", name="node-a") == 1010.0


def test_backup_age_is_computed_at_scrape_time():
    metrics.observe_mayanode("ns-a", "node-a", STATUS)
    clock = metrics.BACKUP_AGE.clock
    try:
        metrics.BACKUP_AGE.clock = lambda: 1735689600.0 + 3600
        assert value("mayanode_backup_age_seconds", namespace="ns-a", name="node-a") == 3600.0
        metrics.BACKUP_AGE.clock = lambda: 1735689600.0 + 7200
        assert value("mayanode_backup_age_seconds", namespace="ns-a", name="node-a") == 7200.0
    finally:
        metrics.BACKUP_AGE.clock = clock
    metrics.observe_mayanode("ns-a", "node-a", {**STATUS, "backup": {}})
    assert value("mayanode_backup_age_seconds", namespace="ns-a", name="node-a") is None


def test_node_series_stay_small():
    """A node's some 40 gauge series cost a few KiB (prometheus_client children cost ~1 KiB each: 55 KiB a node)."""
    statuses = [json.loads(json.dumps(STATUS)) for _ in range(200)]     # as decoded from the API, nothing shared
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i, status in enumerate(statuses):
            metrics.observe_mayanode("ns-m", f"node-{i}", status)
        grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert grown / len(statuses) < 12 * 1024
    assert value("mayanode_node_height", namespace="ns-m", name="node-199") == 1000.0


def test_forget_removes_every_series_of_one_node_only():
    metrics.observe_mayanode("ns-a", "node-a", STATUS)
    metrics.observe_mayanode("ns-b", "node-b", STATUS)
    metrics.observe_backup("ns-a", "node-a", reason="AfterChurn", outcome="Completed", duration_seconds=12, size_bytes=4096)
    metrics.observe_restore("ns-a", "node-a", outcome="Completed", downtime_seconds=95)
    metrics.record_upgrade("ns-a", "node-a", result="Succeeded", duration_seconds=300)
    metrics.record_transaction("ns-a", "node-a", "set-ip-address", "ok")

    metrics.forget_object("mayanodes", "ns-a", "node-a")

    exposition = metrics_text()
    assert 'namespace="ns-a"' not in exposition
    assert 'namespace="ns-b"' in exposition
    assert value("mayanode_node_height", namespace="ns-b", name="node-b") == 1000.0


def test_forget_of_other_kinds_keeps_node_series():
    metrics.observe_mayanode("ns-a", "node-a", STATUS)
    metrics.forget_object("nodebackups", "ns-a", "node-a")
    assert value("mayanode_node_height", namespace="ns-a", name="node-a") == 1000.0


def test_queue_forget_drops_series_through_its_hook():
    queue: WorkQueue[tuple[str, str, str]] = WorkQueue()
    queue.on_forget = metrics.forget_key
    metrics.observe_mayanode("ns-a", "node-a", STATUS)
    queue.add(("mayanodes", "ns-a", "node-a"))
    queue.forget(("mayanodes", "ns-a", "node-a"))
    assert value("mayanode_node_height", namespace="ns-a", name="node-a") is None


def test_helpers_count_by_type_and_outcome():
    before = value("mayanode_transactions_total", namespace="ns-c", name="n", type="set-version", outcome="ok") or 0
    metrics.record_transaction("ns-c", "n", "set-version", "ok")
    metrics.record_transaction("ns-c", "n", "set-version", "ok")
    metrics.record_transaction("ns-c", "n", "set-version", "failed")
    assert value("mayanode_transactions_total", namespace="ns-c", name="n", type="set-version", outcome="ok") == before + 2
    assert value("mayanode_transactions_total", namespace="ns-c", name="n", type="set-version", outcome="failed") == 1
    metrics.observe_backup("ns-c", "n", reason="Scheduled", outcome="Failed", duration_seconds=3, size_bytes=99)
    assert value("mayanode_backups_total", namespace="ns-c", name="n", reason="Scheduled", outcome="Failed") == 1
    assert value("mayanode_backup_last_size_bytes", namespace="ns-c", name="n") is None   # only successes have a size
    metrics.observe_restore("ns-c", "n", outcome="Completed", downtime_seconds=61.5)
    assert value("mayanode_restore_last_downtime_seconds", namespace="ns-c", name="n") == 61.5
    metrics.record_upgrade("ns-c", "n", result="RolledBack")
    assert value("mayanode_upgrades_total", namespace="ns-c", name="n", result="RolledBack") == 1
    metrics.forget_mayanode("ns-c", "n")


def test_a_broken_status_never_raises():
    metrics.observe_mayanode("ns-a", "node-a", {"chain": "garbage", "conditions": "nope"})   # type: ignore[dict-item]


async def test_track_reconcile_counts_successes_errors_and_durations():
    def counts():
        return (value("mayanode_operator_reconciles_total", kind="NodeBackup") or 0,
                value("mayanode_operator_reconcile_errors_total", kind="NodeBackup") or 0,
                value("mayanode_operator_reconcile_duration_seconds_count", kind="NodeBackup") or 0)
    total, errors, observed = counts()
    with metrics.track_reconcile("nodebackups"):
        await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        with metrics.track_reconcile("nodebackups"):
            raise RuntimeError("boom")
    assert counts() == (total + 2, errors + 1, observed + 2)
    assert value("mayanode_operator_reconciles_in_progress", kind="NodeBackup") == 0


async def test_worker_wrapper_counts_every_registered_reconciler(monkeypatch):
    from mayanode_operator import operator_loop

    calls = []

    async def reconcile_thing(runtime, namespace, name):
        calls.append((namespace, name))
        return None

    monkeypatch.setitem(operator_loop.RECONCILERS, "things", reconcile_thing)
    before = value("mayanode_operator_reconciles_total", kind="things") or 0
    work = operator_loop.make_worker(runtime=None)
    assert await work(("things", "ns", "t1")) is None
    assert calls == [("ns", "t1")]
    assert value("mayanode_operator_reconciles_total", kind="things") == before + 1


def test_queue_depth_follows_the_queue():
    queue: WorkQueue[str] = WorkQueue()
    metrics.bind_queue(queue)
    queue.add("a", delay=30)
    queue.add("b", delay=30)
    assert value("mayanode_operator_queue_depth") == 2
    queue.forget("a")
    assert value("mayanode_operator_queue_depth") == 1


def metrics_text() -> str:
    from prometheus_client import generate_latest
    return generate_latest(metrics.REGISTRY).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_http_endpoint_serves_the_registry_and_stops():
    metrics.observe_mayanode("ns-a", "node-a", STATUS)
    server = metrics.serve(free_port(), addr="127.0.0.1")
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            body = response.read().decode()
    finally:
        server.stop()
    families = {family.name: family for family in text_string_to_metric_families(body)}
    assert "mayanode_operator_reconciles" in families
    assert "mayanode_node_height" in families
    assert "process_resident_memory_bytes" in families
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=2)


def test_port_zero_is_off_and_a_busy_port_is_not_fatal(caplog):
    assert metrics.serve(0) is None
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        assert metrics.serve(busy.getsockname()[1], addr="127.0.0.1") is None
    assert "metrics are not served" in caplog.text


def test_metrics_port_setting(monkeypatch):
    assert OperatorConfig().metrics_port == 8080
    monkeypatch.setenv("MAYANODE_OPERATOR_METRICS_PORT", "9102")
    assert OperatorConfig.from_env().metrics_port == 9102
    assert OperatorConfig.from_env(metrics_port=0).metrics_port == 0
    from mayanode_operator.cli import build_parser
    assert build_parser().parse_args(["run", "--metrics-port", "9100"]).metrics_port == 9100


def test_no_label_can_carry_a_secret():
    names = {label for gauge in metrics.NODE_GAUGES.values() for label in gauge.labelnames}
    names |= {label for metric in metrics.NODE_COUNTERS for label in metric._labelnames}
    assert names <= {"namespace", "name", "version", "target_version", "status", "phase", "type", "state", "gate",
                     "reason", "outcome", "result"}
