"""`mayanode-operator backup export | import | describe | verify`.

    backup export NAME -n NS -o FILE     the encrypted archive + public manifest, as one file
    backup import FILE -n NS [--node N]  upload it to the target MayaNode's backup location and register a
                                         NodeBackup (reason Imported) pointing at it; the operator checks and
                                         verifies it there
    backup describe NAME -n NS           what the backup holds, where, its conditions and events, and what to do next
    backup verify NAME -n NS -i FILE     decrypt with an age identity file and check the archive: digests, items,
    backup verify --file F -i FILE       consensus key and node address (and the chain, when its API answers)

The archive stays encrypted end to end: export reads the stored ciphertext and checks its sha256 against
the NodeBackup's status; import checks the file's own digest, uploads the same bytes, and the operator
checks them again before using them. No identity (private key) is needed for export or import.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .api import naming

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3


def add_backup_commands(commands: Any) -> None:
    backup = commands.add_parser("backup", help="export, import, describe and verify NodeBackups")
    sub = backup.add_subparsers(dest="backup_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-n", "--namespace", required=True, help="the namespace of the NodeBackup")
        p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
        p.add_argument("--context", help="kubeconfig context")

    export = sub.add_parser("export", help="write a NodeBackup's encrypted archive and manifest to a file")
    export.add_argument("name", help="the NodeBackup")
    export.add_argument("-o", "--output", required=True, help="the file to write (- for stdout)")
    common(export)
    export.set_defaults(handler=cmd_export)

    imp = sub.add_parser("import", help="register an exported backup as a NodeBackup in this cluster")
    imp.add_argument("file", help="a file written by `backup export` (- for stdin)")
    imp.add_argument("--name", help="the new NodeBackup's name (default: the exported backup's name)")
    imp.add_argument("--node", help="the MayaNode it belongs to here (default: the exported backup's nodeRef); "
                                    "its spec.backup.location receives the archive")
    common(imp)
    imp.set_defaults(handler=cmd_import)

    describe = sub.add_parser("describe", help="show a NodeBackup: items, archive, conditions, events, next step")
    describe.add_argument("name", help="the NodeBackup")
    common(describe)
    describe.set_defaults(handler=cmd_describe)

    verify = sub.add_parser(
        "verify", help="decrypt a backup with an age identity file and check it: digests, expected items, consensus "
                       "key and node address; exit 0 verified, 1 failed, 3 incomplete (the chain could not be asked)")
    verify.add_argument("name", nargs="?", help="the NodeBackup (with -n); or give --file instead")
    verify.add_argument("-f", "--file", help="a file written by `backup export` (- for stdin), checked offline")
    verify.add_argument("-i", "--identity", required=True,
                        help="an age identity file (AGE-SECRET-KEY-1…, as age-keygen writes it) matching a recipient")
    verify.add_argument("--node-address", help="the node address (maya1…) the backup must be of")
    verify.add_argument("--node-api", help="a node REST API to check the consensus key and key shares against the "
                                           "chain (e.g. http://localhost:1317 after kubectl port-forward); default: "
                                           "the MayaNode's spec.api for a NodeBackup, none for a file")
    verify.add_argument("--offline", action="store_true", help="do not ask any node API")
    verify.add_argument("-n", "--namespace", help="the namespace of the NodeBackup")
    verify.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    verify.add_argument("--context", help="kubeconfig context")
    verify.set_defaults(handler=cmd_verify)


class CliError(Exception):
    pass


def _kube(args: argparse.Namespace):
    from .adapters.kube import KubeApi, make_api_client

    kubeconfig = args.kubeconfig or None
    try:
        client = make_api_client(kubeconfig, args.context) if kubeconfig or args.context else _default_client()
    except Exception as err:
        raise CliError(f"cannot load the kubeconfig: {type(err).__name__}: {err}") from None
    return KubeApi(client)


def _default_client():
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    from .adapters.kube import BoundedApiClient

    configuration = k8s.Configuration()
    try:
        k8s_config.load_kube_config(client_configuration=configuration)
    except Exception:
        k8s_config.load_incluster_config(client_configuration=configuration)
    return BoundedApiClient(configuration)


async def _location_of(kube: Any, body: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = body.get("spec") or {}
    if spec.get("location"):
        return spec["location"]
    recorded = ((body.get("status") or {}).get("archive") or {}).get("location")
    if recorded:
        return recorded
    namespace = (body.get("metadata") or {}).get("namespace")
    node = await kube.get_custom(naming.MAYANODE_PLURAL, namespace, (spec.get("nodeRef") or {}).get("name"))
    location = (((node or {}).get("spec") or {}).get("backup") or {}).get("location")
    if not location:
        raise CliError("the NodeBackup has no spec.location and its MayaNode has no spec.backup.location")
    return location


async def _store(kube: Any, location: Mapping[str, Any], namespace: str):
    from .backup.stores import store_for_location

    return await store_for_location(location, namespace, kube.api_client, kube.read_secret)


def _verified(status: Mapping[str, Any]) -> str | None:
    return next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Verified"), None)


# --------------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------------
def public_manifest(status: Mapping[str, Any]) -> dict[str, Any]:
    allowed = ("name", "component", "path", "size", "sha256", "mode", "uid", "gid")
    items = [{k: item[k] for k in allowed if k in item} for item in status.get("items") or []]
    return {"format": "mayanode-backup/v1", "itemCount": len(items),
            "totalSize": sum(int(i.get("size") or 0) for i in items), "items": items,
            "meta": dict(status.get("node") or {})}


def backup_meta(body: Mapping[str, Any]) -> dict[str, Any]:
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    return {
        "name": meta.get("name"), "namespace": meta.get("namespace"),
        "nodeRef": (spec.get("nodeRef") or {}).get("name"), "reason": spec.get("reason") or "Manual",
        "phase": status.get("phase"), "capturedAt": status.get("startedAt"), "completedAt": status.get("completedAt"),
        "recipients": list((status.get("archive") or {}).get("recipients") or []),
        "node": dict(status.get("node") or {}), "missing": list(status.get("missing") or []),
        "verified": _verified(status),
    }


async def export_backup(kube: Any, namespace: str, name: str) -> bytes:
    from .backup import check_digest, export_bundle

    body = await kube.get_custom(naming.NODEBACKUP_PLURAL, namespace, name)
    if body is None:
        raise CliError(f"NodeBackup {namespace}/{name} not found")
    status = body.get("status") or {}
    archive = status.get("archive") or {}
    if status.get("phase") not in ("Completed", "PartiallyFailed") or not archive.get("key"):
        raise CliError(f"NodeBackup {namespace}/{name} is {status.get('phase') or 'New'}: only a Completed or "
                       f"PartiallyFailed backup with a stored archive can be exported")
    store = await _store(kube, await _location_of(kube, body), namespace)
    ciphertext = await store.get(str(archive["key"]))
    check_digest(ciphertext, str(archive.get("sha256") or ""))
    return export_bundle(ciphertext, public_manifest(status), backup_meta(body))


def _write_private(path: str, data: bytes) -> None:
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=str(target.parent or Path(".")), prefix=f".{target.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_export(args: argparse.Namespace) -> int:
    async def go() -> bytes:
        return await _with_kube(args, lambda kube: export_backup(kube, args.namespace, args.name))

    data = _run(go)
    if data is None:
        return EXIT_FAILED
    _write_private(args.output, data)
    if args.output != "-":
        print(f"exported NodeBackup {args.namespace}/{args.name} to {args.output} ({len(data)} bytes, encrypted); "
              f"next: mayanode-operator backup import {args.output} -n <namespace> --kubeconfig <target cluster>",
              file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------------
def imported_key(namespace: str, node: str, name: str, sha256: str) -> str:
    return f"{namespace}/{node}/imported-{name}-{sha256[:12]}.tar.age"


def imported_body(namespace: str, name: str, node: str, location: Mapping[str, Any], key: str, ciphertext_size: int,
                  sha256: str, manifest: Mapping[str, Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    from .reconcile.nodebackup import IMPORT_MANIFEST_ANNOTATION, IMPORT_META_ANNOTATION

    source: dict[str, Any] = {"key": key, "sha256": sha256, "size": ciphertext_size}
    if meta.get("name"):
        source["originalName"] = meta["name"]
    if meta.get("namespace"):
        source["originalNamespace"] = meta["namespace"]
    if meta.get("capturedAt"):
        source["capturedAt"] = meta["capturedAt"]
    return {
        "apiVersion": naming.API_VERSION, "kind": naming.NODEBACKUP_KIND,
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {naming.LABEL_NODE: node, naming.LABEL_MANAGED_BY: naming.FIELD_MANAGER},
                     "annotations": {
                         IMPORT_MANIFEST_ANNOTATION: json.dumps(dict(manifest), sort_keys=True, separators=(",", ":")),
                         IMPORT_META_ANNOTATION: json.dumps(dict(meta), sort_keys=True, separators=(",", ":")),
                     }},
        "spec": {"nodeRef": {"name": node}, "reason": "Imported", "location": dict(location), "source": source},
    }


async def import_backup(kube: Any, namespace: str, bundle: bytes, *, name: str | None = None,
                        node: str | None = None) -> tuple[str, bool]:
    """(NodeBackup name, created now?)."""
    from kubernetes.client.exceptions import ApiException

    from .backup import import_bundle, sha256_hex

    ciphertext, manifest, meta = import_bundle(bundle)
    name = name or str(meta.get("name") or "")
    node = node or str(meta.get("nodeRef") or "")
    if not name or not node:
        raise CliError("the export file names no backup or node: give --name and --node")
    mayanode = await kube.get_custom(naming.MAYANODE_PLURAL, namespace, node)
    if mayanode is None:
        raise CliError(f"MayaNode {namespace}/{node} not found: create it first (or give --node)")
    location = ((mayanode.get("spec") or {}).get("backup") or {}).get("location")
    if not location:
        raise CliError(f"MayaNode {namespace}/{node} has no spec.backup.location to import into")
    sha256 = sha256_hex(ciphertext)
    key = imported_key(namespace, node, name, sha256)
    store = await _store(kube, location, namespace)
    await store.put(key, ciphertext, {"backup": name, "namespace": namespace, "node": node, "reason": "Imported"})
    body = imported_body(namespace, name, node, location, key, len(ciphertext), sha256, manifest, meta)
    try:
        await asyncio.to_thread(kube.custom.create_namespaced_custom_object, naming.GROUP, naming.VERSION, namespace,
                                naming.NODEBACKUP_PLURAL, body, _preload_content=False)
        return name, True
    except ApiException as err:
        if err.status != 409:
            raise CliError(f"creating NodeBackup {namespace}/{name} failed: HTTP {err.status} {err.reason}") from None
    existing = await kube.get_custom(naming.NODEBACKUP_PLURAL, namespace, name)
    if ((existing or {}).get("spec") or {}).get("source", {}).get("sha256") == sha256:
        return name, False
    raise CliError(f"a different NodeBackup {namespace}/{name} exists already: import under another --name")


def cmd_import(args: argparse.Namespace) -> int:
    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()

    async def go() -> tuple[str, bool]:
        return await _with_kube(args, lambda kube: import_backup(kube, args.namespace, data, name=args.name,
                                                                 node=args.node))

    outcome = _run(go)
    if outcome is None:
        return EXIT_FAILED
    name, created = outcome
    verb = "registered" if created else "was already registered as"
    print(f"{args.file} {verb} NodeBackup {args.namespace}/{name} (reason Imported); the operator checks and "
          f"verifies it next: mayanode-operator backup describe {name} -n {args.namespace}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# describe
# --------------------------------------------------------------------------------------------------
def _size(n: Any) -> str:
    try:
        value = float(n)
    except (TypeError, ValueError):
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def next_step(body: Mapping[str, Any]) -> str:
    """What to run next, from the phase and the conditions."""
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    ns, name = meta.get("namespace"), meta.get("name")
    node = (spec.get("nodeRef") or {}).get("name")
    phase = status.get("phase")
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    completed, verified = conds.get("Completed") or {}, conds.get("Verified") or {}
    recreate = (f"kubectl delete nodebackup {name} -n {ns} && kubectl apply -f <the NodeBackup manifest>  "
                f"# or a new name")
    blocked = conds.get("DeletionBlocked") or {}
    if meta.get("deletionTimestamp") and blocked.get("status") == "True":
        if blocked.get("reason") == "RestoreInProgress":
            return "kubectl get noderestores -A  # the deletion goes on once the restore named in DeletionBlocked ends"
        return (f"fix the store (see DeletionBlocked), or keep the archive: kubectl patch nodebackup {name} -n {ns} "
                f"--type merge -p '{{\"spec\":{{\"deletionPolicy\":\"Retain\"}}}}'")
    if phase in (None, "New", "InProgress"):
        return f"wait: kubectl get nodebackup {name} -n {ns} -w"
    if phase == "Failed":
        reason = completed.get("reason")
        if reason == "NodeNotFound":
            return f"kubectl get mayanode {node} -n {ns}  # create it or fix spec.nodeRef, then: {recreate}"
        if reason in ("CriticalItemMissing", "NothingCaptured", "CaptureFailed"):
            return (f"kubectl exec -n {ns} deploy/mayanode -c mayanode -- ls -la /root/.mayanode "
                    f"/root/.mayanode/config  # find what is missing, then: {recreate}")
        if reason in ("NoLocation", "InvalidLocation") or str(reason).startswith("Store"):
            return f"kubectl get mayanode {node} -n {ns} -o yaml  # fix the backup location, then: {recreate}"
        return recreate
    if phase == "PartiallyFailed" and status.get("missing"):
        return (f"kubectl exec -n {ns} deploy/mayanode -c mayanode -- ls -la /root/.mayanode  "
                f"# restore the missing files, then take a new backup: {recreate}")
    if verified.get("status") == "False":
        reason = verified.get("reason")
        if reason in ("WrongIdentity", "InvalidIdentity", "IdentityNotFound"):
            ref = ((spec.get("location") or {}).get("encryption") or {}).get("identitySecret") or {}
            return (f"kubectl get secret {ref.get('name') or '<identity secret>'} -n {ns}  # it must hold the "
                    f"identity of one of the recipients; then change the spec to verify again")
        return f"the stored archive cannot be trusted ({reason}): take a new backup: {recreate}"
    if verified.get("status") == "Unknown" and verified.get("reason") == "NoIdentity":
        return (f"mayanode-operator backup export {name} -n {ns} -o {name}.mayabackup  # keep a copy off-cluster; "
                f"add encryption.identitySecret to verify in-cluster")
    return f"mayanode-operator backup export {name} -n {ns} -o {name}.mayabackup  # keep a copy off-cluster"


def _deletion_text(body: Mapping[str, Any]) -> str:
    spec, meta = body.get("spec") or {}, body.get("metadata") or {}
    policy = spec.get("deletionPolicy") or "Retain"
    text = f"{policy} (deleting the NodeBackup " + ("deletes the archive)" if policy == "Delete" else "keeps the archive)")
    if meta.get("deletionTimestamp"):
        blocked = next((c for c in (body.get("status") or {}).get("conditions") or []
                        if c.get("type") == "DeletionBlocked" and c.get("status") == "True"), None)
        text += f"; being deleted since {meta['deletionTimestamp']}"
        if blocked:
            text += f", waiting: {blocked.get('message')}"
    return text


def describe_text(body: Mapping[str, Any], events: list[Mapping[str, Any]]) -> str:
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    archive, node = status.get("archive") or {}, status.get("node") or {}
    lines = [
        f"Name:         {meta.get('name')}",
        f"Namespace:    {meta.get('namespace')}",
        f"Node:         {(spec.get('nodeRef') or {}).get('name')}",
        f"Reason:       {spec.get('reason') or 'Manual'}",
        f"Phase:        {status.get('phase') or 'New'}" + (f" (step {status['step']})" if status.get("step") else ""),
    ]
    if status.get("message"):
        lines.append(f"Message:      {status['message']}")
    lines += [
        f"Started:      {status.get('startedAt') or '<n/a>'}",
        f"Completed:    {status.get('completedAt') or '<n/a>'}",
        f"Expires:      {status.get('expiresAt') or ('never (no spec.ttl)' if not spec.get('ttl') else '<n/a>')}",
        f"Deletion:     {_deletion_text(body)}",
        "",
        "Archive:",
    ]
    if archive:
        lines += [
            f"  Location:   {archive.get('uri')} ({archive.get('store')}, {archive.get('parts', 1)} part(s))",
            f"  Size:       {_size(archive.get('size'))} encrypted ({archive.get('format')})",
            f"  SHA-256:    {archive.get('sha256')}",
            f"  Recipients: {', '.join(archive.get('recipients') or []) or '<none>'}",
        ]
    else:
        lines.append("  <not stored>")
    if node:
        lines += ["", "Captured node:"]
        for key, label in (("address", "Address"), ("consensusPubKey", "Consensus key"), ("vaultPubKey", "Vault"),
                           ("height", "Height"), ("signStateHeight", "Sign-state height"), ("version", "Version")):
            if node.get(key) is not None:
                lines.append(f"  {label + ':':<19}{node[key]}")
    items = status.get("items") or []
    lines += ["", f"Items ({len(items)}):"]
    for item in items:
        digest = f"sha256:{item['sha256'][:12]}…" if item.get("sha256") else "(secret: digest only in the archive)"
        lines.append(f"  {item.get('component', ''):<9} {item.get('path', ''):<60} {item.get('mode', ''):>5} "
                     f"{item.get('uid', 0)}:{item.get('gid', 0):<5} {_size(item.get('size')):>9}  {digest}")
    missing = status.get("missing") or []
    if missing:
        lines += ["", f"Missing ({len(missing)}):"]
        lines += [f"  {m.get('component'):<9} {m.get('path'):<60} {m.get('reason')}" for m in missing]
    snapshots = status.get("snapshots") or []
    if snapshots:
        lines += ["", "Volume snapshots:"]
        lines += [f"  {s.get('name')} of PVC {s.get('pvc')}: readyToUse={s.get('readyToUse')} "
                  f"{s.get('restoreSize') or ''}" for s in snapshots]
    lines += ["", "Conditions:"]
    for cond in status.get("conditions") or []:
        lines.append(f"  {cond.get('type'):<10} {cond.get('status'):<8} {cond.get('reason'):<22} {cond.get('message')}")
    if events:
        lines += ["", "Events:"]
        for event in events[-12:]:
            lines.append(f"  {event.get('type', ''):<8} {event.get('reason', ''):<20} {event.get('message', '')}")
    lines += ["", f"Next:  {next_step(body)}"]
    return "\n".join(lines) + "\n"


async def describe_backup(kube: Any, namespace: str, name: str) -> str:
    body = await kube.get_custom(naming.NODEBACKUP_PLURAL, namespace, name)
    if body is None:
        raise CliError(f"NodeBackup {namespace}/{name} not found")
    selector = f"involvedObject.name={name}"
    try:
        response = await asyncio.to_thread(kube.core.list_namespaced_event, namespace, field_selector=selector,
                                           _preload_content=False)
        events = [e for e in json.loads(response.data).get("items") or []
                  if (e.get("involvedObject") or {}).get("kind") == naming.NODEBACKUP_KIND]
    except Exception:
        events = []
    events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return describe_text(body, events)


def cmd_describe(args: argparse.Namespace) -> int:
    async def go() -> str:
        return await _with_kube(args, lambda kube: describe_backup(kube, args.namespace, args.name))

    text = _run(go)
    if text is None:
        return EXIT_FAILED
    sys.stdout.write(text)
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------------------------------
def _default_node_spec() -> Any:
    """node-launcher's names (Secrets, homes), for a file whose MayaNode is not at hand."""
    from .api.mayanode import MayaNodeSpec

    return MayaNodeSpec.model_validate({"network": "mainnet"})


