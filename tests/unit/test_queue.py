import asyncio

import pytest

from mayanode_operator.reconcile.queue import WorkQueue, backoff_delay, jittered


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_earliest_due_time_wins_and_order_is_by_due():
    clock = FakeClock()
    queue = WorkQueue(clock)
    queue.add("a", 10)
    queue.add("b", 5)
    queue.add("a", 1)
    queue.add("b", 50)          # later than what is queued: ignored
    assert queue.pop_due() == ([], 1)
    clock.now = 5
    assert queue.pop_due() == (["a", "b"], None)


def test_forget_drops_a_key():
    queue = WorkQueue(FakeClock())
    queue.add("a")
    queue.forget("a")
    assert queue.pop_due() == ([], None) and len(queue) == 0


@pytest.mark.parametrize("failures,expected", [(1, 1), (2, 2), (5, 16), (30, 300)])
def test_backoff(failures, expected):
    assert backoff_delay(failures) == expected


def test_jitter_bounds():
    assert jittered(100, 0.1, lambda: 0.0) == 90
    assert jittered(100, 0.1, lambda: 1.0) == pytest.approx(110)


async def test_one_reconcile_per_key_at_once_and_rerun_after_add():
    queue: WorkQueue[str] = WorkQueue()
    running = 0
    peak = 0
    calls = []
    release = asyncio.Event()

    async def worker(key):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        calls.append(key)
        if len(calls) == 1:
            queue.add("a")        # added while running: must run once more, after
            await release.wait()
        running -= 1
        return None

    queue.add("a")
    task = asyncio.create_task(queue.run(worker, concurrency=4))
    await asyncio.sleep(0.05)
    release.set()
    for _ in range(100):
        if len(calls) >= 2:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert calls == ["a", "a"] and peak == 1


async def test_failures_back_off_and_requeue():
    queue: WorkQueue[str] = WorkQueue()
    calls = []

    async def worker(key):
        calls.append(key)
        raise RuntimeError("boom")

    queue.add("a")
    task = asyncio.create_task(queue.run(worker, concurrency=1))
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert calls == ["a"]                  # the next try waits for the 1 s backoff
    assert len(queue) == 1
