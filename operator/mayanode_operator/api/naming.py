"""Every name, label and API coordinate the operator uses, in one place."""

from __future__ import annotations

GROUP = "maya.nodeops.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

MAYANODE_KIND, MAYANODE_PLURAL, MAYANODE_SHORT = "MayaNode", "mayanodes", "mn"
NODEBACKUP_KIND, NODEBACKUP_PLURAL, NODEBACKUP_SHORT = "NodeBackup", "nodebackups", "nbk"
NODERESTORE_KIND, NODERESTORE_PLURAL, NODERESTORE_SHORT = "NodeRestore", "noderestores", "nrs"

# Prefix for the operator's own annotations, labels and kopf's progress storage.
ANNOTATION_PREFIX = GROUP
FINALIZER = f"{GROUP}/finalizer"
FIELD_MANAGER = "mayanode-operator"

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NODE = f"{GROUP}/node"            # the MayaNode a child object belongs to
LABEL_BACKUP = f"{GROUP}/backup"
LABEL_HELPER = f"{GROUP}/helper"        # marks short-lived helper pods

# node-launcher's defaults (mayanode-stack chart).
DEFAULT_MAYANODE_DEPLOYMENT = "mayanode"
DEFAULT_BIFROST_DEPLOYMENT = "bifrost"
DEFAULT_GATEWAY_SERVICE = "gateway"
DEFAULT_MNEMONIC_SECRET, DEFAULT_MNEMONIC_KEY = "mayanode-mnemonic", "mnemonic"
DEFAULT_PASSWORD_SECRET, DEFAULT_PASSWORD_KEY = "mayanode-password", "password"
EXTERNAL_IP_CONFIGMAPS = ("gateway-external-ip", "mayanode-external-ip", "bifrost-external-ip")
EXTERNAL_IP_KEY = "externalIP"
REST_PORT, RPC_PORT, BIFROST_PORT = 1317, 27147, 6040


def default_rest_url(namespace: str) -> str:
    return f"http://mayanode.{namespace}.svc:{REST_PORT}"


def default_rpc_url(namespace: str) -> str:
    return f"http://mayanode.{namespace}.svc:{RPC_PORT}"
