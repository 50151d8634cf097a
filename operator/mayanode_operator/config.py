"""Operator configuration, read once at start-up from the command line and the environment."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, Field

ENV_PREFIX = "MAYANODE_OPERATOR_"


class OperatorConfig(BaseModel):
    kubeconfig: str | None = Field(None, description="kubeconfig path; None = in-cluster, then $KUBECONFIG, then ~/.kube/config")
    context: str | None = Field(None, description="kubeconfig context")
    namespaces: list[str] = Field(default_factory=list, description="namespaces to watch; empty = cluster-wide")
    workers: int = Field(8, ge=1, le=256, description="reconciles running at once")
    max_connections: int = Field(10, ge=1, le=512, description="cap on kopf's HTTP connection pool")
    observe_interval_seconds: float = Field(30.0, ge=1, description="default interval between two observations of a node")
    height_refresh_seconds: float = Field(60.0, ge=0, description="rewrite status.chain.height at most this often when nothing else changed")
    node_api_timeout_seconds: float = Field(5.0, gt=0)
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    peering: str | None = Field(None, description="kopf peering name for HA; None = standalone")
    liveness_endpoint: str | None = Field(None, description="e.g. http://0.0.0.0:8080/healthz")

    @classmethod
    def from_env(cls, **overrides: object) -> "OperatorConfig":
        """Environment variables MAYANODE_OPERATOR_<FIELD> (namespaces comma-separated), then overrides."""
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = os.environ.get(ENV_PREFIX + name.upper())
            if raw is None:
                continue
            values[name] = [ns for ns in raw.split(",") if ns] if name == "namespaces" else raw
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls.model_validate(values)
