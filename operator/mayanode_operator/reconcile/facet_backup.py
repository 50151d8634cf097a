"""MayaNode facet `backup`: status.backup, BackupFresh, BackupScheduled; creates and prunes policy backups.

observe: this node's NodeBackups, the current vault (from the core's observation), the key shares in the
running bifrost (`find localstate-*.json`, only with afterChurn) → plan (plan/backup_policy.py) → apply:
create NodeBackups (deterministic names: a create retried after a crash answers 409 and is not repeated),
delete pruned ones — with their archives when their deletionPolicy is Delete (what the policy creates), never one
a NodeRestore in progress uses (the planner is asked again with who uses the candidates).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from ..api import naming
from ..backup.crypto import BackupError
from ..plan.backup_items import volume_targets
from ..plan.backup_policy import (
    KeyShareLook,
    KeyShareSignals,
    PolicyInputs,
    VaultView,
    key_share_signals,
    key_shares_due,
    new_backup_body,
    plan_policy,
    prune_failures,
    summarize,
)
from ..plan.events import EventSpec
from ..plan.patches import without_nulls
from .nodebackup import delete_backup, node_volumes, restore_usage

from .facets import FacetOutcome, NodeContext
from .runtime import TRANSIENT_ERRORS, describe_error

logger = logging.getLogger(__name__)


def _vault_view(ctx: NodeContext) -> VaultView | None:
    vault = ctx.observed.api.network.vault
    account = ctx.observed.api.account
    if vault is not None:
        member = (account.secp256k1 in vault.membership) if account and account.secp256k1 else None
        return VaultView(vault.pub_key, vault.block_height, member)
    known = ((ctx.previous_status.get("network") or {}).get("vault")) or {}
    if known.get("pubKey"):
        return VaultView(str(known["pubKey"]), known.get("height"), None)
    return None


async def observe_key_shares(ctx: NodeContext) -> tuple[str, ...] | None:
    """The `localstate-*.json` names in the running bifrost (None when bifrost does not run or cannot be asked): looked
    for when the planner says they may have changed, else the last look's."""
    if ctx.observed.bifrost.ready_replicas < 1:
        return None
    from ..adapters.volumes import VolumeError

    key = (ctx.namespace, ctx.name)
    last = ctx.runtime.key_shares.get(key)
    vault, account = ctx.observed.api.network.vault, ctx.observed.api.account
    signals = key_share_signals(KeyShareSignals(
        bifrost_pods=tuple(pod.name for pod in ctx.observed.bifrost.pods),
        vault=vault.pub_key if vault is not None else None,
        signer_membership=tuple(sorted(account.signer_membership)) if account is not None else None,
    ), last)
    if last is not None and not key_shares_due(last, signals, ctx.now):
        return last.shares
    target = volume_targets(ctx.spec)[1]
    volumes = node_volumes(ctx.runtime)
    try:
        async with volumes.session(ctx.namespace, target, mode="container") as session:
            shares = tuple(sorted(await session.list_files(globs=("localstate-*.json",))))
    except VolumeError as err:
        logger.info("key shares of %s/%s not observed: %s", ctx.namespace, ctx.name, err)
        return None
    ctx.runtime.key_shares[key] = KeyShareLook(signals, ctx.now, shares)
    return shares


def _belongs(body: Mapping[str, Any], node: str) -> bool:
    spec = body.get("spec") or {}
    return (spec.get("nodeRef") or {}).get("name") == node and not (body.get("metadata") or {}).get("deletionTimestamp")


async def node_backups(ctx: NodeContext, *, fresh: bool = False) -> tuple[tuple[Any, ...], list[dict[str, Any]] | None]:
    """This node's NodeBackups, summarized, and as listed; the last pass's summaries (and None) while nothing changed
    in the namespace since, unless `fresh`."""
    watched, key = ctx.runtime.watched, ("backups", ctx.name)
    kept = None if fresh else watched.get(ctx.namespace, key)
    if kept is not None:
        return kept, None
    epoch = watched.epoch(ctx.namespace)
    bodies = [b for b in await ctx.runtime.kube.list_custom(naming.NODEBACKUP_PLURAL, ctx.namespace)
              if _belongs(b, ctx.name)]
    backups = tuple(summarize(b) for b in bodies)
    watched.keep(ctx.namespace, key, backups, epoch)
    return backups, bodies


class BackupFacet:
    name = "Backup"
    owns_status_keys = ("backup",)

    async def reconcile(self, ctx: NodeContext) -> FacetOutcome:

        policy = ctx.spec.backup
        backups, bodies = await node_backups(ctx)
        shares = await observe_key_shares(ctx) if policy is not None and policy.after_churn else None
        inputs = PolicyInputs(
            node=ctx.name, policy=policy, now=ctx.now, previous=ctx.previous_status.get("backup") or {},
            backups=backups, vault=_vault_view(ctx), local_key_shares=shares,
            workloads_locked=ctx.workloads_locked,
        )
        plan = plan_policy(inputs)
        if (plan.create or plan.delete) and bodies is None:        # creating or pruning: on a list read now
            backups, bodies = await node_backups(ctx, fresh=True)
            inputs = dataclasses.replace(inputs, backups=backups)
            plan = plan_policy(inputs)
        by_name = {str((b.get("metadata") or {}).get("name")): b for b in bodies or ()}
        if plan.delete:
            usage = {name: await restore_usage(ctx.runtime, by_name[name]) for name, _ in plan.delete if name in by_name}
            plan = plan_policy(dataclasses.replace(inputs, in_use=usage))
        events = list(plan.events)
        for new in plan.create:
            body = new_backup_body(ctx.namespace, ctx.name, policy, new)
            try:
                await asyncio.to_thread(ctx.runtime.kube.custom.create_namespaced_custom_object, naming.GROUP,
                                        naming.VERSION, ctx.namespace, naming.NODEBACKUP_PLURAL, body,
                                        _preload_content=False)
                events.append(EventSpec("Normal", "BackupCreated", f"created NodeBackup {new.name} ({new.reason}: "
                                                                   f"{new.detail})"))
            except ApiException as err:
                if err.status != 409:
                    raise
        failures: list[tuple[str, str]] = []
        for name, _why in plan.delete:
            if name in by_name:
                try:
                    await delete_backup(ctx.runtime, by_name[name], with_archive=name not in plan.retain_archive)
                except BackupError as err:       # the store refused (e.g. a bucket policy denying deletes)
                    failures.append((name, str(err)))
                except TRANSIENT_ERRORS as err:
                    failures.append((name, describe_error(err)))
        failed_conditions, failed_events = prune_failures(ctx.status.get("conditions"), failures)
        status = {"backup": without_nulls(plan.status)} if plan.status is not None else {}
        return FacetOutcome(status=status, conditions=[*plan.conditions, *failed_conditions],
                            events=[*events, *failed_events], requeue_after=plan.requeue)
