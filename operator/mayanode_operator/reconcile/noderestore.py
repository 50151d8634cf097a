"""NodeRestore: load → decide (plan/restore.py) → run steps until one must wait → status. Sequencing only.

Each step records its start in status before it acts and its completion before the next begins (`Ctx.save`),
so a restarted operator resumes at the first step without `completedAt`; a step that a restart may simply run
again sends its completion with the next write (`defer`), which keeps the hand-off's path to one status write.
Steps that must happen once (scaling down, the Secret swap, stopping the old node, scaling up, set-ip-address) are
recorded before they act and look at the world before acting again on resume. Decisions (which step, the guard,
the high-water mark, the lock) are pure functions in plan/restore*.py; this module does the I/O around them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import posixpath
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from .. import chainkeys, metrics
from ..adapters.exec import ExecError, ExecPort, KubernetesExec
from ..adapters.keylock import KeyLocks, LockConflict
from ..adapters.transactions import NodeSigner
from ..adapters.volumes import (
    DEFAULT_HELPER_IMAGE,
    HELPER_CONTAINER,
    DirEntry,
    FileEntry,
    NodeVolumes,
    VolumeError,
    VolumeSession,
    await_helper,
    helper_ended,
    helper_placement,
    helper_pod_body,
    helper_running,
    launch_helper,
)
from ..adapters.workloads import UnsafeWorkloadChange, Workloads
from ..api import naming
from ..api.mayanode import HaltAction, MayaNodeSpec
from ..api.restore import NodeRestoreSpec
from ..backup import BackupError, BackupItem
from ..backup.stores import StoreError, StoreReason
from ..observe.nodeapi import EndpointFailure, NodeApi, fetch_json, parse_rpc_status
from ..plan import restore as plan
from ..plan import restore_guard as guard
from ..plan.backup_items import (
    BIFROST,
    CONSENSUS_KEY_PATH,
    KEY_SHARE_GLOB,
    MAYANODE,
    SIGN_STATE_PATH,
    VolumeTarget,
    volume_targets,
)
from ..plan.conditions import merge_conditions
from ..plan.events import EventSpec
from ..plan.halt_policy import blocking_halt, waiting_message
from ..plan.patches import merge_patch
from ..plan.restore_files import (
    BackupFacts,
    SecretRef,
    check_backup,
    check_target_identity,
    classify_key_shares,
    write_plan,
)
from ..plan.transactions import TxRequest
from .node_tx import kubernetes_transactions
from .nodebackup import backup_location as nodebackup_location
from .nodebackup import describe_validation_error, load_backup, read_identity
from .runtime import TRANSIENT_ERRORS, Runtime, describe_api_error, describe_error

logger = logging.getLogger(__name__)
STOP_WATCH_SECONDS = 3.0       # how long one pass watches the old node's pods end before it requeues
STOP_POLL_SECONDS = 0.01

TRANSIENT = (*TRANSIENT_ERRORS, LockConflict, EndpointFailure)
LABEL_RESTORE = f"{naming.GROUP}/restore"
MAX_STEPS_PER_PASS = 32


class StepFailed(Exception):
    """The step cannot succeed: fail the restore with this reason (a CamelCase word) and message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Wait(Exception):
    """The step waits for the world: save `status` (progress) and come back after `delay` seconds."""

    def __init__(self, delay: float, status: dict[str, Any] | None = None) -> None:
        super().__init__("wait")
        self.delay = delay
        self.status = status


