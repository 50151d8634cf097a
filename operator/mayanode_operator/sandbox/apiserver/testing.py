"""Helpers for tests that drive the emulated API server with real clients (kubectl, `kubernetes`)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

KUBECTL = "/usr/bin/kubectl"


def kubectl(kubeconfig: str | Path, *args: str, input: str | None = None, timeout: float = 30.0,
            cache_dir: str | Path | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the real kubectl against `kubeconfig`; discovery cache kept in `cache_dir` (or beside the kubeconfig)."""
    cache = Path(cache_dir) if cache_dir else Path(kubeconfig).parent / "kubectl-cache"
    command = [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), *args]
    return subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout, check=check)


def api_client(url: str) -> Any:
    """A `kubernetes.client.ApiClient` for `url` built from an explicit Configuration (never the global one)."""
    from kubernetes import client

    configuration = client.Configuration(host=url)
    configuration.verify_ssl = False
    return client.ApiClient(configuration)
