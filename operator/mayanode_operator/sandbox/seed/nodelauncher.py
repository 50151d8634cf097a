"""Builders of the objects node-launcher's ``mayanode-stack`` chart creates in a node namespace.

Plain dicts, valid for a real API server: Namespace, the two hand-made Secrets, the three
external-IP ConfigMaps, the PVCs, the ``mayanode``/``bifrost``/``gateway`` Deployments and their
Services. node-launcher's init containers (which wait for the gateway's LoadBalancer address and
write the ``*-external-ip`` ConfigMaps) are left out: in the sandbox the operator owns those
ConfigMaps, so they start with an empty ``externalIP``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from mayanode_operator.api import naming

IMAGE_REPOSITORY = "registry.gitlab.com/mayachain/mayanode"
GATEWAY_IMAGE = "nginx:1.27-alpine"
CHART_VERSION = "mayanode-stack-1.0.0"


@dataclass(frozen=True)
class StackSpec:
    namespace: str
    version: str = "1.111.0"
    network: str = "mocknet"
    chain_id: str = "mayachain-mocknet"
    image_repository: str = IMAGE_REPOSITORY
    signer_name: str = "mayachain"
    mayanode_storage: str = "50Gi"
    bifrost_storage: str = "10Gi"
    storage_class: str = "standard"

    @property
    def image(self) -> str:
        return f"{self.image_repository}:{self.network}-{self.version}"


def _labels(name: str, spec: StackSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/version": spec.version,
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": CHART_VERSION,
    }


def _selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}}


def mnemonic_secret(ns: str, mnemonic: str) -> dict:
    """``kubectl create secret generic mayanode-mnemonic --from-literal=mnemonic=…``"""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": naming.DEFAULT_MNEMONIC_SECRET, "namespace": ns},
            "data": {naming.DEFAULT_MNEMONIC_KEY: _b64(mnemonic)}}


def password_secret(ns: str, password: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": naming.DEFAULT_PASSWORD_SECRET, "namespace": ns},
            "data": {naming.DEFAULT_PASSWORD_KEY: _b64(password)}}


def external_ip_configmaps(ns: str, value: str = "") -> list[dict]:
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
             "data": {naming.EXTERNAL_IP_KEY: value}} for name in naming.EXTERNAL_IP_CONFIGMAPS]


def pvc(ns: str, name: str, size: str, storage_class: str, spec: StackSpec) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": ns, "labels": _labels(name, spec)},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                     "resources": {"requests": {"storage": size}}, "volumeMode": "Filesystem"}}


def pvcs(spec: StackSpec) -> list[dict]:
    return [pvc(spec.namespace, naming.DEFAULT_MAYANODE_PVC, spec.mayanode_storage, spec.storage_class, spec),
            pvc(spec.namespace, naming.DEFAULT_BIFROST_PVC, spec.bifrost_storage, spec.storage_class, spec)]


def _signer_env(spec: StackSpec, external_ip_configmap: str) -> list[dict]:
    return [
        {"name": "EXTERNAL_IP", "valueFrom": {"configMapKeyRef": {
            "name": external_ip_configmap, "key": naming.EXTERNAL_IP_KEY}}},
        {"name": "NET", "value": spec.network},
        {"name": "CHAIN_ID", "value": spec.chain_id},
        {"name": "SIGNER_NAME", "value": spec.signer_name},
        {"name": "SIGNER_PASSWD", "valueFrom": {"secretKeyRef": {
            "name": naming.DEFAULT_PASSWORD_SECRET, "key": naming.DEFAULT_PASSWORD_KEY}}},
        {"name": "SIGNER_SEED_PHRASE", "valueFrom": {"secretKeyRef": {
            "name": naming.DEFAULT_MNEMONIC_SECRET, "key": naming.DEFAULT_MNEMONIC_KEY}}},
    ]


def _deployment(spec: StackSpec, name: str, pod_spec: dict, strategy: str = "Recreate") -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": spec.namespace, "labels": _labels(name, spec)},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": _selector(name)},
            "strategy": {"type": strategy},
            "template": {"metadata": {"labels": _selector(name)}, "spec": pod_spec},
        },
    }


def mayanode_deployment(spec: StackSpec) -> dict:
    container = {
        "name": naming.DEFAULT_MAYANODE_CONTAINER,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/docker/scripts/validator.sh"],
        "env": [*_signer_env(spec, "mayanode-external-ip"), {"name": "VALIDATOR", "value": "true"}],
        "ports": [
            {"name": "api", "containerPort": naming.REST_PORT, "protocol": "TCP"},
            {"name": "p2p", "containerPort": 27146, "protocol": "TCP"},
            {"name": "rpc", "containerPort": naming.RPC_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/status", "port": "rpc"}, "initialDelaySeconds": 5,
                           "periodSeconds": 10, "timeoutSeconds": 10},
        "volumeMounts": [{"name": "data", "mountPath": "/root"}],
        "resources": {"requests": {"cpu": "4", "memory": "16Gi"}},
    }
    pod_spec = {
        "containers": [container],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": naming.DEFAULT_MAYANODE_PVC}}],
        "terminationGracePeriodSeconds": 30,
        "restartPolicy": "Always",
    }
    return _deployment(spec, naming.DEFAULT_MAYANODE_DEPLOYMENT, pod_spec)


def bifrost_deployment(spec: StackSpec) -> dict:
    container = {
        "name": naming.DEFAULT_BIFROST_CONTAINER,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/docker/scripts/bifrost.sh"],
        "env": [
            *_signer_env(spec, "bifrost-external-ip"),
            {"name": "MAYA_NODE_HOST", "value": f"mayanode.{spec.namespace}:{naming.REST_PORT}"},
            {"name": "MAYA_RPC_HOST", "value": f"mayanode.{spec.namespace}:{naming.RPC_PORT}"},
        ],
        "ports": [
            {"name": "p2p", "containerPort": 5040, "protocol": "TCP"},
            {"name": "http", "containerPort": naming.BIFROST_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/p2pid", "port": "http"}, "initialDelaySeconds": 5,
                           "periodSeconds": 10},
        "volumeMounts": [{"name": "data", "mountPath": naming.DEFAULT_NODE_HOME,
                          "subPath": naming.DEFAULT_BIFROST_SUBPATH}],
    }
    pod_spec = {
        "containers": [container],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": naming.DEFAULT_BIFROST_PVC}}],
        "terminationGracePeriodSeconds": 30,
        "restartPolicy": "Always",
    }
    return _deployment(spec, naming.DEFAULT_BIFROST_DEPLOYMENT, pod_spec)


GATEWAY_PORTS = [
    ("api", naming.REST_PORT), ("rpc", naming.RPC_PORT), ("p2p", 27146),
    ("bifrost-p2p", 5040), ("bifrost-api", naming.BIFROST_PORT),
]


def gateway_deployment(spec: StackSpec) -> dict:
    container = {
        "name": "gateway",
        "image": GATEWAY_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in GATEWAY_PORTS],
        "readinessProbe": {"tcpSocket": {"port": naming.REST_PORT}, "periodSeconds": 10},
    }
    return _deployment(spec, "gateway", {"containers": [container], "restartPolicy": "Always"},
                       strategy="RollingUpdate")


def _service(spec: StackSpec, name: str, ports: list[tuple[str, int]], svc_type: str = "ClusterIP") -> dict:
    svc: dict = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": spec.namespace, "labels": _labels(name, spec)},
        "spec": {
            "type": svc_type,
            "selector": _selector(name),
            "ports": [{"name": n, "port": p, "targetPort": p, "protocol": "TCP"} for n, p in ports],
        },
    }
    if svc_type == "LoadBalancer":
        svc["spec"]["externalTrafficPolicy"] = "Local"
    return svc


def services(spec: StackSpec) -> list[dict]:
    return [
        _service(spec, naming.DEFAULT_GATEWAY_SERVICE, GATEWAY_PORTS, "LoadBalancer"),
        _service(spec, "mayanode", [("api", naming.REST_PORT), ("p2p", 27146), ("rpc", naming.RPC_PORT)]),
        _service(spec, "bifrost", [("p2p", 5040), ("http", naming.BIFROST_PORT), ("prometheus", 9000)]),
    ]


def deployments(spec: StackSpec) -> list[dict]:
    return [mayanode_deployment(spec), bifrost_deployment(spec), gateway_deployment(spec)]


def stack_objects(spec: StackSpec, *, mnemonic: str, password: str) -> list[dict]:
    """Everything, in creation order (the Deployments last, after the volumes are filled)."""
    ns = spec.namespace
    return [
        namespace(ns),
        mnemonic_secret(ns, mnemonic),
        password_secret(ns, password),
        *external_ip_configmaps(ns),
        *pvcs(spec),
        *services(spec),
        *deployments(spec),
    ]