@dataclass
class Ctx:
    runtime: Runtime
    body: dict[str, Any]
    namespace: str
    name: str
    spec: NodeRestoreSpec | None
    node_body: dict[str, Any] | None
    node_spec: MayaNodeSpec | None
    status: dict[str, Any]
    generation: int | None
    announce: bool
    exec_port: ExecPort
    _backup: tuple[Any, list[BackupItem]] | None = field(default=None, repr=False)
    _events: list[asyncio.Task[None]] = field(default_factory=list, repr=False)
    _stored: dict[str, Any] = field(default_factory=dict, repr=False)
    # Hand-off hints within one pass (a restarted operator, or the next pass, looks again). StopOldNode found the
    # target without pods while it read the old node's vote, so WriteSignState, next, does not ask again; it read
    # the target MayaNode then too, for ScaleUp; it deleted the leftover helpers before the stop, so only the ones
    # in use are deleted after, by name; RemoveHelpers' deletions run while ScaleUp records its start.
    target_seen_down: bool = field(default=False, repr=False)
    helpers_swept: "SweptHelpers | None" = field(default=None, repr=False)
    node_reread: "NodeRead | None" = field(default=None, repr=False)
    helper_removal: "asyncio.Future[list[Any]] | None" = field(default=None, repr=False)
    events_held: bool = field(default=False, repr=False)
    _held: list[EventSpec] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._stored = dict(self.status)

    @property
    def now(self) -> datetime:
        return self.runtime.now()

    @property
    def node_name(self) -> str:
        return self.spec.node_ref.name if self.spec else str(((self.body.get("spec") or {}).get("nodeRef") or {})
                                                               .get("name") or "")

    @property
    def target_key(self) -> str:
        return f"{self.namespace}/{self.node_name}"

    @property
    def old_key(self) -> str | None:
        old = self.spec.double_sign_guard.old_node if self.spec else None
        return f"{old.namespace or self.namespace}/{old.name}" if old else None

    @property
    def spec_node_name(self) -> str:
        return str(((self.body.get("spec") or {}).get("nodeRef") or {}).get("name") or "")

    @property
    def poll(self) -> float:
        return float(getattr(self.runtime.config, "restore_poll_seconds", 0.25))

    @property
    def owner_reference(self) -> dict[str, Any]:
        return naming.owner_reference(naming.NODERESTORE_KIND, self.body)

    async def save(self, new: Mapping[str, Any], events: Sequence[EventSpec | None] = (), *,
                   defer: bool = False) -> None:
        """Write the difference between what is stored and `new` (with its conditions), then the events.

        `defer`: only for the completion of a step that may safely run again (it checks and writes the same again):
        the record goes out with the next write (at the latest when the pass ends), one request less on the
        hand-off's path."""
        new = dict(new)
        new["observedGeneration"] = self.generation
        new["conditions"] = merge_conditions(self.status.get("conditions"), plan.conditions_for(new),
                                             now=plan.iso(self.now), generation=self.generation)
        self.status = {k: v for k, v in new.items() if v is not None}
        if not defer:
            await self.write()
        self.emit(events)

    def emit(self, events: Sequence[EventSpec | None]) -> None:
        """Events go out while the next step runs (the pass waits for them before it ends): on the hand-off's path
        every request counts as downtime. Held ones wait for `release_events`."""
        wanted = [e for e in events if e is not None]
        if wanted and self.events_held:
            self._held.extend(wanted)
        elif wanted:
            self._events.append(asyncio.create_task(self._emit(wanted)))

    def hold_events(self) -> None:
        """From the old node's stop to the new node's start, events wait: nothing but the hand-off's own requests
        competes for the API server and this process then."""
        self.events_held = True

    def release_events(self) -> None:
        held, self._held, self.events_held = self._held, [], False
        self.emit(held)

    async def write(self) -> None:
        """Store what `status` holds now, if it differs from what is stored."""
        gone = {k: None for k in self._stored if k not in self.status}      # fields a transition cleared
        patch = merge_patch(self._stored, {**gone, **self.status})
        if not patch:
            return
        await self.runtime.kube.patch_custom_status(naming.NODERESTORE_PLURAL, self.namespace, self.name, patch)
        if self.status.get("phase") in plan.FINISHED and self._stored.get("phase") != self.status.get("phase"):
            metrics.observe_restore(self.namespace, self.spec_node_name, outcome=str(self.status["phase"]),
                                    downtime_seconds=self.status.get("downtimeSeconds"))
        self._stored = dict(self.status)

    async def _emit(self, events: Sequence[EventSpec]) -> None:
        for event in events:
            try:
                await self.runtime.kube.emit_event(self.body, event)
            except TRANSIENT as err:
                logger.warning("could not emit event %s: %s", event.reason, type(err).__name__)

    async def flush_events(self) -> None:
        if self.helper_removal is not None:          # started by RemoveHelpers, left by a step that failed since
            await asyncio.gather(self.helper_removal, return_exceptions=True)
            self.helper_removal = None
        self.release_events()
        while self._events:
            pending, self._events = self._events, []
            await asyncio.gather(*pending, return_exceptions=True)


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------
async def load(runtime: Runtime, namespace: str, name: str) -> tuple[Ctx, plan.RestoreInputs] | None:
    body = await runtime.kube.get_custom(naming.NODERESTORE_PLURAL, namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return None
    status = dict(body.get("status") or {})
    spec, spec_error = None, None
    try:
        spec = NodeRestoreSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        spec_error = describe_validation_error(err)
    node_body = node_spec = None
    if spec is not None:
        node_body = await runtime.kube.get_custom(naming.MAYANODE_PLURAL, namespace, spec.node_ref.name)
        if node_body is not None:
            try:
                node_spec = MayaNodeSpec.model_validate(node_body.get("spec") or {})
            except ValidationError as err:
                spec_error = f"MayaNode {spec.node_ref.name}: {describe_validation_error(err)}"
                spec = None
    announce = False
    halt_text = None
    if spec is not None and node_spec is not None:
        announce = spec.announce_ip if spec.announce_ip is not None else bool(
            node_spec.external_ip and node_spec.external_ip.announce)
        halt_text = await restore_halt(runtime, spec, node_spec, node_body or {}, status)
    generation = (body.get("metadata") or {}).get("generation")
    ahead = await restore_ahead(runtime, body, spec, status, generation)
    ctx = Ctx(runtime, body, namespace, name, spec, node_body, node_spec, status, generation, announce,
              KubernetesExec(runtime.kube.api_client))
    inputs = plan.RestoreInputs(spec=spec, status=status, generation=generation, now=runtime.now(),
                                announce=announce, halt=halt_text, node_found=node_body is not None,
                                spec_error=spec_error, ahead=ahead)
    return ctx, inputs


async def restore_ahead(runtime: Runtime, body: Mapping[str, Any], spec: NodeRestoreSpec | None,
                        status: Mapping[str, Any], generation: int | None) -> str | None:
    """Another NodeRestore of the same MayaNode that goes first (plan.restore_ahead), from one LIST of the
    namespace's NodeRestores with this one as just read. Not looked up when nothing could act on the answer."""
    phase = status.get("phase")
    if spec is None or phase == "Completed" or (phase == "Failed" and generation == status.get("observedGeneration")):
        return None
    meta = body.get("metadata") or {}
    listed = await runtime.kube.list_custom(naming.NODERESTORE_PLURAL, str(meta.get("namespace")))
    restores = [r for r in listed if (r.get("metadata") or {}).get("name") != meta.get("name")] + [body]
    return plan.restore_ahead(str(meta.get("name")), spec.node_ref.name, restores)


async def restore_halt(runtime: Runtime, spec: NodeRestoreSpec, node_spec: MayaNodeSpec, node_body: Mapping[str, Any],
                       status: Mapping[str, Any]) -> str | None:
    """What holds the restore back before it touches anything (None: go ahead). Halts matter only then, so other
    MayaNodes are listed only while the restore has not started and its own node cannot see the network."""
    if spec.force or plan.step_record(status, plan.VERIFY) is not None or status.get("phase") in plan.FINISHED:
        return None
    peers: list[dict[str, Any]] = []
    if not plan.api_reachable(node_body):
        from .facet_replicas import list_all_mayanodes
        peers = await list_all_mayanodes(runtime)
    halts, source = plan.restore_halts(node_body, peers)
    halt = blocking_halt(node_spec.halt_policy, HaltAction.RESTORE, halts)
    if halt is None:
        return None
    return waiting_message(HaltAction.RESTORE, halt) + (f" ({source})" if source else "") + " (or set spec.force: true)"


async def reconcile_noderestore(runtime: Runtime, namespace: str, name: str) -> float | None:
    """Run steps until one waits; returns seconds until the next pass (None: finished or gone)."""
    loaded = await load(runtime, namespace, name)
    if loaded is None:
        return None
    ctx, inputs = loaded
    try:
        return await run_pass(runtime, ctx, inputs)
    finally:
        try:
            await ctx.write()                 # a deferred step record
        finally:
            await ctx.flush_events()


async def run_pass(runtime: Runtime, ctx: Ctx, inputs: plan.RestoreInputs) -> float | None:
    namespace, name = ctx.namespace, ctx.name
    for _ in range(MAX_STEPS_PER_PASS):
        decision = plan.decide(inputs)
        log = logger.debug if decision.resume or decision.action == plan.Action.IDLE else logger.info
        log("NodeRestore %s/%s: %s %s", namespace, name, decision.action.value, decision.step or "")
        try:
            delay = await run_decision(ctx, decision)
        except Wait as wait:
            if wait.status is not None:
                await ctx.save(wait.status)
            return wait.delay
        except StepFailed as err:
            await fail(ctx, decision.step or plan.VERIFY, err.reason, err.message)
            return None
        except _Handled:
            return None
        except (VolumeError, ExecError) as err:
            await note_transient(ctx, decision.step, str(err))
            return max(ctx.poll * 8, 2.0)
        except BackupError as err:       # store, archive or crypto: the backup cannot be used as it is
            if isinstance(err, StoreError) and err.reason == StoreReason.UNREACHABLE:
                await note_transient(ctx, decision.step, err.message)
                return 5.0
            await fail(ctx, decision.step or plan.VERIFY, str(err.reason), err.message)
            return None
        except UnsafeWorkloadChange as err:
            await fail(ctx, decision.step or plan.VERIFY, "UnsafeWorkloadChange", str(err))
            return None
        except ApiException as err:
            if err.status in (401, 403):
                # Not allowed: no retry makes it allowed, so say what was refused (a spec change resumes).
                await fail(ctx, decision.step or plan.VERIFY, "Forbidden", describe_api_error(err))
                return None
            await note_transient(ctx, decision.step, describe_api_error(err))
            return max(ctx.poll * 8, 2.0)
        except TRANSIENT as err:
            await note_transient(ctx, decision.step, describe_error(err))
            return max(ctx.poll * 8, 2.0)
        if delay is not None:
            return delay
        if ctx.status.get("phase") in plan.FINISHED:
            runtime.queue.add((naming.MAYANODE_PLURAL, namespace, ctx.node_name))
            return None
        inputs = plan.RestoreInputs(spec=ctx.spec, status=ctx.status, generation=ctx.generation, now=runtime.now(),
                                    announce=ctx.announce, halt=inputs.halt, node_found=inputs.node_found,
                                    spec_error=inputs.spec_error, ahead=inputs.ahead)
    return ctx.poll


async def note_transient(ctx: Ctx, step: str | None, message: str) -> None:
    logger.warning("NodeRestore %s/%s: %s will be retried: %s", ctx.namespace, ctx.name, step, message)
    if step in plan.PHASE_OF:
        await ctx.save(plan.progress(ctx.status, step, ctx.now, f"retrying: {message[:300]}"))


async def fail(ctx: Ctx, step: str, reason: str, message: str, **extra: Any) -> None:
    if step == plan.SCALE_DOWN and not plan.step_done(ctx.status, plan.SCALE_DOWN):
        node_down = await scale_down_left_node_down(ctx)
    else:
        node_down = plan.node_is_down(ctx.status)
    extra.setdefault("nodeLeftDown", node_down)
    spec = ctx.node_spec
    deployments = (spec.mayanode.deployment, spec.bifrost.deployment) if spec else ("mayanode", "bifrost")
    action = plan.next_action(step, namespace=ctx.namespace, restore=ctx.name, node=ctx.node_name, spec=ctx.spec,
                              node_down=node_down, cons_pub_key=(ctx.status.get("guard") or {}).get("consensusPubKey"),
                              deployments=deployments, reason=reason)
    _SIGN_STATE_TARGETS.pop(_restore_key(ctx), None)
    new = plan.failed(ctx.status, step, ctx.now, reason, message, action, ctx.generation, **extra)
    await ctx.save(new, [plan.failure_event(new)])
    ctx.runtime.queue.add((naming.MAYANODE_PLURAL, ctx.namespace, ctx.node_name))


async def scale_down_left_node_down(ctx: Ctx) -> bool:
    """ScaleDown failed: whether it had scaled anything, from the Deployments as they are now (unreadable: assume
    it had, the message then says the node is left down)."""
    spec = ctx.node_spec
    if spec is None or not ctx.status.get("previousReplicas"):
        return False
    try:
        bodies = await all_of(*(ctx.runtime.kube.get_deployment(ctx.namespace, d)
                                for d in (spec.mayanode.deployment, spec.bifrost.deployment)))
    except (*TRANSIENT, ApiException):
        return True
    current = {component: (None if body is None else int((body.get("spec") or {}).get("replicas", 1)))
               for component, body in zip((MAYANODE, BIFROST), bodies)}
    return plan.scale_down_left_node_down(ctx.status.get("previousReplicas"), current)


async def run_decision(ctx: Ctx, decision: plan.Decision) -> float | None:
    if decision.action == plan.Action.IDLE:
        return None
    if decision.action == plan.Action.ACCEPT:
        await ctx.save(plan.accepted(ctx.status, ctx.now, ctx.generation,
                                     f"restoring NodeBackup {backup_key(ctx)} onto MayaNode {ctx.target_key}"),
                       [EventSpec("Normal", "RestoreAccepted",
                                  f"restoring NodeBackup {backup_key(ctx)} onto MayaNode {ctx.target_key}; the backup "
                                  f"is verified before anything is touched")])
        ctx.runtime.queue.add((naming.MAYANODE_PLURAL, ctx.namespace, ctx.node_name))
        return None
    if decision.action == plan.Action.WAIT_RESTORE:
        return await wait_for_other_restore(ctx, decision)
    if decision.action == plan.Action.WAIT_HALT:
        if ctx.status.get("message") != decision.message:
            await ctx.save(plan.waiting(ctx.status, decision.message, ctx.generation),
                           [EventSpec("Normal", "WaitingForHalt", decision.message)])
        return 15.0
    if decision.action == plan.Action.FAIL:
        await fail(ctx, decision.step or plan.VERIFY, decision.reason, decision.message)
        return None
    if decision.action == plan.Action.REARM:
        await ctx.save(plan.rearmed(ctx.status, ctx.now, ctx.generation),
                       [EventSpec("Normal", "RestoreResumed", decision.message)])
        return None
    if decision.action == plan.Action.COMPLETE:
        await ctx.save(plan.completed(ctx.status, ctx.now, ctx.generation),
                       [EventSpec("Normal", "RestoreCompleted", f"MayaNode {ctx.target_key} runs the restored identity"
                                  + _downtime_text(ctx.status))])
        return None
    assert decision.step is not None
    await STEPS[decision.step](ctx, decision.resume)
    return None


# Failed restores asked to resume while another restore of their node runs, already told so (a hint in memory only:
# a restarted operator tells once more).
_RESUME_HELD: set[tuple[str, str, str, int | None]] = set()


async def wait_for_other_restore(ctx: Ctx, decision: plan.Decision) -> float:
    """Another NodeRestore of the same MayaNode goes first: this one touches nothing and looks again later."""
    if ctx.status.get("phase") == "Failed":
        # Its status stays the failure's (what failed and what to do); an event says why the spec change waits.
        key = (*_restore_key(ctx), ctx.generation)
        if key not in _RESUME_HELD:
            _RESUME_HELD.add(key)
            ctx.emit([EventSpec("Normal", decision.reason, decision.message)])
        return 10.0
    if ctx.status.get("message") != decision.message:
        await ctx.save(plan.waiting(ctx.status, decision.message, ctx.generation),
                       [EventSpec("Normal", decision.reason, decision.message)])
    return 5.0


def _downtime_text(status: Mapping[str, Any]) -> str:
    down = status.get("downtimeSeconds")
    return f" (down {down:.2f}s)" if isinstance(down, (int, float)) else ""


def backup_key(ctx: Ctx) -> str:
    assert ctx.spec is not None
    return f"{ctx.spec.backup_ref.resolved_namespace(ctx.namespace)}/{ctx.spec.backup_ref.name}"


async def complete(ctx: Ctx, step: str, message: str, **extra: Any) -> None:
    await ctx.save(plan.complete(ctx.status, step, ctx.now, message, **extra), [plan.step_done_event(step, message)])


async def begin(ctx: Ctx, step: str, message: str, **extra: Any) -> None:
    """Record that a once-only step starts, before it acts (no-op when it was already recorded)."""
    if plan.step_record(ctx.status, step) is None:
        await ctx.save(plan.begin(ctx.status, step, ctx.now, message, **extra), [plan.step_start_event(step, message)])


def waiting(ctx: Ctx, step: str, message: str, delay: float | None = None, **extra: Any) -> Wait:
    record = plan.step_record(ctx.status, step) or {}
    if record.get("message") == message and not extra:
        return Wait(delay or ctx.poll)
    return Wait(delay or ctx.poll, plan.progress(ctx.status, step, ctx.now, message, **extra))


# --------------------------------------------------------------------------------------------------
# The backup
# --------------------------------------------------------------------------------------------------
async def get_backup_body(ctx: Ctx) -> dict[str, Any]:
    assert ctx.spec is not None
    ref = ctx.spec.backup_ref
    namespace = ref.resolved_namespace(ctx.namespace)
    body = await ctx.runtime.kube.get_custom(naming.NODEBACKUP_PLURAL, namespace, ref.name)
    if body is None:
        raise StepFailed("BackupNotFound", f"NodeBackup {namespace}/{ref.name} does not exist")
    if namespace != ctx.namespace:
        allowed = (body.get("spec") or {}).get("restoreNamespaces") or []
        if ctx.namespace not in allowed:
            raise StepFailed("CrossNamespaceRefused",
                             f"NodeBackup {namespace}/{ref.name} does not list namespace {ctx.namespace} in "
                             f"spec.restoreNamespaces")
    return body


async def backup_location(ctx: Ctx, body: Mapping[str, Any]) -> Mapping[str, Any]:
    """Where the archive was written (recorded in its status), as the NodeBackup itself reads it."""
    location = await nodebackup_location(ctx.runtime, body)
    if location is None:
        raise StepFailed("NoBackupLocation", "the NodeBackup has no location and its MayaNode has no spec.backup")
    return location


async def open_backup(ctx: Ctx) -> tuple[Any, list[BackupItem]]:
    """The decrypted backup (once per pass): fetched, digest-checked and decrypted with the location's identity."""
    if ctx._backup is not None:
        return ctx._backup
    body = await get_backup_body(ctx)
    status = body.get("status") or {}
    phase = status.get("phase")
    recorded = (ctx.status.get("backup") or {}).get("sha256")
    archive_sha = (status.get("archive") or {}).get("sha256")
    if recorded and archive_sha != recorded:
        raise StepFailed("BackupChanged", f"the NodeBackup's archive is no longer the one verified ({recorded})")
    if phase not in ("Completed", "PartiallyFailed"):
        if phase == "Failed":
            raise StepFailed("BackupFailed", f"NodeBackup {backup_key(ctx)} failed: {status.get('message') or ''}")
        raise Wait(max(ctx.poll * 4, 1.0), plan.progress(ctx.status, plan.VERIFY, ctx.now,
                                                         f"waiting for NodeBackup {backup_key(ctx)} to complete "
                                                         f"(phase {phase or 'New'})"))
    verified = next((c for c in status.get("conditions") or () if c.get("type") == "Verified"), None)
    if verified is not None and verified.get("status") == "False":
        raise StepFailed("BackupNotVerified",
                         f"NodeBackup {backup_key(ctx)} failed its own verification: {verified.get('message')}")
    location = await backup_location(ctx, body)
    namespace = str((body.get("metadata") or {}).get("namespace"))
    identity = await read_identity(ctx.runtime, location, namespace)
    if identity is None:
        ref = ((location.get("encryption") or {}).get("identitySecret")) or {}
        raise StepFailed("IdentityNotFound",
                         f"the backup location's identity Secret {namespace}/{ref.get('name') or '(not set)'} does not "
                         f"exist or is empty: the archive cannot be decrypted")
    manifest, items = await load_backup(ctx.runtime, body, identity)
    ctx._backup = (manifest, items)
    return ctx._backup


def secret_refs(ctx: Ctx) -> dict[str, Any]:
    assert ctx.node_spec is not None
    s = ctx.node_spec.secrets
    return {"mnemonic": SecretRef(s.mnemonic.name, s.mnemonic.key), "password": SecretRef(s.password.name,
                                                                                         s.password.key),
            "default_mnemonic": naming.DEFAULT_MNEMONIC_SECRET, "default_password": naming.DEFAULT_PASSWORD_SECRET}


# --------------------------------------------------------------------------------------------------
# Chain sources (an RPC that answers while this node is down)
# --------------------------------------------------------------------------------------------------
async def list_mayanodes(ctx: Ctx) -> list[dict[str, Any]]:
    from .facet_replicas import list_all_mayanodes
    return await list_all_mayanodes(ctx.runtime)


def node_key(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def rpc_candidates(ctx: Ctx, nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    assert ctx.spec is not None and ctx.node_spec is not None
    urls = [str(u) for u in ctx.spec.double_sign_guard.rpc] + list(getattr(ctx.runtime.config, "guard_rpc", []) or [])
    preferred = (ctx.status.get("guard") or {}).get("rpc")
    for body in sorted(nodes, key=node_key):
        key = node_key(body)
        if key in (ctx.target_key, ctx.old_key):
            continue
        try:
            spec = MayaNodeSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            continue
        if spec.network != ctx.node_spec.network or spec.effective_chain_id() != ctx.node_spec.effective_chain_id():
            continue
        if spec.suspend:
            continue
        urls.append(spec.rpc_url(str((body.get("metadata") or {}).get("namespace"))))
    ordered = ([preferred] if preferred in urls else []) + urls
    return list(dict.fromkeys(u.rstrip("/") for u in ordered))


@dataclass(frozen=True)
class ChainSource:
    url: str
    tip: int


async def chain_source(ctx: Ctx, nodes: Sequence[Mapping[str, Any]] | None = None, *,
                       candidates: Sequence[str] | None = None) -> ChainSource | None:
    """The first candidate RPC (`candidates`, or those of `nodes`) that answers and is not catching up."""
    if candidates is None:
        candidates = rpc_candidates(ctx, nodes if nodes is not None else await list_mayanodes(ctx))
    timeout = float(ctx.node_spec.api.timeout_seconds) if ctx.node_spec else 5.0
    for url in candidates:
        try:
            status = parse_rpc_status(await fetch_json(ctx.runtime.http, f"{url}/status", timeout))
        except EndpointFailure:
            continue
        if not status.catching_up:
            return ChainSource(url, status.height)
    return None


async def read_signatures(ctx: Ctx, source: ChainSource, heights: Sequence[int]) -> dict[int, tuple[str, ...] | None]:
    timeout = float(ctx.node_spec.api.timeout_seconds) if ctx.node_spec else 5.0
    api = NodeApi(ctx.runtime.http, "", source.url, timeout)

    async def one(height: int) -> tuple[int, tuple[str, ...] | None]:
        try:
            return height, await api.signatures_at(height)
        except EndpointFailure:
            return height, None
    return dict(await asyncio.gather(*(one(h) for h in heights)))


async def all_of(*awaitables: Awaitable[Any]) -> list[Any]:
    """Their results, once every one has ended (none is left running behind a failure); the first error raised."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def guard_status(ctx: Ctx, **changes: Any) -> dict[str, Any]:
    return {**(ctx.status.get("guard") or {}), **changes}


# --------------------------------------------------------------------------------------------------
# Helper pods on the PVCs (kept between steps: the mayanode helper of WriteFiles also writes the sign state after
# the guard, so no helper has to start while the node is down and the old one stopped)
# --------------------------------------------------------------------------------------------------
def helper_labels(ctx: Ctx) -> dict[str, str]:
    return {LABEL_RESTORE: ctx.name, naming.LABEL_NODE: ctx.node_name}


async def helper(ctx: Ctx, namespace: str, target: VolumeTarget, *, timeout: float = 120.0) -> str:
    """A running helper pod of this restore on `target`'s PVC: the one already there, or a new one, placed as
    `volumes.helper_placement` says (on the node of a pod of the component, if there is one)."""
    kube = ctx.runtime.kube
    selector = {LABEL_RESTORE: ctx.name, f"{naming.GROUP}/component": target.component}
    found, placement = await all_of(kube.list_pods(namespace, selector),
                                    helper_placement(kube, namespace, target.deployment))
    found = [pod for pod in found
             if ((pod.get("spec") or {}).get("volumes") or [{}])[0].get("persistentVolumeClaim", {}).get("claimName")
             == target.pvc and not helper_ended(pod)]
    usable = [pod for pod in found
              if placement.node_name is None or (pod.get("spec") or {}).get("nodeName") == placement.node_name]
    running = [pod for pod in usable if helper_running(pod)]
    if running:
        return str(running[0]["metadata"]["name"])
    # One started by a pass that died (the operator restarted) may not run yet: a second helper beside it would
    # wait for the volume as long as that one holds it (a ReadWriteOnce volume attaches to one node at a time), so
    # the oldest is waited for and the others are deleted.
    usable.sort(key=lambda pod: (pod["metadata"].get("creationTimestamp") or "", str(pod["metadata"]["name"])))
    await all_of(*(delete_pod(ctx, namespace, str(pod["metadata"]["name"])) for pod in found
                   if not usable or pod is not usable[0]))
    if usable:
        return await await_helper(kube, namespace, str(usable[0]["metadata"]["name"]), pvc=target.pvc,
                                  timeout=timeout, poll=0.05)
    image = getattr(ctx.runtime.config, "helper_image", None) or DEFAULT_HELPER_IMAGE
    owner = ctx.owner_reference if namespace == ctx.namespace else None
    body = helper_pod_body(namespace, target, image=image, labels=helper_labels(ctx), owner=owner, purpose="restore",
                           placement=placement)
    return await launch_helper(kube, namespace, body, pvc=target.pvc, timeout=timeout, poll=0.05)


async def delete_pod(ctx: Ctx, namespace: str, name: str) -> None:
    try:
        await asyncio.to_thread(ctx.runtime.kube.core.delete_namespaced_pod, name, namespace, grace_period_seconds=0,
                                _preload_content=False)
    except ApiException as err:
        if err.status != 404:
            raise


async def remove_helpers(ctx: Ctx, namespace: str, keep: Collection[str] = ()) -> int:
    """Delete this restore's helper pods in `namespace` (all at once), but those named in `keep`; how many there were
    (terminating and kept ones included)."""
    pods = await ctx.runtime.kube.list_pods(namespace, {LABEL_RESTORE: ctx.name})
    await all_of(*(delete_pod(ctx, namespace, str(pod["metadata"]["name"])) for pod in pods
                   if not (pod.get("metadata") or {}).get("deletionTimestamp") and pod["metadata"]["name"] not in keep))
    return len(pods)


async def sweep_helpers(ctx: Ctx, keep: Collection[tuple[str, str]]) -> "SweptHelpers":
    """Delete this restore's helpers in every namespace it uses, but those in `keep` (namespace, name)."""
    found = await all_of(*(remove_helpers(ctx, ns, {name for n, name in keep if n == ns})
                           for ns in helper_namespaces(ctx)))
    return SweptHelpers(sum(found), frozenset(keep))


def helper_namespaces(ctx: Ctx) -> list[str]:
    """Where this restore starts helpers: the target's namespace and, in a hand-off, the old node's."""
    return sorted({ctx.namespace, *([ctx.old_key.split("/", 1)[0]] if ctx.old_key else [])})


@dataclass(frozen=True)
class SweptHelpers:
    """This pass listed this restore's helpers and deleted all but `kept` (namespace, name): the ones it still uses.
    No helper starts after that in the pass, so deleting the kept ones by name leaves none. `found` counts the listed
    ones, kept ones included."""

    found: int
    kept: frozenset[tuple[str, str]]


class PvcFiles:
    """A component's PVC through a helper pod, rooted at the PVC (the home may not exist yet on a wiped volume)."""

    def __init__(self, ctx: Ctx, namespace: str, target: VolumeTarget, pod: str) -> None:
        self.ctx, self.namespace, self.target, self.pod = ctx, namespace, target, pod
        self.session = VolumeSession(ctx.exec_port, namespace, target, pod, HELPER_CONTAINER, "/data", "helper")
        self.home = target.sub_path.strip("/")

    def path(self, relative: str) -> str:
        return posixpath.join(self.home, relative) if self.home else relative

    async def dirs(self) -> set[str]:
        # Through the session: a refused exec is tried again, and a `find` that did not run is an error, never an
        # empty answer (that would reset the modes of directories that exist).
        return await self.session.list_dirs(6)

    async def read(self, relatives: Sequence[str]) -> dict[str, FileEntry]:
        """The files that exist among `relatives` (absent ones are simply not in the answer)."""
        present = await self.session.list_files([self.path(r) for r in relatives])
        wanted = [self.path(r) for r in relatives if self.path(r) in present]
        files = await self.session.read_files(wanted) if wanted else {}
        prefix = (self.home + "/") if self.home else ""
        return {p[len(prefix):]: f for p, f in files.items() if p.startswith(prefix)}

    async def read_present(self, relatives: Sequence[str]) -> dict[str, FileEntry]:
        """As `read`, in one exec: for the hand-off's read of the old node's vote, while both nodes are down."""
        files = await self.session.read_present([self.path(r) for r in relatives])
        prefix = (self.home + "/") if self.home else ""
        return {p[len(prefix):]: f for p, f in files.items() if p.startswith(prefix)}

    async def exists(self, relative: str) -> bool:
        found = await self.session.list_files([self.path(relative)])
        return self.path(relative) in found

    async def top_level(self, glob: str) -> set[str]:
        """Names of the files matching `glob` directly in the home (none when the home does not exist yet). A `find`
        that did not run is an error, never an empty answer: that would hide key shares already on the volume."""
        home = VolumeSession(self.ctx.exec_port, self.namespace, self.target, self.pod, HELPER_CONTAINER,
                             posixpath.join("/data", self.home) if self.home else "/data", "helper")
        return {posixpath.basename(p) for p in await home.list_files(globs=[glob])}

    async def write(self, files: Sequence[FileEntry], parents: Sequence[str]) -> None:
        """Write `files` (paths relative to the home), creating the missing parent directories (0700)."""
        existing = await self.dirs()
        needed = ([self.home] if self.home else []) + [self.path(p) for p in parents]
        missing = [DirEntry(d, 0o700) for d in needed if d and d not in existing]
        await self.session.write_files([FileEntry(self.path(f.path), f.data, f.mode, f.uid, f.gid, f.mtime)
                                        for f in files], missing)

    async def remove(self, relatives: Sequence[str]) -> None:
        await self.session.remove([self.path(r) for r in relatives])


def targets(spec: MayaNodeSpec) -> dict[str, VolumeTarget]:
    mayanode, bifrost = volume_targets(spec)
    return {MAYANODE: mayanode, BIFROST: bifrost}


# --------------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------------
async def selectors_of(ctx: Ctx, namespace: str, spec: MayaNodeSpec) -> list[dict[str, str]]:
    """The pod selectors (matchLabels) of the node's Deployments that exist."""
    bodies = await all_of(*(ctx.runtime.kube.get_deployment(namespace, d)
                            for d in (spec.mayanode.deployment, spec.bifrost.deployment)))
    return [labels for body in bodies
            if (labels := (((body or {}).get("spec") or {}).get("selector") or {}).get("matchLabels") or {})]


async def pods_matching(ctx: Ctx, namespace: str, selectors: Sequence[Mapping[str, str]]) -> list[str]:
    """The pods (terminating ones too) that one of `selectors` matches, in one LIST of the namespace."""
    if not selectors:
        return []
    return [str(p["metadata"]["name"]) for p in await ctx.runtime.kube.list_pods(namespace, {})
            if any(_selected(p, labels) for labels in selectors)]


def _selected(pod: Mapping[str, Any], match_labels: Mapping[str, str]) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in match_labels.items())


async def pods_of(ctx: Ctx, namespace: str, spec: MayaNodeSpec) -> list[str]:
    workloads = Workloads(ctx.runtime.kube)
    found = await all_of(*(workloads.running_pods(namespace, deployment)
                           for deployment in (spec.mayanode.deployment, spec.bifrost.deployment)))
    return [str(p["metadata"]["name"]) for pods in found for p in pods]


async def scale_to_zero(ctx: Ctx, namespace: str, spec: MayaNodeSpec) -> list[str]:
    """bifrost first, mayanode right after (not waiting for bifrost's pods): the validator stops last, so its gap in
    signing is the shortest, and its pods are the last of the node's to end. The Deployments it scaled (those not at
    0 already)."""
    workloads = Workloads(ctx.runtime.kube)
    order = (spec.bifrost.deployment, spec.mayanode.deployment)
    scaled = []
    for deployment, body in zip(order, await all_of(*(ctx.runtime.kube.get_deployment(namespace, d) for d in order))):
        if body is not None and int((body.get("spec") or {}).get("replicas", 1)) != 0:
            await workloads.scale(namespace, deployment, 0)
            scaled.append(deployment)
    return scaled


async def ensure_target_down(ctx: Ctx, step: str) -> None:
    """The node has no pod from ScaleDown to ScaleUp: files are written only then, and while the guard waits none may
    sign with the restored key beside the old node. A pod that something brought back (a helm upgrade, a GitOps
    tool's self-heal, a hand-made scale) is scaled away again, said in a Warning event and the step's message, and
    the step waits until it is gone. What it signed is on the volume: the sign state is read there again before the
    high-water mark is written (the lookup made while it ran is dropped), and the silence proof starts over once it
    is gone."""
    assert ctx.node_spec is not None
    pods = await pods_of(ctx, ctx.namespace, ctx.node_spec)
    if not pods:
        return
    scaled = await scale_to_zero(ctx, ctx.namespace, ctx.node_spec)
    _SIGN_STATE_TARGETS.pop(_restore_key(ctx), None)
    names = ", ".join(sorted(pods))
    if scaled:
        ctx.emit([EventSpec("Warning", "NodeScaledUpDuringRestore",
                            f"{', '.join(scaled)} of MayaNode {ctx.target_key} were scaled up while the restore held "
                            f"them at 0 (at {step}): scaled back to 0. Stop whatever scales them (helm upgrade, GitOps "
                            f"self-heal) until the restore has finished")])
    extra: dict[str, Any] = {}
    if step == plan.SILENT:
        # The silent blocks count from the moment the node's last pod is gone: from the next look on.
        extra["guard"] = {k: v for k, v in (ctx.status.get("guard") or {}).items()
                          if k not in ("stopHeight", "silentFromHeight", "silentToHeight")}
    raise waiting(ctx, step, f"pods {names} of this node run again: scaled back to 0"
                             f"{' (' + ', '.join(scaled) + ')' if scaled else ''}, waiting for them to be gone", **extra)


# --------------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------------
async def step_verify(ctx: Ctx, resume: bool) -> None:
    assert ctx.spec is not None and ctx.node_spec is not None
    if not resume:
        await ctx.save(plan.begin(ctx.status, plan.VERIFY, ctx.now, f"verifying NodeBackup {backup_key(ctx)}"))
    manifest, items = await open_backup(ctx)
    refs = secret_refs(ctx)
    check = check_backup(items, manifest.meta, target_node_address=ctx.node_spec.node_address,
                         restore_secrets=ctx.spec.restore_secrets, **refs)
    if not check.ok or check.facts is None:
        raise StepFailed(check.reason, check.message)
    facts = check.facts
    acknowledged = ctx.spec.double_sign_guard.old_node_destroyed
    source = None
    if not (acknowledged and acknowledged.acknowledged):
        source = await chain_source(ctx)
        if source is None:
            raise StepFailed("NoChainSource",
                             "no RPC endpoint of another node answers, so the old key could not be proven silent while "
                             "this node is down: list one in spec.doubleSignGuard.rpc (or run the operator with "
                             "--guard-rpc), or acknowledge the old node destroyed")
    if ctx.spec.double_sign_guard.old_node is not None:
        await check_old_node(ctx)
    identity = await target_identity(ctx, items, facts)
    message = check.message
    if identity.other:
        if not ctx.spec.replace_other_identity:
            raise StepFailed("OtherIdentity",
                             f"MayaNode {ctx.target_key} holds another node's identity ({identity.describe()}): "
                             f"restoring would overwrite it. If that node's keys are not needed any more (back them "
                             f"up first: a NodeBackup of this MayaNode), set spec.replaceOtherIdentity: true")
        message += f"; replacing another identity (spec.replaceOtherIdentity): {identity.describe()}"
        ctx.emit([EventSpec("Warning", "ReplacingOtherIdentity",
                            f"MayaNode {ctx.target_key} holds another node's identity ({identity.describe()}); "
                            f"spec.replaceOtherIdentity is true: its key files are overwritten, its key shares with "
                            f"the backup's names moved aside")])
    sha = (((await get_backup_body(ctx)).get("status") or {}).get("archive") or {}).get("sha256")
    state = facts.sign_state
    backup = {"name": ctx.spec.backup_ref.name, "namespace": ctx.spec.backup_ref.resolved_namespace(ctx.namespace),
              "sha256": sha, "nodeAddress": facts.node_address, "consensusPubKey": facts.cons_pub_key,
              "signStateHeight": state.height if state else None, "signStateRound": state.round if state else None,
              "signStateStep": state.step if state else None}
    g = guard_status(ctx, consensusPubKey=facts.cons_pub_key, validatorAddress=facts.validator_address,
                     rpc=source.url if source else None)
    inputs = [{"source": guard.BACKUP, "height": state.height, "round": state.round, "step": state.step}] if state else []
    await complete(ctx, plan.VERIFY, message, backup={k: v for k, v in backup.items() if v is not None},
                   guard=g, signStateInputs=inputs)


async def target_identity(ctx: Ctx, items: Sequence[BackupItem], facts: BackupFacts) -> Any:
    """What identity the target's volumes hold (plan/restore_files.check_target_identity), read before anything is
    changed: its consensus key, and its key shares under the backup's names."""
    assert ctx.node_spec is not None
    homes = targets(ctx.node_spec)
    shares = {i.path: i.data for i in items if i.component == BIFROST and i.path in facts.key_shares}

    async def no_files() -> dict[str, FileEntry]:
        return {}
    mayanode, bifrost = await all_of(read_home(ctx, homes[MAYANODE], [CONSENSUS_KEY_PATH]),
                                     read_home(ctx, homes[BIFROST], sorted(shares)) if shares else no_files())
    key = mayanode.get(CONSENSUS_KEY_PATH)
    return check_target_identity(facts.cons_pub_key, shares, key.data if key else None,
                                 {p: f.data for p, f in bifrost.items()})


async def read_home(ctx: Ctx, target: VolumeTarget, relatives: Sequence[str]) -> dict[str, FileEntry]:
    """Those of `relatives` that exist in a component's home, before the node is touched: through its running
    container (as a backup reads them), else through a helper pod of this restore on its PVC (on the Kubernetes node
    of a pod of the Deployment that holds the volume, if any), deleted right after."""
    volumes = NodeVolumes(ctx.runtime.kube, ctx.exec_port)
    pod = await volumes.running_pod(ctx.namespace, target)
    if pod is not None:
        session = VolumeSession(ctx.exec_port, ctx.namespace, target, pod, target.container, target.home, "container")
        return await session.read_present(list(relatives))
    name = await helper(ctx, ctx.namespace, target)
    try:
        return await PvcFiles(ctx, ctx.namespace, target, name).read_present(relatives)
    finally:
        await asyncio.shield(delete_pod(ctx, ctx.namespace, name))


async def step_lock(ctx: Ctx, resume: bool) -> None:
    assert ctx.spec is not None
    g = ctx.status.get("guard") or {}
    cons, address = str(g.get("consensusPubKey")), str(g.get("validatorAddress"))
    locks = KeyLocks(ctx.runtime.kube.api_client, ctx.runtime.config.lock_namespace)
    nodes = await list_mayanodes(ctx)
    views = [guard.NodeView(node_key(b), bool((b.get("spec") or {}).get("suspend")),
                            ((b.get("status") or {}).get("node") or {}).get("validatorConsPubKey"),
                            (b.get("spec") or {}).get("nodeAddress")) for b in nodes]
    read = await locks.read(address)
    decision = guard.decide_lock(cons, ctx.target_key, ctx.old_key, read.view, views)
    if decision.refused:
        new_guard = guard_status(ctx, lockHolder=decision.holder, lock=locks.where(address))
        await fail(ctx, plan.LOCK, decision.reason, decision.message, guard=new_guard)
        raise _Handled()
    if decision.action != "keep":
        await locks.hold(address, cons, ctx.target_key, restore=f"{ctx.namespace}/{ctx.name}",
                         previous=decision.holder, resource_version=read.resource_version, now=ctx.now)
    await complete(ctx, plan.LOCK, decision.message, guard=guard_status(ctx, lock=locks.where(address)))


class _Handled(Exception):
    """The step already wrote its outcome (a refusal)."""


async def step_scale_down(ctx: Ctx, resume: bool) -> None:
    assert ctx.spec is not None and ctx.node_spec is not None
    spec = ctx.node_spec
    if not ctx.status.get("previousReplicas"):
        previous: dict[str, int] = {}
        for component, deployment in ((MAYANODE, spec.mayanode.deployment), (BIFROST, spec.bifrost.deployment)):
            body = await ctx.runtime.kube.get_deployment(ctx.namespace, deployment)
            if body is None:
                raise StepFailed("DeploymentNotFound", f"deployment {ctx.namespace}/{deployment} does not exist")
            previous[component] = min(1, int((body.get("spec") or {}).get("replicas", 1)))
        await ctx.save(plan.begin(ctx.status, plan.SCALE_DOWN, ctx.now,
                                  f"scaling {spec.mayanode.deployment} and {spec.bifrost.deployment} to 0",
                                  previousReplicas=previous),
                       [plan.step_start_event(plan.SCALE_DOWN,
                                              f"scaling {spec.mayanode.deployment} and {spec.bifrost.deployment} to 0 "
                                              f"(were {previous[MAYANODE]} and {previous[BIFROST]})")])
    await scale_to_zero(ctx, ctx.namespace, spec)
    pods = await pods_of(ctx, ctx.namespace, spec)
    if pods:
        if plan.deadline_passed(ctx.status, plan.SCALE_DOWN, ctx.spec.timeouts.scale_down_seconds, ctx.now):
            raise StepFailed("ScaleDownTimeout", f"pods {', '.join(sorted(pods))} were still there after "
                                                 f"{ctx.spec.timeouts.scale_down_seconds}s")
        raise waiting(ctx, plan.SCALE_DOWN, f"waiting for pods {', '.join(sorted(pods))} to be gone")
    source = await chain_source(ctx)
    g = guard_status(ctx, stopHeight=source.tip if source else None, rpc=source.url if source else None)
    await complete(ctx, plan.SCALE_DOWN, "mayanode and bifrost have no pods", scaledDownAt=plan.iso(ctx.now),
                   guard={k: v for k, v in g.items() if v is not None})


async def step_write(ctx: Ctx, resume: bool) -> None:
    assert ctx.spec is not None and ctx.node_spec is not None
    if not resume:
        await ctx.save(plan.begin(ctx.status, plan.WRITE, ctx.now, "writing the key files through helper pods"))
    await ensure_target_down(ctx, plan.WRITE)
    manifest, items = await open_backup(ctx)
    by_name = {i.name: i for i in items}
    wp = write_plan(items, signer_name=ctx.node_spec.signer_name, restore_secrets=ctx.spec.restore_secrets,
                    **secret_refs(ctx))
    homes = targets(ctx.node_spec)
    dirs = wp.dirs

    def entries(writes: Sequence[Any]) -> list[FileEntry]:
        return [FileEntry(w.path, by_name[w.item].data, w.mode, w.uid, w.gid, w.mtime) for w in writes]

    # Both helpers start at once; mayanode's stays for the sign state after the guard.
    mayanode_pod, bifrost_pod = await asyncio.gather(helper(ctx, ctx.namespace, homes[MAYANODE]),
                                                     helper(ctx, ctx.namespace, homes[BIFROST]))
    mayanode = PvcFiles(ctx, ctx.namespace, homes[MAYANODE], mayanode_pod)
    bifrost = PvcFiles(ctx, ctx.namespace, homes[BIFROST], bifrost_pod)
    target_state = parsed_file(chainkeys.parse_priv_validator_state,
                               (await mayanode.read([SIGN_STATE_PATH])).get(SIGN_STATE_PATH))
    await mayanode.write(entries(wp.mayanode), dirs[MAYANODE])
    present = await bifrost.top_level(KEY_SHARE_GLOB)
    backup_shares = {w.path: by_name[w.item].data for w in wp.bifrost if w.path.startswith("localstate-")}
    # Every share there: those of other nodes are moved aside, also under one of the backup's names (a vault's); any
    # other that differs from the backup's under one of its names is kept beside it (never written over).
    share_plan = classify_key_shares(backup_shares, {p: f.data for p, f in
                                                     (await bifrost.read(sorted(present))).items()},
                                     ctx.name) if present else None
    if share_plan and share_plan.set_aside:
        originals = await bifrost.read([a for a, _ in share_plan.set_aside])
        await bifrost.write([FileEntry(b, originals[a].data, originals[a].mode, originals[a].uid, originals[a].gid,
                                       originals[a].mtime) for a, b in share_plan.set_aside if a in originals], [])
        await bifrost.remove([a for a, _ in share_plan.set_aside])
    await bifrost.write(entries(wp.bifrost), dirs[BIFROST])
    await delete_pod(ctx, ctx.namespace, bifrost_pod)
    inputs = [i for i in ctx.status.get("signStateInputs") or () if i.get("source") != guard.TARGET_VOLUME]
    if target_state is not None:
        inputs.append({"source": guard.TARGET_VOLUME, "height": target_state.height, "round": target_state.round,
                       "step": target_state.step})
    message = (f"wrote {len(wp.mayanode)} files into the mayanode home and {len(wp.bifrost)} into the bifrost home "
               f"(modes and owners as backed up; the sign state follows after the guard)")
    if share_plan is not None and share_plan.describe():
        message += f"; {share_plan.describe()}"
    events = []
    if share_plan is not None and (share_plan.set_aside or share_plan.unknown):
        events.append(EventSpec("Warning", "KeySharesFound", share_plan.describe()))
    await ctx.save(plan.complete(ctx.status, plan.WRITE, ctx.now, message, signStateInputs=inputs),
                   [plan.step_done_event(plan.WRITE, message), *events])


async def step_swap(ctx: Ctx, resume: bool) -> None:
    assert ctx.spec is not None and ctx.node_spec is not None
    await begin(ctx, plan.SWAP, "replacing the mnemonic and password Secrets in place")
    manifest, items = await open_backup(ctx)
    by_name = {i.name: i for i in items}
    wp = write_plan(items, signer_name=ctx.node_spec.signer_name, restore_secrets=True, **secret_refs(ctx))
    done = []
    for secret, keys in sorted(wp.secrets.items()):
        values = {key: by_name[item].data for key, item in keys.items()}
        outcome = await put_secret(ctx, secret, values)
        done.append(f"{secret} ({outcome})")
    await complete(ctx, plan.SWAP, "Secrets " + ", ".join(done) + " (never deleted)")


async def put_secret(ctx: Ctx, name: str, values: Mapping[str, bytes]) -> str:
    """Update in place with the resourceVersion read (a concurrent writer → 409 → retried); create when absent."""
    core = ctx.runtime.kube.core
    encoded = {k: base64.b64encode(v).decode() for k, v in values.items()}
    try:
        raw = await asyncio.to_thread(core.read_namespaced_secret, name, ctx.namespace, _preload_content=False)
    except ApiException as err:
        if err.status != 404:
            raise
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": ctx.namespace,
                             "labels": {naming.LABEL_MANAGED_BY: naming.FIELD_MANAGER}},
                "data": encoded}
        await asyncio.to_thread(core.create_namespaced_secret, ctx.namespace, body,
                                field_manager=naming.FIELD_MANAGER, _preload_content=False)
        return "created"
    body = json.loads(raw.data)
    data = dict(body.get("data") or {})
    if all(data.get(k) == v for k, v in encoded.items()):
        return "already restored"
    data.update(encoded)
    body["data"] = data
    body.pop("stringData", None)
    await asyncio.to_thread(core.replace_namespaced_secret, name, ctx.namespace, body,
                            field_manager=naming.FIELD_MANAGER, _preload_content=False)
    return "updated in place"


