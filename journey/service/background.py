"""The pipeline (runner + promise keeper) on a background thread of the serving process.

``journey serve`` = ``journey run`` + the HTTP service: the runner folds the log into the
store and pokes the freshness watcher after every batch, so a waiting request is answered
as soon as its position is committed. It can be paused (tests stall it on purpose to prove
that a lagging view is reported, never passed off as fresh) and it survives a broker that
goes away: the error is logged, counted, shown on /healthz, and the loop tries again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from journey.pipeline import Pipeline

__all__ = ["PipelineThread"]

logger = structlog.get_logger(__name__)


class PipelineThread:
    def __init__(
        self,
        pipeline: Pipeline,
        *,
        on_progress: Callable[[], None] = lambda: None,
        keeper_interval_s: float = 1.0,
        retry_after_s: float = 1.0,
    ) -> None:
        self.pipeline = pipeline
        self.on_progress = on_progress
        self.keeper_interval_s = keeper_interval_s
        self.retry_after_s = retry_after_s
        self.errors = 0
        self.last_error: str | None = None
        self.failing = False  # the last step failed (cleared by the next good one)
        self._stop = threading.Event()
        self._running = threading.Event()  # set: may step; clear: paused
        self._running.set()
        self._step_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="journey-pipeline", daemon=True)

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._running.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def pause(self) -> None:
        """Stall the runner: once this returns no batch is being folded and none will be
        until :meth:`resume`."""
        self._running.clear()
        with self._step_lock:  # wait for a step in progress
            pass

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ work

    def _loop(self) -> None:
        runner, keeper = self.pipeline.runner, self.pipeline.keeper
        logger.info("pipeline thread started", topic=runner.topic, group=runner.group)
        next_tick = 0.0
        while not self._stop.is_set():
            if not self._running.wait(0.1):
                continue
            try:
                with self._step_lock:
                    if not self._running.is_set():
                        continue
                    folded = runner.step()
                    self.failing = False
                    if folded:
                        self.on_progress()
                    now = time.monotonic()
                    if now >= next_tick:
                        if keeper.tick():
                            self.on_progress()
                        next_tick = now + self.keeper_interval_s
            except Exception as exc:  # the service keeps answering (honestly stale) meanwhile
                self.errors += 1
                self.failing = True
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("pipeline step failed; retrying", error=self.last_error)
                self._stop.wait(self.retry_after_s)
        logger.info("pipeline thread stopped", applied=runner.stats.applied)
