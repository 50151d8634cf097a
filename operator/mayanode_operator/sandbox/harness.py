"""Runs the operator as a separate process against a kubeconfig, for end-to-end tests and the demo.

A separate process is what a cluster runs, and it can be killed at any instant, which the
crash-resume tests need.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class LoopThread:
    """An asyncio loop in a daemon thread, for async servers used from synchronous tests."""

    def __init__(self, name: str = "loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)

    def start(self) -> "LoopThread":
        self._thread.start()
        return self

    def call(self, coro: Coroutine[object, object, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def eventually(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.1,
               message: str | Callable[[], str] = "condition not met") -> T:
    """Poll `check` until it returns a truthy value (returned) or raises no AssertionError."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
            last_error = None
        except AssertionError as err:
            last_error = err
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (after {timeout:g}s)") from last_error
        time.sleep(interval)


class OperatorProcess:
    """`mayanode-operator run` in a child process, its log in a file."""

    def __init__(self, kubeconfig: Path | str, log_path: Path | str, *, namespaces: tuple[str, ...] = (),
                 extra_env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.kubeconfig = str(kubeconfig)
        self.log_path = Path(log_path)
        self.namespaces = namespaces
        self.extra_env = extra_env or {}
        self.extra_args = extra_args
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = None

    def start(self) -> "OperatorProcess":
        args = [sys.executable, "-m", "mayanode_operator.cli", "run", "--kubeconfig", self.kubeconfig,
                "--log-format", "json", *self.extra_args]
        for namespace in self.namespaces:
            args += ["--namespace", namespace]
        # Several operators may run side by side in tests: metrics only when a test asks for a port.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "MAYANODE_OPERATOR_METRICS_PORT": "0", **self.extra_env}
        env.pop("KUBECONFIG", None)
        self._log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, as a Deployment rollout would; SIGKILL if it does not exit in time."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        return self._finish()

    def kill(self) -> int | None:
        """SIGKILL: the crash case, no cleanup at all."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        return self._finish()

    def _finish(self) -> int | None:
        code = self._proc.returncode if self._proc else None
        if self._log:
            self._log.close()
            self._log = None
        self._proc = None
        return code

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
