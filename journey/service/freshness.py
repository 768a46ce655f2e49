"""The freshness protocol (ARCHITECTURE decision 4): every answer says how fresh it is.

* A request may carry position tokens (``?after=`` or the ``X-Journey-Position`` header,
  comma-separated ``topic:partition:offset``): it is answered once the view has folded them
  (read-your-writes).
* Without a token the service reads the high-water marks of the partitions the answer
  depends on at request time and answers once the view has folded everything below them.
* Both waits are bounded. When the bound is hit the answer is not fresh: the caller decides
  (the HTTP layer answers 503 with the lag unless the client asked for stale data).

The wait is event-driven where it can be: the in-process runner pokes the
:class:`PositionWatcher` after every batch. One shared ticker also reads the store's
positions every 2 ms while anyone waits, so a store written by another process
(``journey serve --no-runner`` beside ``journey run``) is seen as quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping

import structlog
from pydantic import BaseModel, Field

from consumers.log import LogError, Position, TopicPartition
from domain.errors import JourneyError

__all__ = [
    "BadToken",
    "Freshness",
    "HeadTracker",
    "Lag",
    "PartitionLag",
    "PositionOut",
    "PositionWatcher",
    "Targets",
    "describe",
    "parse_tokens",
    "tokens_of",
]

logger = structlog.get_logger(__name__)

# Per partition: the offset that must be folded before the answer may be given.
Targets = dict[TopicPartition, int]


class BadToken(JourneyError):
    """A position token the client sent cannot be used (malformed, other topic, ...)."""


# ---------------------------------------------------------------------- the wire models


class PositionOut(BaseModel):
    topic: str
    partition: int
    offset: int = Field(description="Last offset of the partition folded into the view; -1: none")


class PartitionLag(BaseModel):
    topic: str
    partition: int
    position: int = Field(description="Last offset folded into the view (-1: none yet)")
    target: int | None = Field(
        description="Offset the request needed folded (its token, or the high-water mark - 1 "
        "read at request time); null when the partition did not matter to it"
    )
    high_water_mark: int | None = Field(
        description="Highest high-water mark the service has seen (the next offset to be "
        "written); null when not known yet"
    )
    events: int = Field(description="Messages on the log the view has not folded yet")
    seconds: float = Field(
        description="How long the oldest of those messages has been known to be on the log"
    )


class Lag(BaseModel):
    events: int = Field(description="Messages on the log not yet in the view (summed)")
    seconds: float = Field(description="Age of the oldest message not yet in the view (max)")
    partitions: list[PartitionLag]


class Freshness(BaseModel):
    """How fresh an answer is. Carried by every answer of the query service."""

    as_of: list[PositionOut] = Field(
        description="Positions the view had folded, for every partition the answer depends on"
    )
    as_of_token: str = Field(
        description="The same as a position token (usable as ?after= or X-Journey-Position)"
    )
    lag: Lag
    fresh: bool = Field(
        description="True when the view had folded everything the request asked for: its "
        "token(s), or else the high-water marks read when the request arrived"
    )
    basis: str = Field(description="'token' (read-your-writes) or 'head' (no token: log head)")
    waited_ms: float = Field(description="How long the answer waited for the view")


# ---------------------------------------------------------------------- tokens


def parse_tokens(*texts: str | None, topic: str, partitions: int | None) -> Targets | None:
    """Targets from comma-separated position tokens; None when no token was given.

    Raises :class:`BadToken` naming the token when one is malformed, names another topic or
    a partition the topic does not have.
    """
    targets: Targets = {}
    given = False
    for text in texts:
        if text is None:
            continue
        tokens = [t.strip() for t in text.split(",") if t.strip()]
        if not tokens:
            raise BadToken(f"position token {text!r} is empty: expected topic:partition:offset")
        given = True
        for token in tokens:
            try:
                pos = Position.parse(token)
            except LogError as exc:
                raise BadToken(str(exc)) from None
            if pos.topic != topic:
                raise BadToken(
                    f"position token {token!r} names topic {pos.topic!r}; this service folds "
                    f"{topic!r}"
                )
            if partitions is not None and pos.partition >= partitions:
                raise BadToken(
                    f"position token {token!r}: topic {topic!r} has partitions 0..{partitions - 1}"
                )
            tp = pos.topic_partition
            targets[tp] = max(targets.get(tp, -1), pos.offset)
    if not given:
        return None
    return targets


def tokens_of(positions: Iterable[Position]) -> str:
    """The highest position per partition as one comma-separated token."""
    best: dict[TopicPartition, int] = {}
    for pos in positions:
        best[pos.topic_partition] = max(best.get(pos.topic_partition, -1), pos.offset)
    return ",".join(f"{tp.topic}:{tp.partition}:{off}" for tp, off in sorted(best.items()))


# ---------------------------------------------------------------------- the log head


class HeadTracker:
    """What the service knows of the log's head, and since when.

    Per partition it keeps the high-water marks it has seen with the (monotonic) time each
    was first seen. "Seconds behind" for a partition is then the time since the service first
    knew of the oldest message the view has not folded: a lower bound, sampled every second
    and at every request that reads the head. Sources: the sampler, head reads of requests,
    tokens clients present and positions ``POST /events`` produced (a message exists once
    someone holds its position).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[TopicPartition, deque[tuple[int, float]]] = {}

    def observe(self, tp: TopicPartition, high_water_mark: int) -> None:
        now = self._clock()
        with self._lock:
            samples = self._seen.setdefault(tp, deque())
            if not samples or high_water_mark > samples[-1][0]:
                samples.append((high_water_mark, now))
                if len(samples) > 4096:  # a view stalled for very long: keep the oldest
                    del samples[1]

    def observe_all(self, marks: Mapping[TopicPartition, int]) -> None:
        for tp, hwm in marks.items():
            self.observe(tp, hwm)

    def high_water_mark(self, tp: TopicPartition) -> int | None:
        with self._lock:
            samples = self._seen.get(tp)
            return samples[-1][0] if samples else None

    def lag(self, tp: TopicPartition, position: int) -> tuple[int, float]:
        """(events, seconds) the view at ``position`` is behind the head known for ``tp``."""
        now = self._clock()
        with self._lock:
            samples = self._seen.get(tp)
            if not samples:
                return 0, 0.0
            # Samples the view has fully folded say nothing more about its lag.
            while len(samples) > 1 and samples[0][0] <= position + 1:
                samples.popleft()
            hwm, _ = samples[-1]
            events = max(0, hwm - (position + 1))
            if events == 0:
                return 0, 0.0
            first_seen = next(t for mark, t in samples if mark > position + 1)
            return events, max(0.0, now - first_seen)


