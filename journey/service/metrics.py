"""The service's Prometheus metrics, through prometheus_client.

Each service instance has a registry of its own (several apps run in one test process; the
client's global registry would mix them). Process-local instruments (requests, query
latency, waits, stale answers, emits) are prometheus_client instruments; the figures that
belong to the log and the store (positions, lag, dead letters, the runner's counters, the
failing kind) are read when ``/metrics`` is scraped, by a collector that asks the service for
a :class:`Scrape`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CONTENT_TYPE",
    "FAILURE_KINDS",
    "PartitionFigures",
    "RequestMetrics",
    "RunnerFigures",
    "Scrape",
    "ServiceMetrics",
]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# Seconds: the freshness wait makes 1-10 ms the interesting range, the bound (2 s) the top.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

# Every kind journey_pipeline_failing reports, so an alert can watch a series that exists
# (0) before the failure it waits for (1).
FAILURE_KINDS = (
    "store_full",
    "store_locked",
    "store_io",
    "store_corrupt",
    "log_unavailable",
    "error",
)


@dataclass(frozen=True)
class PartitionFigures:
    topic: str
    partition: int
    position: int
    """Last offset folded into the view (-1: none)."""
    high_water_mark: int | None
    lag_events: int
    lag_seconds: float


@dataclass(frozen=True)
class RunnerFigures:
    """The counters of the runner in this process."""

    applied: int
    duplicates: int
    dead_letters: int
    errors: int


@dataclass(frozen=True)
class Scrape:
    """What /metrics reports from the log and the store, read at scrape time."""

    partitions: list[PartitionFigures]
    dead_letters: int
    dlq_topic: str
    runner: RunnerFigures | None
    runner_up: bool
    failing_kind: str | None


class _ScrapeCollector:
    """Turns a :class:`Scrape` read at collect time into metric families."""

    def __init__(self, scrape: Callable[[], Scrape]) -> None:
        self._scrape = scrape

    def collect(self) -> Iterator[Metric]:
        s = self._scrape()
        labels = ["topic", "partition"]
        folded = CounterMetricFamily(
            "journey_events_folded",
            "Messages of the partition folded into the view (offset + 1; by any runner)",
            labels=labels,
        )
        head = GaugeMetricFamily(
            "journey_log_high_water_mark",
            "Next offset of the partition, as last sampled",
            labels=labels,
        )
        lag_events = GaugeMetricFamily(
            "journey_view_lag_events",
            "Messages on the log the view has not folded yet",
            labels=labels,
        )
        lag_seconds = GaugeMetricFamily(
            "journey_view_lag_seconds",
            "How long the oldest message not yet folded has been on the log",
            labels=labels,
        )
        for p in s.partitions:
            values = [p.topic, str(p.partition)]
            folded.add_metric(values, p.position + 1)
            if p.high_water_mark is not None:
                head.add_metric(values, p.high_water_mark)
            lag_events.add_metric(values, p.lag_events)
            lag_seconds.add_metric(values, round(p.lag_seconds, 3))
        yield from (folded, head, lag_events, lag_seconds)

        dead = CounterMetricFamily(
            "journey_dead_letters",
            "Messages set aside to the dead-letter topic (recorded in the view's store)",
            labels=["topic"],
        )
        dead.add_metric([s.dlq_topic], s.dead_letters)
        yield dead

        if s.runner is not None:
            for name, value, text in (
                ("journey_runner_applied", s.runner.applied, "Touchpoints folded by this process"),
                ("journey_runner_duplicates", s.runner.duplicates, "Re-sent touchpoints ignored"),
                ("journey_runner_dead_letters", s.runner.dead_letters, "Dead letters produced"),
                ("journey_runner_errors", s.runner.errors, "Failed pipeline steps (retried)"),
            ):
                yield CounterMetricFamily(name, text, value=value)
        yield GaugeMetricFamily(
            "journey_runner_up",
            "1 when this process runs the pipeline and it is not failing",
            value=1 if s.runner_up else 0,
        )
        failing = GaugeMetricFamily(
            "journey_pipeline_failing",
            "1 while the pipeline is stopped at its last committed position by this kind of "
            "failure (retrying), else 0",
            labels=["kind"],
        )
        for kind in FAILURE_KINDS:
            failing.add_metric([kind], 1 if kind == s.failing_kind else 0)
        yield failing


class _WithoutCreated:
    """The registry without the ``_created`` series prometheus_client adds to counters and
    histograms: in the 0.0.4 text format they are only extra gauges per label set, which no
    dashboard of ours reads (switching them off in the client is process-wide)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            kept = copy.copy(family)
            kept.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield kept


class ServiceMetrics:
    """The instruments of one service instance, on a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "journey_http_requests",
            "HTTP requests answered, by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.query_latency = Histogram(
            "journey_query_duration_seconds",
            "Time to answer a request (freshness wait included), by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.freshness_wait = Histogram(
            "journey_freshness_wait_seconds",
            "Time answers waited for the view to reach their token or the log head, by basis",
            ["basis"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.not_fresh = Counter(
            "journey_not_fresh_answers",
            "Answers whose wait hit the bound (503, or 200 fresh:false when stale was allowed)",
            ["basis"],
            registry=self.registry,
        )
        self.emitted = Counter(
            "journey_http_emitted",
            "Touchpoints produced through POST /events",
            registry=self.registry,
        )

    def watch(self, scrape: Callable[[], Scrape]) -> None:
        """Report what ``scrape`` reads (called at every scrape, on the scraping thread)."""
        self.registry.register(_ScrapeCollector(scrape))

    def exposition(self) -> bytes:
        """The text exposition (format 0.0.4) of everything; runs the scrape (blocking)."""
        return generate_latest(_WithoutCreated(self.registry))


class RequestMetrics:
    """Pure ASGI middleware: request counts and query latency per route (time to the
    response head, so a live stream counts its set-up, not its lifetime)."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], ServiceMetrics | None]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                metrics = self.metrics()
                if metrics is not None:
                    route = getattr(scope.get("route"), "path", "(unmatched)")
                    metrics.requests.labels(route=route, status=str(message["status"])).inc()
                    metrics.query_latency.labels(route=route).observe(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, timed_send)
