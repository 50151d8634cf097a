"""`EmulatedApiServer`: a Kubernetes API server on loopback for tests and the demo (see docs/architecture.md)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Awaitable, Callable

import yaml
from aiohttp import web

from .exec import ExecHandler
from .rbac import Denial, RbacGate, UserInfo
from .handlers import REQUEST_INFO, Handlers, RequestInfo, parse_request_info, request_info
from .store import Store

log = logging.getLogger(__name__)

# A request hook is an aiohttp-style middleware: `await hook(request, call_next) -> response`.
# `request_info(request)` is the parsed `RequestInfo` (verb, group, resource, namespace, name, subresource).
# Hooks can observe or count calls, add latency, answer errors themselves (409/429/500) or cut watch streams.
RequestHook = Callable[[web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]],
                       Awaitable[web.StreamResponse]]

__all__ = ["EmulatedApiServer", "RequestHook", "RequestInfo", "UserInfo", "request_info"]

MAX_REQUEST_BYTES = 3 * 1024 * 1024          # kube-apiserver's request body limit


class EmulatedApiServer:
    """A Kubernetes API server on 127.0.0.1 speaking plain HTTP.

    >>> server = EmulatedApiServer()
    >>> await server.start(); server.url            # "http://127.0.0.1:PORT"
    >>> server.write_kubeconfig(path)               # context "sandbox", no auth, namespace "default"
    >>> server.store.create("namespaces", {"metadata": {"name": "node-a"}})   # in-process access
    >>> await server.stop()
    """

    def __init__(self, exec_handler: ExecHandler | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 bookmark_interval: float = 30.0, history_size: int = 10_000) -> None:
        self.host = host
        self.port = port
        self.bookmark_interval = bookmark_interval
        self.exec_handler: ExecHandler | None = exec_handler
        self.store = Store(history_size=history_size)
        self._hooks: list[RequestHook] = []
        self._handlers = Handlers(self)
        self._rbac: RbacGate | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # ------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> "EmulatedApiServer":
        app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[self._middleware])
        app.router.add_route("*", "/{tail:.*}", self._handlers.dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await self._site.start()
        sockets = self._site._server.sockets if self._site._server else []      # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1]
        self.store.loop = asyncio.get_running_loop()
        return self

    async def stop(self) -> None:
        self.store.close_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.store.loop = None

    async def __aenter__(self) -> "EmulatedApiServer":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------------------------ wiring

    def set_exec_handler(self, handler: ExecHandler | None) -> None:
        self.exec_handler = handler

    def add_request_hook(self, hook: RequestHook) -> None:
        """Hooks run in the order added, outermost first, around every request."""
        self._hooks.append(hook)

    def remove_request_hook(self, hook: RequestHook) -> None:
        self._hooks.remove(hook)

    def enable_rbac(self, tokens: dict[str, UserInfo | tuple[str, list[str] | tuple[str, ...]]]) -> None:
        """Authenticate `Authorization: Bearer` tokens as these users and authorize them with the stored RBAC
        objects, as kube-apiserver does; requests without credentials stay the unrestricted admin."""
        users = {token: user if isinstance(user, UserInfo) else UserInfo(user[0], tuple(user[1]))
                 for token, user in tokens.items()}
        if self._rbac is None:
            self._rbac = RbacGate(self.store, users)
        else:
            self._rbac.tokens.update(users)

    def disable_rbac(self) -> None:
        self._rbac = None

    @property
    def rbac_denials(self) -> list[Denial]:
        """Every request RBAC refused since `enable_rbac`, in order."""
        return self._rbac.denials if self._rbac is not None else []

    @web.middleware
    async def _middleware(self, request: web.Request, handler):    # noqa: ANN001, ANN201
        request[REQUEST_INFO] = parse_request_info(request)
        if self._rbac is not None:
            refused = self._rbac.check(request, request[REQUEST_INFO])
            if refused is not None:
                return refused
        call = handler
        for hook in reversed(self._hooks):
            call = _bind(hook, call)
        return await call(request)

    def write_kubeconfig(self, path: str | Path, namespace: str = "default", token: str | None = None) -> Path:
        path = Path(path)
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "sandbox", "cluster": {"server": self.url}}],
            "users": [{"name": "sandbox", "user": {"token": token} if token else {}}],
            "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox",
                                                          "namespace": namespace}}],
            "current-context": "sandbox",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path


def _bind(hook: RequestHook, call_next):                  # noqa: ANN001, ANN202
    async def call(request: web.Request) -> web.StreamResponse:
        return await hook(request, call_next)
    return call