async def old_node(ctx: Ctx) -> tuple[str, MayaNodeSpec, dict[str, Any]]:
    assert ctx.spec is not None and ctx.spec.double_sign_guard.old_node is not None
    ref = ctx.spec.double_sign_guard.old_node
    namespace = ref.namespace or ctx.namespace
    body = await ctx.runtime.kube.get_custom(naming.MAYANODE_PLURAL, namespace, ref.name)
    if body is None:
        raise StepFailed("OldNodeNotFound", f"the old MayaNode {namespace}/{ref.name} does not exist")
    try:
        return namespace, MayaNodeSpec.model_validate(body.get("spec") or {}), body
    except ValidationError as err:
        raise StepFailed("OldNodeInvalid", describe_validation_error(err)) from None


async def check_old_node(ctx: Ctx) -> None:
    """The hand-off's old node exists, is not the target, and its Deployments can be read: found out before the
    target is touched, not after it is down."""
    assert ctx.spec is not None and ctx.spec.double_sign_guard.old_node is not None
    ref = ctx.spec.double_sign_guard.old_node
    namespace = ref.namespace or ctx.namespace
    watched = getattr(ctx.runtime.config, "namespaces", None) or []
    if watched and namespace not in watched:
        raise StepFailed("OldNodeNotWatched", f"the old MayaNode's namespace {namespace} is not one this operator "
                                              f"watches ({', '.join(watched)}): it could not stop it")
    if (namespace, ref.name) == (ctx.namespace, ctx.node_name):
        raise StepFailed("OldNodeIsTarget", "spec.doubleSignGuard.oldNode names the MayaNode being restored")
    _, spec, _ = await old_node(ctx)
    for deployment in (spec.mayanode.deployment, spec.bifrost.deployment):
        await ctx.runtime.kube.get_deployment(namespace, deployment)     # a 403 fails the restore here


