"""Running commands in containers: a small port, implemented over the Kubernetes exec API.

The real implementation speaks the API server's websocket exec (v5.channel.k8s.io when the
server offers it, so stdin can be closed; v4 otherwise, where `tar x` stops at the archive's end
marker). Secrets travel only on stdin, never in the command line, which API audit logs record.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Protocol

from kubernetes import client as k8s
from kubernetes.stream import stream
from kubernetes.stream.ws_client import ERROR_CHANNEL, STDERR_CHANNEL, STDOUT_CHANNEL, V5_CHANNEL_PROTOCOL
from websocket import WebSocketConnectionClosedException

MAX_OUTPUT_BYTES = 256 * 1024 * 1024
CONNECTION_CLOSED = (WebSocketConnectionClosedException, BrokenPipeError, ConnectionResetError)
STDIN_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def stderr_text(self, limit: int = 400) -> str:
        return self.stderr.decode("utf-8", "replace").strip()[:limit]


class ExecError(Exception):
    """The command could not be run at all (pod gone, container missing, connection lost, timeout)."""


class ExecPort(Protocol):
    async def run(self, namespace: str, pod: str, container: str, command: list[str],
                  stdin: bytes | None = None, timeout: float = 120.0) -> ExecResult: ...


class KubernetesExec:
    def __init__(self, api_client: k8s.ApiClient) -> None:
        self._configuration = api_client.configuration
        self._user_agent = api_client.user_agent

    def _exec_api(self) -> tuple[k8s.ApiClient, k8s.CoreV1Api]:
        """A client of its own for each exec: `stream()` swaps the client's `call_api` for the websocket one while
        it runs, which would send any other thread's call on a shared client through the websocket (and two
        overlapping execs could leave the shared client swapped for good)."""
        client = k8s.ApiClient(self._configuration)
        client.user_agent = self._user_agent
        return client, k8s.CoreV1Api(client)

    async def run(self, namespace: str, pod: str, container: str, command: list[str],
                  stdin: bytes | None = None, timeout: float = 120.0) -> ExecResult:
        return await asyncio.to_thread(self._run, namespace, pod, container, command, stdin, timeout)

    def _run(self, namespace: str, pod: str, container: str, command: list[str],
             stdin: bytes | None, timeout: float) -> ExecResult:
        deadline = time.monotonic() + timeout
        client, core = self._exec_api()
        try:
            return self._exchange(core, namespace, pod, container, command, stdin, timeout, deadline)
        finally:
            client.close()

    def _exchange(self, core: k8s.CoreV1Api, namespace: str, pod: str, container: str, command: list[str],
                  stdin: bytes | None, timeout: float, deadline: float) -> ExecResult:
        try:
            ws = stream(
                core.connect_get_namespaced_pod_exec, pod, namespace,
                command=command, container=container,
                stdin=stdin is not None, stdout=True, stderr=True, tty=False,
                _preload_content=False, binary=True,
            )
        except k8s.exceptions.ApiException as err:
            raise ExecError(f"exec into {namespace}/{pod} ({container}) refused: HTTP {err.status} {err.reason}") from None
        except Exception as err:  # websocket-client raises its own handshake errors
            raise ExecError(f"exec into {namespace}/{pod} ({container}) failed: {type(err).__name__}: {err}") from None
        out, err_out = bytearray(), bytearray()
        try:
            if stdin is not None:
                for start in range(0, len(stdin), STDIN_CHUNK):
                    ws.write_stdin(stdin[start:start + STDIN_CHUNK])
                if ws.subprotocol == V5_CHANNEL_PROTOCOL:
                    ws.close_channel(0)
            while ws.is_open():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ExecError(f"exec {command[0]} in {namespace}/{pod} timed out after {timeout:g}s")
                try:
                    ws.update(timeout=min(remaining, 1.0))
                except CONNECTION_CLOSED:
                    break       # the server hung up after its close frame: what it sent is buffered
                out += ws.read_channel(STDOUT_CHANNEL)
                err_out += ws.read_channel(STDERR_CHANNEL)
                if len(out) > MAX_OUTPUT_BYTES:
                    raise ExecError(f"exec {command[0]} in {namespace}/{pod} wrote more than {MAX_OUTPUT_BYTES} bytes")
            out += ws.read_channel(STDOUT_CHANNEL)
            err_out += ws.read_channel(STDERR_CHANNEL)
            status = ws.read_channel(ERROR_CHANNEL)
        finally:
            try:
                ws.close()
            except CONNECTION_CLOSED:
                pass
        code = exit_code_from_status(status, f"exec {command[0]} in {namespace}/{pod}")
        return ExecResult(code, bytes(out), bytes(err_out))


def exit_code_from_status(status: str | bytes, what: str) -> int:
    """The exit code from the final Status the API server sends on the error channel."""
    text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
    if not text.strip():
        raise ExecError(f"{what}: connection closed without an exit status")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise ExecError(f"{what}: unreadable exit status {text[:200]!r}") from None
    if doc.get("status") == "Success":
        return 0
    causes = (doc.get("details") or {}).get("causes") or []
    for cause in causes:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                break
    raise ExecError(f"{what} failed: {str(doc.get('message') or doc)[:300]}")
