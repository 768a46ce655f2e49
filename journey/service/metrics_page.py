"""The console's metrics page: the period an agent chose, and the report's sections for it.

The figures are :mod:`journey.analytics`' (read from the log of record, as ``journey
metrics`` and ``journey report`` read them); the page shows the same sections as the report
file. Reading the log is the cost, so a period's result is kept while the log has not grown,
for at most a minute (promises fall due as time passes), and one read runs at a time; a read
that takes longer than a few seconds goes on in the background while the page says so and
reloads itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import anyio
import structlog
from markupsafe import Markup

from domain.errors import JourneyError
from journey.service.runtime import Service

__all__ = [
    "DEFAULT_WEEKS",
    "MAX_WEEKS",
    "PRESETS",
    "MetricsBusy",
    "MetricsCache",
    "MetricsRead",
    "metrics_period",
]

logger = structlog.get_logger(__name__)

PRESETS = ((4, "4 weeks"), (13, "13 weeks"), (26, "26 weeks"), (52, "52 weeks"))
DEFAULT_WEEKS = 4
MAX_WEEKS = 106  # two years of weekly bars (journey.report.gather.MAX_WEEKS)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def metrics_period(
    today: date, since: str | None, until: str | None, weeks: int | None
) -> tuple[datetime, datetime] | str:
    """The UTC period [start, end) asked for — from the day ``since`` through the day
    ``until`` (both included, as people say a period), or the last ``weeks`` weeks through
    today — or, in words, what is wrong with what was asked."""
    if not since and not until:
        end = today + timedelta(days=1)
        return _midnight(end - timedelta(weeks=weeks or DEFAULT_WEEKS)), _midnight(end)
    if not since or not until:
        return "Give both days: the first and the last day of the period."
    days: list[date] = []
    for name, text in (("from", since), ("to", until)):
        try:
            days.append(date.fromisoformat(text.strip()))
        except ValueError:
            return f"“{text}” ({name}) is not a day: write it as 2026-11-30."
    first, last = days
    if last < first:
        return "The period must end on or after the day it starts: pick a later “to” day."
    if (last - first).days >= MAX_WEEKS * 7:
        return f"Choose a period of at most {MAX_WEEKS} weeks (two years)."
    return _midnight(first), _midnight(last + timedelta(days=1))


@dataclass(frozen=True)
class MetricsRead:
    sections: Markup
    touchpoints: int
    read_at: datetime


class MetricsBusy(JourneyError):
    """Too many periods are being read at once."""


class MetricsCache:
    """The last few periods read, reused while the log's heads are unchanged and for at most
    ``ttl_s`` seconds; reads run one at a time, in a worker thread.

    A request waits ``wait_s`` for its period; a longer read (a year of a large log takes
    minutes) goes on in the background and :meth:`get` answers None meanwhile — the page
    says so and reloads itself — so no request hangs on it.
    """

    def __init__(
        self, *, ttl_s: float = 60.0, size: int = 8, wait_s: float = 5.0, max_pending: int = 4
    ) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self.wait_s = wait_s
        self.max_pending = max_pending
        self._items: OrderedDict[
            tuple[datetime, datetime], tuple[dict[int, int], float, MetricsRead]
        ] = OrderedDict()
        self._pending: dict[tuple[datetime, datetime], asyncio.Task[MetricsRead]] = {}
        self._lock = asyncio.Lock()

    def _fresh(self, key: tuple[datetime, datetime], heads: dict[int, int]) -> MetricsRead | None:
        hit = self._items.get(key)
        if hit is None or hit[0] != heads or time.monotonic() - hit[1] > self.ttl_s:
            return None
        self._items.move_to_end(key)
        return hit[2]

    async def get(self, service: Service, since: datetime, until: datetime) -> MetricsRead | None:
        """The period's figures, or None while they are still being read."""
        key = (since, until)
        heads = await service.high_watermarks()
        found = self._fresh(key, heads)
        if found is not None:
            return found
        task = self._pending.get(key)
        if task is None:
            if len(self._pending) >= self.max_pending:
                raise MetricsBusy(
                    f"{len(self._pending)} periods are being read from the log already: "
                    "try again in a minute"
                )
            task = asyncio.create_task(self._read(service, key, heads))
            task.add_done_callback(_log_failure)
            self._pending[key] = task
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.wait_s)
        except TimeoutError:
            return None

    async def _read(
        self, service: Service, key: tuple[datetime, datetime], heads: dict[int, int]
    ) -> MetricsRead:
        try:
            async with self._lock:  # one read at a time: each takes a core
                found = await anyio.to_thread.run_sync(_read, service, *key)
            self._items[key] = (heads, time.monotonic(), found)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return found
        finally:
            self._pending.pop(key, None)


def _log_failure(task: asyncio.Task[MetricsRead]) -> None:
    """A read nobody waited for any more still says why it failed (the next request for
    the period starts a new one)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.warning("metrics page could not read the log", error=str(exc))


def _read(service: Service, since: datetime, until: datetime) -> MetricsRead:
    from journey.analytics.export import store_resolver
    from journey.report import render_sections
    from journey.report.gather import gather

    started = time.monotonic()
    read_at = service.clock()
    data = gather(  # read as `journey metrics` reads: persons as the store merges them
        service.log,
        since,
        until,
        as_of=read_at,
        topic=service.topic,
        business_hours=service.rules.business_hours,
        resolve=store_resolver(service.reader.get()),
        max_future=service.settings.max_future,
    )
    logger.info(
        "metrics page read the log",
        since=since.isoformat(),
        until=until.isoformat(),
        touchpoints=data.touchpoints,
        seconds=round(time.monotonic() - started, 3),
    )
    return MetricsRead(render_sections(data), data.touchpoints, read_at)
