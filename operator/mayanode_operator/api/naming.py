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


# --- Custom resources: the rest of the API coordinates ---------------------------------------
CATEGORY = "maya"                                   # `kubectl get maya` lists all three kinds
MAYANODE_SINGULAR, NODEBACKUP_SINGULAR, NODERESTORE_SINGULAR = "mayanode", "nodebackup", "noderestore"


def crd_name(plural: str) -> str:
    return f"{plural}.{GROUP}"


# --- More of node-launcher's defaults (mayanode-stack chart) -----------------------------------
NETWORKS = ("mainnet", "stagenet", "mocknet")
DEFAULT_CHAIN_IDS = {
    "mainnet": "mayachain-mainnet-v1",
    "stagenet": "mayachain-stagenet-v1",
    "mocknet": "mayachain-mocknet",
}
# bech32 prefixes of account addresses per network.
ADDRESS_PREFIXES = {"mainnet": "maya", "stagenet": "smaya", "mocknet": "tmaya"}
DEFAULT_IMAGE_REPOSITORY = "registry.gitlab.com/mayachain/mayanode"
DEFAULT_TAG_TEMPLATE = "{network}-{version}"       # mayanode and bifrost share the image and the tag
DEFAULT_SIGNER_NAME = "mayachain"
DEFAULT_MAYANODE_CONTAINER, DEFAULT_BIFROST_CONTAINER = "mayanode", "bifrost"
DEFAULT_MAYANODE_PVC, DEFAULT_BIFROST_PVC = "mayanode", "bifrost"
DEFAULT_NODE_HOME = "/root/.mayanode"               # the home directory inside both containers
DEFAULT_MAYANODE_SUBPATH = ".mayanode"              # where that home lives inside the mayanode PVC
DEFAULT_BIFROST_SUBPATH = "mayanode"                # ... and inside the bifrost PVC
DEFAULT_BACKUP_SECRET_PREFIX = "nodebackup"         # in-cluster backup store: Secrets named <prefix>-<backup>-<n>
DEFAULT_S3_ACCESS_KEY_ID_KEY = "AWS_ACCESS_KEY_ID"
DEFAULT_S3_SECRET_ACCESS_KEY_KEY = "AWS_SECRET_ACCESS_KEY"
DEFAULT_AGE_IDENTITY_KEY = "identity"


def default_chain_id(network: str) -> str:
    return DEFAULT_CHAIN_IDS[network]


def image_tag(template: str, *, network: str, version: str) -> str:
    """`{network}-{version}` → `mainnet-1.111.0`."""
    return template.replace("{network}", network).replace("{version}", version)


def owner_reference(kind: str, body: dict) -> dict:
    """Makes a helper object (pod, snapshot) go with the NodeBackup/NodeRestore that made it, without blocking
    that object's deletion."""
    meta = body.get("metadata") or {}
    return {"apiVersion": API_VERSION, "kind": kind, "name": meta.get("name"), "uid": meta.get("uid"),
            "controller": True, "blockOwnerDeletion": False}
