"""The upgrade facet resuming a set-version whose checkpoint is on record and whose answer is not (see
tests/unit/test_upgrade_set_version_resume.py): nothing is sent while the chain may still show it."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from mayanode_operator.plan import upgrade_rollout as r

from .test_facet_upgrade import NEW, T, current, make


async def test_a_checkpoint_without_its_answer_is_not_sent_again_at_once():
    facet, ctx, journal = make(upgrade_status=current("SetVersion", versionAnnounced=True,
                                                      message=r.SET_VERSION_SENDING, stepStartedAt=r.iso(T)),
                               maya=NEW, bif=NEW)
    outcome = await facet.reconcile(ctx)
    assert journal == []
    assert outcome.status["upgrade"]["state"] == "InProgress"
    assert outcome.status["upgrade"]["current"]["message"] == r.SET_VERSION_SENDING


async def test_after_the_window_it_is_sent_and_the_answer_replaces_the_checkpoint_message():
    started = r.iso(T - r.SET_VERSION_CONFIRM_TIMEOUT - timedelta(seconds=1))
    facet, ctx, journal = make(upgrade_status=current("SetVersion", versionAnnounced=True,
                                                      message=r.SET_VERSION_SENDING, stepStartedAt=started),
                               maya=NEW, bif=NEW)
    outcome = await facet.reconcile(ctx)
    assert [j[0] for j in journal] == ["persist", "send"]
    assert journal[0][1]["upgrade"]["current"]["message"] == r.SET_VERSION_SENDING
    assert outcome.status["upgrade"]["current"]["message"].startswith("set-version sent")


async def test_the_chain_showing_the_version_ends_it_without_a_send():
    facet, ctx, journal = make(upgrade_status=current("SetVersion", versionAnnounced=True,
                                                      message=r.SET_VERSION_SENDING, stepStartedAt=r.iso(T)),
                               maya=NEW, bif=NEW, announced=NEW)
    outcome = await facet.reconcile(ctx)
    assert [j[0] for j in journal] == []
    assert outcome.status["upgrade"]["history"][-1]["result"] == "Succeeded"


async def test_after_the_window_nothing_is_sent_while_the_node_account_cannot_be_read():
    """Killed after sending, the answer never recorded, 6 minutes ago; spec.nodeAddress unset (or the account
    endpoint failing): the chain's record is unknown, so set-version is not sent a second time blind."""
    started = r.iso(T - r.SET_VERSION_CONFIRM_TIMEOUT - timedelta(minutes=1))
    facet, ctx, journal = make(upgrade_status=current("SetVersion", versionAnnounced=True,
                                                      message=r.SET_VERSION_SENDING, stepStartedAt=started),
                               maya=NEW, bif=NEW)
    api = dataclasses.replace(ctx.observed.api, account=None)
    ctx = dataclasses.replace(ctx, observed=dataclasses.replace(ctx.observed, api=api))
    outcome = await facet.reconcile(ctx)
    assert journal == []
    assert outcome.status["upgrade"]["current"]["step"] == "SetVersion"
    blocked = next(c for c in outcome.conditions if c.type == "UpgradeBlocked")
    assert blocked.reason == "SetVersionUnconfirmed" and "spec.nodeAddress is not set" in blocked.message
