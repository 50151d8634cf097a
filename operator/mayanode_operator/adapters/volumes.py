"""File access on a node's volumes through the Kubernetes exec API, the way `kubectl cp` does it.

A session reads and writes one component's home (mayanode or bifrost):

- through the running container when its Deployment has a running pod (`find`, `tar c` to stdout);
- through a short-lived helper pod that mounts the component's PVC when no pod runs (the Deployment is
  scaled to 0), node-launcher's recovery approach. The helper stops at once when deleted (its shell traps
  TERM; grace period 0), carries the labels `maya.nodeops.io/helper=<purpose>` and the owner's labels, and is
  always deleted when the session ends; `remove_helpers` deletes leftovers of a crashed operator by label.

Writing (`write_files`) streams a tar into `tar -x -p -f - -C <home>` run as root, so modes, owners and
mtimes are restored as recorded. File contents travel only on the exec streams, never in a command line.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import logging
import posixpath
import re
import tarfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from ..api import naming
from ..plan.backup_items import VolumeTarget
from .exec import ExecError, ExecPort
from .kube import KubeApi

logger = logging.getLogger(__name__)

DEFAULT_HELPER_IMAGE = "busybox:1.36"
HELPER_MOUNT = "/data"
HELPER_CONTAINER = "helper"
# PID 1 shell that ends at once on TERM (a bare `sleep` as PID 1 ignores it), and ends by itself after an hour.
HELPER_COMMAND = ["sh", "-c", "trap 'exit 0' TERM INT; sleep 3600 & wait"]
# The node's files are root's (the node-launcher's containers run as root), and `tar -x -p` must give them back their
# owners, modes and mtimes: root, with only the capabilities for that (within the Pod Security Standards' baseline);
# everything else dropped, the image's filesystem read-only (only the volume is written).
HELPER_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsUser": 0, "runAsGroup": 0, "privileged": False, "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True, "seccompProfile": {"type": "RuntimeDefault"},
    "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER"]},
}
# Requests and limits, so that a namespace whose ResourceQuota or LimitRange asks for them admits the helper; a key
# file is at most MAX_FILE_SIZE and travels through the exec streams, not the helper's memory.
HELPER_RESOURCES = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}
MAX_FILE_SIZE = 16 * 1024 * 1024
SCHEDULE_WAIT_SECONDS = 30.0   # how long a helper's placement waits for a pod of the component being scheduled
SCHEDULE_POLL_SECONDS = 0.25


EXEC_ATTEMPTS = 3
EXEC_RETRY_SECONDS = 0.2
# What the container runtime answers when it cannot start the command at all (the container is restarting or
# stopped), as `kubectl exec` shows it: exit 126 and this on stderr. The command never ran, as with a refused exec.
RUNTIME_REFUSED = re.compile(r"OCI runtime exec failed|unable to start container process|container not running",
                             re.I)
# What tar (GNU or busybox) says about a member that does not exist, and the summary line GNU tar adds to it.
MISSING_OR_SUMMARY = re.compile(r"No such file or directory|Exiting with failure status due to previous errors")


def runtime_refused(result: Any) -> bool:
    """The exec reached the container runtime, which could not start the command (it did not run)."""
    return result.exit_code == 126 and bool(RUNTIME_REFUSED.search(result.stderr_text(4000)))


class VolumeError(Exception):
    """The volume could not be read or written (no pod, helper did not start, exec failed). Safe message."""


@dataclass(frozen=True)
class FileEntry:
    """One regular file of a home (`path` relative to it). `data` never appears in repr."""

    path: str
    data: bytes = field(repr=False)
    mode: int = 0o600
    uid: int = 0
    gid: int = 0
    mtime: int = 0


@dataclass(frozen=True)
class DirEntry:
    path: str
    mode: int = 0o700
    uid: int = 0
    gid: int = 0
    mtime: int = 0


@dataclass(frozen=True)
class HelperPlacement:
    """Where a helper on a component's volume goes. `node_name`: the node of a pod of the component, where the volume
    is attached (a ReadWriteOnce volume is attached to one node at a time); None: the scheduler chooses.
    `scheduling`: the component's pod template's node selector, node affinity and tolerations, so that the helper
    may go where the component may (a dedicated, tainted node pool; a tainted node evicts a pod that does not
    tolerate it even when the pod names the node)."""

    node_name: str | None = None
    scheduling: Mapping[str, Any] = field(default_factory=dict)


def helper_pod_body(namespace: str, target: VolumeTarget, *, image: str, labels: Mapping[str, str],
                    owner: Mapping[str, Any] | None = None, purpose: str = "backup",
                    placement: HelperPlacement = HelperPlacement()) -> dict[str, Any]:
    """A busybox pod on the PVC, placed as `placement` says."""
    metadata: dict[str, Any] = {
        "generateName": f"{purpose}-{target.component}-",
        "namespace": namespace,
        "labels": {naming.LABEL_HELPER: purpose, naming.LABEL_MANAGED_BY: naming.FIELD_MANAGER,
                   f"{naming.GROUP}/component": target.component, **labels},
    }
    if owner:
        metadata["ownerReferences"] = [dict(owner)]
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": metadata,
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "activeDeadlineSeconds": 3600,
            "automountServiceAccountToken": False,
            "containers": [{
                "name": HELPER_CONTAINER, "image": image, "command": list(HELPER_COMMAND),
                "securityContext": copy.deepcopy(HELPER_SECURITY_CONTEXT),
                "resources": copy.deepcopy(HELPER_RESOURCES),
                "volumeMounts": [{"name": "data", "mountPath": HELPER_MOUNT}],
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": target.pvc}}],
            **copy.deepcopy(dict(placement.scheduling)),
            **({"nodeName": placement.node_name} if placement.node_name else {}),
        },
    }


def template_scheduling(deployment: Mapping[str, Any] | None) -> dict[str, Any]:
    """The node selector, node affinity and tolerations of a Deployment's pod template (pod affinity is left out: the
    helper does not carry the component's labels, and a pod it must join may be scaled away)."""
    spec = ((((deployment or {}).get("spec") or {}).get("template") or {}).get("spec")) or {}
    out: dict[str, Any] = {}
    if isinstance(spec.get("nodeSelector"), dict) and spec["nodeSelector"]:
        out["nodeSelector"] = dict(spec["nodeSelector"])
    node_affinity = (spec.get("affinity") or {}).get("nodeAffinity") if isinstance(spec.get("affinity"), dict) else None
    if node_affinity:
        out["affinity"] = {"nodeAffinity": node_affinity}
    if isinstance(spec.get("tolerations"), list) and spec["tolerations"]:
        out["tolerations"] = list(spec["tolerations"])
    return out


