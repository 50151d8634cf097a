"""The node's public IP: where it comes from, where it is written, whether pods restart, whether it is announced.

Pure. `plan_external_ip` decides from (spec, observation, registered IP, previous status, halts, now); the facet
applies the plan in order (ConfigMaps → Deployments → set-ip-address) and folds the transaction's outcome back
with `record_sent` (before sending) and `record_outcome` (after).

Pods restart only when the value they were started with differs from the new one:
- a literal `EXTERNAL_IP` env value that differs is patched (that restarts the pods);
- for a ConfigMap-fed env, the Deployment carries an annotation with the IP its pods were started for; without
  one, pods created before the operator last wrote the ConfigMap (its `written-at` annotation) restart, pods
  created after it already read the new value and are only recorded. A node-launcher namespace whose
  ConfigMaps already hold the right address is adopted without a restart.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..api.mayanode import ExternalIPSource, ExternalIPSpec, HaltAction, HaltPolicy
from ..observe.gateway import ConfigMapState, ConsumerState, ExternalIPObservation, ServiceAddress
from .conditions import Condition
from .events import EventSpec
from .halt_policy import HaltLike, blocking_halts, waiting_message
from .transactions import TxOutcome, TxRequest, may_have_been_broadcast

CONDITION = "ExternalIPAssigned"
PENDING_TIMEOUT = timedelta(minutes=5)      # a pending announcement not seen on chain by then is sent again
FAILURE_BACKOFF = timedelta(minutes=10)     # a refused announcement is tried again after this (or a new address)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return None


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def unusable(address: str) -> str | None:
    """Why an address cannot be a node's public address (None: it can)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r} is not an IP address"
    for attr, what in (("is_unspecified", "unspecified"), ("is_loopback", "a loopback address"),
                       ("is_link_local", "link-local"), ("is_multicast", "multicast"), ("is_reserved", "reserved")):
        if getattr(ip, attr):
            return f"{address} is {what}"
    return None


# --------------------------------------------------------------------------------------------------
# Where the address comes from
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AddressDecision:
    address: str | None
    reason: str          # Found | WaitingForLoadBalancer | ServiceNotFound | ResolveFailed | InvalidAddress
    message: str


def address_order(address: str) -> tuple[int, int]:
    """A fixed order of addresses: IPv4 before IPv6, then numeric (203.0.113.9 before 203.0.113.10)."""
    ip = ipaddress.ip_address(address)
    return ip.version, int(ip)


def choose_address(usable: Sequence[str], in_use: Sequence[str | None]) -> tuple[str, bool]:
    """One address among the several a hostname resolved to (a LoadBalancer in several zones), and whether it is one
    already in use. Never the resolver's order: DNS rotates its answers, and each change of address rewrites the
    ConfigMaps, restarts mayanode and bifrost and sends set-ip-address. The first address of `in_use` that is still
    among `usable` is kept; when none is (its zone's address left the answer), the lowest in `address_order`: the
    node moves once, and the next passes keep the new address."""
    for address in in_use:
        if address and address in usable:
            return address, True
    return min(usable, key=address_order), False