async def _chain(rest_url: str, node_address: str | None, timeout: float = 5.0) -> Any:
    """What the node API at `rest_url` says about the node (ChainFacts; unreachable is a fact too)."""
    import aiohttp

    from .observe.nodeapi import NodeApi
    from .reconcile.nodebackup import chain_facts

    async with aiohttp.ClientSession() as session:
        observation = await NodeApi(session, rest_url, rest_url, timeout).observe(node_address)
    return chain_facts(observation, node_address)


async def verify_exported(bundle: bytes, identity: str, *, node_address: str | None = None,
                          node_api: str | None = None) -> tuple[str, Any]:
    """(what was verified, VerifyResult) for an export file: its own digests, decryption, every item against the
    encrypted manifest and the file's public manifest, the expected items, the consensus key and node address;
    the chain only when `node_api` is given."""
    from .backup import BackupError, import_bundle, open_sealed, sha256_hex
    from .plan.backup_verify import VerifyResult, failure_from_error, offline_required, verify_backup

    try:
        ciphertext, public, meta = import_bundle(bundle)
    except BackupError as err:
        return "the export file", failure_from_error(err)
    subject = f"exported NodeBackup {meta.get('namespace') or '?'}/{meta.get('name') or '?'} " \
              f"(sha256 {sha256_hex(ciphertext)[:16]}…)"
    try:
        manifest, items = open_sealed(ciphertext, identity, sha256_hex(ciphertext))
    except BackupError as err:
        return subject, failure_from_error(err)
    inner, outer = manifest.meta, meta.get("node") or {}
    for key in ("consensusPubKey", "address", "vaultPubKey"):
        inner_key = "nodeAddress" if key == "address" else key
        if outer.get(key) and inner.get(inner_key) and outer[key] != inner[inner_key]:
            return subject, VerifyResult("False", "ManifestMismatch",
                                         f"the file's public metadata says {key} {outer[key]}, the encrypted manifest "
                                         f"says {inner[inner_key]}")
    required, mnemonic = offline_required(manifest, _default_node_spec(), missing=meta.get("missing") or [])
    address = node_address or inner.get("nodeAddress")
    chain = await _chain(node_api, address) if node_api else None
    return subject, verify_backup(manifest, items, recorded=public.get("items") or [], required=required, chain=chain,
                                  mnemonic_item=mnemonic, captured_vault=inner.get("vaultPubKey"),
                                  expected_node_address=node_address)


