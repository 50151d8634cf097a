"""Run an `EmulatedApiServer` on its own event loop in a background thread, for synchronous clients."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from .server import EmulatedApiServer

T = TypeVar("T")


class ServerThread:
    """`with ServerThread() as st: st.url; st.server.store.get(...)`; or `.start()` / `.stop()`."""

    def __init__(self, server: EmulatedApiServer | None = None, **server_kwargs: Any) -> None:
        self._server = server
        self._server_kwargs = server_kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def server(self) -> EmulatedApiServer:
        assert self._server is not None, "ServerThread not started"
        return self._server

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "ServerThread not started"
        return self._loop

    def start(self, timeout: float = 10.0) -> "ServerThread":
        started: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                if self._server is None:
                    self._server = EmulatedApiServer(**self._server_kwargs)
                loop.run_until_complete(self._server.start())
            except BaseException as exc:              # noqa: BLE001 - reported to the starting thread
                started.set_exception(exc)
                loop.close()
                return
            started.set_result(None)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="emulated-apiserver", daemon=True)
        self._thread.start()
        started.result(timeout)
        return self

    def call(self, fn: Callable[..., Awaitable[T]] | Callable[..., T], *args: Any, timeout: float = 30.0) -> T:
        """Run `fn(*args)` on the server's loop (a coroutine function or a plain one) and return its result."""
        async def runner() -> T:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result                              # type: ignore[return-value]
        return asyncio.run_coroutine_threadsafe(runner(), self.loop).result(timeout)

    def write_kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        return self.server.write_kubeconfig(path, namespace)

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is None or self._thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