async def step_stop_old(ctx: Ctx, resume: bool) -> None:
    assert ctx.spec is not None and ctx.spec.double_sign_guard.old_node is not None
    ref = ctx.spec.double_sign_guard.old_node
    namespace, spec, body = await old_node(ctx)
    key = f"{namespace}/{ref.name}"
    target = targets(spec)[MAYANODE]
    if ref.suspend:
        await begin(ctx, plan.STOP_OLD, f"suspending the old MayaNode {key} (spec.suspend: true) and waiting for its "
                                        f"pods to be gone")
    else:
        await begin(ctx, plan.STOP_OLD, f"waiting for someone to stop the old MayaNode {key}")
    await ensure_target_down(ctx, plan.STOP_OLD)
    pods = await pods_of(ctx, namespace, spec)
    missing = [d for d in (spec.mayanode.deployment, spec.bifrost.deployment)
               if await ctx.runtime.kube.get_deployment(namespace, d) is None]
    # The helper that reads the old node's sign state starts while the old node still runs (on the node where its
    # mayanode pod mounts the volume), so the read right after the stop costs one exec, not a pod start. Without
    # its Deployment the old node's volume is not known to exist: the chain's proof stands in for its sign state.
    helper_pod = None
    if spec.mayanode.deployment not in missing:
        helper_pod = await helper(ctx, namespace, target)
    await prepare_sign_state(ctx)
    # The node's files still hold the key whose guard this is (before the old node is stopped for it).
    problem = guard.volume_key_problem((ctx.status.get("guard") or {}).get("consensusPubKey"),
                                       _SIGN_STATE_TARGETS[_restore_key(ctx)].cons_pub_key)
    if problem:
        raise StepFailed("ConsensusKeyChanged", problem)
    # Looked up now, so that once the old pods are gone only what has to come after the stop is asked for: where
    # the chain tip is read, the pods of both nodes, the helpers (leftovers deleted; the two in use go after use).
    assert ctx.node_spec is not None
    in_use = {(ctx.namespace, _SIGN_STATE_TARGETS[_restore_key(ctx)].pod)}
    if helper_pod is not None:
        in_use.add((namespace, helper_pod))
    nodes, old_selectors, target_selectors, ctx.helpers_swept = await all_of(
        list_mayanodes(ctx), selectors_of(ctx, namespace, spec), selectors_of(ctx, ctx.namespace, ctx.node_spec),
        sweep_helpers(ctx, in_use))
    rpcs = rpc_candidates(ctx, nodes)
    ctx.hold_events()
    if ref.suspend:
        if not (body.get("spec") or {}).get("suspend"):
            await asyncio.to_thread(ctx.runtime.kube.custom.patch_namespaced_custom_object, naming.GROUP,
                                    naming.VERSION, namespace, naming.MAYANODE_PLURAL, ref.name,
                                    {"spec": {"suspend": True}}, _preload_content=False)
        await scale_to_zero(ctx, namespace, spec)
        # Every moment between the old pods' end and the new node's start is downtime: watch closely for a while.
        pods = await pods_gone_within(ctx, namespace, old_selectors, STOP_WATCH_SECONDS)
    if pods:
        limit = ctx.spec.timeouts.scale_down_seconds if ref.suspend else ctx.spec.timeouts.guard_seconds
        if plan.deadline_passed(ctx.status, plan.STOP_OLD, limit, ctx.now):
            raise StepFailed("OldNodeStillRunning", f"the old node's pods {', '.join(sorted(pods))} were still there "
                                                    f"after {limit}s")
        raise waiting(ctx, plan.STOP_OLD, f"waiting for the old node's pods {', '.join(sorted(pods))} to be gone")
    # Its pods are gone (the kubelet confirmed its containers ended): what it signed last is on its volume now. The
    # chain tip, whether the target still has no pod (checked again before the sign state is written to it, next)
    # and the target MayaNode (a suspend set since the pass began keeps it down at ScaleUp) are read at the same time.
    async def old_vote() -> dict[str, FileEntry]:
        if helper_pod is None:
            return {}
        return await PvcFiles(ctx, namespace, target, helper_pod).read_present([SIGN_STATE_PATH])
    entry, target_pods, source, node_read = await all_of(
        old_vote(), pods_matching(ctx, ctx.namespace, target_selectors), chain_source(ctx, candidates=rpcs),
        read_node(ctx))
    stop_height = source.tip if source else None
    state = None
    if SIGN_STATE_PATH in entry:
        try:
            state = chainkeys.parse_priv_validator_state(entry[SIGN_STATE_PATH].data)
        except chainkeys.ChainKeyError:
            state = None
    inputs = [i for i in ctx.status.get("signStateInputs") or () if i.get("source") != guard.OLD_NODE_VOLUME]
    if state is not None:
        inputs.append({"source": guard.OLD_NODE_VOLUME, "height": state.height, "round": state.round,
                       "step": state.step})
    stop = max(stop_height or 0, int((ctx.status.get("guard") or {}).get("stopHeight") or 0)) or None
    message = (f"the old node {key} has no pods (chain height {stop_height}); its sign state reads height "
               f"{state.height if state else 'unknown'}")
    proven = not (ref.prove_silent_on_chain or missing or state is None)
    if not proven:
        # The chain must show the key silent: asked for, or the stop or the last vote cannot be seen for sure.
        g = guard_status(ctx, stopHeight=stop, silentFromHeight=None, silentToHeight=None)
        if missing:
            # Without its Deployment, pods it left running (orphaned) cannot be found: only the chain can tell.
            message += (f"; its Deployment(s) {', '.join(missing)} do not exist, so its pods cannot be proven gone: "
                        f"the key must be silent on chain")
        elif state is None:
            # Its last vote may be one height above the tip, in any round: only silent blocks rule it out.
            message += "; without its sign state the key must be silent on chain"
    else:
        # The hand-off's proof: the operator saw the old node's pods gone and read its last vote (CometBFT records
        # a vote there before it releases it).
        g = guard_status(ctx, stopHeight=stop, method="HandOff", passedAt=plan.iso(ctx.now), chainTip=stop_height,
                         rpc=source.url if source else None)
        message += "; the guard passed (hand-off: the old node is stopped and its last vote is known)"
        ctx.target_seen_down, ctx.node_reread = not target_pods, node_read
    # A passed guard is recorded with the next write (ScaleUp's start, before anything starts): run again, this step
    # stops nothing new and reads the same vote, so losing the record costs a re-run, never a check.
    await ctx.save(plan.complete(ctx.status, plan.STOP_OLD, ctx.now, message,
                                 guard={k: v for k, v in g.items() if v is not None}, signStateInputs=inputs),
                   [plan.step_done_event(plan.STOP_OLD, message)], defer=proven)