# ---------------------------------------------------------------------- waiting


def reached(positions: Mapping[TopicPartition, int], targets: Mapping[TopicPartition, int]) -> bool:
    return all(positions.get(tp, -1) >= off for tp, off in targets.items())


class PositionWatcher:
    """Waits until the store has folded target positions, for any number of requests.

    One ticker task reads the store's positions every ``interval_s`` while anyone waits and
    wakes the waiters; :meth:`poke` (thread-safe, called by the in-process runner after each
    batch) makes it read at once.
    """

    def __init__(
        self, read: Callable[[], dict[TopicPartition, int]], interval_s: float = 0.002
    ) -> None:
        self._read = read
        self.interval_s = interval_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._waiters = 0
        self._ticker: asyncio.Task[None] | None = None
        self._tick: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None

    def start(self) -> None:
        """Bind to the running event loop (the app's lifespan calls this)."""
        self._loop = asyncio.get_running_loop()
        self._tick = asyncio.Event()
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Something was folded: look now. Safe from any thread."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(wake.set)

    def read(self) -> dict[TopicPartition, int]:
        self._positions = self._read()
        return self._positions

    async def wait(
        self, targets: Mapping[TopicPartition, int], timeout_s: float
    ) -> tuple[bool, dict[TopicPartition, int]]:
        """(reached, positions): returns as soon as every target is folded, or at the bound."""
        return await self.wait_until(lambda positions: reached(positions, targets), timeout_s)

    async def wait_until(
        self, done: Callable[[Mapping[TopicPartition, int]], bool], timeout_s: float
    ) -> tuple[bool, dict[TopicPartition, int]]:
        """(done, positions): as soon as ``done(positions)`` holds, or at the bound."""
        positions = self.read()
        if done(positions):
            return True, positions
        if timeout_s <= 0 or self._tick is None:
            return False, positions
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self._waiters += 1
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._run_ticker())
        try:
            while True:
                tick = self._tick
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False, self._positions
                try:
                    await asyncio.wait_for(tick.wait(), remaining)
                except TimeoutError:
                    return False, self._positions
                if done(self._positions):
                    return True, self._positions
        finally:
            self._waiters -= 1

    async def _run_ticker(self) -> None:
        assert self._wake is not None
        while self._waiters > 0:
            try:
                self.read()
            except Exception as exc:  # a failing read must not strand the waiters
                logger.warning("reading the store's positions failed", error=str(exc))
            old, self._tick = self._tick, asyncio.Event()
            if old is not None:
                old.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()

    async def stop(self) -> None:
        if self._ticker is not None and not self._ticker.done():
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker


# ---------------------------------------------------------------------- describing


def describe(
    *,
    topic: str,
    partitions: Iterable[int],
    targets: Mapping[TopicPartition, int],
    positions: Mapping[TopicPartition, int],
    heads: HeadTracker,
    fresh: bool,
    basis: str,
    waited_s: float,
) -> Freshness:
    """The freshness of an answer that depends on ``partitions`` of ``topic``."""
    tps = sorted({TopicPartition(topic, p) for p in partitions} | set(targets))
    as_of = [
        PositionOut(topic=tp.topic, partition=tp.partition, offset=positions.get(tp, -1))
        for tp in tps
    ]
    rows: list[PartitionLag] = []
    for tp in tps:
        position = positions.get(tp, -1)
        target = targets.get(tp)
        if target is not None:
            heads.observe(tp, target + 1)  # a position someone holds exists on the log
        events, seconds = heads.lag(tp, position)
        rows.append(
            PartitionLag(
                topic=tp.topic,
                partition=tp.partition,
                position=position,
                target=target,
                high_water_mark=heads.high_water_mark(tp),
                events=events,
                seconds=round(seconds, 3),
            )
        )
    return Freshness(
        as_of=as_of,
        as_of_token=",".join(f"{p.topic}:{p.partition}:{p.offset}" for p in as_of if p.offset >= 0),
        lag=Lag(
            events=sum(r.events for r in rows),
            seconds=max((r.seconds for r in rows), default=0.0),
            partitions=rows,
        ),
        fresh=fresh,
        basis=basis,
        waited_ms=round(waited_s * 1000, 3),
    )
