"""Fault injection for the emulated API server: the failures a real control plane produces.

    injector = FaultInjector(seed=7).install(sandbox.api)        # a request hook + an exec wrapper
    injector.set(conflict=0.2, throttle=0.1, error=0.05, slow=0.1, watch_drop=0.3, exec_error=0.2)
    ...                                                           # run a scenario
    injector.counts        # Counter: {"conflict": 12, "throttle": 5, ...}
    injector.force("lost_answer", times=1, resource="mayanodes/status")   # exactly once, deterministically
    injector.set()         # all rates back to 0 (faults off), at any time, from any thread
    injector.uninstall()

Faults (each a probability per eligible request, decided with one seeded `random.Random` in the
order requests arrive, so a run's fault sequence is reproducible up to request ordering):

| fault          | requests                  | what the client sees                                                 |
|----------------|---------------------------|----------------------------------------------------------------------|
| `conflict`     | update, patch             | 409 Conflict ("the object has been modified"), nothing written        |
| `throttle`     | every non-watch request   | 429 TooManyRequests with `Retry-After: retry_after`, nothing done     |
| `error`        | every non-watch request   | 500 InternalError, nothing done                                      |
| `lost_answer`  | create, update, patch, delete | the write **is applied**, then 504 Timeout: the client cannot know |
| `slow`         | every request             | answered after `slow_seconds`                                        |
| `watch_drop`   | watch                     | the connection is cut mid-stream within `watch_max_seconds` (truncated body) |
| `watch_end`    | watch                     | the stream ends cleanly within `watch_max_seconds` (as a server timeout does) |
| `exec_error`   | pod exec (connect)        | 500 before the websocket upgrade: the command never ran              |
| `exec_exit`    | pod exec, inside the stream | exit 126 and the runtime's "OCI runtime exec failed" line: the command never ran |

By default only the operator's own requests are disturbed (`is_operator_request`: its API client
sends `User-Agent: mayanode-operator/…`, kopf sends `kopf/…`, its execs send none): the simulated
kubelet plays the cluster, not the system under test, and a test's own client must see the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

from aiohttp import web

from .apiserver.handlers import request_info

OPERATOR_USER_AGENTS = ("mayanode-operator/", "kopf/")
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
FORCEABLE = frozenset({"conflict", "throttle", "error", "lost_answer", "slow", "watch_drop", "watch_end", "exec_error"})
_TARGETED_EXEC: contextvars.ContextVar[bool] = contextvars.ContextVar("targeted_exec", default=False)


def is_operator_request(request: web.Request) -> bool:
    """A request sent by the operator process (its API client or kopf), not by the sandbox or a test.

    The official client's exec (`kubernetes.stream`, websocket-client underneath) sends no User-Agent
    at all, where kubectl and aiohttp-based clients always send one: an exec without one is the operator's.
    """
    agent = request.headers.get("User-Agent")
    if agent is None:
        info = request_info(request)
        return info.verb == "connect" and info.subresource == "exec"
    return agent.startswith(OPERATOR_USER_AGENTS)


@dataclass(frozen=True)
class FaultRates:
    conflict: float = 0.0
    throttle: float = 0.0
    retry_after: int = 1
    error: float = 0.0
    lost_answer: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 0.3
    watch_drop: float = 0.0
    watch_end: float = 0.0
    watch_max_seconds: float = 3.0
    exec_error: float = 0.0
    exec_exit: float = 0.0

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self)
                   if f.name not in ("retry_after", "slow_seconds", "watch_max_seconds"))


def _status(code: int, reason: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if reason == "TooManyRequests":
        body["details"] = {"retryAfterSeconds": int((headers or {}).get("Retry-After", "1"))}
    return web.Response(text=json.dumps(body), status=code, content_type="application/json", headers=headers)


class FaultInjector:
    """A request hook (and an exec-handler wrapper) that injects faults at settable rates."""

    def __init__(self, seed: int = 0, rates: FaultRates | None = None,
                 target: Callable[[web.Request], bool] = is_operator_request) -> None:
        self.rates = rates or FaultRates()
        self.target = target
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[str, str, str, str, str]] = []    # (fault, verb, resource, namespace, name)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server: Any = None
        self._exec_inner: Any = None
        self._forced: list[list[Any]] = []

    # --------------------------------------------------------------------------------- control

    def set(self, **rates: float) -> "FaultInjector":
        """Replace every rate at once (unnamed ones become 0 / their defaults)."""
        self.rates = FaultRates(**rates)
        return self

    def update(self, **rates: float) -> "FaultInjector":
        """Change some rates, keep the others."""
        self.rates = replace(self.rates, **rates)
        return self

    def force(self, fault: str, times: int = 1, resource: str | None = None) -> "FaultInjector":
        """Inject `fault` into the next `times` eligible requests (to `resource`, e.g. "mayanodes/status"),
        whatever the rates: a deterministic fault for a test that must see one."""
        if fault not in FORCEABLE:
            raise ValueError(f"{fault!r} cannot be forced; one of {sorted(FORCEABLE)}")
        with self._lock:
            self._forced.append([fault, times, resource])
        return self

    def _take_forced(self, fault: str, info: Any) -> bool:
        resource = info.resource + (f"/{info.subresource}" if info.subresource else "")
        with self._lock:
            for entry in self._forced:
                if entry[0] == fault and entry[1] > 0 and entry[2] in (None, resource):
                    entry[1] -= 1
                    return True
        return False

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        saved, self.rates = self.rates, FaultRates()
        try:
            yield
        finally:
            self.rates = saved

    def install(self, server: Any) -> "FaultInjector":
        """Hook into an `EmulatedApiServer` (its requests and its exec handler)."""
        self._server = server
        server.add_request_hook(self)
        self._exec_inner = server.exec_handler
        if self._exec_inner is not None:
            server.set_exec_handler(self._exec)
        return self

    def uninstall(self) -> None:
        if self._server is None:
            return
        self._server.remove_request_hook(self)
        if self._exec_inner is not None and self._server.exec_handler == self._exec:
            self._server.set_exec_handler(self._exec_inner)
        self._server = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    # --------------------------------------------------------------------------------- the hook

    def _roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._random.random() < rate

    def _record(self, fault: str, request: web.Request) -> None:
        info = request_info(request)
        with self._lock:
            self.counts[fault] += 1
            self.log.append((fault, info.verb, info.resource + (f"/{info.subresource}" if info.subresource else ""),
                             info.namespace, info.name))

    async def __call__(self, request: web.Request,
                       call_next: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        rates = self.rates
        if not (rates.any or self._forced) or not self.target(request):
            return await call_next(request)
        info = request_info(request)
        verb = info.verb
        if self._take_forced("slow", info) or self._roll(rates.slow):
            self._record("slow", request)
            await asyncio.sleep(rates.slow_seconds)
        if verb == "watch":
            return await self._watch(request, call_next, rates)
        if verb == "connect" and info.subresource == "exec":
            if self._take_forced("exec_error", info) or self._roll(rates.exec_error):
                self._record("exec_error", request)
                return _status(500, "InternalError", "error dialing backend: EOF (injected)")
            _TARGETED_EXEC.set(True)          # the exec handler runs in this task: `exec_exit` applies
        if self._take_forced("throttle", info) or self._roll(rates.throttle):
            self._record("throttle", request)
            return _status(429, "TooManyRequests", "too many requests, please try again later (injected)",
                           headers={"Retry-After": str(rates.retry_after)})
        if self._take_forced("error", info) or self._roll(rates.error):
            self._record("error", request)
            return _status(500, "InternalError", "an error on the server has prevented the request from "
                                                 "succeeding (injected)")
        if verb in ("update", "patch") and (self._take_forced("conflict", info) or self._roll(rates.conflict)):
            self._record("conflict", request)
            return _status(409, "Conflict", f"Operation cannot be fulfilled on {info.resource} \"{info.name}\": "
                                            "the object has been modified; please apply your changes to the "
                                            "latest version and try again (injected)")
        if verb in WRITE_VERBS and (self._take_forced("lost_answer", info) or self._roll(rates.lost_answer)):
            response = await call_next(request)
            if response.status < 300:
                self._record("lost_answer", request)
                return _status(504, "Timeout", "the server was unable to return a response in the time allotted, "
                                               "but may still be processing the request (injected)")
            return response
        return await call_next(request)

    async def _watch(self, request: web.Request, call_next: Callable[[web.Request], Awaitable[web.StreamResponse]],
                     rates: FaultRates) -> web.StreamResponse:
        info = request_info(request)
        drop, end = self._take_forced("watch_drop", info) or self._roll(rates.watch_drop), False
        if not drop:
            end = self._take_forced("watch_end", info) or self._roll(rates.watch_end)
        if not (drop or end):
            return await call_next(request)
        with self._lock:
            after = self._random.uniform(0.05, rates.watch_max_seconds)
        task = asyncio.ensure_future(call_next(request))
        done, _ = await asyncio.wait({task}, timeout=after)
        if task in done:
            return task.result()
        if drop:
            self._record("watch_drop", request)
            if request.transport is not None:
                request.transport.abort()
            with contextlib.suppress(BaseException):
                return await task
            return web.Response(status=500)
        self._record("watch_end", request)
        task.cancel()
        try:
            response = await task
        except asyncio.CancelledError:
            return web.Response(status=500)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    # --------------------------------------------------------------------------------- exec

    async def _exec(self, exec_request: Any, stdin: Any, stdout: Any, stderr: Any) -> int:
        if _TARGETED_EXEC.get() and self._roll(self.rates.exec_exit):
            with self._lock:
                self.counts["exec_exit"] += 1
                self.log.append(("exec_exit", "connect", "pods/exec", exec_request.namespace, exec_request.pod))
            # What the container runtime answers when it cannot start the process (e.g. the container is
            # restarting): the command never ran.
            await stderr(b"OCI runtime exec failed: exec failed: unable to start container process: "
                         b"container is restarting (injected): unknown\n")
            return 126
        return await self._exec_inner(exec_request, stdin, stdout, stderr)


__all__ = ["FaultInjector", "FaultRates", "OPERATOR_USER_AGENTS", "WRITE_VERBS", "is_operator_request"]
