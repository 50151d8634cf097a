"""Prometheus metrics of the operator and of the nodes it runs.

Two kinds of series:

- operator series (`mayanode_operator_*`): reconciles, errors and durations by kind, queue depth;
  recorded by the work-queue worker for every reconciler, present and future;
- node series (`mayanode_*`): labelled `namespace` and `name` of the MayaNode, one set per node,
  removed when the node is deleted. The gauges mirror the MayaNode status (`observe_mayanode`,
  a pure mapping in `node_samples`); the counters are recorded by the code that acts
  (`observe_backup`, `observe_restore`, `record_upgrade`, `record_transaction`).

Label values are names, versions and enum words only: never a key, a mnemonic, a password or any
other secret. Recording a metric never raises into a reconcile.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily

from . import __version__
from .api import naming

logger = logging.getLogger(__name__)

disable_created_metrics()       # no `_created` series beside every counter and histogram
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

NODE_LABELS = ("namespace", "name")

# Fixed value sets of the one-hot gauges (bounded cardinality: every node has one series per value).
NODE_STATUSES = ("Unknown", "Whitelisted", "Standby", "Ready", "Active", "Disabled")
PHASES = ("Pending", "Running", "Degraded", "Suspended", "Upgrading", "Restoring", "Unknown")
UPGRADE_STATES = ("Idle", "Blocked", "InProgress", "RollingBack", "Failed")
CONDITION_STATUSES = ("True", "False", "Unknown")

KINDS = {
    naming.MAYANODE_PLURAL: naming.MAYANODE_KIND,
    naming.NODEBACKUP_PLURAL: naming.NODEBACKUP_KIND,
    naming.NODERESTORE_PLURAL: naming.NODERESTORE_KIND,
}

# --- operator ---------------------------------------------------------------------------------
OPERATOR_INFO = Gauge("mayanode_operator_info", "The running operator (value 1).", ["version"], registry=REGISTRY)
OPERATOR_INFO.labels(version=__version__).set(1)
RECONCILES = Counter("mayanode_operator_reconciles", "Reconcile passes finished (with or without error), by kind.",
                     ["kind"], registry=REGISTRY)
RECONCILE_ERRORS = Counter("mayanode_operator_reconcile_errors", "Reconcile passes that raised, by kind.",
                           ["kind"], registry=REGISTRY)
RECONCILE_DURATION = Histogram(
    "mayanode_operator_reconcile_duration_seconds", "Duration of one reconcile pass, by kind.", ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=REGISTRY)
RECONCILES_IN_PROGRESS = Gauge("mayanode_operator_reconciles_in_progress", "Reconciles running now, by kind.",
                               ["kind"], registry=REGISTRY)
QUEUE_DEPTH = Gauge("mayanode_operator_queue_depth", "Objects waiting in the work queue for their next reconcile.",
                    registry=REGISTRY)

# --- node gauges, mirrored from MayaNode status --------------------------------------------------
_NODE_GAUGE_DEFS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # name, help, labels beyond namespace and name
    ("mayanode_node_info", "The node's running and target version (value 1).", ("version", "target_version")),
    ("mayanode_node_status", "The node account's status on chain: 1 for the current one, 0 for the others.", ("status",)),
    ("mayanode_node_phase", "The MayaNode's status.phase: 1 for the current one, 0 for the others.", ("phase",)),
    ("mayanode_node_condition", "Status conditions: 1 for the condition's current status, 0 for the others.", ("type", "status")),
    ("mayanode_node_ready", "1 when the Ready condition is True.", ()),
    ("mayanode_node_jailed", "1 when the node is jailed.", ()),
    ("mayanode_node_catching_up", "1 while the node is catching up with the chain.", ()),
    ("mayanode_node_height", "The node's latest block height.", ()),
    ("mayanode_node_network_height", "The network's block height, when known.", ()),
    ("mayanode_node_height_lag_blocks", "Blocks the node is behind the network (when the network height is known).", ()),
    ("mayanode_node_slash_points", "The node account's current slash points.", ()),
    ("mayanode_node_bond_cacao", "The node's bond in CACAO.", ()),
    ("mayanode_node_last_churn_height", "The height of the current Asgard vault (the last churn).", ()),
    ("mayanode_backup_last_success_timestamp_seconds", "When the newest Completed NodeBackup of the node completed.", ()),
    ("mayanode_backup_last_success_height", "Chain height captured by the newest Completed NodeBackup.", ()),
    ("mayanode_backup_fresh", "1 when the newest backup holds the current vault's key shares (taken since the last churn).", ()),
    ("mayanode_upgrade_state", "status.upgrade.state: 1 for the current one, 0 for the others.", ("state",)),
    ("mayanode_upgrade_blocked_gate", "While an upgrade is Blocked: the gate that holds it (value 1).", ("gate",)),
)


@dataclass(frozen=True)
class NodeGauge:
    name: str
    documentation: str
    labelnames: tuple[str, ...]             # namespace, name, then the gauge's own


NODE_GAUGES: dict[str, NodeGauge] = {
    name: NodeGauge(name, documentation, (*NODE_LABELS, *extra)) for name, documentation, extra in _NODE_GAUGE_DEFS
}

# --- node counters and last-values, recorded by the code that acts -------------------------------
BACKUPS = Counter("mayanode_backups", "NodeBackups finished, by reason (Manual, Scheduled, AfterChurn, PreUpgrade, Imported) and outcome.",
                  [*NODE_LABELS, "reason", "outcome"], registry=REGISTRY)
BACKUP_LAST_DURATION = Gauge("mayanode_backup_last_duration_seconds", "Duration of the node's last finished backup.",
                             list(NODE_LABELS), registry=REGISTRY)
BACKUP_LAST_SIZE = Gauge("mayanode_backup_last_size_bytes", "Size of the node's last successful backup archive.",
                         list(NODE_LABELS), registry=REGISTRY)
RESTORES = Counter("mayanode_restores", "NodeRestores finished, by outcome.", [*NODE_LABELS, "outcome"], registry=REGISTRY)
RESTORE_LAST_DOWNTIME = Gauge("mayanode_restore_last_downtime_seconds",
                              "Seconds the node did not sign during its last restore (scale-down to ready).",
                              list(NODE_LABELS), registry=REGISTRY)
UPGRADES = Counter("mayanode_upgrades", "Upgrades finished, by result (Succeeded, RolledBack, Failed).",
                   [*NODE_LABELS, "result"], registry=REGISTRY)
UPGRADE_LAST_DURATION = Gauge("mayanode_upgrade_last_duration_seconds", "Duration of the node's last finished upgrade.",
                              list(NODE_LABELS), registry=REGISTRY)
TRANSACTIONS = Counter("mayanode_transactions", "Node transactions sent, by type (set-ip-address, set-version, mimir, …) and outcome (ok, failed, transient).",
                       [*NODE_LABELS, "type", "outcome"], registry=REGISTRY)

NODE_COUNTERS = (BACKUPS, BACKUP_LAST_DURATION, BACKUP_LAST_SIZE, RESTORES, RESTORE_LAST_DOWNTIME,
                 UPGRADES, UPGRADE_LAST_DURATION, TRANSACTIONS)


class _BackupAgeCollector:
    """`mayanode_backup_age_seconds`, computed at scrape time from the last success timestamp."""

    def __init__(self) -> None:
        self.completed_at: dict[tuple[str, str], float] = {}
        self.clock: Callable[[], float] = time.time

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("mayanode_backup_age_seconds", "Seconds since the newest Completed NodeBackup completed.",
                                labels=list(NODE_LABELS))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("mayanode_backup_age_seconds", "Seconds since the newest Completed NodeBackup completed.",
                                   labels=list(NODE_LABELS))
        now = self.clock()
        for (namespace, name), completed in sorted(dict(self.completed_at).items()):
            family.add_metric([namespace, name], max(0.0, now - completed))
        yield family


BACKUP_AGE = _BackupAgeCollector()
REGISTRY.register(BACKUP_AGE)

# One node's gauge series: (metric, values of the labels beyond namespace and name, value).
Series = tuple[str, tuple[str, ...], float]


class _NodeGaugeCollector:
    """The node gauges, built at scrape time from one tuple of series per node.

    Not a prometheus_client Gauge: each of its labelled children is an object of about 1 KiB (locks, dicts),
    and a node has some 55 series (one-hot states, three per condition): that was 55 KiB of operator memory
    per MayaNode. A tuple of series costs a tenth of that, and the exposition is the same.
    """

    def __init__(self, series: dict[tuple[str, str], tuple[Series, ...]]) -> None:
        self.series = series

    def _families(self) -> dict[str, GaugeMetricFamily]:
        return {gauge.name: GaugeMetricFamily(gauge.name, gauge.documentation, labels=list(gauge.labelnames))
                for gauge in NODE_GAUGES.values()}

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families().values()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = self._families()
        with _lock:
            nodes = sorted(self.series.items())
        for (namespace, name), series in nodes:
            for metric, values, value in series:
                families[metric].add_metric([namespace, name, *values], value)
        yield from families.values()


# --- the pure mapping -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    metric: str
    labels: tuple[tuple[str, str], ...]      # labels beyond namespace and name
    value: float


def parse_time(value: Any) -> float | None:
    """An RFC 3339 timestamp of the status as Unix seconds; None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _one_hot(metric: str, label: str, current: str | None, choices: tuple[str, ...]) -> list[Sample]:
    return [Sample(metric, ((label, choice),), 1.0 if choice == current else 0.0) for choice in choices]


