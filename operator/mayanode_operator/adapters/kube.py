"""Thin I/O over the Kubernetes API with the official client.

Calls are synchronous in the client, so they run in worker threads. Answers are read raw
(`_preload_content=False`) and returned as the JSON dicts the server sent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from ..api import naming
from ..plan.events import EventSpec

MERGE_PATCH = "application/merge-patch+json"


def make_api_client(kubeconfig: str | None = None, context: str | None = None) -> k8s.ApiClient:
    """In-cluster when no kubeconfig is named and a service account is mounted; else the kubeconfig."""
    configuration = k8s.Configuration()
    if kubeconfig is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
            return k8s.ApiClient(configuration)
        except k8s_config.ConfigException:
            pass
    k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
    return k8s.ApiClient(configuration)


def _decode(response: Any) -> dict[str, Any]:
    return json.loads(response.data) if response.data else {}


class KubeApi:
    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client
        self.core = k8s.CoreV1Api(api_client)
        self.apps = k8s.AppsV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self._instance = socket.gethostname()

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        response = await asyncio.to_thread(fn, *args, _preload_content=False, **kwargs)
        return _decode(response)

    async def _maybe(self, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        try:
            return await self._call(fn, *args, **kwargs)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    # --- reads -----------------------------------------------------------------------------
    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._maybe(self.apps.read_namespaced_deployment, name, namespace)

    async def list_pods(self, namespace: str, match_labels: Mapping[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))
        doc = await self._call(self.core.list_namespaced_pod, namespace, label_selector=selector)
        return list(doc.get("items") or [])

    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """A Secret's decoded data, or None when it does not exist. Never log the result."""
        body = await self._maybe(self.core.read_namespaced_secret, name, namespace)
        if body is None:
            return None
        return {key: base64.b64decode(value) for key, value in (body.get("data") or {}).items()}

    async def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._maybe(self.core.read_namespaced_service, name, namespace)

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._maybe(self.core.read_namespaced_config_map, name, namespace)

    async def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._maybe(self.custom.get_namespaced_custom_object,
                                 naming.GROUP, naming.VERSION, namespace, plural, name)

    async def list_custom(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        doc = await self._call(self.custom.list_namespaced_custom_object,
                               naming.GROUP, naming.VERSION, namespace, plural)
        return list(doc.get("items") or [])

    # --- writes ----------------------------------------------------------------------------
    async def patch_custom_status(self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call(
            self.custom.patch_namespaced_custom_object_status,
            naming.GROUP, naming.VERSION, namespace, plural, name, {"status": dict(patch)},
            _content_type=MERGE_PATCH,
        )

    async def create_configmap(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call(self.core.create_namespaced_config_map, namespace, dict(body),
                                field_manager=naming.FIELD_MANAGER)

    async def patch_configmap(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of a ConfigMap (data and metadata.annotations)."""
        return await self._call(self.core.patch_namespaced_config_map, name, namespace, dict(patch),
                                field_manager=naming.FIELD_MANAGER, _content_type=MERGE_PATCH)

    async def emit_event(self, involved: Mapping[str, Any], event: EventSpec) -> None:
        """A core/v1 Event about `involved`; losing one is never worth failing a reconcile for."""
        meta = involved.get("metadata") or {}
        now = datetime.now(timezone.utc)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}", "namespace": meta.get("namespace")},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": event.reason,
            "message": event.message[:1024],
            "type": event.type,
            "source": {"component": naming.FIELD_MANAGER},
            "reportingComponent": naming.FIELD_MANAGER,
            "reportingInstance": self._instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        await self._call(self.core.create_namespaced_event, meta.get("namespace"), body)
