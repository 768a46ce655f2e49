"""The supervised loop of the engine: runner steps and keeper ticks, failures and progress.

``journey run`` and the pipeline thread of ``journey serve`` both run this loop, so they
behave alike under failure:

* a step that fails leaves the runner seeking back to the store's positions (see
  :mod:`consumers.runner`); the loop waits with an exponential backoff (at most
  ``backoff_max_s``, so the pipeline resumes within seconds of the fault clearing) and tries
  again, forever: only a signal stops it;
* while it fails, :attr:`Supervisor.health` says so — what kind of failure, since when, how
  many attempts — and stays failing until a batch was recorded again or the store has every
  message on the log (an empty poll right after a seek proves nothing);
* the log gets one line when a failure starts, one a minute while it lasts, and one when it
  ends, never a line per attempt;
* while the store is behind the log, a progress line every ``progress_interval_s``:
  position, lag, rate and the time to catch up.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from consumers.intake import IntakeRelay
from consumers.keeper import PromiseKeeper
from consumers.log import LogError
from consumers.runner import Runner
from projections.integrity import REMEDY, StoreCorrupt, is_corruption
from projections.location import StoreUnreachable

__all__ = ["Health", "Supervisor", "classify_failure"]

logger = structlog.get_logger(__name__)


def classify_failure(exc: BaseException) -> str:
    """A short kind for health and metrics: store_corrupt, store_full, store_locked, store_io,
    log_unavailable or error (anything else: a bug, retried all the same)."""
    text = str(exc).lower()
    if isinstance(exc, StoreCorrupt) or is_corruption(exc):
        return "store_corrupt"
    if "disk is full" in text or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
        return "store_full"
    if "database is locked" in text or "database table is locked" in text:
        return "store_locked"
    if isinstance(exc, LogError):
        return "log_unavailable"
    if isinstance(exc, StoreUnreachable | OSError):
        return "store_io"
    # By name, through the class tree: the database drivers' errors (sqlite3, psycopg and
    # its pool, eventsourcing's wrappers) without importing a driver that is not installed.
    names = {k.__name__ for k in type(exc).__mro__}
    if names & {"OperationalError", "DatabaseError", "InterfaceError"}:
        return "store_io"
    return "error"


@dataclass(frozen=True)
class Health:
    """The loop's state as last seen; immutable, so any thread may read it."""

    failing: bool = False
    kind: str | None = None
    reason: str | None = None
    since: datetime | None = None
    attempts: int = 0
    failures_total: int = 0

    def describe(self) -> str | None:
        if not self.failing:
            return None
        since = self.since.isoformat(timespec="seconds") if self.since else "?"
        return f"{self.kind}: {self.reason} (failing since {since}, {self.attempts} attempt(s))"