def node_samples(status: Mapping[str, Any]) -> list[Sample]:
    """The node gauges for one MayaNode status (a pure function: no clock, no I/O).

    A gauge whose source is absent from the status gets no sample, so its series disappears
    rather than showing a stale or invented value.
    """
    status = status or {}
    out: list[Sample] = []

    def add(metric: str, value: Any, labels: tuple[tuple[str, str], ...] = ()) -> None:
        number = float(value) if isinstance(value, bool) else _number(value)
        if number is not None:
            out.append(Sample(metric, labels, number))

    version, target = status.get("version"), status.get("targetVersion")
    if version or target:
        add("mayanode_node_info", 1, (("version", str(version or "")), ("target_version", str(target or ""))))

    node = status.get("node") or {}
    node_status = node.get("status")
    if node_status:
        out += _one_hot("mayanode_node_status", "status",
                        node_status if node_status in NODE_STATUSES else "Unknown", NODE_STATUSES)
    add("mayanode_node_slash_points", node.get("slashPoints"))
    bond = _number(node.get("bond"))
    if bond is not None:
        add("mayanode_node_bond_cacao", bond / 1e10)

    phase = status.get("phase")
    if phase:
        out += _one_hot("mayanode_node_phase", "phase", phase if phase in PHASES else "Unknown", PHASES)

    conditions = {str(c.get("type")): str(c.get("status")) for c in status.get("conditions") or () if c.get("type")}
    for type_, cond_status in sorted(conditions.items()):
        for choice in CONDITION_STATUSES:
            out.append(Sample("mayanode_node_condition", (("type", type_), ("status", choice)),
                              1.0 if choice == cond_status else 0.0))
    if "Ready" in conditions:
        add("mayanode_node_ready", conditions["Ready"] == "True")
    if "Jailed" in conditions:
        add("mayanode_node_jailed", conditions["Jailed"] == "True")
    elif node.get("jail") is not None or node_status:
        add("mayanode_node_jailed", node.get("jail") is not None)

    chain = status.get("chain") or {}
    height, network_height = _number(chain.get("height")), _number(chain.get("networkHeight"))
    add("mayanode_node_height", height)
    add("mayanode_node_network_height", network_height)
    if height is not None and network_height is not None:
        add("mayanode_node_height_lag_blocks", max(0.0, network_height - height))
    if isinstance(chain.get("catchingUp"), bool):
        add("mayanode_node_catching_up", chain["catchingUp"])

    network = status.get("network") or {}
    add("mayanode_node_last_churn_height", network.get("lastChurnHeight"))

    backup = status.get("backup") or {}
    last = backup.get("lastSuccessful") or {}
    add("mayanode_backup_last_success_timestamp_seconds", parse_time(last.get("completedAt")))
    add("mayanode_backup_last_success_height", last.get("height"))
    if isinstance(backup.get("fresh"), bool):
        add("mayanode_backup_fresh", backup["fresh"])

    upgrade = status.get("upgrade") or {}
    state = upgrade.get("state")
    if state:
        out += _one_hot("mayanode_upgrade_state", "state", state, UPGRADE_STATES)
        gate = (upgrade.get("gate") or {}).get("name")
        if state == "Blocked" and gate:
            add("mayanode_upgrade_blocked_gate", 1, (("gate", str(gate)),))
    return out