def desired_address(spec: ExternalIPSpec, source: ServiceAddress | None,
                    in_use: Sequence[str | None] = ()) -> AddressDecision:
    """`in_use`: the addresses the node uses now, the one to keep first (see `addresses_in_use`)."""
    if spec.source == ExternalIPSource.STATIC:
        address = str(spec.address or "")
        why = unusable(address)
        if why:
            return AddressDecision(None, "InvalidAddress", f"spec.externalIP.address: {why}")
        return AddressDecision(address, "Found", f"static address {address}")
    name = spec.service.name
    if source is None or not source.found:
        return AddressDecision(None, "ServiceNotFound", f"Service {name} not found")
    if source.ip:
        why = unusable(source.ip)
        if why:
            return AddressDecision(None, "InvalidAddress", f"Service {name} ingress: {why}")
        return AddressDecision(source.ip, "Found", f"LoadBalancer {name} ingress IP {source.ip}")
    if source.hostname:
        if source.resolve_error or not source.resolved:
            return AddressDecision(None, "ResolveFailed", f"Service {name} ingress hostname: "
                                   f"{source.resolve_error or 'no address'}")
        usable = sorted({a for a in source.resolved if unusable(a) is None}, key=address_order)
        if not usable:
            return AddressDecision(None, "InvalidAddress", f"Service {name} ingress hostname {source.hostname}: "
                                   f"{unusable(min(source.resolved))}")
        address, kept = choose_address(usable, in_use)
        among = ""
        if len(usable) > 1:
            among = f" (of {', '.join(usable)}: {'the address in use' if kept else 'the lowest'})"
        return AddressDecision(address, "Found", f"LoadBalancer {name} hostname {source.hostname} → {address}{among}")
    if source.type != "LoadBalancer":
        return AddressDecision(None, "WaitingForLoadBalancer",
                               f"Service {name} is of type {source.type or 'ClusterIP'}: it gets no LoadBalancer "
                               "address (use type LoadBalancer or source Static)")
    return AddressDecision(None, "WaitingForLoadBalancer",
                           f"waiting for the LoadBalancer of Service {name} to get an address")


# --------------------------------------------------------------------------------------------------
# ConfigMaps and Deployments
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfigMapWrite:
    name: str
    create: bool
    value: str
    previous: str | None


@dataclass(frozen=True)
class DeploymentChange:
    deployment: str
    restart: bool                            # False: only record the IP on the Deployment (nothing restarts)
    env: tuple[tuple[str, str], ...] = ()    # (container, value) literal EXTERNAL_IP values to set
    reason: str = ""


def plan_config_maps(address: str, config_maps: tuple[ConfigMapState, ...]) -> tuple[ConfigMapWrite, ...]:
    return tuple(ConfigMapWrite(cm.name, not cm.exists, address, cm.value)
                 for cm in config_maps if not cm.exists or cm.value != address)


def plan_deployments(address: str, consumers: tuple[ConsumerState, ...], config_maps: tuple[ConfigMapState, ...],
                     writes: tuple[ConfigMapWrite, ...]) -> tuple[DeploymentChange, ...]:
    written = {w.name for w in writes}
    markers = {cm.name: cm.written_at for cm in config_maps}
    changes = []
    for consumer in consumers:
        if not consumer.exists or not consumer.reads_external_ip:
            continue
        env = tuple((c, address) for c, value in consumer.literal if value != address)
        if env:
            changes.append(DeploymentChange(consumer.deployment, True, env,
                                            f"its EXTERNAL_IP env is set literally to "
                                            f"{consumer.literal[0][1] or 'nothing'}"))
            continue
        if consumer.recorded == address or not consumer.config_maps:
            continue
        if not consumer.pods_created:
            changes.append(DeploymentChange(consumer.deployment, False, reason="no running pod"))
        elif written & set(consumer.config_maps):
            changes.append(DeploymentChange(consumer.deployment, True,
                                            reason="its pods read the previous address from the ConfigMap"))
        elif consumer.recorded is not None:
            changes.append(DeploymentChange(consumer.deployment, True,
                                            reason=f"its pods were started with {consumer.recorded}"))
        elif _started_before_write(consumer, markers):
            changes.append(DeploymentChange(consumer.deployment, True,
                                            reason="its pods started before the ConfigMap was updated"))
        else:
            changes.append(DeploymentChange(consumer.deployment, False, reason="its pods already read the address"))
    return tuple(changes)


def _started_before_write(consumer: ConsumerState, markers: Mapping[str, str | None]) -> bool:
    written = [t for t in (parse_time(markers.get(n)) for n in consumer.config_maps) if t]
    if not written:
        return False
    last = max(written)
    created = [parse_time(c) for c in consumer.pods_created]
    return any(c is None or c <= last for c in created)