class Supervisor:
    def __init__(
        self,
        runner: Runner,
        keeper: PromiseKeeper | None,
        *,
        intake: IntakeRelay | None = None,
        keeper_interval_s: float = 1.0,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        progress_interval_s: float = 5.0,
        repeat_log_s: float = 60.0,
        on_progress: Callable[[], None] = lambda: None,
    ) -> None:
        self.runner = runner
        self.keeper = keeper
        self.intake = intake
        self._next_relay = 0.0
        # The relay starts once the runner holds partitions and has drained them: joining
        # the intake's group can hold this thread for a rebalance, and the views' freshness
        # at start-up must not wait on it.
        self._relay_ready = False
        self.keeper_interval_s = keeper_interval_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.progress_interval_s = progress_interval_s
        self.repeat_log_s = repeat_log_s
        self.on_progress = on_progress
        self.health = Health()
        self._backoff = backoff_initial_s
        self._next_tick = 0.0
        self._last_logged = 0.0
        self._failing_since_mono = 0.0
        self._progress_at = time.monotonic()
        self._progress_applied = 0
        self._behind = False
        self._source: str | None = None  # what is failing: "runner", "keeper" or "intake"

    # ------------------------------------------------------------------ one turn

    def turn(self) -> float:
        """One runner step (and a keeper tick when due). Returns how long to wait before
        the next turn: 0 while there is work, the backoff after a failure of the runner.

        A failure of the keeper does not stop the runner (it keeps folding), but it makes
        health fail too, and the keeper waits its own backoff before it tries again."""
        try:
            folded = self.runner.step()
            # A runner failure clears only by real progress of what failed: the partition
            # whose batch failed was recorded since, or nothing at all is behind.
            progressed = folded and self.runner.stuck is None
            if self._source == "runner" and (progressed or (not folded and self._caught_up())):
                self._recovered()
            if folded:
                self.on_progress()
            elif not self._relay_ready and self.intake is not None:
                self._relay_ready = bool(self.runner.owned_partitions())
        except Exception as exc:
            return self._failed(exc, "runner")
        now = time.monotonic()
        runner_failing = self.health.failing and self._source == "runner"
        if self.keeper is not None and now >= self._next_tick and not runner_failing:
            try:
                if self.keeper.tick():
                    self.on_progress()
            except Exception as exc:
                self._next_tick = now + self._failed(exc, "keeper")
            else:
                self._next_tick = now + self.keeper_interval_s
                if self._source == "keeper":
                    self._recovered()
        if (
            self.intake is not None
            and self._relay_ready
            and now >= self._next_relay
            and not runner_failing
        ):
            # The intake relay, like the keeper, fails on its own: the runner keeps folding.
            # It takes what has arrived without waiting: the loop is one thread, and a wait
            # on an empty intake held up every next runner poll (under 1,000/s of load, 28 %
            # of the loop's time and most of emit -> visible). The runner's poll paces it.
            try:
                if self.intake.step(wait=False):
                    self.on_progress()
            except Exception as exc:
                self._next_relay = now + self._failed(exc, "intake")
            else:
                if self._source == "intake":
                    self._recovered()
        if now - self._progress_at >= self.progress_interval_s:
            try:
                self._report_progress(now)
            except Exception as exc:  # a report is no reason to stop; the next step will tell
                logger.debug("progress report failed", error=str(exc))
        return 0.0

    def run(self, stop: threading.Event, *, paused: Callable[[], bool] = lambda: False) -> None:
        """Turn until ``stop`` is set."""
        while not stop.is_set():
            if paused():
                stop.wait(0.05)
                continue
            wait = self.turn()
            if wait:
                stop.wait(wait)

    # ------------------------------------------------------------------ failure

    def _failed(self, exc: Exception, source: str) -> float:
        kind = classify_failure(exc)
        reason = f"{type(exc).__name__}: {exc}"
        if kind == "store_corrupt" and REMEDY not in reason:
            reason += f"; {REMEDY}"
        now = time.monotonic()
        h = self.health
        if not h.failing:
            self._failing_since_mono = now
            self._backoff = self.backoff_initial_s
        self.health = Health(
            failing=True,
            kind=kind,
            reason=reason,
            since=h.since if h.failing else datetime.now(UTC),
            attempts=h.attempts + 1 if h.failing else 1,
            failures_total=h.failures_total + 1,
        )
        first = not h.failing or h.kind != kind or self._source != source
        self._source = source
        if first or now - self._last_logged >= self.repeat_log_s:
            self._last_logged = now
            logger.error(
                "pipeline stopped at the last committed position; retrying"
                if first
                else "pipeline still failing; retrying",
                kind=kind,
                error=reason,
                attempts=self.health.attempts,
                failing_for_s=round(now - self._failing_since_mono, 1),
                retry_in_s=round(self._backoff, 2),
                exc_info=kind == "error" and first,
            )
        wait = self._backoff
        self._backoff = min(self._backoff * 2, self.backoff_max_s)
        return wait

    def _recovered(self) -> None:
        h = self.health
        if not h.failing:
            return
        logger.info(
            "pipeline resumed",
            kind=h.kind,
            attempts=h.attempts,
            failed_for_s=round(time.monotonic() - self._failing_since_mono, 1),
        )
        self.health = Health(failures_total=h.failures_total)
        self._backoff = self.backoff_initial_s
        self._source = None

    def _caught_up(self) -> bool:
        return all(v <= 0 for v in self.runner.lag().values())

    # ------------------------------------------------------------------ progress

    def _report_progress(self, now: float) -> None:
        lag = self.runner.lag()
        behind = sum(max(v, 0) for v in lag.values())
        applied = self.runner.stats.processed
        rate = (applied - self._progress_applied) / max(now - self._progress_at, 1e-6)
        self._progress_at, self._progress_applied = now, applied
        if behind > 0:
            positions = self.runner.store.positions()
            logger.info(
                "catching up",
                lag_events=behind,
                events_per_s=round(rate, 1),
                eta_s=round(behind / rate, 1) if rate > 0 else None,
                positions={str(tp): positions.get(tp, -1) for tp in sorted(lag)},
            )
            self._behind = True
        elif self._behind:
            logger.info("caught up with the log", processed=applied)
            self._behind = False