# --- applying samples -----------------------------------------------------------------------------
_lock = threading.Lock()
_node_series: dict[tuple[str, str], tuple[Series, ...]] = {}
REGISTRY.register(_NodeGaugeCollector(_node_series))


def observe_mayanode(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Set the node gauges from a MayaNode status; series the status no longer supports are removed."""
    try:
        samples = node_samples(status)
        series = tuple((sample.metric, tuple(str(value) for _, value in sample.labels), sample.value)
                       for sample in samples)
        completed = next((s.value for s in samples if s.metric == "mayanode_backup_last_success_timestamp_seconds"), None)
        with _lock:
            if _node_series.get((namespace, name)) != series:     # most passes change nothing: keep the stored one
                # Label values are interned: every node repeats the same few words (condition types, states).
                _node_series[(namespace, name)] = tuple((metric, tuple(sys.intern(value) for value in labels), value)
                                                        for metric, labels, value in series)
            if completed is None:
                BACKUP_AGE.completed_at.pop((namespace, name), None)
            else:
                BACKUP_AGE.completed_at[(namespace, name)] = completed
    except Exception:  # metrics are a courtesy: never fail a reconcile for them
        logger.exception("could not update the metrics of MayaNode %s/%s", namespace, name)


def forget_mayanode(namespace: str, name: str) -> None:
    """Remove every series of a deleted MayaNode (gauges and counters)."""
    labels = {"namespace": namespace, "name": name}
    with _lock:
        for metric in NODE_COUNTERS:
            metric.remove_by_labels(labels)
        _node_series.pop((namespace, name), None)
        BACKUP_AGE.completed_at.pop((namespace, name), None)


def forget_object(plural: str, namespace: str, name: str) -> None:
    """An object is gone: a MayaNode's series go with it (other kinds have no per-object series)."""
    if plural == naming.MAYANODE_PLURAL:
        forget_mayanode(namespace, name)


def forget_key(key: tuple[str, str, str]) -> None:
    """`forget_object` for a work-queue key (plural, namespace, name)."""
    forget_object(*key)


# --- operator series ----------------------------------------------------------------------------
def kind_of(plural: str) -> str:
    return KINDS.get(plural, plural)


@contextmanager
def track_reconcile(plural: str) -> Iterator[None]:
    """Count one reconcile of `plural`, its duration, and whether it raised."""
    kind = kind_of(plural)
    started = time.perf_counter()
    RECONCILES_IN_PROGRESS.labels(kind).inc()
    try:
        yield
    except Exception:
        RECONCILE_ERRORS.labels(kind).inc()
        raise
    finally:
        RECONCILES_IN_PROGRESS.labels(kind).dec()
        RECONCILE_DURATION.labels(kind).observe(time.perf_counter() - started)
        RECONCILES.labels(kind).inc()


def bind_queue(queue: Sized) -> None:
    """Report `len(queue)` as the queue depth at every scrape."""
    QUEUE_DEPTH.set_function(lambda: float(len(queue)))


# --- helpers for the code that acts ---------------------------------------------------------------
def _safe(fn: Callable[[], None], what: str) -> None:
    try:
        fn()
    except Exception:
        logger.exception("could not record metric %s", what)


def observe_backup(namespace: str, node: str, *, reason: str, outcome: str,
                   duration_seconds: float | None = None, size_bytes: int | None = None) -> None:
    """A NodeBackup of MayaNode `node` finished. outcome: Completed | PartiallyFailed | Failed."""
    def record() -> None:
        BACKUPS.labels(namespace, node, reason, outcome).inc()
        if duration_seconds is not None:
            BACKUP_LAST_DURATION.labels(namespace, node).set(duration_seconds)
        if size_bytes is not None and outcome == "Completed":
            BACKUP_LAST_SIZE.labels(namespace, node).set(size_bytes)
    _safe(record, "backup")


def observe_restore(namespace: str, node: str, *, outcome: str, downtime_seconds: float | None = None) -> None:
    """A NodeRestore onto MayaNode `node` finished. outcome: Completed | Failed."""
    def record() -> None:
        RESTORES.labels(namespace, node, outcome).inc()
        if downtime_seconds is not None:
            RESTORE_LAST_DOWNTIME.labels(namespace, node).set(downtime_seconds)
    _safe(record, "restore")


def record_upgrade(namespace: str, node: str, *, result: str, duration_seconds: float | None = None) -> None:
    """An upgrade of MayaNode `node` finished. result: Succeeded | RolledBack | Failed."""
    def record() -> None:
        UPGRADES.labels(namespace, node, result).inc()
        if duration_seconds is not None:
            UPGRADE_LAST_DURATION.labels(namespace, node).set(duration_seconds)
    _safe(record, "upgrade")


def record_transaction(namespace: str, node: str, tx_type: str, outcome: str) -> None:
    """A node transaction was sent for MayaNode `node`.

    tx_type: the `mayanode tx mayachain` subcommand (set-ip-address, set-version, mimir, …);
    outcome: ok | failed | transient (TxOutcome.kind).
    """
    _safe(lambda: TRANSACTIONS.labels(namespace, node, tx_type, outcome).inc(), "transaction")


# --- the HTTP endpoint ----------------------------------------------------------------------------
@dataclass
class MetricsServer:
    port: int
    _server: Any
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(port: int, addr: str = "0.0.0.0") -> MetricsServer | None:
    """Serve /metrics on `port` (0: off). A port already in use is logged, not fatal."""
    if not port:
        return None
    try:
        server, thread = start_http_server(port, addr=addr, registry=REGISTRY)
    except OSError as err:
        logger.error("metrics are not served: cannot listen on %s:%d (%s)", addr, port, err.strerror or err)
        return None
    logger.info("serving metrics on http://%s:%d/metrics", addr, server.server_port)
    return MetricsServer(port=server.server_port, _server=server, _thread=thread)
