"""The whole pipeline in one object: emit → runner → store → keeper → views.

Used by `journey run`, the demo and the scenario tests, so they all exercise the same path.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import FrameType

import structlog

from consumers.intake import IntakeRelay
from consumers.keeper import DEFAULT_ALLOWED_LATENESS, DEFAULT_IDLE_TIMEOUT, PromiseKeeper
from consumers.log import Log, Position
from consumers.runner import Runner, RunnerStats
from consumers.supervisor import Supervisor
from domain.bounds import DEFAULT_MAX_FUTURE
from domain.envelope import Touchpoint
from domain.rules import ServiceRules
from journey.emitter import Emitter
from projections.customer_view import (
    CustomerView,
    Lookup,
    build_customer_view,
    lookup_customer,
    resolve_customer,
)
from projections.defect_outreach import DefectOutreach, build_defect_outreach
from projections.keys import CustomerKeys
from projections.service_levels import ServiceLevels, build_service_levels
from projections.store import JourneyStore, StoreAddress

__all__ = ["ManualClock", "Pipeline", "system_clock"]

logger = structlog.get_logger(__name__)


def system_clock() -> datetime:
    return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told: tests and time-lapse replays."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now


class Pipeline:
    def __init__(
        self,
        log: Log,
        store_path: StoreAddress,
        *,
        topic: str,
        rules: ServiceRules | None = None,
        clock: Callable[[], datetime] = system_clock,
        group: str = "journey-views",
        partitions: int = 6,
        max_future: timedelta = DEFAULT_MAX_FUTURE,
        allowed_lateness: timedelta = DEFAULT_ALLOWED_LATENESS,
        idle_timeout: timedelta | None = DEFAULT_IDLE_TIMEOUT,
        relay_intake: bool = False,
        cache_size: int | None = None,
        cache_weight: int | None = None,
    ) -> None:
        self.log = log
        self.topic = topic
        self.rules = rules or ServiceRules()
        self.clock = clock
        self.keys = CustomerKeys(store_path)
        self.emitter = Emitter(
            log,
            topic=topic,
            source="pipeline",
            partitions=partitions,
            max_future=max_future,
            keys=self.keys,
        )
        self.runner = Runner(
            log,
            store_path,
            keys=self.keys,
            topic=topic,
            dlq_topic=f"{topic}.dlq",
            group=group,
            max_future=max_future,
            cache_size=cache_size,
            cache_weight=cache_weight,
        )
        self.keeper = PromiseKeeper(
            log,
            lambda: self.runner.store,
            topic=topic,
            rules=self.rules,
            clock=clock,
            allowed_lateness=allowed_lateness,
            idle_timeout=idle_timeout,
            owned=self.runner.owned_partitions,
            keys=self.keys,
        )

        # Plain touchpoints from producers that cannot encrypt (kcat, other languages):
        # relayed from <topic>.intake to the log, sealed. `journey run` and `serve` relay.
        self.intake = (
            IntakeRelay(
                log,
                self.keys,
                topic=topic,
                dlq_topic=f"{topic}.dlq",
                group=f"{group}-intake",
                partitions=partitions,
                max_future=max_future,
            )
            if relay_intake
            else None
        )

    @property
    def store(self) -> JourneyStore:
        return self.runner.store

    def close(self) -> None:
        if self.intake is not None:
            self.intake.close()
        self.runner.close()
        self.keys.close()

    def emit(
        self, touchpoints: Sequence[Touchpoint], *, logged_at: datetime | None = None
    ) -> list[Position]:
        return self.emitter.emit_touchpoints(touchpoints, logged_at=logged_at)

    def catch_up(self, timeout_s: float = 120) -> RunnerStats:
        """Fold everything on the log, let the keeper record passed deadlines, fold those."""
        stats = self.runner.run_until_caught_up(timeout_s)
        if self.keeper.tick():
            stats = self.runner.run_until_caught_up(timeout_s)
        return stats

    def play(
        self,
        touchpoints: Sequence[Touchpoint],
        clock: ManualClock,
        end: datetime,
        *,
        arrivals: Sequence[datetime] | None = None,
        tick_every: timedelta | None = None,
    ) -> None:
        """Emit touchpoints as time passes, as they would have arrived live.

        Each touchpoint arrives at its ``arrivals`` time (default: its occurred_at; a late
        report arrives after it happened). Before a touchpoint arrives the clock moves on
        and the runner and the keeper catch up, as they would have meanwhile: at every
        arrival, or with ``tick_every`` at the last whole step before it (faster; the facts
        are the same, as the keeper decides by event time). At the end the clock moves to
        ``end`` and stays there for the idle timeout, so the wall clock decides what no
        touchpoint did.
        """
        times = list(arrivals) if arrivals is not None else [t.occurred_at for t in touchpoints]
        if len(times) != len(touchpoints):
            raise ValueError("one arrival time per touchpoint")
        for arrived, tp in sorted(zip(times, touchpoints, strict=True), key=lambda p: p[0]):
            at = arrived
            if tick_every is not None:
                step = tick_every.total_seconds()
                at = datetime.fromtimestamp(arrived.timestamp() // step * step, UTC)
            if at > clock.now:
                clock.set(at)
                self.catch_up()
            self.emit([tp], logged_at=arrived)  # logged when it arrived
        self.settle(max(end, clock.now), clock)

    def settle(self, end: datetime, clock: ManualClock) -> None:
        """Move the clock to ``end``, then past the idle timeout, folding what the keeper
        records on the way, until it records nothing more."""
        clock.set(end)
        self.catch_up()
        idle = self.keeper.idle_timeout or timedelta(0)
        for _ in range(10):
            clock.set(clock.now + idle)
            before = self.runner.stats.applied
            self.catch_up()
            if self.runner.stats.applied == before and not self.keeper.tick():
                return

    # ------------------------------------------------------------------ queries

    def customer(self, key: str, *, page: int = 1, page_size: int = 50) -> CustomerView | None:
        cid = resolve_customer(self.store, key)
        if cid is None:
            return None
        return build_customer_view(
            self.store, cid, rules=self.rules, now=self.clock(), page=page, page_size=page_size
        )

    def lookup(self, key: str) -> Lookup:
        """Whom ``key`` names: a customer, or the candidates when only claims hold it."""
        return lookup_customer(self.store, key)

    def service_levels(self, **filters: str | float | None) -> ServiceLevels:
        return build_service_levels(
            self.store,
            rules=self.rules,
            now=self.clock(),
            **filters,  # type: ignore[arg-type]
        )

    def defects(self) -> list[DefectOutreach]:
        return build_defect_outreach(self.store)

    # ------------------------------------------------------------------ serving

    def run(self, stop: threading.Event | None = None, keeper_interval_s: float = 1.0) -> None:
        """Run the runner and the promise keeper until SIGTERM/SIGINT (or ``stop``).

        A daemon: failures of the store or the broker stop it at the last committed
        position and it retries with backoff (see :mod:`consumers.supervisor`); only a
        signal ends it, after the batch in hand is recorded.
        """
        stop = stop or threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            logger.info("stopping", signal=signal.Signals(signum).name)
            stop.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
        supervisor = Supervisor(
            self.runner, self.keeper, intake=self.intake, keeper_interval_s=keeper_interval_s
        )
        supervisor.run(stop)
        logger.info("pipeline stopped", applied=self.runner.stats.applied)