# --------------------------------------------------------------------------------------------------
# The whole plan
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExternalIPInputs:
    spec: ExternalIPSpec
    observed: ExternalIPObservation
    registered_ip: str | None                # the node account's ip_address ("" = none); None: account not seen
    previous: Mapping[str, Any] | None       # status.externalIP as stored
    previous_condition: Mapping[str, Any] | None
    halt_policy: HaltPolicy
    halts: tuple[HaltLike, ...]
    now: datetime
    height: int | None = None
    workloads_locked: str | None = None
    account_expected: bool = True            # spec.nodeAddress is set: an unseen account is an observation gap


@dataclass(frozen=True)
class ExternalIPPlan:
    address: AddressDecision
    config_map_writes: tuple[ConfigMapWrite, ...] = ()
    deployment_changes: tuple[DeploymentChange, ...] = ()
    announce: TxRequest | None = None
    attempts: int = 1
    resend_note: str | None = None
    status: dict[str, Any] = field(default_factory=dict)
    condition: Condition | None = None
    events: tuple[EventSpec, ...] = ()

    @property
    def restarts(self) -> tuple[DeploymentChange, ...]:
        return tuple(c for c in self.deployment_changes if c.restart)


def addresses_in_use(inputs: ExternalIPInputs) -> tuple[str | None, ...]:
    """The addresses the node uses now, the one whose change costs most first: the ConfigMaps' (the pods read it:
    a change restarts them), the operator's last choice, the one whose announcement is pending, the chain's (a change
    is a transaction), the one the operator announced."""
    previous = inputs.previous or {}
    return (_common_value(inputs.observed.config_maps), previous.get("address"),
            (previous.get("pending") or {}).get("address"), inputs.registered_ip, previous.get("announcedAddress"))


def plan_external_ip(inputs: ExternalIPInputs) -> ExternalIPPlan:
    spec, previous = inputs.spec, dict(inputs.previous or {})
    decision = desired_address(spec, inputs.observed.source, addresses_in_use(inputs))
    status: dict[str, Any] = {
        "address": previous.get("address"),
        "source": str(spec.source),
        "configMapsAddress": _common_value(inputs.observed.config_maps),
        "announcedAddress": previous.get("announcedAddress"),
        "announcedAt": previous.get("announcedAt"),
        "pending": previous.get("pending"),
        "lastFailure": previous.get("lastFailure"),
    }
    events: list[EventSpec] = []
    if decision.address is None:
        status["address"] = None
        condition = Condition(CONDITION, "False", decision.reason, decision.message)
        return ExternalIPPlan(decision, status=_clean(status), condition=condition,
                              events=tuple(_transition_events(inputs.previous_condition, condition)))

    address = decision.address
    if previous.get("address") and previous["address"] != address:
        events.append(EventSpec("Normal", "ExternalIPChanged", f"public IP {previous['address']} → {address} "
                                f"({decision.message}); writing it to the node's ConfigMaps"))
    status["address"] = address
    writes = plan_config_maps(address, inputs.observed.config_maps)
    if writes:
        status["configMapsAddress"] = address
    changes = plan_deployments(address, inputs.observed.consumers, inputs.observed.config_maps, writes)
    status = _confirm(status, inputs.registered_ip)

    plan_kwargs: dict[str, Any] = {}
    condition = _condition(inputs, status, address, changes)
    if inputs.workloads_locked:
        changes = ()
    changes = tuple(c for c in changes if not (c.restart and _consumer(inputs, c.deployment).strategy != "Recreate"))
    if condition is None:
        request, attempts, note, condition = _announce(inputs, status, address)
        plan_kwargs = {"announce": request, "attempts": attempts, "resend_note": note}
    events += _transition_events(inputs.previous_condition, condition)
    return ExternalIPPlan(decision, writes, changes, status=_clean(status), condition=condition,
                          events=tuple(events), **plan_kwargs)


def _common_value(config_maps: tuple[ConfigMapState, ...]) -> str | None:
    values = {cm.value for cm in config_maps if cm.exists}
    return values.pop() or None if len(values) == 1 and all(cm.exists for cm in config_maps) else None