def helper_running(pod: Mapping[str, Any]) -> bool:
    return _container_running(pod, HELPER_CONTAINER)


def helper_ended(pod: Mapping[str, Any]) -> bool:
    """Deleted, or its container has exited: it will never run (restartPolicy Never)."""
    return bool((pod.get("metadata") or {}).get("deletionTimestamp")) or \
        (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


def _container_running(pod: Mapping[str, Any], container: str) -> bool:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") == container:
            return bool((cs.get("state") or {}).get("running"))
    return False


def tar_of(files: Sequence[FileEntry], dirs: Sequence[DirEntry] = ()) -> bytes:
    """An uncompressed tar of `dirs` then `files` with their modes, owners and mtimes (numeric ids only)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in sorted(dirs, key=lambda d: d.path):
            info = tarfile.TarInfo(d.path.rstrip("/"))
            info.type, info.mode, info.uid, info.gid, info.mtime = tarfile.DIRTYPE, d.mode, d.uid, d.gid, d.mtime
            info.uname = info.gname = ""
            tar.addfile(info)
        for f in files:
            info = tarfile.TarInfo(f.path)
            info.size, info.mode, info.uid, info.gid, info.mtime = len(f.data), f.mode, f.uid, f.gid, f.mtime
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(f.data))
    return buffer.getvalue()


def files_of_tar(data: bytes) -> dict[str, FileEntry]:
    """Regular files of a tar stream as the container wrote it; links, devices and directories are skipped."""
    out: dict[str, FileEntry] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                if member.size > MAX_FILE_SIZE:
                    raise VolumeError(f"{member.name[:200]} is larger than {MAX_FILE_SIZE} bytes")
                handle = tar.extractfile(member)
                content = handle.read() if handle is not None else b""
                path = posixpath.normpath(member.name).lstrip("/")
                if path.startswith("../") or path == "..":
                    continue
                out[path] = FileEntry(path, content, member.mode & 0o7777, member.uid, member.gid, int(member.mtime))
    except (tarfile.TarError, EOFError) as err:
        raise VolumeError(f"the tar stream from the container is unreadable ({type(err).__name__})") from None
    return out


class VolumeSession:
    """One component's home, reachable through `pod`/`container` at `root`."""

    def __init__(self, exec_port: ExecPort, namespace: str, target: VolumeTarget, pod: str, container: str,
                 root: str, via: str) -> None:
        self._exec = exec_port
        self.namespace = namespace
        self.target = target
        self.pod = pod
        self.container = container
        self.root = root.rstrip("/") or "/"
        self.via = via                   # "container" | "helper"

    def describe(self) -> str:
        return f"{self.target.component} home {self.root} via {self.via} pod {self.pod}"

    async def _run(self, command: list[str], stdin: bytes | None = None, timeout: float = 120.0):
        """Run a command; an exec that could not be run (connection refused or lost, or the container runtime could
        not start it) is tried again, since every volume operation is idempotent. A command that ran and failed is
        not retried: that is an answer (so is the runtime's refusal at the last attempt, for the caller to report)."""
        failure: ExecError | None = None
        for attempt in range(EXEC_ATTEMPTS):
            if attempt:
                await asyncio.sleep(EXEC_RETRY_SECONDS * attempt)
            try:
                result = await self._exec.run(self.namespace, self.pod, self.container, command, stdin=stdin,
                                              timeout=timeout)
            except ExecError as err:
                failure = err
                continue
            if attempt + 1 < EXEC_ATTEMPTS and runtime_refused(result):
                continue
            return result
        raise VolumeError(str(failure)) from None

    def _relative(self, shown: str) -> str | None:
        prefix = self.root + "/"
        if shown.startswith(prefix):
            return shown[len(prefix):]
        return None

    async def list_files(self, starts: Sequence[str] = (), *, globs: Sequence[str] = ()) -> set[str]:
        """Relative paths of the regular files at or under `starts` (relative paths), and of the top-level
        files matching `globs`. Start paths that do not exist are simply absent from the answer."""
        found: set[str] = set()
        if starts:
            command = ["find", *(posixpath.join(self.root, s) for s in starts), "-maxdepth", "4", "-type", "f"]
            result = await self._run(command, timeout=60)
            found |= self._parse_find(result.stdout, result.exit_code, result.stderr_text())
        for glob in globs:
            command = ["find", self.root, "-maxdepth", "1", "-type", "f", "-name", glob]
            result = await self._run(command, timeout=60)
            found |= self._parse_find(result.stdout, result.exit_code, result.stderr_text())
        return found

    async def list_dirs(self, max_depth: int = 6) -> set[str]:
        """Relative paths of the directories under the root (the root itself is not listed)."""
        result = await self._run(["find", self.root, "-maxdepth", str(max_depth), "-type", "d"], timeout=60)
        return self._parse_find(result.stdout, result.exit_code, result.stderr_text())

    def _parse_find(self, stdout: bytes, code: int, stderr: str) -> set[str]:
        lines = [line for line in stdout.decode("utf-8", "replace").splitlines() if line]
        if code != 0 and "No such file" not in stderr:
            raise VolumeError(f"find in {self.describe()} failed (exit {code}): {stderr[:300]}")
        paths = {self._relative(line) for line in lines}
        return {p for p in paths if p}

    async def read_files(self, paths: Sequence[str]) -> dict[str, FileEntry]:
        """The files at `paths` (relative), with mode, owner and mtime, through one `tar c` stream."""
        if not paths:
            return {}
        command = ["tar", "-c", "-f", "-", "-C", self.root, "--", *paths]
        result = await self._run(command, timeout=120)
        files = files_of_tar(result.stdout)
        if result.exit_code != 0 and not files:
            raise VolumeError(f"tar in {self.describe()} failed (exit {result.exit_code}): {result.stderr_text(300)}")
        return files

    async def read_present(self, paths: Sequence[str]) -> dict[str, FileEntry]:
        """Those of `paths` that exist, as `read_files` reads them, in one exec (no `find` first): a path tar reports
        missing ("No such file") is absent from the answer; any other complaint is an error."""
        if not paths:
            return {}
        result = await self._run(["tar", "-c", "-f", "-", "-C", self.root, "--", *paths], timeout=120)
        if result.exit_code == 0:
            return files_of_tar(result.stdout)
        complaints = [line for line in result.stderr_text(4000).splitlines()
                      if line.strip() and not MISSING_OR_SUMMARY.search(line)]
        if complaints or not result.stderr_text(4000).strip():
            raise VolumeError(f"tar in {self.describe()} failed (exit {result.exit_code}): "
                              f"{result.stderr_text(300)}")
        return files_of_tar(result.stdout) if result.stdout else {}

    async def write_files(self, files: Sequence[FileEntry], dirs: Sequence[DirEntry] = ()) -> None:
        """Write `files` (and create `dirs`) under the home, modes and numeric owners preserved."""
        if not files and not dirs:
            return
        stream = tar_of(files, dirs)
        result = await self._run(["tar", "-x", "-p", "-f", "-", "-C", self.root], stdin=stream, timeout=120)
        if result.exit_code != 0:
            raise VolumeError(f"writing into {self.describe()} failed (exit {result.exit_code}): "
                              f"{result.stderr_text(300)}")

    async def remove(self, paths: Sequence[str]) -> None:
        if paths:
            result = await self._run(["rm", "-f", "--", *(posixpath.join(self.root, p) for p in paths)], timeout=60)
            if result.exit_code != 0:
                raise VolumeError(f"rm in {self.describe()} failed: {result.stderr_text(300)}")


class NodeVolumes:
    def __init__(self, kube: KubeApi, exec_port: ExecPort, *, helper_image: str = DEFAULT_HELPER_IMAGE,
                 helper_timeout: float = 120.0, poll: float = 0.1) -> None:
        self._kube = kube
        self._exec = exec_port
        self.helper_image = helper_image
        self.helper_timeout = helper_timeout
        self.poll = poll

    async def running_pod(self, namespace: str, target: VolumeTarget) -> str | None:
        """A pod of the component's Deployment whose container runs (None: none does)."""
        deployment = await self._kube.get_deployment(namespace, target.deployment)
        if deployment is None:
            return None
        labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not labels:
            return None
        pods = await self._kube.list_pods(namespace, labels)
        running = sorted((p for p in pods if _container_running(p, target.container)),
                         key=lambda p: (p.get("metadata") or {}).get("name") or "")
        return (running[0].get("metadata") or {}).get("name") if running else None

    @asynccontextmanager
    async def session(self, namespace: str, target: VolumeTarget, *, mode: str = "auto",
                      labels: Mapping[str, str] | None = None, owner: Mapping[str, Any] | None = None,
                      purpose: str = "backup") -> AsyncIterator[VolumeSession]:
        """`mode`: auto (the running container, else a helper pod), container, or helper."""
        if mode in ("auto", "container"):
            pod = await self.running_pod(namespace, target)
            if pod is not None:
                yield VolumeSession(self._exec, namespace, target, pod, target.container, target.home, "container")
                return
            if mode == "container":
                raise VolumeError(f"no running pod of deployment {target.deployment} in {namespace}")
        name = await self._start_helper(namespace, target, labels or {}, owner, purpose)
        try:
            yield VolumeSession(self._exec, namespace, target, name, HELPER_CONTAINER, target.helper_root, "helper")
        finally:
            await asyncio.shield(self.delete_pod(namespace, name))

    async def _start_helper(self, namespace: str, target: VolumeTarget, labels: Mapping[str, str],
                            owner: Mapping[str, Any] | None, purpose: str) -> str:
        body = helper_pod_body(namespace, target, image=self.helper_image, labels=labels, owner=owner,
                               purpose=purpose, placement=await helper_placement(self._kube, namespace,
                                                                                 target.deployment))
        return await launch_helper(self._kube, namespace, body, pvc=target.pvc, timeout=self.helper_timeout,
                                   poll=self.poll)

    async def delete_pod(self, namespace: str, name: str) -> None:
        await delete_helper(self._kube, namespace, name)

    async def remove_helpers(self, namespace: str, selector: Mapping[str, str]) -> list[str]:
        """Delete helper pods matching `selector` (leftovers of an interrupted run); their names."""
        pods = await self._kube.list_pods(namespace, dict(selector))
        names = [str((p.get("metadata") or {}).get("name")) for p in pods
                 if ((p.get("metadata") or {}).get("labels") or {}).get(naming.LABEL_HELPER)]
        for name in names:
            await self.delete_pod(namespace, name)
        return names


async def helper_placement(kube: KubeApi, namespace: str, deployment: str) -> HelperPlacement:
    """Where a helper on `deployment`'s volume goes: on the node of a pod of it, whether that pod's container runs or
    not (a crash-looping pod holds the volume too), with its pod template's scheduling constraints. A pod not created
    or not scheduled yet (the Deployment was just scaled up) is waited for, up to SCHEDULE_WAIT_SECONDS: a helper
    placed before it could land on another node and wait for the volume as long as that pod holds it."""
    deadline = time.monotonic() + SCHEDULE_WAIT_SECONDS
    while True:
        body = await kube.get_deployment(namespace, deployment)
        spec = (body or {}).get("spec") or {}
        labels = (spec.get("selector") or {}).get("matchLabels") or {}
        pods = [pod for pod in (await kube.list_pods(namespace, labels) if labels else [])
                if not (pod.get("metadata") or {}).get("deletionTimestamp")]
        nodes = [str(pod["spec"]["nodeName"]) for pod in pods if (pod.get("spec") or {}).get("nodeName")]
        wanted = bool(labels) and spec.get("replicas", 1) != 0
        if nodes or not (pods or wanted) or time.monotonic() >= deadline:
            return HelperPlacement(nodes[0] if nodes else None, template_scheduling(body))
        await asyncio.sleep(SCHEDULE_POLL_SECONDS)


async def launch_helper(kube: KubeApi, namespace: str, body: Mapping[str, Any], *, pvc: str, timeout: float,
                        poll: float) -> str:
    """Create the helper pod `body` and wait until its container runs; its name. A helper that ends first, or does
    not run within `timeout`, is deleted (so is one whose wait is cancelled), and the error says what held it."""
    response = await asyncio.to_thread(kube.core.create_namespaced_pod, namespace, body, _preload_content=False)
    name = str(json.loads(response.data)["metadata"]["name"])
    logger.info("helper pod %s/%s started on PVC %s", namespace, name, pvc)
    return await await_helper(kube, namespace, name, pvc=pvc, timeout=timeout, poll=poll)


async def await_helper(kube: KubeApi, namespace: str, name: str, *, pvc: str, timeout: float, poll: float) -> str:
    """Wait until the helper pod `name` runs; its name. One that ends first, or does not run within `timeout`, is
    deleted (so is one whose wait is cancelled), and the error says what held it."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                raw = await asyncio.to_thread(kube.core.read_namespaced_pod, name, namespace, _preload_content=False)
            except ApiException as err:
                if err.status == 404:
                    raise VolumeError(f"helper pod {namespace}/{name} vanished before it ran") from None
                raise
            pod = json.loads(raw.data)
            if helper_running(pod):
                return name
            phase = (pod.get("status") or {}).get("phase")
            ended = phase in ("Failed", "Succeeded")
            if ended or time.monotonic() > deadline:
                why = await why_not_running(kube, namespace, pod)
                what = f"ended ({phase}) before it ran" if ended else f"did not run within {timeout:g}s"
                raise VolumeError(f"helper pod {namespace}/{name} on PVC {pvc} {what}{': ' + why if why else ''}")
            await asyncio.sleep(poll)
    except BaseException:
        await asyncio.shield(delete_helper(kube, namespace, name))
        raise


async def delete_helper(kube: KubeApi, namespace: str, name: str) -> None:
    """Delete a helper pod at once (grace period 0); one already gone is fine, and a failed deletion is logged (the
    helper ends by itself within the hour, and a later pass deletes leftovers by label)."""
    try:
        await asyncio.to_thread(kube.core.delete_namespaced_pod, name, namespace, grace_period_seconds=0,
                                _preload_content=False)
        logger.info("helper pod %s/%s deleted", namespace, name)
    except ApiException as err:
        if err.status != 404:
            logger.warning("could not delete helper pod %s/%s: HTTP %s", namespace, name, err.status)


def newest_warning(events: Sequence[Mapping[str, Any]]) -> str:
    """`Reason: message` of the newest Warning event (a kubelet's `FailedAttachVolume: Multi-Attach error for volume
    … Volume is already used by pod(s) …` says which pod still holds the volume), or ""."""
    def when(event: Mapping[str, Any]) -> str:
        series = event.get("series") or {}
        return str(series.get("lastObservedTime") or event.get("lastTimestamp") or event.get("eventTime")
                   or (event.get("metadata") or {}).get("creationTimestamp") or "")

    warnings = [e for e in events if e.get("type") == "Warning" and (e.get("reason") or e.get("message"))]
    if not warnings:
        return ""
    newest = max(warnings, key=when)
    return f"{newest.get('reason') or 'Warning'}: {' '.join(str(newest.get('message') or '').split())}"[:300]


async def why_not_running(kube: KubeApi, namespace: str, pod: Mapping[str, Any]) -> str:
    """What keeps a pod from running: its waiting reason, and what the newest Warning event about it says (the
    waiting reason alone, ContainerCreating, hides a volume still attached elsewhere). The events are a courtesy: a
    denied or failed read of them leaves the waiting reason alone."""
    waiting = waiting_reason(pod)
    name = str((pod.get("metadata") or {}).get("name") or "")
    try:
        warning = newest_warning(await kube.pod_warning_events(namespace, name)) if name else ""
    except (ApiException, OSError, ValueError) as err:
        logger.info("could not read the events of pod %s/%s: %s", namespace, name, type(err).__name__)
        warning = ""
    return "; ".join(part for part in (waiting, warning) if part)


def waiting_reason(pod: Mapping[str, Any]) -> str:
    """Why a pod is not running yet: its container's waiting reason (ContainerCreating, ImagePullBackOff), else a false
    condition's message (the scheduler's, for an unschedulable pod)."""
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            return str(waiting["reason"])
    for cond in status.get("conditions") or []:
        if cond.get("status") == "False" and cond.get("message"):
            return str(cond["message"])[:200]
    return ""
