"""Pod exec over websockets with the Kubernetes channel protocols (v5, v4, v1 and base64)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

from aiohttp import WSMsgType, web

from .errors import ApiError, bad_request

log = logging.getLogger(__name__)

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io", "base64.channel.k8s.io")
CLOSE_TIMEOUT = 5.0     # seconds to wait for the client's close reply before the connection is dropped anyway


@dataclass(frozen=True)
class ExecRequest:
    namespace: str
    pod: str
    container: str
    command: list[str]
    stdin: bool
    tty: bool


class ExecHandler(Protocol):
    async def __call__(self, request: ExecRequest, stdin: asyncio.StreamReader,
                       stdout: Callable[[bytes], Awaitable[None]],
                       stderr: Callable[[bytes], Awaitable[None]]) -> int: ...


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


def check_pod(pod: dict, container: str | None) -> str:
    """The container to exec into, or an `ApiError` with the message a real cluster gives."""
    name = pod["metadata"]["name"]
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    containers = [c["name"] for c in spec.get("containers") or []]
    if not container:
        annotated = (pod["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
        if len(containers) == 1:
            container = containers[0]
        elif annotated in containers:
            container = annotated
        else:
            raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                              f"[{' '.join(containers)}]")
    all_containers = containers + [c["name"] for c in (spec.get("initContainers") or []) + (spec.get("ephemeralContainers") or [])]
    if container not in all_containers:
        raise bad_request(f"container {container} is not valid for pod {name}")
    if not spec.get("nodeName"):
        raise bad_request(f"pod {name} does not have a host assigned")
    phase = status.get("phase")
    if phase in ("Succeeded", "Failed"):
        raise bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
    statuses = {c.get("name"): c for c in (status.get("containerStatuses") or [])}
    if container in statuses:
        running = "running" in (statuses[container].get("state") or {})
    else:
        running = phase == "Running"
    if not running:
        raise bad_request(f'unable to upgrade connection: container not found ("{container}")')
    return container


def choose_protocol(header: str) -> str | None:
    offered = [p.strip() for p in header.split(",") if p.strip()]
    for protocol in PROTOCOLS:
        if protocol in offered:
            return protocol
    return None


def exit_status(code: int, command: list[str]) -> dict:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command "
                       f"[{' '.join(command)}], exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


async def serve_exec(request: web.Request, pod: dict, handler: ExecHandler | None) -> web.StreamResponse:
    query = request.query
    command = query.getall("command", [])
    container = check_pod(pod, query.get("container"))
    if not command:
        raise bad_request("you must specify at least one command for the container")
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise ApiError(400, "BadRequest", "Upgrade request required")
    if handler is None:
        raise ApiError(500, "InternalError", "unable to upgrade connection: no exec handler is configured")
    protocol = choose_protocol(request.headers.get("Sec-WebSocket-Protocol", ""))
    ws = web.WebSocketResponse(protocols=(protocol,) if protocol else (), max_msg_size=0, autoping=True,
                               timeout=CLOSE_TIMEOUT)
    await ws.prepare(request)
    use_base64 = protocol == "base64.channel.k8s.io"
    exec_request = ExecRequest(namespace=pod["metadata"]["namespace"], pod=pod["metadata"]["name"],
                               container=container, command=list(command), stdin=_truthy(query.get("stdin")),
                               tty=_truthy(query.get("tty")))
    stdin = asyncio.StreamReader()
    if not exec_request.stdin:
        stdin.feed_eof()
    send_lock = asyncio.Lock()

    async def send(channel: int, data: bytes) -> None:
        if ws.closed:
            return
        async with send_lock:
            if use_base64:
                await ws.send_str(str(channel) + base64.b64encode(data).decode())
            else:
                await ws.send_bytes(bytes([channel]) + data)

    async def stdout(data: bytes) -> None:
        if data and _truthy(query.get("stdout", "true")):
            await send(STDOUT, bytes(data))

    async def stderr(data: bytes) -> None:
        if data and _truthy(query.get("stderr", "true")):
            await send(STDERR, bytes(data))

    async def pump_stdin() -> None:
        try:
            async for message in ws:
                if message.type == WSMsgType.BINARY:
                    payload = message.data
                elif message.type == WSMsgType.TEXT and use_base64 and message.data:
                    payload = bytes([int(message.data[0])]) + base64.b64decode(message.data[1:])
                elif message.type == WSMsgType.TEXT:
                    # The python client sends str stdin as text frames: same framing, UTF-8 payload.
                    payload = message.data.encode()
                else:
                    continue
                if not payload:
                    continue
                channel, data = payload[0], payload[1:]
                if channel == STDIN and exec_request.stdin and not stdin.at_eof():
                    if data:
                        stdin.feed_data(data)
                elif channel == CLOSE and data[:1] == bytes([STDIN]) and protocol == "v5.channel.k8s.io":
                    if not stdin.at_eof():
                        stdin.feed_eof()
        finally:
            if not stdin.at_eof():
                stdin.feed_eof()

    reader = asyncio.create_task(pump_stdin())
    try:
        try:
            code = await handler(exec_request, stdin, stdout, stderr)
            status = exit_status(int(code), exec_request.command)
        except Exception as exc:                    # noqa: BLE001 - any handler failure becomes a Status
            log.exception("exec handler failed for %s/%s", exec_request.namespace, exec_request.pod)
            status = {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {exc}",
                      "reason": "InternalError", "code": 500}
        if protocol in ("v4.channel.k8s.io", "v5.channel.k8s.io"):
            await send(ERROR, json.dumps(status).encode())
        elif status["status"] != "Success":
            await send(ERROR, status["message"].encode())
        # The close handshake, as a real API server does it: our close frame (1000), then the peer's close
        # reply (awaited up to CLOSE_TIMEOUT), then the connection closes. The stdin pump must stop first:
        # aiohttp's close() with another task waiting in receive() wakes that task with a "closing" message
        # and then drops the transport without waiting for the peer's reply.
        await _stop(reader)
        await ws.close()
    finally:
        await _stop(reader)
    return ws


async def _stop(task: asyncio.Task) -> None:
    if task.done():
        return
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):   # noqa: BLE001
        pass
