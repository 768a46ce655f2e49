"""The running service: the log, the store it reads, the pipeline thread, and the freshness
protocol every route goes through (:meth:`Service.settle`)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import anyio
import anyio.to_thread
import structlog

from consumers.log import Log, LogError, Position, TopicPartition
from domain.envelope import Touchpoint
from domain.errors import JourneyError
from domain.rules import ServiceRules
from journey.emitter import Emitter
from journey.pipeline import Pipeline, system_clock
from journey.security.audit import AuditTrail, Lookup
from journey.security.keys import KeyStore, Principal
from journey.service.background import PipelineThread
from journey.service.freshness import (
    BadToken,
    Freshness,
    HeadTracker,
    PositionWatcher,
    Targets,
    describe,
    parse_tokens,
    reached,
)
from journey.service.metrics import PartitionFigures, RunnerFigures, Scrape, ServiceMetrics
from journey.service.reading import StoreReader
from journey.settings import Settings
from projections.customer_view import related_customers, resolve_customer
from projections.integrity import IntegrityWatch
from projections.keys import CustomerKeys
from projections.location import describe as describe_store
from projections.store import JourneyStore

__all__ = ["AuditUnavailable", "LogUnavailable", "NotFresh", "Service", "ServiceOptions"]

logger = structlog.get_logger(__name__)

R = TypeVar("R")


@dataclass(frozen=True)
class ServiceOptions:
    """How one service instance behaves (the CLI's `journey serve` options)."""

    max_wait_ms: int = 2000
    """Bound of every freshness wait; at the bound the answer is 503 (or fresh:false)."""
    run_pipeline: bool = True
    """Run the runner and the promise keeper in this process (False: `--no-runner`)."""
    group: str = "journey-views"
    keeper_interval_s: float = 1.0
    sample_interval_s: float = 1.0
    """How often the log's high-water marks are sampled for lag and /metrics."""
    live_interval_s: float = 1.0
    """How often a live stream (SSE) re-checks freshness when nothing was folded."""
    read_threads: int = 8
    """Concurrent store reads (below the store's connection pool of 15)."""
    integrity_interval_s: float = 600.0
    """How often the store's pages are checked (PRAGMA quick_check, O(size)) while serving,
    whatever the open's marker said; a read that meets a damaged page reports it at once."""


class NotFresh(JourneyError):
    """The view did not reach what the request needed within the bound."""

    def __init__(self, freshness: Freshness, message: str) -> None:
        super().__init__(message)
        self.freshness = freshness


async def drain_threads(limiters: Sequence[anyio.CapacityLimiter], timeout_s: float = 10.0) -> int:
    """Wait until no worker thread holds a token of these limiters (at most ``timeout_s``);
    returns how many were still busy at the deadline."""
    deadline = time.monotonic() + timeout_s
    while (busy := sum(int(lim.borrowed_tokens) for lim in limiters)) and (
        time.monotonic() < deadline
    ):
        await anyio.sleep(0.01)
    if busy:
        logger.warning("worker threads still busy at shutdown", threads=busy)
    return busy


class Service:
    """Everything one running instance holds. Created and closed by the app's lifespan."""

    def __init__(
        self,
        settings: Settings,
        options: ServiceOptions,
        *,
        rules: ServiceRules,
        clock: Callable[[], datetime] = system_clock,
        log: Log | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.rules = rules
        self.clock = clock
        self.topic = settings.topic
        self.max_wait_s = options.max_wait_ms / 1000
        self._own_log = log is None
        self.log: Log = log if log is not None else settings.open_log()
        self.metrics = ServiceMetrics()
        self.metrics.watch(self.scrape)
        self.heads = HeadTracker()
        self.closing = threading.Event()
        self.pipeline: Pipeline | None = None
        self.thread: PipelineThread | None = None
        # POST /events seals personal fields with the customers' keys (beside the store).
        self.customer_keys = CustomerKeys(settings.store_address())
        self.emitter = Emitter(
            self.log,
            topic=self.topic,
            source="http",
            partitions=settings.partitions,
            max_future=settings.max_future,
            keys=self.customer_keys,
        )
        self.partition_count = len(self.log.partitions(self.topic))
        if options.run_pipeline:
            # The pipeline creates (or opens) the store before the reader opens it.
            self.pipeline = Pipeline(
                self.log,
                settings.store_address(),
                topic=self.topic,
                rules=rules,
                clock=clock,
                group=options.group,
                partitions=settings.partitions,
                max_future=settings.max_future,
                allowed_lateness=timedelta(seconds=settings.allowed_lateness),
                idle_timeout=timedelta(seconds=settings.idle_timeout),
                relay_intake=True,
            )
        self.reader = StoreReader(settings.store_address())
        # Beside the store, not in it: a rebuild swaps the store (journey/security/keys.py).
        self.keys = KeyStore(settings.store_address())
        self.audit_trail = AuditTrail(self.log, settings.audit_topic, settings.partitions)
        self.integrity = IntegrityWatch(self.reader.path, options.integrity_interval_s)
        self.watcher = PositionWatcher(self.reader.positions)
        self._limiter: anyio.CapacityLimiter | None = None
        self._stopped_seen: float | None = None  # monotonic; see engine_stopped_for
        self._sampler: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        try:
            await anyio.to_thread.run_sync(self.audit_trail.ensure_topic)
        except LogError as exc:  # the broker is away: the first audited read tries again
            logger.warning("the audit topic could not be made yet", error=str(exc))
        self.watcher.start()
        self._limiter = anyio.CapacityLimiter(self.options.read_threads)
        await self.sample_heads()
        self._sampler = asyncio.create_task(self._sample_forever())
        if self.pipeline is not None:
            self.thread = PipelineThread(
                self.pipeline,
                on_progress=self.watcher.poke,
                keeper_interval_s=self.options.keeper_interval_s,
            )
            self.thread.start()
        logger.info(
            "query service started",
            log=self.log.url,
            topic=self.topic,
            store=describe_store(self.reader.path),
            runner="in process" if self.pipeline else "none (--no-runner)",
            max_wait_ms=self.options.max_wait_ms,
        )

    async def close(self) -> None:
        self.closing.set()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        await self.watcher.stop()
        if self.thread is not None:
            await anyio.to_thread.run_sync(self.thread.stop)
        if self.pipeline is not None:
            self.pipeline.close()
        # A request cancelled at shutdown (a client gone, a stream ended) leaves its worker
        # thread running: closing a SQLite connection under a thread still using it crashed
        # the process once. Wait for those threads before closing what they read.
        limiters = [anyio.to_thread.current_default_thread_limiter()]
        if self._limiter is not None:
            limiters.append(self._limiter)
        await drain_threads(limiters)
        self.reader.close()
        self.keys.close()
        self.customer_keys.close()
        if self._own_log:
            self.log.close()

    # ------------------------------------------------------------------ helpers

    async def read(self, fn: Callable[[JourneyStore], R]) -> R:
        """Run a store query on a worker thread (bounded: the store's pool is finite). The
        active store is looked up there too: on PostgreSQL that is a query, which must
        never hold up the event loop (and every other request) while the database is away."""
        return await anyio.to_thread.run_sync(lambda: fn(self.reader.get()), limiter=self._limiter)

    def partition_of(self, customer_id: str) -> int:
        return self.log.partition_for(self.topic, customer_id.encode())

    def all_partitions(self) -> set[int]:
        return set(range(self.partition_count))

    async def high_watermarks(self) -> dict[int, int]:
        marks = await anyio.to_thread.run_sync(self.log.high_watermarks, self.topic)
        self.heads.observe_all({TopicPartition(self.topic, p): m for p, m in marks.items()})
        return marks

    async def sample_heads(self) -> None:
        try:
            await self.high_watermarks()
        except JourneyError as exc:
            logger.warning("sampling the log's high-water marks failed", error=str(exc))

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(self.options.sample_interval_s)
            await self.sample_heads()
            if self.integrity.path != self.reader.path:  # a rebuild swapped in a new file
                self.integrity = IntegrityWatch(self.reader.path, self.integrity.interval_s)
            await anyio.to_thread.run_sync(self.integrity.check_if_due)

    def pipeline_problem(self) -> str | None:
        """Why answers cannot be fresh now: the store is damaged, or the in-process pipeline
        is stopped at its last committed position (None when neither)."""
        if self.integrity.problem:
            return self.integrity.problem
        if self.thread is not None and self.thread.failing:
            return self.thread.last_error
        return None

    def tokens(self, *texts: str | None) -> Targets | None:
        """Targets from ?after= and X-Journey-Position; BadToken when one is unusable."""
        return parse_tokens(*texts, topic=self.topic, partitions=self.partition_count)

    def customer_partitions(self, store: JourneyStore, key: str) -> tuple[str | None, set[int]]:
        """(customer id, partitions the answer depends on); unknown: (None, all).

        A customer id depends on the partitions of its merged view. Any other key (an
        e-mail, a phone, an order) depends on every partition: a fact on any customer's
        partition may give that identity to someone else."""
        cid = resolve_customer(store, key)
        if cid is None or cid != key:
            return cid, self.all_partitions()
        return cid, {self.partition_of(c) for c in related_customers(store, cid)}

    async def audit(
        self,
        who: Principal,
        customer_ids: Sequence[str],
        *,
        action: str,
        route: str,
        lookup: Lookup,
    ) -> None:
        """Append the audit record of a read before it is answered; AuditUnavailable (503,
        the read is not answered) when the log does not take it."""
        record = functools.partial(
            self.audit_trail.record,
            who,
            list(customer_ids),
            action=action,
            route=route,
            lookup=lookup,
        )
        try:
            await anyio.to_thread.run_sync(record)
        except LogError as exc:
            logger.error("audit record not written: the read is refused", error=str(exc))
            raise AuditUnavailable(
                f"the read was not answered: its audit record could not be written ({exc}). "
                "Retry when the log answers"
            ) from None

    async def emit(self, touchpoints: Sequence[Touchpoint]) -> list[Position]:
        """Produce validated touchpoints (on a worker thread: producing blocks until the
        broker acknowledged them); the head tracker learns the new positions at once."""
        positions = await anyio.to_thread.run_sync(self.emitter.emit_touchpoints, touchpoints)
        for pos in positions:
            self.heads.observe(pos.topic_partition, pos.offset + 1)
        return positions

    # ------------------------------------------------------------------ the protocol

    async def settle(
        self,
        tokens: Targets | None,
        partitions: set[int],
        *,
        budget_s: float | None = None,
        started: float | None = None,
    ) -> Freshness:
        """Wait (bounded) until the view reached the tokens, or without tokens the log's head
        of ``partitions`` read now; say how fresh it is. Never raises for staleness: the
        caller decides between 503 and fresh:false. ``budget_s`` (default: the whole bound)
        and ``started`` (loop time the answer began waiting) let one answer wait in steps."""
        loop = asyncio.get_running_loop()
        started = loop.time() if started is None else started
        budget = self.max_wait_s if budget_s is None else max(0.0, budget_s)
        if tokens is not None:
            basis, targets = "token", tokens
        else:
            basis = "head"
            try:
                marks = await self.high_watermarks()
            except LogError as exc:
                raise LogUnavailable(str(exc)) from None
            targets = {
                TopicPartition(self.topic, p): marks[p] - 1
                for p in partitions
                if marks.get(p, 0) > 0
            }
        ok, positions = await self._wait(targets, basis, budget)
        waited = loop.time() - started
        self.metrics.freshness_wait.labels(basis=basis).observe(waited)
        if not ok:
            self.metrics.not_fresh.labels(basis=basis).inc()
        return describe(
            topic=self.topic,
            partitions=partitions,
            targets=targets,
            positions=positions,
            heads=self.heads,
            fresh=ok,
            basis=basis,
            waited_s=waited,
        )

    async def _wait(
        self, targets: Targets, basis: str, budget: float
    ) -> tuple[bool, dict[TopicPartition, int]]:
        if self.pipeline_problem() is not None:
            # The pipeline is stopped: waiting the whole bound would only delay the 503.
            return await self.watcher.wait(targets, min(budget, 0.05))
        if basis != "token" or budget <= 0.05:
            return await self.watcher.wait(targets, budget)
        # A token past the end of the log would only time out: after a short while, look.
        ok, positions = await self.watcher.wait(targets, 0.05)
        if ok:
            return ok, positions
        try:
            marks = await self.high_watermarks()
        except LogError:
            marks = {}
        for tp, offset in sorted(targets.items()):
            end = marks.get(tp.partition)
            if end is not None and offset >= end and not reached(positions, {tp: offset}):
                raise BadToken(
                    f"position token {tp.topic}:{tp.partition}:{offset} is past the end of the "
                    f"log (partition {tp.partition} holds offsets below {end}): it was not "
                    "returned by this log"
                )
        return await self.watcher.wait(targets, budget - 0.05)

    async def settle_customer(
        self, key: str, tokens: Targets | None
    ) -> tuple[str | None, Freshness]:
        """Wait (bounded) as :meth:`settle`, then resolve ``key`` (a customer id or any
        identity) to the customer whose view answers it, and say how fresh that is.

        The key is resolved AFTER the wait: what the wait lets in may change whom it names
        (an IdentityLinked gives the e-mail to another customer, a link merges two). Before
        the wait it only says which partitions' heads to wait for when there is no token (an
        unknown key: all of them; a token is waited for whatever the key). If the customer
        resolved after the wait depends on partitions not waited for yet, the wait goes on
        for those, within the same bound; the set only grows, so this ends.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        _, partitions = await self.read(lambda s: self.customer_partitions(s, key))
        while True:
            freshness = await self.settle(
                tokens,
                partitions,
                budget_s=started + self.max_wait_s - loop.time(),
                started=started,
            )
            cid, needed = await self.read(lambda s: self.customer_partitions(s, key))
            if not freshness.fresh or needed <= partitions:
                return cid, freshness
            partitions = partitions | needed

    def snapshot(self, partitions: set[int]) -> Freshness:
        """Freshness now, against the last known head: no broker call, no wait."""
        targets: Targets = {}
        for p in partitions:
            tp = TopicPartition(self.topic, p)
            hwm = self.heads.high_water_mark(tp)
            if hwm:
                targets[tp] = hwm - 1
        positions = self.watcher.read()
        return describe(
            topic=self.topic,
            partitions=partitions,
            targets=targets,
            positions=positions,
            heads=self.heads,
            fresh=reached(positions, targets),
            basis="head",
            waited_s=0.0,
        )

    # ------------------------------------------------------------------ status

    def runner_state(self) -> str:
        if self.thread is None:
            return "disabled"
        if not self.thread.alive:
            return "stopped"
        return "paused" if self.thread.paused else "running"

    def engine_stopped_for(self) -> float | None:
        """Seconds since this process's engine stopped folding — paused, failing (the store
        or the broker) or dead; None while it runs, and when it runs in another process
        (``--no-runner``: this one cannot tell)."""
        thread = self.thread
        now = time.monotonic()
        if thread is not None and thread.paused and thread.paused_at is not None:
            return max(0.0, now - thread.paused_at)
        if thread is not None and thread.health.failing and thread.health.since is not None:
            return max(0.0, (datetime.now(UTC) - thread.health.since).total_seconds())
        stopped = self.integrity.problem is not None or (
            thread is not None and (thread.health.failing or not thread.alive)
        )
        if not stopped:
            self._stopped_seen = None
            return None
        # Since when is not recorded (a damaged store, a dead thread): since first seen.
        if self._stopped_seen is None:
            self._stopped_seen = now
        return now - self._stopped_seen

    def current_lag(self) -> tuple[int, float, dict[TopicPartition, tuple[int, int, float]]]:
        """(events, seconds, per partition (position, events, seconds)) from what is known
        (the last sample of the head); no broker call."""
        positions = self.reader.positions()
        rows: dict[TopicPartition, tuple[int, int, float]] = {}
        for p in sorted(self.all_partitions()):
            tp = TopicPartition(self.topic, p)
            pos = positions.get(tp, -1)
            events, seconds = self.heads.lag(tp, pos)
            rows[tp] = (pos, events, seconds)
        total = sum(r[1] for r in rows.values())
        worst = max((r[2] for r in rows.values()), default=0.0)
        return total, worst, rows

    def scrape(self) -> Scrape:
        """What /metrics reports from the log and the store (blocking: reads the store)."""
        _, _, rows = self.current_lag()
        partitions = [
            PartitionFigures(
                topic=tp.topic,
                partition=tp.partition,
                position=position,
                high_water_mark=self.heads.high_water_mark(tp),
                lag_events=events,
                lag_seconds=seconds,
            )
            for tp, (position, events, seconds) in rows.items()
        ]
        dead = self.reader.get().query("SELECT COUNT(*) FROM dead_letters")[0][0]
        thread = self.thread
        runner = None
        if thread is not None:
            stats = thread.pipeline.runner.stats
            runner = RunnerFigures(
                applied=stats.applied,
                duplicates=stats.duplicates,
                dead_letters=stats.dead_letters,
                errors=thread.errors,
            )
        failing = thread.health.kind if thread is not None and thread.failing else None
        return Scrape(
            partitions=partitions,
            dead_letters=int(dead),
            dlq_topic=self.settings.dlq_topic,
            runner=runner,
            runner_up=thread is not None and thread.alive and not thread.failing,
            failing_kind="store_corrupt" if self.integrity.problem else failing,
        )


class LogUnavailable(JourneyError):
    """The log (broker) did not answer: the service cannot say how fresh the view is."""


class AuditUnavailable(JourneyError):
    """A read's audit record could not be written, so the read is not answered."""