async def verify_in_cluster(kube: Any, namespace: str, name: str, identity: str, *, node_address: str | None = None,
                            node_api: str | None = None, offline: bool = False) -> tuple[str, Any]:
    """(what was verified, VerifyResult) for a NodeBackup: the stored archive against the digest in its status,
    decryption, the items against the status, the expected items of its MayaNode, the consensus key and node
    address, and the chain (the MayaNode's API, or `node_api`) unless `offline`."""
    from pydantic import ValidationError

    from .api.mayanode import MayaNodeSpec
    from .backup import BackupError, open_sealed
    from .plan.backup_verify import failure_from_error, offline_required, required_item_names, verify_backup

    body = await kube.get_custom(naming.NODEBACKUP_PLURAL, namespace, name)
    if body is None:
        raise CliError(f"NodeBackup {namespace}/{name} not found")
    spec, status = body.get("spec") or {}, body.get("status") or {}
    archive = status.get("archive") or {}
    if not archive.get("key") or not archive.get("sha256"):
        raise CliError(f"NodeBackup {namespace}/{name} is {status.get('phase') or 'New'} and has no stored archive "
                       f"to verify")
    subject = f"NodeBackup {namespace}/{name} ({archive.get('uri')}, sha256 {str(archive['sha256'])[:16]}…)"
    try:
        store = await _store(kube, await _location_of(kube, body), namespace)
        manifest, items = open_sealed(await store.get(str(archive["key"])), identity, str(archive["sha256"]))
    except BackupError as err:
        return subject, failure_from_error(err)
    node_body = await kube.get_custom(naming.MAYANODE_PLURAL, namespace, str((spec.get("nodeRef") or {}).get("name")))
    node_spec = None
    if node_body is not None:
        try:
            node_spec = MayaNodeSpec.model_validate(node_body.get("spec") or {})
        except ValidationError:
            node_spec = None
    missing = status.get("missing") or []
    if node_spec is not None:
        required, mnemonic = required_item_names(node_spec, vault=(status.get("node") or {}).get("vaultPubKey"),
                                                 missing=missing, imported=spec.get("source") is not None)
    else:
        required, mnemonic = offline_required(manifest, _default_node_spec(), missing=missing)
    expected = node_address or (node_spec.node_address if node_spec is not None else None)
    chain = None
    rest = node_api or (node_spec.rest_url(namespace) if node_spec is not None else None)
    if not offline and rest:
        chain = await _chain(rest, expected or manifest.meta.get("nodeAddress"))
    return subject, verify_backup(manifest, items, recorded=status.get("items") or [], required=required, chain=chain,
                                  mnemonic_item=mnemonic, captured_vault=(status.get("node") or {}).get("vaultPubKey"),
                                  expected_node_address=expected)


