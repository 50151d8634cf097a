"""MayaNode status from one observation: a pure function with its change events."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..observe.snapshot import ChainStatus, EndpointError, MayaNodeObservation, WorkloadObservation
from .conditions import Condition, condition_status, merge_conditions
from .events import EventSpec
from .halts import describe_halt, halts_in_effect
from .patches import merge_patch, owned_part


@dataclass(frozen=True)
class StatusInputs:
    """What the status planner needs from the spec, already resolved."""

    generation: int | None
    node_address: str | None
    target_version: str | None
    suspend: bool
    rest_url: str
    height_refresh_seconds: float = 60.0
    manages_external_ip: bool = False    # when True, the external-IP planner owns status.externalIP


@dataclass(frozen=True)
class StatusPlan:
    status: dict[str, Any]          # this planner's part of the status, complete
    previous: Mapping[str, Any]
    events: tuple[EventSpec, ...]

    @property
    def patch(self) -> dict[str, Any]:
        """The merge patch against the previous status ({} = nothing to write); the pass's writer makes its own."""
        return merge_patch(self.previous, self.status)


def iso(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_mayanode_status(
    inputs: StatusInputs, observed: MayaNodeObservation, previous: Mapping[str, Any] | None, now: datetime
) -> StatusPlan:
    previous = previous or {}
    api = observed.api
    height = api.chain.height if api.chain else None
    halts = halts_in_effect(api.network.mimir, api.network.inbound, height)
    conditions = _conditions(inputs, observed, halts)
    all_conditions = merge_conditions(previous.get("conditions"), conditions, now=iso(now), generation=inputs.generation)
    ready = condition_status(all_conditions, "Ready") == "True"

    status: dict[str, Any] = owned_part({
        "observedGeneration": inputs.generation,
        "phase": "Suspended" if inputs.suspend else ("Running" if ready else "Degraded"),
        "version": api.network.querier_version or observed.mayanode.version,
        "targetVersion": inputs.target_version,
        "node": _node_status(observed, inputs.node_address),
        "chain": _chain_status(observed, previous.get("chain"), now, inputs.height_refresh_seconds,
                               spec_changed=bool(previous) and previous.get("observedGeneration") != inputs.generation),
        "network": _network_status(observed, halts, previous.get("network")),
        "workloads": {
            "mayanode": _workload_status(observed.mayanode),
            "bifrost": _workload_status(observed.bifrost),
        },
        "conditions": all_conditions,
    })
    if not inputs.manages_external_ip:
        status["externalIP"] = _observed_ip(observed, previous.get("externalIP"))
    return StatusPlan(status=status, previous=previous, events=_events(previous, status))


def _api_error(observed: MayaNodeObservation) -> EndpointError | None:
    api = observed.api
    if api.reachable:
        return None
    return api.error_for("version") or api.error_for("status")


def _conditions(inputs: StatusInputs, observed: MayaNodeObservation, halts) -> list[Condition]:
    api = observed.api
    conds: list[Condition] = []

    workloads = _workloads_condition(inputs, observed)
    conds.append(workloads)

    api_error = _api_error(observed)
    if api_error is None:
        conds.append(Condition("NodeAPIReachable", "True", "Reachable", f"{inputs.rest_url} answers"))
    else:
        hint = " (expected: mayanode is scaled down)" if observed.mayanode.desired_replicas == 0 else ""
        conds.append(Condition("NodeAPIReachable", "False", api_error.reason, api_error.message + hint))

    conds.append(_registered_condition(inputs, observed))

    network_note = network_rpc_note(api.chain, api.network_rpc, [e for e in api.errors if e.endpoint == "networkRpc"])
    if api.chain is None:
        err = api.error_for("status")
        conds.append(Condition("Synced", "Unknown", "NoChainStatus",
                               (err.message if err else "RPC status unknown") + network_note))
    elif api.chain.catching_up:
        conds.append(Condition("Synced", "False", "CatchingUp", "the node is catching up with the chain" + network_note))
    else:
        conds.append(Condition("Synced", "True", "InSync", "the node is in sync with the chain" + network_note))

    mimir_error = api.error_for("mimir")
    if halts:
        conds.append(Condition("NetworkHalted", "True", "HaltsInEffect", "; ".join(describe_halt(h) for h in halts)))
    elif mimir_error:
        conds.append(Condition("NetworkHalted", "Unknown", "MimirUnavailable", mimir_error.message))
    else:
        conds.append(Condition("NetworkHalted", "False", "NoHalts", "no halt in effect"))

    account = api.account
    if account and account.jail and account.jail.release_height > (api.chain.height if api.chain else 0):
        conds.append(Condition("Jailed", "True", "Jailed",
                               f"jailed until height {account.jail.release_height}: {account.jail.reason}"))
    elif account:
        conds.append(Condition("Jailed", "False", "NotJailed", "not jailed"))

    conds.append(_ready_condition(conds))
    return conds


def _workloads_condition(inputs: StatusInputs, observed: MayaNodeObservation) -> Condition:
    workloads = (observed.mayanode, observed.bifrost)
    missing = [w.name for w in workloads if not w.exists]
    if missing:
        return Condition("WorkloadsReady", "False", "DeploymentMissing", f"deployment {', '.join(missing)} not found")
    if inputs.suspend:
        return Condition("WorkloadsReady", "False", "Suspended", "spec.suspend is true: mayanode and bifrost are scaled to 0")
    scaled_down = [w.name for w in workloads if w.desired_replicas == 0]
    if scaled_down:
        return Condition("WorkloadsReady", "False", "ScaledDown", f"{', '.join(scaled_down)} scaled to 0 replicas")
    not_ready = [w for w in workloads if w.ready_replicas < 1]
    if not_ready:
        details = [f"{w.name}: {_pod_problem(w)}" for w in not_ready]
        return Condition("WorkloadsReady", "False", "NotReady", "; ".join(details))
    return Condition("WorkloadsReady", "True", "Ready", "mayanode and bifrost are ready")


def _pod_problem(workload: WorkloadObservation) -> str:
    for pod in workload.pods:
        if pod.waiting_reason:
            return f"pod {pod.name} {pod.waiting_reason} (restarts {pod.restarts})"
    if not workload.pods:
        return "no pod"
    return f"pod {workload.pods[0].name} {workload.pods[0].phase}, not ready"


def _registered_condition(inputs: StatusInputs, observed: MayaNodeObservation) -> Condition:
    if not inputs.node_address:
        return Condition("NodeRegistered", "Unknown", "NodeAddressNotSet",
                         "spec.nodeAddress is not set: node account not observed")
    account = observed.api.account
    if account:
        return Condition("NodeRegistered", "True", "NodeAccountFound", f"node account status {account.status}")
    err = observed.api.error_for("node")
    if err and err.reason == "NotFound":
        return Condition("NodeRegistered", "False", "NodeAccountNotFound",
                         f"no node account {inputs.node_address} on chain: check spec.nodeAddress")
    return Condition("NodeRegistered", "Unknown", err.reason if err else "Unknown",
                     err.message if err else "node account not observed")


def _ready_condition(conds: list[Condition]) -> Condition:
    by_type = {cond.type: cond for cond in conds}
    for type_, reason in (("WorkloadsReady", "WorkloadsNotReady"), ("NodeAPIReachable", "NodeAPIUnreachable"),
                          ("Synced", "NotSynced")):
        cond = by_type[type_]
        if cond.status != "True":
            return Condition("Ready", "False", reason, cond.message)
    return Condition("Ready", "True", "NodeReady", "workloads ready, node API reachable, chain in sync")


def _node_status(observed: MayaNodeObservation, address: str | None) -> dict[str, Any] | None:
    account = observed.api.account
    if account is None:
        return {"address": address} if address else None
    return {
        "address": account.address,
        "status": account.status,
        "bond": account.bond,
        "slashPoints": account.slash_points,
        "jail": {"releaseHeight": account.jail.release_height, "reason": account.jail.reason} if account.jail else None,
        "preflight": (
            {"status": account.preflight.status, "reason": account.preflight.reason, "code": account.preflight.code}
            if account.preflight else None
        ),
        "registeredIP": account.ip_address or None,
        "version": account.version or None,
        "validatorConsPubKey": account.validator_cons_pub_key or None,
        "requestedToLeave": account.requested_to_leave or None,
    }


def network_height(chain: ChainStatus | None, sources: Iterable[ChainStatus]) -> int | None:
    """The network's height from the answers of `spec.api.networkRpc`: the highest among the endpoints that are in
    sync and on the node's chain. An endpoint still catching up does not know the network's head; one that reports
    another chain id (a testnet endpoint for a mainnet node) says nothing about this network. None: no endpoint
    qualifies (none configured, none answered), so the height lag is unknown rather than invented."""
    own_chain = chain.chain_id if chain else ""
    heights = [source.height for source in sources
               if not source.catching_up and (not own_chain or source.chain_id == own_chain)]
    return max(heights, default=None)


def network_rpc_note(chain: ChainStatus | None, answers: Sequence[ChainStatus], failures: Sequence[EndpointError]
                     ) -> str:
    """What the Synced condition says about `spec.api.networkRpc` endpoints that gave no usable height (nothing when
    all are usable or none is configured). No heights in it: the message must not change at every block."""
    own_chain = chain.chain_id if chain else ""
    other_chain = [a for a in answers if own_chain and a.chain_id != own_chain]
    syncing = [a for a in answers if a.catching_up and a not in other_chain]
    causes = [f.message for f in failures] + [f"an endpoint is on chain {a.chain_id or 'unknown'}, not {own_chain}"
                                              for a in other_chain] + ["an endpoint is catching up"] * len(syncing)
    if not causes:
        return ""
    total = len(answers) + len(failures)
    usable = total - len(causes)
    what = "the network's height is unknown" if usable == 0 else "the network's height is taken from the rest"
    return f"; spec.api.networkRpc: {len(causes)} of {total} endpoints unusable, {what} ({causes[0]})"


def _chain_status(observed: MayaNodeObservation, previous: Mapping[str, Any] | None, now: datetime,
                  refresh_seconds: float, spec_changed: bool = False) -> dict[str, Any] | None:
    """Heights move every block; rewrite them at most every `refresh_seconds` unless the sync state flips (or the
    spec changed: that pass writes the status anyway). The node's and the network's height are one snapshot,
    observed together, so their difference (the lag) is never mixed from two moments."""
    chain = observed.api.chain
    if chain is None:
        return dict(previous) if previous else None
    fresh: dict[str, Any] = {"height": chain.height, "catchingUp": chain.catching_up, "heightObservedAt": iso(now)}
    network = network_height(chain, observed.api.network_rpc)
    if network is not None:
        fresh["networkHeight"] = network
    if not previous or spec_changed or previous.get("catchingUp") != chain.catching_up:
        return fresh
    try:
        last = datetime.strptime(str(previous.get("heightObservedAt")), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=now.tzinfo)
    except ValueError:
        return fresh
    if (now - last).total_seconds() >= refresh_seconds or chain.height < int(previous.get("height") or 0):
        return fresh
    return dict(previous)


def _network_status(observed: MayaNodeObservation, halts, previous: Mapping[str, Any] | None) -> dict[str, Any] | None:
    net = observed.api.network
    if observed.api.error_for("version") and observed.api.error_for("asgard") and observed.api.error_for("mimir"):
        return dict(previous) if previous else None     # nothing new learnt: keep what we knew
    vault = net.vault
    previous = previous or {}
    return {
        "currentVersion": net.current_version or previous.get("currentVersion"),
        "nextVersion": net.next_version or previous.get("nextVersion"),
        "halts": [{"kind": h.kind, "key": h.key, **({"chain": h.chain} if h.chain else {})} for h in halts] or None,
        "vault": {"pubKey": vault.pub_key, "height": vault.block_height} if vault else previous.get("vault"),
        "lastChurnHeight": vault.block_height if vault else previous.get("lastChurnHeight"),
    }


def _observed_ip(observed: MayaNodeObservation, previous: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """With IP management off, the IP column shows the address registered on chain."""
    account = observed.api.account
    if account is None:
        return dict(previous) if previous else None
    return {"address": account.ip_address} if account.ip_address else None


def _workload_status(workload: WorkloadObservation) -> dict[str, Any] | None:
    if not workload.exists:
        return None
    return {
        "replicas": workload.desired_replicas,
        "readyReplicas": workload.ready_replicas,
        "image": workload.image,
        "version": workload.version,
    }


_FLIP_EVENTS = {
    # condition: (reason when it turns True, type, reason when it turns False, type)
    "Ready": ("NodeReady", "Normal", "NodeNotReady", "Warning"),
    "NodeAPIReachable": ("NodeAPIReachable", "Normal", "NodeAPIUnreachable", "Warning"),
    "Synced": ("Synced", "Normal", "SyncLost", "Warning"),
    "Jailed": ("NodeJailed", "Warning", "NodeReleased", "Normal"),
}


def _events(previous: Mapping[str, Any], status: Mapping[str, Any]) -> tuple[EventSpec, ...]:
    events: list[EventSpec] = []
    old_conds = previous.get("conditions") or []
    for cond in status["conditions"]:
        flip = _FLIP_EVENTS.get(cond["type"])
        before = condition_status(old_conds, cond["type"])
        if not flip or before is None or before == cond["status"] or cond["status"] == "Unknown":
            continue
        reason, type_ = (flip[0], flip[1]) if cond["status"] == "True" else (flip[2], flip[3])
        events.append(EventSpec(type_, reason, cond["message"]))

    old_node, new_node = previous.get("node") or {}, status.get("node") or {}
    if old_node.get("status") and new_node.get("status") and old_node["status"] != new_node["status"]:
        events.append(EventSpec("Normal", "NodeStatusChanged",
                                f"node account status {old_node['status']} → {new_node['status']}"))

    old_net, new_net = previous.get("network") or {}, status.get("network") or {}
    old_vault, new_vault = (old_net.get("vault") or {}).get("pubKey"), (new_net.get("vault") or {}).get("pubKey")
    if old_vault and new_vault and old_vault != new_vault:
        events.append(EventSpec("Normal", "ChurnDetected",
                                f"new Asgard vault {new_vault} at height {new_net['vault']['height']}"))
    old_halts = {h["key"]: h for h in old_net.get("halts") or []}
    new_halts = {h["key"]: h for h in new_net.get("halts") or []}
    for key in sorted(new_halts.keys() - old_halts.keys()):
        events.append(EventSpec("Warning", "HaltStarted", _halt_text(new_halts[key])))
    if previous.get("network") is not None:
        for key in sorted(old_halts.keys() - new_halts.keys()):
            events.append(EventSpec("Normal", "HaltEnded", _halt_text(old_halts[key])))
    if previous.get("version") and status.get("version") and previous["version"] != status["version"]:
        events.append(EventSpec("Normal", "VersionChanged", f"mayanode runs {status['version']} (was {previous['version']})"))
    return tuple(events)


def _halt_text(halt: Mapping[str, Any]) -> str:
    where = f" on {halt['chain']}" if halt.get("chain") else " network-wide"
    return f"{halt['kind']} halt{where} ({halt['key']})"
