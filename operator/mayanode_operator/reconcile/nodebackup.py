"""NodeBackup: observe → decide (plan/backup.py) → apply one step → one status patch. Sequencing only.

Store keys are deterministic: `<namespace>/<node>/<backup>-<uid[:8]>.tar.age` in the backup's location (an
imported backup keeps the key `backup import` wrote). A capture interrupted after its write is redone and
replaces that object (no status recorded it yet), so a retried write never leaves a second archive.

`spec.deletionPolicy: Delete` (plan/backup_deletion.py): the operator's finalizer `maya.nodeops.io/delete-archive`
is put on the NodeBackup before anything is stored; a NodeBackup being deleted with it gets its archive and
VolumeSnapshots deleted (never while a NodeRestore in progress uses it), then the finalizer removed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from .. import chainkeys, metrics
from ..adapters.exec import KubernetesExec
from ..adapters.snapshots import Snapshots, snapshot_body, snapshot_name, snapshot_state
from ..adapters.volumes import DEFAULT_HELPER_IMAGE, NodeVolumes, VolumeError
from ..api import naming
from ..api.backup import NodeBackupSpec
from ..api.mayanode import MayaNodeSpec
from ..backup import BackupError, BackupItem, CryptoError, open_sealed, seal, sha256_hex, validate_recipients
from ..backup.archive import Manifest
from ..backup.stores import BackupStore, StoreError, StoreReason, store_for_location, store_kind
from ..observe.nodeapi import NodeApi
from ..observe.snapshot import NodeApiObservation
from ..plan import backup as plan
from ..plan import backup_deletion as deletion
from ..plan.backup_items import (
    CONSENSUS_KEY_PATH,
    MAYANODE,
    SECRET,
    SIGN_STATE_PATH,
    CaptureVerdict,
    ExpectedSet,
    Missing,
    expected_items,
    judge_capture,
    list_roots,
    plan_capture,
    secret_missing,
    vanished,
)
from ..plan.backup_verify import (
    ChainFacts,
    VerifyResult,
    failure_from_error,
    item_name,
    required_item_names,
    verify_contents,
)
from ..plan.conditions import merge_conditions
from ..plan.patches import merge_patch
from .runtime import TRANSIENT_ERRORS, Runtime, describe_error

logger = logging.getLogger(__name__)

IMPORT_MANIFEST_ANNOTATION = f"{naming.GROUP}/imported-manifest"
IMPORT_META_ANNOTATION = f"{naming.GROUP}/imported-backup"
TRANSIENT = TRANSIENT_ERRORS


store_key = deletion.store_key
JSON_PATCH = "application/json-patch+json"


def describe_validation_error(err: ValidationError) -> str:
    parts = []
    for item in err.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "spec"
        parts.append(f"spec.{where}: {item['msg']}")
    return "; ".join(parts)


async def open_store(runtime: Runtime, location: Mapping[str, Any], namespace: str) -> BackupStore:
    return await store_for_location(location, namespace, runtime.kube.api_client, runtime.kube.read_secret)


async def read_identity(runtime: Runtime, location: Mapping[str, Any], namespace: str) -> str | None:
    """The age identity from the location's identity Secret (None: not configured or not there)."""
    ref = ((location.get("encryption") or {}).get("identitySecret")) or {}
    if not ref.get("name"):
        return None
    data = await runtime.kube.read_secret(namespace, str(ref["name"]))
    value = (data or {}).get(str(ref.get("key") or naming.DEFAULT_AGE_IDENTITY_KEY))
    return value.decode("utf-8", "replace") if value else None


def chain_facts(observation: NodeApiObservation, node_address: str | None) -> ChainFacts:
    account, vault = observation.account, observation.network.vault
    failing = [f"{e.endpoint}: {e.message}" for e in observation.errors if e.endpoint in ("node", "asgard")]
    if not node_address:
        failing.append("node: the MayaNode has no spec.nodeAddress")
    return ChainFacts(
        reachable=not failing,
        cons_pub_key=account.validator_cons_pub_key if account else None,
        secp256k1=(account.secp256k1 or None) if account else None,
        vault_pub_key=vault.pub_key if vault else None,
        vault_membership=tuple(vault.membership) if vault else (),
        error="; ".join(failing)[:300],
    )


