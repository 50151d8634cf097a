"""kopf settings, each with the reason it is set."""

from __future__ import annotations

import logging

import kopf

from .api import naming
from .config import OperatorConfig

# The workload kinds main.py watches, as kopf's handlers name them.
DEPLOYMENTS, PODS = ("apps", "v1", "deployments"), ("v1", "pods")
WORKLOAD_KINDS = (DEPLOYMENTS, PODS)


def apply_settings(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    # Our own prefix, so kopf's bookkeeping never collides with another operator's.
    settings.persistence.finalizer = naming.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=naming.ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=naming.ANNOTATION_PREFIX, key="last-handled-configuration")
    # kopf would post its own log lines as events; the operator emits deliberate events itself.
    settings.posting.level = logging.WARNING
    # Watches are re-established regularly so a silently dead TCP connection cannot stall us.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    # Pods and Deployments are watched only to know when a node's workloads change; the API server sends only those
    # the selector picks, not every pod of the cluster (kopf applies it to the listing and the watch alike).
    if config.workload_selector:
        for kind in WORKLOAD_KINDS:
            settings.watching.label_selectors[kind] = config.workload_selector
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    # Without peering, a second replica would act at the same time: the chart runs one replica
    # with the Recreate strategy; peering can be switched on for HA setups.
    settings.peering.standalone = config.peering is None
    if config.peering:
        settings.peering.name = config.peering
        settings.peering.mandatory = True
