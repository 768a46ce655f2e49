"""Shutdown waits for worker threads before closing the stores they read."""

from __future__ import annotations

import threading

import anyio
import anyio.to_thread

from journey.service.runtime import drain_threads


def test_drain_waits_for_a_busy_worker_thread() -> None:
    release = threading.Event()
    finished: list[str] = []

    def slow_read() -> None:
        release.wait(5)
        finished.append("read")

    async def main() -> int:
        limiter = anyio.CapacityLimiter(2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: anyio.to_thread.run_sync(slow_read, limiter=limiter))
            await anyio.sleep(0.05)  # the read has its thread
            threading.Timer(0.3, release.set).start()
            busy = await drain_threads([limiter], timeout_s=5)
            # Only now may the store close: the read must be over.
            assert finished == ["read"]
            return busy

    assert anyio.run(main) == 0


def test_drain_gives_up_at_its_deadline_and_says_how_many_are_busy() -> None:
    release = threading.Event()

    async def main() -> int:
        limiter = anyio.CapacityLimiter(2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: anyio.to_thread.run_sync(release.wait, 5, limiter=limiter))
            await anyio.sleep(0.05)
            busy = await drain_threads([limiter], timeout_s=0.1)
            release.set()
            return busy

    assert anyio.run(main) == 1