def _confirm(status: dict[str, Any], registered: str | None) -> dict[str, Any]:
    """A pending announcement the chain now shows is confirmed."""
    pending = status.get("pending") or None
    if pending and registered and registered == pending.get("address"):
        return {**status, "announcedAddress": pending["address"], "announcedAt": pending.get("sentAt"),
                "pending": None, "lastFailure": None}
    return status


def _condition(inputs: ExternalIPInputs, status: Mapping[str, Any], address: str,
               changes: tuple[DeploymentChange, ...]) -> Condition | None:
    """The condition when no announcement is to be considered; None when the announcement decides it."""
    if inputs.workloads_locked and changes:
        return Condition(CONDITION, "False", "WorkloadsLocked",
                         f"{address} is written to the ConfigMaps; restarting pods waits: {inputs.workloads_locked}")
    unsafe = [c for c in changes if c.restart and _consumer(inputs, c.deployment).strategy != "Recreate"]
    if unsafe:
        names = ", ".join(c.deployment for c in unsafe)
        return Condition(CONDITION, "False", "RestartRefused",
                         f"{address} is written to the ConfigMaps but deployment {names} does not use strategy "
                         "Recreate: restarting it would run two pods at once; set spec.strategy.type: Recreate")
    registered = inputs.registered_ip
    if registered is None and inputs.account_expected:
        return Condition(CONDITION, "Unknown", "RegistrationUnknown",
                         f"{address} written to the node's ConfigMaps; the node account could not be read (see "
                         "NodeAPIReachable), so the registered IP is not compared and nothing is announced")
    if registered is None:
        return Condition(CONDITION, "True", "Assigned",
                         f"{address} written to the node's ConfigMaps; spec.nodeAddress is not set, so the "
                         "registered IP is not compared")
    if registered == address:
        if status.get("announcedAddress") == address:
            return Condition(CONDITION, "True", "Announced", f"{address} announced and registered on chain")
        return Condition(CONDITION, "True", "Registered", f"{address} is the IP registered on chain")
    return None


def _consumer(inputs: ExternalIPInputs, name: str) -> ConsumerState:
    return next(c for c in inputs.observed.consumers if c.deployment == name)


def _announce(inputs: ExternalIPInputs, status: dict[str, Any], address: str
              ) -> tuple[TxRequest | None, int, str | None, Condition]:
    registered = inputs.registered_ip or "no IP"
    request = TxRequest("set-ip-address", (address,))
    pending = status.get("pending") or None
    if not inputs.spec.announce:
        return None, 1, None, Condition(
            CONDITION, "False", "Mismatch",
            f"the chain has {registered} registered but the node's address is {address}; set "
            "spec.externalIP.announce: true, or add a nodeActions entry with action AnnounceIP")
    attempts, note = 1, None
    if pending and pending.get("address") == address:
        sent = parse_time(pending.get("sentAt"))
        if sent is not None and _naive(inputs.now) - _naive(sent) < PENDING_TIMEOUT:
            txhash = f" (txhash {pending['txhash']})" if pending.get("txhash") else ""
            return None, 1, None, Condition(
                CONDITION, "False", "Pending",
                f"set-ip-address {address} sent at {pending.get('sentAt')}{txhash}; waiting for the chain to show it")
        attempts = int(pending.get("attempts") or 1) + 1
        note = (f"the announcement sent at {pending.get('sentAt')} did not show on chain within "
                f"{int(PENDING_TIMEOUT.total_seconds())}s; sent again")
    failure = status.get("lastFailure") or None
    if failure and failure.get("what") == request.describe() and not failure.get("transient"):
        at = parse_time(failure.get("at"))
        if at is not None and _naive(inputs.now) - _naive(at) < FAILURE_BACKOFF:
            return None, 1, None, Condition(
                CONDITION, "False", "AnnounceFailed",
                f"set-ip-address {address} failed at {failure.get('at')}: {failure.get('message')}; tried again "
                f"{int(FAILURE_BACKOFF.total_seconds() // 60)} minutes later or for a new address")
    halts = blocking_halts(inputs.halt_policy, HaltAction.ANNOUNCE_IP, inputs.halts)
    if halts:
        return None, 1, None, Condition(CONDITION, "False", "WaitingForHalt",
                                        waiting_message(HaltAction.ANNOUNCE_IP, halts[0], more=len(halts) - 1))
    return request, attempts, note, Condition(
        CONDITION, "False", "Pending", f"announcing {address} (the chain has {registered} registered)")