async def pods_gone_within(ctx: Ctx, namespace: str, selectors: Sequence[Mapping[str, str]],
                           seconds: float) -> list[str]:
    """Poll the node's pods closely (every STOP_POLL_SECONDS) for up to `seconds`; those left. One LIST of the
    namespace per poll, matched against both Deployments' selectors here: the request rate of a script that polls
    each Deployment's pods every 20 ms, at twice its pace."""
    start = time.monotonic()
    while True:
        pods = await pods_matching(ctx, namespace, selectors)
        now = time.monotonic()
        if not pods or now >= start + seconds:
            return pods
        # On a fixed beat, whatever a LIST takes (a beat a slow LIST overran is skipped, not made up for).
        await asyncio.sleep(STOP_POLL_SECONDS - (now - start) % STOP_POLL_SECONDS)


async def step_silent(ctx: Ctx, resume: bool) -> None:
    assert ctx.spec is not None
    dsg = ctx.spec.double_sign_guard
    g = ctx.status.get("guard") or {}
    address = str(g.get("validatorAddress") or "")
    if not resume:
        await ctx.save(plan.begin(ctx.status, plan.SILENT, ctx.now,
                                  f"proving consensus key {g.get('consensusPubKey')} silent"))
    await ensure_target_down(ctx, plan.SILENT)
    ack = dsg.old_node_destroyed
    if ack is not None and ack.acknowledged:
        source = await chain_source(ctx)
        tip = source.tip if source else None
        new_g = guard_status(ctx, method="Acknowledged", passedAt=plan.iso(ctx.now), chainTip=tip,
                             acknowledgedBy=ack.acknowledged_by, acknowledgedReason=ack.reason,
                             rpc=source.url if source else g.get("rpc"))
        message = (f"the old node is acknowledged destroyed by {ack.acknowledged_by or 'an unnamed person'}: "
                   f"{ack.reason}")
        await ctx.save(plan.complete(ctx.status, plan.SILENT, ctx.now, message,
                                     guard={k: v for k, v in new_g.items() if v is not None}),
                       [EventSpec("Warning", "OldNodeAcknowledgedDestroyed",
                                  message + "; the silence proof on chain is skipped")])
        return
    source = await chain_source(ctx)
    if source is None:
        if plan.deadline_passed(ctx.status, plan.SILENT, ctx.spec.timeouts.guard_seconds, ctx.now):
            raise StepFailed("GuardTimeout", "no RPC endpoint answered to prove the key silent")
        raise waiting(ctx, plan.SILENT, "no RPC endpoint answers: cannot read blocks yet", max(ctx.poll * 4, 1.0))
    stop = g.get("stopHeight")
    if g.get("silentFromHeight") is not None and g.get("silentToHeight") is not None:
        silence = guard.Silence(int(g["silentFromHeight"]), int(g["silentToHeight"]))
    else:
        silence = guard.start_silence(int(stop) if stop is not None else source.tip)
    heights = guard.heights_to_read(silence, source.tip)
    blocks = await read_signatures(ctx, source, heights) if heights else {}
    silence, seen = guard.advance_silence(silence, address, blocks)
    n = dsg.silent_blocks
    new_g = guard_status(ctx, silentFromHeight=silence.window_start, silentToHeight=silence.checked_to, rpc=source.url)
    if silence.passed(n):
        method = "HandOff" if dsg.old_node is not None else "Silent"
        new_g.update(method=method, passedAt=plan.iso(ctx.now), chainTip=max(source.tip, silence.checked_to))
        message = (f"validator {address} signed none of blocks {silence.window_start + 1}–{silence.checked_to} "
                   f"({silence.silent_for()} ≥ {n}, read from {source.url})")
        await complete(ctx, plan.SILENT, message, guard=new_g)
        return
    if plan.deadline_passed(ctx.status, plan.SILENT, ctx.spec.timeouts.guard_seconds, ctx.now):
        raise StepFailed("GuardTimeout",
                         f"consensus key {g.get('consensusPubKey')} was not silent for {n} blocks within "
                         f"{ctx.spec.timeouts.guard_seconds}s (last seen signing at "
                         f"{silence.window_start if silence.window_start != stop else 'no block'})")
    hint = (f"; it signed block {seen}: stop the old node" if seen is not None else "")
    raise waiting(ctx, plan.SILENT, f"validator {address} silent for {silence.silent_for()}/{n} blocks after height "
                                    f"{silence.window_start}{hint}", min(ctx.poll, 0.05), guard=new_g)


