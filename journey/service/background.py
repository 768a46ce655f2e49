"""The pipeline (runner + promise keeper) on a background thread of the serving process.

``journey serve`` = ``journey run`` + the HTTP service: the runner folds the log into the
store and pokes the freshness watcher after every batch, so a waiting request is answered
as soon as its position is committed. It can be paused (tests stall it on purpose to prove
that a lagging view is reported, never passed off as fresh) and it survives a broker that
goes away or the store fails: the loop is :class:`consumers.supervisor.Supervisor`, the same as
`journey run`'s (stop at the last committed position, retry with backoff, say so on /healthz).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from consumers.supervisor import Health, Supervisor
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
        backoff_max_s: float = 5.0,
    ) -> None:
        self.pipeline = pipeline
        self.supervisor = Supervisor(
            pipeline.runner,
            pipeline.keeper,
            intake=pipeline.intake,
            keeper_interval_s=keeper_interval_s,
            backoff_max_s=backoff_max_s,
            on_progress=on_progress,
        )
        self._stop = threading.Event()
        self._running = threading.Event()  # set: may step; clear: paused
        self._running.set()
        self.paused_at: float | None = None
        """time.monotonic() when :meth:`pause` stalled the runner; None while it runs."""
        self._step_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="journey-pipeline", daemon=True)

    # ------------------------------------------------------------------ state

    @property
    def health(self) -> Health:
        return self.supervisor.health

    @property
    def failing(self) -> bool:
        return self.supervisor.health.failing

    @property
    def errors(self) -> int:
        return self.supervisor.health.failures_total

    @property
    def last_error(self) -> str | None:
        return self.supervisor.health.describe()

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
        self.paused_at = time.monotonic()

    def resume(self) -> None:
        self.paused_at = None
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ work

    def _loop(self) -> None:
        runner = self.pipeline.runner
        logger.info("pipeline thread started", topic=runner.topic, group=runner.group)
        while not self._stop.is_set():
            if not self._running.wait(0.1):
                continue
            with self._step_lock:
                if not self._running.is_set():
                    continue
                wait = self.supervisor.turn()
            if wait:
                self._stop.wait(wait)
        logger.info("pipeline thread stopped", applied=runner.stats.applied)