def _read_identity(path: str) -> str:
    from .backup import validate_identity

    if path == "-":
        text = sys.stdin.read()
    else:
        target = Path(path)
        try:
            mode = target.stat().st_mode
            text = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise CliError(f"cannot read the identity file {path}: {type(err).__name__}") from None
        if mode & 0o077:
            print(f"warning: the identity file {path} is readable by others (mode {mode & 0o777:o}); "
                  f"chmod 600 it", file=sys.stderr)
    validate_identity(text)
    return text


def verify_report(subject: str, result: Any) -> tuple[str, int]:
    """The text to print and the exit code: 0 verified, 1 failed, 3 incomplete."""
    lines = [f"Verifying {subject}"]
    lines += [f"  ok  {check}" for check in result.checks]
    if result.status == "True":
        lines.append(f"VERIFIED ({result.reason}): {result.message}")
        return "\n".join(lines) + "\n", EXIT_OK
    if result.status == "False":
        lines.append(f"FAILED ({result.reason}): {result.message}")
        return "\n".join(lines) + "\n", EXIT_FAILED
    hint = ""
    if result.reason == "ChainUnavailable":
        hint = ("; the checks that need no chain passed: give --node-api URL (e.g. after kubectl port-forward "
                "svc/mayanode 1317), or --offline")
    lines.append(f"INCOMPLETE ({result.reason}): {result.message}{hint}")
    return "\n".join(lines) + "\n", EXIT_INCOMPLETE


