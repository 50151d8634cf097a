"""Pieces that let the end-to-end scenarios run against a real API server (`--kube-config`).

Two kinds of real cluster:
- with Ready nodes (kind, k3s, a cloud cluster): node-launcher's objects are created with a
  stand-in image (busybox: real `tar`, `find`, real PVCs, real exec over websockets), the key
  files are written into the real PVCs through a helper pod, and a `ProcessBridge` tells the
  mocknet when a node's mayanode container is Ready, since no real mayanode binary runs;
- with no Ready node (a bare control plane): the SimulatedKubelet acts as the node and the
  deployment controller, with the kubeconfig's credentials.
"""

from __future__ import annotations

import copy
import io
import ssl
import tarfile
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from . import kubeclient as kc
from .identity import HomeEntry

STANDIN_IMAGE = "busybox:1.36"
# PID 1 must stop at once on SIGTERM, or every pod deletion waits out the grace period.
STANDIN_COMMAND = ["sh", "-c", "trap 'exit 0' TERM INT; while true; do sleep 1; done"]


def kube_session_for(kubeconfig: str, context: str | None = None) -> tuple[str, aiohttp.ClientSession]:
    """The API server URL and an aiohttp session carrying the kubeconfig's credentials."""
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
    headers = {}
    token = (configuration.api_key or {}).get("authorization") or (configuration.api_key or {}).get("BearerToken")
    if token:
        headers["Authorization"] = token if " " in token else f"Bearer {token}"
    ssl_context: ssl.SSLContext | bool = False
    if configuration.host.startswith("https"):
        ssl_context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if configuration.cert_file and configuration.key_file:
            ssl_context.load_cert_chain(configuration.cert_file, configuration.key_file)
        if not configuration.verify_ssl:
            ssl_context.check_hostname = False
            ssl_context.verify_mode = ssl.CERT_NONE
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=20, ssl=ssl_context), headers=headers)
    return configuration.host, session


def nodes_ready(node_list: Mapping[str, Any]) -> bool:
    """Whether any schedulable node reports Ready=True."""
    for node in node_list.get("items") or []:
        if (node.get("spec") or {}).get("unschedulable"):
            continue
        for cond in (node.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                return True
    return False


def standin_stack(objects: Iterable[Mapping[str, Any]], image: str = STANDIN_IMAGE) -> list[dict[str, Any]]:
    """node-launcher's objects with every container replaced by a stand-in that keeps env and mounts."""
    out = []
    for obj in objects:
        obj = copy.deepcopy(dict(obj))
        if obj.get("kind") == "Deployment":
            pod = obj["spec"]["template"]["spec"]
            pod.pop("initContainers", None)
            pod["terminationGracePeriodSeconds"] = 5
            for container in pod.get("containers") or []:
                container["image"] = image
                container["command"] = list(STANDIN_COMMAND)
                container.pop("args", None)
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    container.pop(probe, None)
        if obj.get("kind") == "PersistentVolumeClaim":
            obj["spec"].pop("storageClassName", None)      # the cluster's default class
        out.append(obj)
    return out


def home_tar(entries: Iterable[HomeEntry], prefix: str) -> bytes:
    """A tar of a home's entries under `prefix` (the home's subPath inside its PVC)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        top = tarfile.TarInfo(prefix)
        top.type, top.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(top)
        for entry in entries:
            info = tarfile.TarInfo(f"{prefix}/{entry.path.rstrip('/')}")
            info.mode, info.uid, info.gid = entry.mode, entry.uid, entry.gid
            if entry.content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(entry.content)
                tar.addfile(info, io.BytesIO(entry.content))
    return buffer.getvalue()


def helper_pod(namespace: str, name: str, claims: Mapping[str, str], image: str = STANDIN_IMAGE) -> dict[str, Any]:
    """A pod mounting PVCs at /mnt/<claim>, stopping at once when deleted (node-launcher's recovery pod)."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/name": "seed-helper"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "helper", "image": image, "command": list(STANDIN_COMMAND),
                "volumeMounts": [{"name": claim, "mountPath": path} for claim, path in claims.items()],
            }],
            "volumes": [{"name": claim, "persistentVolumeClaim": {"claimName": claim}} for claim in claims],
        },
    }


def ready_container_names(pod: Mapping[str, Any]) -> set[str]:
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return set()
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return {s["name"] for s in statuses if s.get("ready")}


class ProcessBridge:
    """Tells the mocknet which seeded nodes' mayanode/bifrost containers are running on a real cluster."""

    def __init__(self, client: kc.KubeClient, mocknet: Any, facts_by_namespace: Mapping[str, Any]) -> None:
        self._client = client
        self._mocknet = mocknet
        self._facts = facts_by_namespace        # namespace → (node_address, cons_pubkey_b64, version)
        self._running: dict[str, str] = {}      # pod uid + container → kind
        self._informer: kc.Informer | None = None

    def start(self) -> None:
        self._informer = kc.Informer(self._client, kc.PODS, self._on_event)
        self._informer.start()

    async def stop(self) -> None:
        if self._informer:
            await self._informer.stop()

    async def _on_event(self, event_type: str, pod: dict[str, Any]) -> None:
        namespace = (pod.get("metadata") or {}).get("namespace")
        facts = self._facts.get(namespace)
        if facts is None:
            return
        uid = (pod.get("metadata") or {}).get("uid")
        ready = set() if event_type == "DELETED" else ready_container_names(pod)
        for container in ("mayanode", "bifrost"):
            key = f"{uid}/{container}"
            if container in ready and key not in self._running:
                self._running[key] = container
                if container == "mayanode":
                    self._mocknet.process_started(namespace, key, node_address=facts[0], cons_pubkey_b64=facts[1],
                                                  version=facts[2], signed_state_height=0)
                else:
                    self._mocknet.bifrost_started(namespace, key, facts[0])
            elif container not in ready and key in self._running:
                del self._running[key]
                if container == "mayanode":
                    self._mocknet.process_stopped(key)
                else:
                    self._mocknet.bifrost_stopped(key)
