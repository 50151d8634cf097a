"""A work queue of objects to reconcile, in the manner of controller-runtime.

Why not kopf timers or daemons: both put kopf's finalizer on every object (deleting a MayaNode
would hang while the operator is down) and fire all at once on a large fleet. Here every
object has one due time; a key is never reconciled twice at once; a key added while its
reconcile runs is run again right after; failures back off per key; concurrency is bounded.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Worker = Callable[[Key], Awaitable[float | None]]
logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0


def jittered(seconds: float, fraction: float = 0.1, rand: Callable[[], float] = random.random) -> float:
    """Spread periodic work so a fleet's reconciles do not line up."""
    return max(0.0, seconds * (1 - fraction + 2 * fraction * rand()))


def backoff_delay(failures: int, base: float = 1.0) -> float:
    return min(MAX_BACKOFF_SECONDS, base * 2 ** max(0, failures - 1))


class WorkQueue(Generic[Key]):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, int, Key]] = []
        self._seq = itertools.count()
        self._running: set[Key] = set()
        self._rerun: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._changed = asyncio.Event()
        self.on_forget: Callable[[Key], None] | None = None     # e.g. drop the object's metric series

    def add(self, key: Key, delay: float = 0.0) -> None:
        """Reconcile `key` after `delay` seconds; an earlier due time already queued wins."""
        if key in self._running and delay <= 0:
            self._rerun.add(key)
            return
        due = self._clock() + max(0.0, delay)
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._seq), key))
        self._changed.set()

    def forget(self, key: Key) -> None:
        self._due.pop(key, None)
        self._rerun.discard(key)
        self._failures.pop(key, None)
        if self.on_forget is not None:
            self.on_forget(key)

    def __len__(self) -> int:
        return len(self._due)

    def pop_due(self) -> tuple[list[Key], float | None]:
        """Keys whose time has come (not running), and seconds until the next one (None: empty)."""
        now = self._clock()
        ready: list[Key] = []
        while self._heap:
            due, _, key = self._heap[0]
            if self._due.get(key) != due:          # superseded or forgotten entry
                heapq.heappop(self._heap)
                continue
            if due > now:
                return ready, due - now
            heapq.heappop(self._heap)
            del self._due[key]
            if key in self._running:
                self._rerun.add(key)
            else:
                ready.append(key)
        return ready, None

    async def run(self, worker: Worker[Key], *, concurrency: int) -> None:
        """Dispatch due keys to `worker` until cancelled; the worker returns the next delay or None."""
        slots = asyncio.Semaphore(concurrency)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                ready, wait = self.pop_due()
                for key in ready:
                    await slots.acquire()
                    self._running.add(key)
                    task = asyncio.create_task(self._work(worker, key, slots))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                self._changed.clear()
                if ready:
                    continue
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=wait)
                except TimeoutError:
                    pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _work(self, worker: Worker[Key], key: Key, slots: asyncio.Semaphore) -> None:
        delay: float | None
        try:
            delay = await worker(key)
            self._failures.pop(key, None)
        except asyncio.CancelledError:
            raise
        except Exception:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = backoff_delay(failures)
            logger.exception("reconcile of %s failed (%d in a row); retrying in %.0fs", key, failures, delay)
        finally:
            self._running.discard(key)
            slots.release()
        if key in self._rerun:
            self._rerun.discard(key)
            delay = 0.0
        if delay is not None:
            self.add(key, delay)
        self._changed.set()