@dataclass
class Ctx:
    runtime: Runtime
    body: dict[str, Any]
    namespace: str
    name: str
    spec: NodeBackupSpec | None
    node_body: dict[str, Any] | None
    node_spec: MayaNodeSpec | None
    location: dict[str, Any] | None
    inputs: plan.BackupInputs

    @property
    def uid(self) -> str:
        return str((self.body.get("metadata") or {}).get("uid") or "")

    @property
    def status(self) -> Mapping[str, Any]:
        return self.body.get("status") or {}

    @property
    def owner_reference(self) -> dict[str, Any]:
        return naming.owner_reference(naming.NODEBACKUP_KIND, self.body)

    @property
    def node_name(self) -> str:
        return self.spec.node_ref.name if self.spec else ""


async def load(runtime: Runtime, namespace: str, name: str, body: dict[str, Any] | None = None) -> Ctx | None:
    if body is None:
        body = await runtime.kube.get_custom(naming.NODEBACKUP_PLURAL, namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return None
    status = body.get("status") or {}
    spec = spec_error = None
    try:
        spec = NodeBackupSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        spec_error = describe_validation_error(err)
    node_body = node_spec = None
    node_error = location_error = None
    location: dict[str, Any] | None = None
    snapshots = False
    if spec is not None:
        node_body = await runtime.kube.get_custom(naming.MAYANODE_PLURAL, namespace, spec.node_ref.name)
        if node_body is not None:
            try:
                node_spec = MayaNodeSpec.model_validate(node_body.get("spec") or {})
            except ValidationError as err:
                node_error = describe_validation_error(err)
        effective = spec.effective_location(node_spec.backup if node_spec else None)
        location = effective.to_k8s() if effective is not None else None
        recorded = (status.get("archive") or {}).get("location")
        if recorded:            # a stored archive is where it was written, whatever the MayaNode's location is now
            location = dict(recorded)
        if location is not None:
            try:
                store_kind(location)
                validate_recipients((location.get("encryption") or {}).get("recipients") or [])
            except BackupError as err:
                location_error = err.message
        options = spec.volume_snapshots or (node_spec.backup.volume_snapshots if node_spec and node_spec.backup else None)
        snapshots = bool(options and options.enabled)
    now = runtime.now()
    expiry = plan.expires_at(spec, status) if status.get("phase") in plan.FINISHED else None
    usage = await restore_usage(runtime, body) if expiry is not None and now.replace(tzinfo=None) >= expiry \
        else deletion.Usage()
    inputs = plan.BackupInputs(
        name=name, namespace=namespace, generation=(body.get("metadata") or {}).get("generation"), spec=spec,
        status=status, now=now, spec_error=spec_error, node_found=node_body is not None,
        node_error=node_error, location=location, location_error=location_error, snapshots_enabled=snapshots,
        usage=usage)
    return Ctx(runtime, body, namespace, name, spec, node_body, node_spec, location, inputs)


async def reconcile_nodebackup(runtime: Runtime, namespace: str, name: str) -> float | None:
    """One step of the state machine; returns seconds until the next pass (None: nothing to wait for)."""
    body = await runtime.kube.get_custom(naming.NODEBACKUP_PLURAL, namespace, name)
    if body is None:
        return None
    if deletion.deleting(body):
        return await reconcile_deletion(runtime, body)
    body = await sync_finalizer(runtime, body)
    if body is None:
        return None
    ctx = await load(runtime, namespace, name, body)
    if ctx is None:
        return None
    decision = plan.decide(ctx.inputs)
    logger.info("NodeBackup %s/%s: %s (%s)", namespace, name, decision.action.value, decision.reason)
    handler = ACTIONS[decision.action]
    try:
        result = await handler(ctx, decision)
    except (VolumeError, BackupError, *TRANSIENT) as err:
        result = step_failed(ctx.inputs, decision.action, err)
    if result is None:
        return None
    await write_status(ctx, result)
    if result.finished and ctx.spec is not None:
        runtime.queue.add((naming.MAYANODE_PLURAL, namespace, ctx.spec.node_ref.name))
    return result.requeue


def step_failed(inputs: plan.BackupInputs, action: plan.Action, err: Exception) -> plan.StepResult:
    """What an action that raised leaves in status. A capture retries what may pass (deadline 10 minutes) and fails
    on the rest; a finished backup's re-verification or expiry never changes its phase (`finished_step_failed`)."""
    if inputs.phase in plan.FINISHED:
        message = describe_error(err) if isinstance(err, TRANSIENT) else str(err)
        return plan.finished_step_failed(inputs, action, message)
    if isinstance(err, VolumeError):
        return plan.transient_error(inputs, "Capture", str(err))
    if isinstance(err, StoreError):
        if err.reason == StoreReason.UNREACHABLE:
            return plan.transient_error(inputs, "Store", err.message)
        return plan.failed(inputs, f"Store{err.reason}", err.message)
    if isinstance(err, BackupError):
        return plan.failed(inputs, f"Archive{err.reason}", err.message)
    return plan.transient_error(inputs, "Step", describe_error(err))


async def write_status(ctx: Ctx, result: plan.StepResult) -> None:
    runtime, status = ctx.runtime, ctx.status
    new = dict(result.status)
    new.setdefault("observedGeneration", ctx.inputs.generation)
    if result.conditions:
        new["conditions"] = merge_conditions(status.get("conditions"), result.conditions,
                                             now=plan.iso(ctx.inputs.now), generation=ctx.inputs.generation)
    patch = merge_patch(status, new)
    if patch:
        await runtime.kube.patch_custom_status(naming.NODEBACKUP_PLURAL, ctx.namespace, ctx.name, patch)
        record_finish(ctx, status, new)
    for event in result.events:
        try:
            await runtime.kube.emit_event(ctx.body, event)
        except TRANSIENT as err:
            logger.warning("could not emit event %s: %s", event.reason, type(err).__name__)


FINISHED_PHASES = ("Completed", "PartiallyFailed", "Failed")


def record_finish(ctx: Ctx, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """Count a backup once, when its phase first becomes final."""
    phase = new.get("phase")
    if phase not in FINISHED_PHASES or old.get("phase") in FINISHED_PHASES:
        return
    started = plan_time(new.get("startedAt") or old.get("startedAt"))
    done = plan_time(new.get("completedAt"))
    metrics.observe_backup(
        ctx.namespace, ctx.spec.node_ref.name if ctx.spec else "", reason=str((ctx.body.get("spec") or {}).get("reason")),
        outcome=str(phase), duration_seconds=(done - started).total_seconds() if started and done else None,
        size_bytes=(new.get("archive") or {}).get("size"))


def plan_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------------
async def _accept(ctx: Ctx, decision: plan.Decision) -> plan.StepResult:
    return plan.accepted(ctx.inputs)


async def _fail(ctx: Ctx, decision: plan.Decision) -> plan.StepResult:
    return plan.failed(ctx.inputs, decision.reason, decision.message)


async def _start(ctx: Ctx, decision: plan.Decision) -> plan.StepResult:
    try:
        await open_store(ctx.runtime, ctx.location or {}, ctx.namespace)
    except StoreError as err:
        if err.reason == StoreReason.INVALID:
            return plan.failed(ctx.inputs, "InvalidLocation", err.message)
        raise
    return plan.started(ctx.inputs)


def _volume_targets(ctx: Ctx, member_vault: str | None = None) -> ExpectedSet:
    assert ctx.node_spec is not None
    return expected_items(ctx.node_spec, member_vault=member_vault)


async def _snapshot(ctx: Ctx, decision: plan.Decision) -> plan.StepResult:
    if ctx.node_spec is None:
        return plan.failed(ctx.inputs, "NodeNotFound", f"MayaNode {ctx.node_name} is gone")
    options = ctx.spec.volume_snapshots or (ctx.node_spec.backup.volume_snapshots if ctx.node_spec.backup else None)
    class_name = options.class_name if options else None
    snapshots = Snapshots(ctx.runtime.kube)
    views: list[plan.SnapshotView] = []
    for target in _volume_targets(ctx).targets:
        name = snapshot_name(ctx.name, target.component)
        body = await snapshots.get(ctx.namespace, name)
        ready, size, error = snapshot_state(body)
        views.append(plan.SnapshotView(target.component, target.pvc, name, body is not None, ready, size, error))
    to_create, result = plan.snapshot_progress(ctx.inputs, views)
    labels = {naming.LABEL_BACKUP: ctx.name, naming.LABEL_NODE: ctx.node_name}
    for view in to_create:
        await snapshots.create(ctx.namespace, snapshot_body(ctx.namespace, view.name, view.pvc, class_name, labels))
    return result


@dataclass
class Capture:
    items: list[BackupItem]
    missing: list[Missing]
    chain: ChainFacts
    member_vault: str | None
    observation: NodeApiObservation


async def observe_chain(ctx: Ctx) -> tuple[NodeApiObservation, ChainFacts]:
    spec = ctx.node_spec
    assert spec is not None
    api = NodeApi(ctx.runtime.http, spec.rest_url(ctx.namespace), spec.rpc_url(ctx.namespace),
                  float(spec.api.timeout_seconds))
    observation = await api.observe(spec.node_address)
    return observation, chain_facts(observation, spec.node_address)


def node_volumes(runtime: Runtime) -> NodeVolumes:
    image = getattr(runtime.config, "helper_image", None) or DEFAULT_HELPER_IMAGE
    return NodeVolumes(runtime.kube, KubernetesExec(runtime.kube.api_client), helper_image=image)


async def capture(ctx: Ctx) -> Capture:
    """List, plan (expected vs present), then read exactly the planned files and Secrets."""
    observation, chain = await observe_chain(ctx)
    member_vault = chain.vault_pub_key if chain.member else None
    expected = _volume_targets(ctx, member_vault)
    volumes = node_volumes(ctx.runtime)
    labels = {naming.LABEL_BACKUP: ctx.name, naming.LABEL_NODE: ctx.node_name}
    leftovers = await volumes.remove_helpers(ctx.namespace, {naming.LABEL_BACKUP: ctx.name})
    if leftovers:
        logger.info("removed leftover helper pods %s of NodeBackup %s/%s", leftovers, ctx.namespace, ctx.name)
    items: list[BackupItem] = []
    missing: list[Missing] = []
    for target in expected.targets:
        rules = expected.files_of(target.component)
        starts, globs = list_roots(rules)
        only = ExpectedSet(targets=(target,), files=rules, secrets=())
        async with volumes.session(ctx.namespace, target, labels=labels, owner=ctx.owner_reference) as session:
            found = await session.list_files(starts, globs=globs)
            capture_plan = plan_capture(only, {target.component: found})
            paths = capture_plan.read.get(target.component, ())
            files = await session.read_files(paths)
        missing += capture_plan.missing
        for path in paths:
            entry = files.get(path)
            if entry is None:
                missing.append(vanished(target.component, path, rules))
                continue
            items.append(BackupItem(name=item_name(target.component, path), component=target.component, path=path,
                                    data=entry.data, mode=entry.mode, uid=entry.uid, gid=entry.gid, mtime=entry.mtime))
    for wanted in expected.secrets:
        data = await ctx.runtime.kube.read_secret(ctx.namespace, wanted.secret)
        problem = secret_missing(wanted, data)
        if problem is not None:
            missing.append(problem)
            continue
        items.append(BackupItem(name=item_name(SECRET, wanted.path), component=SECRET, path=wanted.path,
                                data=bytes((data or {})[wanted.key]), mode=0o600))
    return Capture(items, missing, chain, member_vault, observation)


def captured_node(ctx: Ctx, cap: Capture) -> dict[str, Any]:
    node: dict[str, Any] = {"address": ctx.node_spec.node_address if ctx.node_spec else None,
                            "vaultPubKey": cap.member_vault}
    by_name = {item.name: item for item in cap.items}
    key = by_name.get(item_name(MAYANODE, CONSENSUS_KEY_PATH))
    if key is not None:
        try:
            node["consensusPubKey"] = chainkeys.parse_priv_validator_key(key.data).pubkey_bech32
        except chainkeys.ChainKeyError:
            pass
    state = by_name.get(item_name(MAYANODE, SIGN_STATE_PATH))
    if state is not None:
        try:
            node["signStateHeight"] = chainkeys.parse_priv_validator_state(state.data).height
        except chainkeys.ChainKeyError:
            pass
    if cap.observation.chain is not None:
        node["height"] = cap.observation.chain.height
    version = ((ctx.node_body or {}).get("status") or {}).get("version") or cap.observation.network.querier_version
    if version:
        node["version"] = version
    return {k: v for k, v in node.items() if v is not None}


async def _capture(ctx: Ctx, decision: plan.Decision) -> plan.StepResult:
    if ctx.node_spec is None or ctx.location is None:
        return plan.failed(ctx.inputs, "NodeNotFound", f"MayaNode {ctx.node_name} or its backup location is gone")
    cap = await capture(ctx)
    verdict = judge_capture(cap.missing, len(cap.items))
    missing_status = [m.to_status() for m in cap.missing]
    if verdict.phase == "Failed":
        result = plan.failed(ctx.inputs, verdict.reason, verdict.message)
        result.status["missing"] = missing_status or None
        return result
    node = captured_node(ctx, cap)
    meta = {"nodeAddress": node.get("address"), "namespace": ctx.namespace, "mayaNode": ctx.node_name,
            "backup": ctx.name, "consensusPubKey": node.get("consensusPubKey"), "vaultPubKey": cap.member_vault,
            "height": node.get("height"), "signStateHeight": node.get("signStateHeight"),
            "version": node.get("version"), "createdAt": plan.iso(ctx.inputs.now)}
    recipients = (ctx.location.get("encryption") or {}).get("recipients") or []
    sealed = seal(cap.items, {k: v for k, v in meta.items() if v is not None}, recipients)
    del cap.items[:]
    key = store_key(ctx.namespace, ctx.node_name, ctx.name, ctx.uid)
    store = await open_store(ctx.runtime, ctx.location, ctx.namespace)
    metadata = {"backup": ctx.name, "namespace": ctx.namespace, "node": ctx.node_name, "uid": ctx.uid,
                "reason": ctx.spec.reason.value if ctx.spec else "Manual"}
    stored = await store.put(key, sealed.ciphertext, metadata, overwrite=True)
    archive = {"store": store_kind(ctx.location), "uri": stored.location, "key": key, "parts": stored.parts,
               "size": sealed.size, "sha256": sealed.digest, "recipients": list(sealed.recipients),
               "format": "tar+age/v1", "location": dict(ctx.location), "storedAt": plan.iso(ctx.inputs.now)}
    items = sealed.manifest.public_summary()["items"]
    return plan.captured(ctx.inputs, verdict=verdict, items=items, missing=missing_status, archive=archive, node=node,
                         snapshot_failed=any(not s.get("readyToUse") for s in ctx.status.get("snapshots") or []))


def imported_documents(body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(public manifest, backup metadata) that `backup import` put on the NodeBackup as annotations."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    try:
        manifest = json.loads(annotations.get(IMPORT_MANIFEST_ANNOTATION) or "{}")
        meta = json.loads(annotations.get(IMPORT_META_ANNOTATION) or "{}")
    except ValueError:
        return {}, {}
    return (manifest if isinstance(manifest, dict) else {}), (meta if isinstance(meta, dict) else {})


async def _check_imported(ctx: Ctx, decision: plan.Decision) -> plan.StepResult:
    assert ctx.spec is not None and ctx.spec.source is not None and ctx.location is not None
    source = ctx.spec.source
    store = await open_store(ctx.runtime, ctx.location, ctx.namespace)
    try:
        data = await store.get(source.key)
    except StoreError as err:
        if err.reason == StoreReason.NOT_FOUND:
            return plan.failed(ctx.inputs, "ImportedArchiveNotFound",
                               f"no object {source.key!r} in {store.describe()}: run `mayanode-operator backup import` "
                               f"against this cluster again")
        if err.reason == StoreReason.DIGEST_MISMATCH:
            return plan.failed(ctx.inputs, "DigestMismatch", err.message)
        raise
    if sha256_hex(data) != source.sha256 or (source.size is not None and len(data) != source.size):
        return plan.failed(ctx.inputs, "DigestMismatch",
                           f"the object {source.key!r} is not the exported archive (sha256 or size differ)")
    stat = await store.stat(source.key)
    manifest, meta = imported_documents(ctx.body)
    items = [dict(i) for i in manifest.get("items") or [] if isinstance(i, dict)]
    archive = {"store": store_kind(ctx.location), "uri": stat.location, "key": source.key, "parts": stat.parts,
               "size": len(data), "sha256": source.sha256, "recipients": list(meta.get("recipients") or []),
               "format": "tar+age/v1", "location": dict(ctx.location), "storedAt": plan.iso(ctx.inputs.now)}
    node = {k: v for k, v in (meta.get("node") or {}).items()
            if k in ("address", "consensusPubKey", "vaultPubKey", "height", "signStateHeight", "version")}
    verdict = CaptureVerdict("Completed", "Imported", f"imported archive of {source.original_namespace or '?'}/"
                                                      f"{source.original_name or '?'} found, {len(items)} items")
    return plan.captured(ctx.inputs, verdict=verdict, items=items, missing=list(meta.get("missing") or []),
                         archive=archive, node=node)


def required_items(ctx: Ctx) -> tuple[list[str], str | None]:
    """Item names verification insists on, and the mnemonic's item name."""
    if ctx.node_spec is None:
        return [], None
    return required_item_names(ctx.node_spec, vault=(ctx.status.get("node") or {}).get("vaultPubKey"),
                               missing=ctx.status.get("missing") or [],
                               imported=ctx.spec is not None and ctx.spec.source is not None)


async def verify(ctx: Ctx) -> VerifyResult:
    """Fetch, check the digest, decrypt with the identity Secret, check the contents and the chain."""
    assert ctx.location is not None
    archive = ctx.status.get("archive") or {}
    identity = await read_identity(ctx.runtime, ctx.location, ctx.namespace)
    if identity is None:
        ref = (ctx.location.get("encryption") or {}).get("identitySecret") or {}
        return VerifyResult("Unknown", "IdentityNotFound",
                            f"the identity Secret {ref.get('name')} (key {ref.get('key') or 'identity'}) does not exist "
                            f"or is empty")
    try:
        store = await open_store(ctx.runtime, ctx.location, ctx.namespace)
        ciphertext = await store.get(str(archive.get("key")))
        manifest, items = open_sealed(ciphertext, identity, str(archive.get("sha256") or ""))
    except (BackupError, CryptoError) as err:
        return failure_from_error(err)
    if ctx.node_spec is None:
        return VerifyResult("Unknown", "NodeNotFound", f"MayaNode {ctx.node_name} is gone: keys not checked")
    _, chain = await observe_chain(ctx)
    required, mnemonic = required_items(ctx)
    return verify_contents(manifest, items, recorded=ctx.status.get("items") or [], required=required, chain=chain,
                           mnemonic_item=mnemonic, captured_vault=(ctx.status.get("node") or {}).get("vaultPubKey"))


async def _verify(ctx: Ctx, decision: plan.Decision) -> plan.StepResult:
    return plan.finished(ctx.inputs, await verify(ctx))


async def _finish(ctx: Ctx, decision: plan.Decision) -> plan.StepResult:
    return plan.finished(ctx.inputs, None, decision.reason, decision.message)


async def _reverify(ctx: Ctx, decision: plan.Decision) -> plan.StepResult:
    return plan.reverified(ctx.inputs, await verify(ctx))


async def _respec(ctx: Ctx, decision: plan.Decision) -> plan.StepResult:
    return plan.respecced(ctx.inputs)


async def _idle(ctx: Ctx, decision: plan.Decision) -> plan.StepResult:
    return plan.StepResult(requeue=decision.requeue)


async def _expire(ctx: Ctx, decision: plan.Decision) -> plan.StepResult | None:
    result = plan.expiring(ctx.inputs, decision.message)
    for event in result.events:
        try:
            await ctx.runtime.kube.emit_event(ctx.body, event)
        except TRANSIENT:
            pass
    await delete_backup(ctx.runtime, ctx.body)          # from where the archive was written (backup_location)
    return None


async def _hold(ctx: Ctx, decision: plan.Decision) -> plan.StepResult:
    return plan.expiry_held(ctx.inputs, decision)


# --------------------------------------------------------------------------------------------------
# Deletion: the archive, the VolumeSnapshots, our finalizer (spec.deletionPolicy)
# --------------------------------------------------------------------------------------------------
async def backup_location(runtime: Runtime, body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Where the backup's archive is: its spec.location, else the location recorded with the archive, else the
    MayaNode's spec.backup.location (None: none of them)."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    location = spec.get("location") or (status.get("archive") or {}).get("location")
    if location:
        return location
    namespace = str((body.get("metadata") or {}).get("namespace"))
    node = await runtime.kube.get_custom(naming.MAYANODE_PLURAL, namespace, str((spec.get("nodeRef") or {}).get("name")))
    return (((node or {}).get("spec") or {}).get("backup") or {}).get("location") or None


async def restore_usage(runtime: Runtime, body: Mapping[str, Any]) -> deletion.Usage:
    """The NodeRestores in progress that use this backup: in its namespace and its spec.restoreNamespaces. A
    namespace whose NodeRestores cannot be listed counts as unknown (it blocks a deletion: better kept than lost)."""
    meta = body.get("metadata") or {}
    restores: list[dict[str, Any]] = []
    unchecked: list[str] = []
    for namespace in deletion.restore_namespaces(body):
        try:
            restores += await runtime.kube.list_custom(naming.NODERESTORE_PLURAL, namespace)
        except ApiException as err:
            unchecked.append(f"{namespace}: HTTP {err.status}")
    return deletion.Usage(deletion.restores_using(str(meta.get("namespace")), str(meta.get("name")), restores),
                          tuple(unchecked))


async def set_finalizers(runtime: Runtime, body: Mapping[str, Any], new: list[str]) -> dict[str, Any] | None:
    """Write metadata.finalizers (JSON patch guarded by the resourceVersion). The object as it is now; None when it
    is gone. A concurrent change answers 409/422: raised, so the queue retries with the object read again."""
    meta = body.get("metadata") or {}
    try:
        response = await asyncio.to_thread(
            runtime.kube.custom.patch_namespaced_custom_object, naming.GROUP, naming.VERSION,
            str(meta.get("namespace")), naming.NODEBACKUP_PLURAL, str(meta.get("name")),
            deletion.finalizer_patch(body, new), _content_type=JSON_PATCH, _preload_content=False)
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return json.loads(response.data) if response.data else dict(body)


async def sync_finalizer(runtime: Runtime, body: dict[str, Any]) -> dict[str, Any] | None:
    """Ours on the NodeBackup exactly when its deletionPolicy is Delete (added before anything is stored)."""
    new = deletion.finalizer_change(body)
    if new is None:
        return body
    meta = body.get("metadata") or {}
    logger.info("NodeBackup %s/%s: %s finalizer %s", meta.get("namespace"), meta.get("name"),
                "adding" if deletion.DELETE_FINALIZER in new else "removing", deletion.DELETE_FINALIZER)
    return await set_finalizers(runtime, body, new)


async def release(runtime: Runtime, body: Mapping[str, Any]) -> None:
    """Remove our finalizer (the NodeBackup then goes, if it is being deleted and nothing else holds it)."""
    if deletion.has_finalizer(body):
        current = await runtime.kube.get_custom(naming.NODEBACKUP_PLURAL, str((body.get("metadata") or {}).get(
            "namespace")), str((body.get("metadata") or {}).get("name")))
        if current is not None and deletion.has_finalizer(current):
            await set_finalizers(runtime, current,
                                 [f for f in deletion.finalizers(current) if f != deletion.DELETE_FINALIZER])


async def delete_data(runtime: Runtime, body: Mapping[str, Any], location: Mapping[str, Any] | None) -> None:
    """Delete the backup's archive (where it was recorded, or under the key an interrupted capture used) and its
    VolumeSnapshots. Idempotent: what is already gone is fine."""
    namespace = str((body.get("metadata") or {}).get("namespace"))
    target = deletion.archive_target(body)
    if target.key and location:
        store = await open_store(runtime, location, namespace)
        await store.delete(target.key)
    snapshots = Snapshots(runtime.kube)
    for name in target.snapshots:
        await snapshots.delete(namespace, name)


async def reconcile_deletion(runtime: Runtime, body: dict[str, Any]) -> float | None:
    """A NodeBackup being deleted: with our finalizer, delete its data (policy Delete, no restore using it), then
    let it go. Without our finalizer there is nothing for us to do."""
    if not deletion.has_finalizer(body):
        return None
    meta = body.get("metadata") or {}
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    location = await backup_location(runtime, body)
    usage = await restore_usage(runtime, body) if deletion.deletion_policy(body) == deletion.DELETE \
        else deletion.Usage()
    decision = deletion.decide_deletion(deletion.DeletionInputs(body, usage, location is not None))
    if decision.action == deletion.DeletionAction.DELETE_DATA:
        try:
            await delete_data(runtime, body, location)
        except BackupError as err:
            decision = deletion.decide_deletion(deletion.DeletionInputs(body, usage, True, f"{err.reason}: {err.message}"))
        except TRANSIENT as err:
            decision = deletion.decide_deletion(deletion.DeletionInputs(body, usage, True, describe_error(err)))
    logger.info("NodeBackup %s/%s being deleted: %s (%s)", namespace, name, decision.action.value, decision.reason)
    if decision.action == deletion.DeletionAction.BLOCK:
        await write_deletion_status(runtime, body, decision)
        return decision.requeue
    for event in decision.events:
        try:
            await runtime.kube.emit_event(body, event)
        except TRANSIENT as err:
            logger.warning("could not emit event %s: %s", event.reason, type(err).__name__)
    await release(runtime, body)
    return None


async def write_deletion_status(runtime: Runtime, body: Mapping[str, Any], decision: deletion.DeletionDecision) -> None:
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    now = plan.iso(runtime.now())
    conditions = merge_conditions(status.get("conditions"), decision.conditions, now=now,
                                  generation=meta.get("generation"))
    patch = merge_patch(status, {"conditions": conditions})
    if patch:
        await runtime.kube.patch_custom_status(naming.NODEBACKUP_PLURAL, str(meta.get("namespace")),
                                               str(meta.get("name")), patch)
    for event in decision.events:
        try:
            await runtime.kube.emit_event(body, event)
        except TRANSIENT as err:
            logger.warning("could not emit event %s: %s", event.reason, type(err).__name__)


async def delete_backup(runtime: Runtime, body: Mapping[str, Any], *, location: Mapping[str, Any] | None = None,
                        with_archive: bool = True) -> None:
    """Delete a NodeBackup: its stored archive and VolumeSnapshots first (unless `with_archive` is false), then the
    NodeBackup, then our finalizer if it has one — in that order, so an interrupted deletion is finished by the
    next pass. The archive is looked for where the backup recorded it. The caller has checked that no NodeRestore
    in progress uses it."""
    meta = body.get("metadata") or {}
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    if with_archive:
        await delete_data(runtime, body, location or await backup_location(runtime, body))
    try:
        await asyncio.to_thread(runtime.kube.custom.delete_namespaced_custom_object, naming.GROUP, naming.VERSION,
                                namespace, naming.NODEBACKUP_PLURAL, name, _preload_content=False)
    except ApiException as err:
        if err.status != 404:
            raise
    await release(runtime, body)
    logger.info("NodeBackup %s/%s deleted %s", namespace, name, "with its archive" if with_archive else
                "(archive kept)")


async def load_backup(runtime: Runtime, body: Mapping[str, Any], identity: str) -> tuple[Manifest, list[BackupItem]]:
    """The decrypted contents of a finished NodeBackup (for restores): fetched from where it was stored, the
    digest recorded in status checked before decrypting. Raises BackupError/StoreError with a safe message."""
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    namespace = str(meta.get("namespace"))
    archive = status.get("archive") or {}
    if not archive.get("key") or not archive.get("sha256"):
        raise StoreError(StoreReason.NOT_FOUND, f"NodeBackup {namespace}/{meta.get('name')} has no stored archive")
    location = await backup_location(runtime, body)
    if location is None:
        raise StoreError(StoreReason.INVALID, "the NodeBackup has no location and its MayaNode has no spec.backup")
    store = await open_store(runtime, location, namespace)
    return open_sealed(await store.get(str(archive["key"])), identity, str(archive["sha256"]))


ACTIONS = {
    plan.Action.ACCEPT: _accept,
    plan.Action.FAIL: _fail,
    plan.Action.START: _start,
    plan.Action.SNAPSHOT: _snapshot,
    plan.Action.CAPTURE: _capture,
    plan.Action.CHECK_IMPORTED: _check_imported,
    plan.Action.VERIFY: _verify,
    plan.Action.FINISH: _finish,
    plan.Action.EXPIRE: _expire,
    plan.Action.HOLD: _hold,
    plan.Action.REVERIFY: _reverify,
    plan.Action.RESPEC: _respec,
    plan.Action.IDLE: _idle,
}