def cmd_verify(args: argparse.Namespace) -> int:
    if bool(args.file) == bool(args.name):
        print("error: give a NodeBackup name (with -n) or --file, not both", file=sys.stderr)
        return EXIT_USAGE
    if args.name and not args.namespace:
        print("error: -n/--namespace is required with a NodeBackup name", file=sys.stderr)
        return EXIT_USAGE

    async def go() -> tuple[str, Any]:
        identity = _read_identity(args.identity)
        if args.file:
            try:
                data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
            except OSError as err:
                raise CliError(f"cannot read {args.file}: {type(err).__name__}: {err.strerror or ''}") from None
            return await verify_exported(data, identity, node_address=args.node_address,
                                         node_api=None if args.offline else args.node_api)
        return await _with_kube(args, lambda kube: verify_in_cluster(
            kube, args.namespace, args.name, identity, node_address=args.node_address, node_api=args.node_api,
            offline=args.offline))

    outcome = _run(go)
    if outcome is None:
        return EXIT_FAILED
    text, code = verify_report(*outcome)
    (sys.stdout if code == EXIT_OK else sys.stderr).write(text)
    return code


async def _with_kube(args: argparse.Namespace, use: Any) -> Any:
    """`await use(kube)` with a client for the command's cluster, closed afterwards."""
    kube = _kube(args)
    try:
        return await use(kube)
    finally:
        await asyncio.to_thread(kube.api_client.close)


def _run(factory: Any) -> Any:
    from .backup import BackupError

    try:
        return asyncio.run(factory())
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
    except BackupError as err:
        print(f"error: {err.reason}: {err.message}", file=sys.stderr)
    return None