@dataclass(frozen=True)
class SignStateTarget:
    """Where the sign state goes on the restored node's volume, looked up before the old node stops so that the write
    after the stop is one exec. A hint kept in memory only: a restarted operator looks again."""

    pod: str
    uid: int
    gid: int
    missing_dirs: tuple[str, ...]       # the home and its `data` directory, when absent: created by the same write
    cons_pub_key: str | None = None     # the consensus key on the volume (None: absent or unreadable)
    state: chainkeys.SignState | None = None    # the sign state on the volume (None: absent or unreadable)


_SIGN_STATE_TARGETS: dict[tuple[str, str, str], SignStateTarget] = {}


def _restore_key(ctx: Ctx) -> tuple[str, str, str]:
    return ctx.namespace, ctx.name, str((ctx.body.get("metadata") or {}).get("uid") or "")


async def find_sign_state_target(ctx: Ctx) -> SignStateTarget:
    assert ctx.node_spec is not None
    target = targets(ctx.node_spec)[MAYANODE]
    pod = await helper(ctx, ctx.namespace, target)
    files = PvcFiles(ctx, ctx.namespace, target, pod)
    found, dirs = await all_of(files.read([CONSENSUS_KEY_PATH, SIGN_STATE_PATH]), files.dirs())
    key_item, state_item = found.get(CONSENSUS_KEY_PATH), found.get(SIGN_STATE_PATH)
    uid, gid = (key_item.uid, key_item.gid) if key_item is not None else (0, 0)
    needed = ([files.home] if files.home else []) + [files.path("data")]
    key = parsed_file(chainkeys.parse_priv_validator_key, key_item)
    return SignStateTarget(pod, uid, gid, tuple(d for d in needed if d not in dirs),
                           key.pubkey_bech32 if key is not None else None,
                           parsed_file(chainkeys.parse_priv_validator_state, state_item))