def _transition_events(previous: Mapping[str, Any] | None, condition: Condition) -> list[EventSpec]:
    """Warnings when the condition newly turns into a state that needs a human."""
    if previous and previous.get("reason") == condition.reason and previous.get("status") == condition.status:
        return []
    warn = {"Mismatch": "ExternalIPMismatch", "RestartRefused": "ActionRefused", "InvalidAddress": "ExternalIPInvalid",
            "ServiceNotFound": "ExternalIPSourceMissing", "ResolveFailed": "ExternalIPResolveFailed",
            "WaitingForHalt": "ActionWaiting"}
    if condition.reason in warn:
        return [EventSpec("Warning", warn[condition.reason], condition.message)]
    if condition.status == "True" and previous and previous.get("status") != "True":
        return [EventSpec("Normal", "ExternalIPAssigned", condition.message)]
    return []


def _clean(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if v is not None}


# --------------------------------------------------------------------------------------------------
# Folding a transaction back into status
# --------------------------------------------------------------------------------------------------
def record_sent(status: Mapping[str, Any], request: TxRequest, *, now: datetime, height: int | None,
                attempts: int, note: str | None) -> dict[str, Any]:
    """The status to persist *before* sending: the announcement is pending from now on."""
    pending = {"address": request.args[0], "sentAt": iso(now), "attempts": attempts}
    if height is not None:
        pending["height"] = height
    if note:
        pending["message"] = note
    return {**status, "pending": pending}


def record_outcome(status: Mapping[str, Any], request: TxRequest, outcome: TxOutcome, *, now: datetime
                   ) -> tuple[dict[str, Any], Condition, tuple[EventSpec, ...]]:
    address = request.args[0]
    new = dict(status)
    if outcome.ok:
        new["pending"] = {**(status.get("pending") or {}), **({"txhash": outcome.txhash} if outcome.txhash else {})}
        new.pop("lastFailure", None)
        txhash = f", txhash {outcome.txhash}" if outcome.txhash else ""
        return (new, Condition(CONDITION, "False", "Pending", f"set-ip-address {address} sent{txhash}; waiting for "
                               "the chain to show it"),
                (EventSpec("Normal", "IPAnnounced", f"sent set-ip-address {address}{txhash}; the chain applies it "
                           "at the next block"),))
    failure = {"what": request.describe(), "at": iso(now), "transient": outcome.kind == "transient",
               "message": outcome.message}
    new["lastFailure"] = failure
    if outcome.kind == "transient" and may_have_been_broadcast(outcome):
        return (new, Condition(CONDITION, "False", "Pending",
                               f"set-ip-address {address}: no clear answer ({outcome.message}); waiting for the chain "
                               "before sending again"), ())
    new.pop("pending", None)
    if outcome.kind == "transient":
        return (new, Condition(CONDITION, "False", "AnnounceRetrying",
                               f"set-ip-address {address} did not go through ({outcome.message}); retrying"),
                (EventSpec("Warning", "IPAnnounceFailed", f"set-ip-address {address}: {outcome.message}; "
                           "retrying at the next pass"),))
    return (new, Condition(CONDITION, "False", "AnnounceFailed", f"set-ip-address {address} failed: {outcome.message}"),
            (EventSpec("Warning", "IPAnnounceFailed", f"set-ip-address {address} failed: {outcome.message}; tried "
                       f"again in {int(FAILURE_BACKOFF.total_seconds() // 60)} minutes or for a new address"),))
