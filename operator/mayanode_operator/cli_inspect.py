"""`mayanode-operator status` and `describe`: read-only views of the node fleet."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from .api import naming
from .cli_views import describe, status_rows, table, utcnow

KINDS = {
    "mn": naming.MAYANODE_PLURAL, "mayanode": naming.MAYANODE_PLURAL, "mayanodes": naming.MAYANODE_PLURAL,
    "nbk": naming.NODEBACKUP_PLURAL, "nodebackup": naming.NODEBACKUP_PLURAL, "nodebackups": naming.NODEBACKUP_PLURAL,
    "nrs": naming.NODERESTORE_PLURAL, "noderestore": naming.NODERESTORE_PLURAL,
    "noderestores": naming.NODERESTORE_PLURAL,
}


def add_inspect_commands(commands: Any) -> None:
    status = commands.add_parser("status", help="a table of all MayaNodes: health, version, backup freshness")
    status.add_argument("-n", "--namespace", help="one namespace (default: all)")
    status.add_argument("--kubeconfig")
    status.add_argument("--context")
    status.set_defaults(handler=cmd_status)

    desc = commands.add_parser("describe", help="a MayaNode, NodeBackup or NodeRestore, with what to do next")
    desc.add_argument("kind", choices=sorted(KINDS), help="mn | nbk | nrs")
    desc.add_argument("name")
    desc.add_argument("-n", "--namespace", default="default")
    desc.add_argument("--kubeconfig")
    desc.add_argument("--context")
    desc.set_defaults(handler=cmd_describe)


def _custom_api(args: argparse.Namespace) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(k8s_config.new_client_from_config(config_file=args.kubeconfig, context=args.context))


def cmd_status(args: argparse.Namespace) -> int:
    api = _custom_api(args)
    try:
        if args.namespace:
            doc = api.list_namespaced_custom_object(naming.GROUP, naming.VERSION, args.namespace, naming.MAYANODE_PLURAL)
        else:
            doc = api.list_cluster_custom_object(naming.GROUP, naming.VERSION, naming.MAYANODE_PLURAL)
    except k8s.exceptions.ApiException as err:
        print(f"error: listing MayaNodes failed: HTTP {err.status} {err.reason}", file=sys.stderr)
        return 1
    items = doc.get("items") or []
    if not items:
        print("No MayaNodes found.")
        return 0
    print(table(status_rows(items, utcnow())))
    return 0 if all(_ready(item) for item in items) else 2


def _ready(body: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (body.get("status") or {}).get("conditions") or [])


def cmd_describe(args: argparse.Namespace) -> int:
    api = _custom_api(args)
    plural = KINDS[args.kind]
    try:
        body = api.get_namespaced_custom_object(naming.GROUP, naming.VERSION, args.namespace, plural, args.name)
    except k8s.exceptions.ApiException as err:
        print(f"error: {plural} {args.namespace}/{args.name}: HTTP {err.status} {err.reason}", file=sys.stderr)
        return 1
    print(describe(body, utcnow()))
    return 0