def parsed_file(parse: Callable[[bytes], Any], entry: FileEntry | None) -> Any:
    """`parse` of a file read from a volume; None when it is absent or not what it should be."""
    if entry is None:
        return None
    try:
        return parse(entry.data)
    except chainkeys.ChainKeyError:
        return None


async def prepare_sign_state(ctx: Ctx) -> None:
    if _restore_key(ctx) not in _SIGN_STATE_TARGETS:
        _SIGN_STATE_TARGETS[_restore_key(ctx)] = await find_sign_state_target(ctx)


async def step_sign_state(ctx: Ctx, resume: bool) -> None:
    assert ctx.spec is not None and ctx.node_spec is not None
    started = ctx.now                    # idempotent: recorded once done, with when it started
    if ctx.target_seen_down:             # checked by StopOldNode in this pass, after the old node's pods were gone
        ctx.target_seen_down = False
    else:
        await ensure_target_down(ctx, plan.SIGN_STATE)
    g = ctx.status.get("guard") or {}
    # Looked up before the old node stopped (a pod that is gone since makes the write fail: retried afresh), or now.
    where = _SIGN_STATE_TARGETS.pop(_restore_key(ctx), None) or await find_sign_state_target(ctx)
    problem = guard.volume_key_problem(g.get("consensusPubKey"), where.cons_pub_key)
    if problem:
        raise StepFailed("ConsensusKeyChanged", problem)
    states: dict[str, chainkeys.SignState | None] = {}
    for record in ctx.status.get("signStateInputs") or ():
        states[str(record["source"])] = chainkeys.SignState(int(record["height"]), int(record.get("round") or 0),
                                                            int(record.get("step") or 0))
    if g.get("chainTip") is not None:
        states[guard.CHAIN_TIP] = guard.chain_tip_state(int(g["chainTip"]))
    states = guard.fold_volume_state(states, where.state)
    mark = guard.high_water_mark(states)
    files = PvcFiles(ctx, ctx.namespace, targets(ctx.node_spec)[MAYANODE], where.pod)
    entry = FileEntry(files.path(SIGN_STATE_PATH), chainkeys.render_priv_validator_state(mark.state), 0o600,
                      where.uid, where.gid, int(ctx.now.timestamp()))
    # One exec; the other helpers of this restore (the old node's, leftovers) are deleted meanwhile.
    writer = (ctx.namespace, where.pod)
    swept, ctx.helpers_swept = ctx.helpers_swept, None
    if swept is not None and writer in swept.kept:
        others = [delete_pod(ctx, ns, name) for ns, name in swept.kept if (ns, name) != writer]
        await all_of(files.session.write_files([entry], [DirEntry(d, 0o700) for d in where.missing_dirs]), *others)
        swept = SweptHelpers(swept.found, frozenset({writer}))
    else:
        _, swept = await all_of(files.session.write_files([entry], [DirEntry(d, 0o700) for d in where.missing_dirs]),
                                sweep_helpers(ctx, {writer}))
    ctx.helpers_swept = swept
    inputs = list(ctx.status.get("signStateInputs") or ())
    volume = states.get(guard.TARGET_VOLUME)
    if volume is not None and not any(i.get("source") == guard.TARGET_VOLUME and
                                       (int(i["height"]), int(i.get("round") or 0), int(i.get("step") or 0)) ==
                                       (volume.height, volume.round, volume.step) for i in inputs):
        # Raised by what the node's own pods signed after the files were written.
        inputs = [i for i in inputs if i.get("source") != guard.TARGET_VOLUME]
        inputs.append({"source": guard.TARGET_VOLUME, "height": volume.height, "round": volume.round,
                       "step": volume.step})
    if g.get("chainTip") is not None:
        inputs = [i for i in inputs if i.get("source") != guard.CHAIN_TIP]
        inputs.append({"source": guard.CHAIN_TIP, **{k: v for k, v in mark.to_status().items() if k != "source"}}
                      if mark.source == guard.CHAIN_TIP else
                      {"source": guard.CHAIN_TIP, "height": int(g["chainTip"]), "round": 0,
                       "step": guard.PRECOMMIT_STEP})
    message = (f"priv_validator_state.json = height {mark.state.height}, round {mark.state.round}, step "
               f"{mark.state.step} (from {mark.source}, the highest of {len(states)} inputs)")
    new = plan.begin(ctx.status, plan.SIGN_STATE, started)
    await ctx.save(plan.complete(new, plan.SIGN_STATE, ctx.now, message, highWaterMark=mark.to_status(),
                                 signStateInputs=inputs), [plan.step_done_event(plan.SIGN_STATE, message)],
                   defer=True)


