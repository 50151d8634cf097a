"""Operator configuration, read once at start-up from the command line and the environment."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from .selectors import parse_label_selector

ENV_PREFIX = "MAYANODE_OPERATOR_"
# The kinds main.py's kopf handlers watch: MayaNodes, NodeBackups, NodeRestores, Deployments, pods (a test counts them).
KOPF_WATCHED_KINDS = 5
# node-launcher's charts label their pods and Deployments `app.kubernetes.io/name=<chart>`.
DEFAULT_WORKLOAD_SELECTOR = "app.kubernetes.io/name in (mayanode,bifrost)"


class OperatorConfig(BaseModel):
    kubeconfig: str | None = Field(None, description="kubeconfig path; None = in-cluster, then $KUBECONFIG, then ~/.kube/config")
    context: str | None = Field(None, description="kubeconfig context")
    namespaces: list[str] = Field(default_factory=list, description="namespaces to watch; empty = cluster-wide")
    workload_selector: str = Field(
        DEFAULT_WORKLOAD_SELECTOR,
        description="label selector of the pods and Deployments the operator watches (server-side), to know when a "
                    "node's workloads change without reading them at every pass; empty = all of them. A node whose "
                    "Deployments or pods it does not pick is read at every pass (an event says so)")
    workers: int = Field(8, ge=1, le=256, description="reconciles running at once")
    max_connections: int = Field(10, ge=1, le=512, description="cap on kopf's HTTP connection pool")
    height_refresh_seconds: float = Field(60.0, ge=0, description="rewrite status.chain.height at most this often when nothing else changed")
    mimir_recheck_seconds: float = Field(
        600.0, ge=1, description="how often a node whose mimir votes are as its spec wants reads them again, to notice "
                                 "a vote made outside the operator (they are read at every pass while a vote is "
                                 "to be sent, pending or held back, and when spec.mimir changes)")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="the event loop under kopf and the reconciles: uvloop (libuv, as kopf's own CLI picks when "
                              "installed) or the standard library's; an idle operator's CPU is mostly the loop and its sockets")
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    peering: str | None = Field(None, description="kopf peering name for HA; None = standalone")
    helper_image: str = Field("busybox:1.36", description="image of the short-lived helper pods that read and write PVCs")
    liveness_endpoint: str | None = Field(None, description="e.g. http://0.0.0.0:8081/healthz")
    metrics_port: int = Field(8080, ge=0, le=65535, description="serve Prometheus metrics on this port at /metrics; 0 = off")
    rollout_namespace: str = Field(default_factory=lambda: os.environ.get("POD_NAMESPACE") or "default",
                                   description="namespace of the rollout-group Leases (the fleet upgrade budget); "
                                               "default: the operator's own namespace ($POD_NAMESPACE), else default")

    lock_namespace: str = Field(
        default_factory=lambda: os.environ.get("POD_NAMESPACE") or "default",
        description="namespace of the consensus-key Leases (`consensus-<validator address>`, which MayaNode holds a "
                    "key); in namespaced mode it must be one of the watched namespaces")
    guard_rpc: list[str] = Field(default_factory=list, description="CometBFT RPC URLs a NodeRestore reads blocks from "
                                                                   "while its node is down (after spec.doubleSignGuard.rpc)")
    restore_poll_seconds: float = Field(0.25, gt=0, le=30, description="how often a NodeRestore polls while it waits "
                                                                       "(pods gone, blocks, readiness)")

    @field_validator("workload_selector")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_label_selector(value)         # its ValueError names what does not parse
        return value.strip()

    def kopf_connection_limit(self) -> int:
        """kopf's pool: `max_connections`, but never fewer than its watches need. Each watch holds a connection for
        as long as it streams: one per watched kind (KOPF_WATCHED_KINDS) in every watched namespace, or
        cluster-wide, plus kopf's own (CRD and namespace discovery) and a few for its other requests; a pool smaller
        than that starves a watch, and what it watches is not seen until another stream ends. With peering, kopf
        also watches its peering objects (KopfPeerings in every namespace, or the ClusterKopfPeering)."""
        kinds = KOPF_WATCHED_KINDS + (1 if self.peering else 0)
        watches = kinds * max(1, len(self.namespaces))
        return max(self.max_connections, watches + 4)

    @classmethod
    def from_env(cls, **overrides: object) -> "OperatorConfig":
        """Environment variables MAYANODE_OPERATOR_<FIELD> (namespaces comma-separated), then overrides."""
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = os.environ.get(ENV_PREFIX + name.upper())
            if raw is None:
                continue
            values[name] = [ns for ns in raw.split(",") if ns] if name in ("namespaces", "guard_rpc") else raw
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls.model_validate(values)