async def step_remove_helpers(ctx: Ctx, resume: bool) -> None:
    swept, ctx.helpers_swept = ctx.helpers_swept, None
    if swept is not None:
        # This pass deleted the others: only the helper that wrote the sign state is left. Its deletion goes out
        # with ScaleUp's record; ScaleUp waits for it before it scales anything.
        ctx.helper_removal = asyncio.ensure_future(all_of(*(delete_pod(ctx, ns, name) for ns, name in swept.kept)))
        found = swept.found
    else:
        found = sum(await all_of(*(remove_helpers(ctx, ns) for ns in helper_namespaces(ctx))))
    # Helpers end at once when deleted (grace period 0, their shell traps TERM) and sign nothing: the node does
    # not wait for them to be gone.
    message = f"deleted {found} helper pod(s) of this restore" if found else "no helper pod of this restore is left"
    await ctx.save(plan.complete(ctx.status, plan.REMOVE_HELPERS, ctx.now, message),
                   [plan.step_done_event(plan.REMOVE_HELPERS, message)], defer=True)


@dataclass(frozen=True)
class NodeRead:
    """The MayaNode as read a moment ago in this pass (`body` None: it does not exist)."""

    body: dict[str, Any] | None


async def read_node(ctx: Ctx) -> NodeRead:
    return NodeRead(await ctx.runtime.kube.get_custom(naming.MAYANODE_PLURAL, ctx.namespace, ctx.node_name))


async def step_scale_up(ctx: Ctx, resume: bool) -> None:
    assert ctx.node_spec is not None
    spec = ctx.node_spec
    previous = ctx.status.get("previousReplicas") or {}
    message = f"scaling {spec.mayanode.deployment} and {spec.bifrost.deployment} back up"
    # Recorded before anything is scaled (a restart then scales to 1 again, and never writes the sign state over what
    # the node signed since); the MayaNode is read at the same time (in a hand-off, once the old pods were gone),
    # for a suspend set since the pass began.
    first = plan.step_record(ctx.status, plan.SCALE_UP) is None
    if not first:
        # Started before (a restart, or a failure since): a helper whose deletion did not go through goes first.
        await all_of(*(remove_helpers(ctx, ns) for ns in helper_namespaces(ctx)))
    removal, ctx.helper_removal = ctx.helper_removal, None
    node, ctx.node_reread = ctx.node_reread, None
    begun = ctx.save(plan.begin(ctx.status, plan.SCALE_UP, ctx.now, message)) if first else asyncio.sleep(0)
    removed = removal if removal is not None else asyncio.sleep(0)
    if node is None:
        node, _, _ = await all_of(read_node(ctx), begun, removed)
    else:
        await all_of(begun, removed)
    if ((node.body or {}).get("spec") or {}).get("suspend"):
        await complete(ctx, plan.SCALE_UP, "the MayaNode is suspended (spec.suspend: true): left at 0 replicas")
        return
    if first:
        ctx.emit([plan.step_start_event(plan.SCALE_UP, message)])
    workloads = Workloads(ctx.runtime.kube)
    wanted = {spec.mayanode.deployment: 1, spec.bifrost.deployment: 1}
    for deployment, replicas in wanted.items():          # mayanode first: the validator's gap is the one to keep short
        await workloads.scale(ctx.namespace, deployment, replicas)
    was = ", ".join(f"{k} {v}" for k, v in sorted(previous.items()))
    done = ", ".join(f"{d}={r}" for d, r in wanted.items()) + f" (before: {was})"
    # Run again, this step scales to 1 again: its record goes with WaitReady's, while the new pods start.
    await ctx.save(plan.complete(ctx.status, plan.SCALE_UP, ctx.now, done), [plan.step_done_event(plan.SCALE_UP, done)],
                   defer=True)


async def step_ready(ctx: Ctx, resume: bool) -> None:
    assert ctx.spec is not None and ctx.node_spec is not None
    spec = ctx.node_spec
    wanted = {spec.mayanode.deployment: 1, spec.bifrost.deployment: 1}
    scale_up = plan.step_record(ctx.status, plan.SCALE_UP) or {}
    if "left at 0" in str(scale_up.get("message") or ""):
        await complete(ctx, plan.READY, "not started: the MayaNode is suspended")
        return
    if not resume:
        # Pods scaled up a moment ago are not Ready: the first look is one poll later, and the records and events of
        # the steps before go out with it, not while the new pods start.
        await ctx.save(plan.begin(ctx.status, plan.READY, ctx.now, "waiting for the restored node to be Ready"),
                       defer=True)
        await asyncio.sleep(ctx.poll)
    not_ready = []
    for deployment, replicas in wanted.items():
        body = await ctx.runtime.kube.get_deployment(ctx.namespace, deployment)
        ready = int(((body or {}).get("status") or {}).get("readyReplicas") or 0)
        if ready < replicas:
            not_ready.append(deployment)
    g = ctx.status.get("guard") or {}
    address = (ctx.status.get("backup") or {}).get("nodeAddress") or spec.node_address
    problem = None
    if not_ready:
        problem = f"{', '.join(not_ready)} not Ready yet"
    else:
        api = NodeApi(ctx.runtime.http, spec.rest_url(ctx.namespace), spec.rpc_url(ctx.namespace),
                      float(spec.api.timeout_seconds))
        observed = await api.observe(address)
        if observed.chain is None:
            problem = "the node API does not answer yet"
        elif observed.chain.validator_address.upper() != str(g.get("validatorAddress") or "").upper():
            problem = (f"the node runs validator {observed.chain.validator_address or '?'}, not the restored "
                       f"{g.get('validatorAddress')}")
        elif address and (observed.account is None or observed.account.address != address):
            problem = f"the node API does not report node {address} yet"
        elif observed.account is not None and g.get("consensusPubKey") and \
                observed.account.validator_cons_pub_key not in ("", g.get("consensusPubKey")):
            problem = (f"node {address} is registered with consensus key {observed.account.validator_cons_pub_key}, "
                       f"not the restored {g.get('consensusPubKey')}")
    if problem:
        if plan.deadline_passed(ctx.status, plan.READY, ctx.spec.timeouts.ready_seconds, ctx.now):
            raise StepFailed("NotReady", f"{problem} after {ctx.spec.timeouts.ready_seconds}s")
        raise waiting(ctx, plan.READY, f"waiting: {problem}")
    started = plan.step_started_at(ctx.status, plan.SCALE_DOWN)
    downtime = round((ctx.now - started).total_seconds(), 3) if started else None
    await complete(ctx, plan.READY, f"Ready; the node API reports node {address} with validator "
                                    f"{g.get('validatorAddress')}",
                   scaledUpAt=plan.iso(ctx.now), downtimeSeconds=downtime)


async def step_announce(ctx: Ctx, resume: bool) -> None:
    assert ctx.node_spec is not None
    spec = ctx.node_spec
    node_status = (ctx.node_body or {}).get("status") or {}
    address = ((node_status.get("externalIP") or {}).get("address")
               or (spec.external_ip.address if spec.external_ip else None))
    node_address = (ctx.status.get("backup") or {}).get("nodeAddress") or spec.node_address
    api = NodeApi(ctx.runtime.http, spec.rest_url(ctx.namespace), spec.rpc_url(ctx.namespace),
                  float(spec.api.timeout_seconds))
    observed = await api.observe(node_address)
    registered = observed.account.ip_address if observed.account else None
    if not address:
        address = registered
    if not address:
        await complete(ctx, plan.ANNOUNCE, "no external IP is known for the node: nothing announced")
        return
    if resume:
        # Recorded as started before sending: it may have been sent. Never twice.
        state = "is" if registered == address else "is not yet"
        await complete(ctx, plan.ANNOUNCE, f"set-ip-address {address} was started before a restart and is not sent "
                                           f"again; the chain {state} showing it")
        return
    if registered == address:
        await complete(ctx, plan.ANNOUNCE, f"the node's IP {address} is already registered: nothing sent")
        return
    await ctx.save(plan.begin(ctx.status, plan.ANNOUNCE, ctx.now, f"sending set-ip-address {address}"),
                   [plan.step_start_event(plan.ANNOUNCE, f"sending set-ip-address {address}")])
    signer = NodeSigner(namespace=ctx.namespace, deployment=spec.mayanode.deployment,
                        container=spec.mayanode.container, password_secret=spec.secrets.password.name,
                        password_key=spec.secrets.password.key, signer_name=spec.signer_name,
                        chain_id=spec.effective_chain_id())
    outcome = await kubernetes_transactions(ctx.runtime).send(signer, TxRequest("set-ip-address", (address,)))
    if not outcome.ok:
        raise StepFailed("AnnounceFailed", f"set-ip-address {address}: {outcome.message}")
    await complete(ctx, plan.ANNOUNCE, f"set-ip-address {address} sent (tx {outcome.txhash or '?'})")


STEPS = {
    plan.VERIFY: step_verify, plan.LOCK: step_lock, plan.SCALE_DOWN: step_scale_down, plan.WRITE: step_write,
    plan.SWAP: step_swap, plan.STOP_OLD: step_stop_old, plan.SILENT: step_silent,
    plan.SIGN_STATE: step_sign_state, plan.REMOVE_HELPERS: step_remove_helpers, plan.SCALE_UP: step_scale_up,
    plan.READY: step_ready, plan.ANNOUNCE: step_announce,
}
