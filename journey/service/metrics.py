"""Prometheus text exposition (format 0.0.4), written by hand: a few counters and histograms
need no client library.

Process-local instruments (requests, query latency, waits, stale answers) live here; the
figures that belong to the log and the store (positions, lag, dead letters) are read when
``/metrics`` is scraped and passed to :func:`render` as :class:`Sample` rows.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["Counter", "Histogram", "Metric", "Sample", "ServiceMetrics", "render"]

Labels = tuple[tuple[str, str], ...]

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


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: Labels = ()) -> str:
    items = (*labels, *extra)
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


@dataclass(frozen=True)
class Sample:
    """One gauge or counter value read at scrape time."""

    name: str
    kind: str  # gauge or counter
    help: str
    value: float
    labels: Labels = ()


class Metric:
    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._lock = threading.Lock()

    def lines(self) -> list[str]:
        raise NotImplementedError


class Counter(Metric):
    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self._values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(tuple(sorted(labels.items())), 0.0)

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            for labels, value in sorted(self._values.items()):
                out.append(f"{self.name}{_labels(labels)} {_number(value)}")
        return out


@dataclass
class _Series:
    buckets: list[int]
    total: float = 0.0
    count: int = 0


class Histogram(Metric):
    def __init__(
        self, name: str, help_text: str, buckets: Sequence[float] = LATENCY_BUCKETS
    ) -> None:
        super().__init__(name, help_text)
        self.bounds = tuple(sorted(buckets))
        self._series: dict[Labels, _Series] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series([0] * len(self.bounds))
            for i, bound in enumerate(self.bounds):
                if value <= bound:
                    series.buckets[i] += 1
            series.total += value
            series.count += 1

    def count(self, **labels: str) -> int:
        with self._lock:
            series = self._series.get(tuple(sorted(labels.items())))
            return series.count if series else 0

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            for labels, s in sorted(self._series.items()):
                for bound, n in zip(self.bounds, s.buckets, strict=True):
                    le = (("le", _number(bound)),)
                    out.append(f"{self.name}_bucket{_labels(labels, le)} {n}")
                out.append(f"{self.name}_bucket{_labels(labels, (('le', '+Inf'),))} {s.count}")
                out.append(f"{self.name}_sum{_labels(labels)} {_number(s.total)}")
                out.append(f"{self.name}_count{_labels(labels)} {s.count}")
        return out


@dataclass
class ServiceMetrics:
    """The instruments of one service instance."""

    requests: Counter = field(
        default_factory=lambda: Counter(
            "journey_http_requests_total", "HTTP requests answered, by route and status"
        )
    )
    query_latency: Histogram = field(
        default_factory=lambda: Histogram(
            "journey_query_duration_seconds",
            "Time to answer a request (freshness wait included), by route",
        )
    )
    freshness_wait: Histogram = field(
        default_factory=lambda: Histogram(
            "journey_freshness_wait_seconds",
            "Time answers waited for the view to reach their token or the log head, by basis",
        )
    )
    not_fresh: Counter = field(
        default_factory=lambda: Counter(
            "journey_not_fresh_answers_total",
            "Answers whose wait hit the bound (503, or 200 fresh:false when stale was allowed)",
        )
    )
    emitted: Counter = field(
        default_factory=lambda: Counter(
            "journey_http_emitted_total", "Touchpoints produced through POST /events"
        )
    )

    def instruments(self) -> list[Metric]:
        return [
            self.requests,
            self.query_latency,
            self.freshness_wait,
            self.not_fresh,
            self.emitted,
        ]


def render(instruments: Iterable[Metric], samples: Iterable[Sample]) -> str:
    """The exposition text: scrape-time samples grouped by name, then the instruments."""
    out: list[str] = []
    grouped: dict[str, list[Sample]] = {}
    for sample in samples:
        grouped.setdefault(sample.name, []).append(sample)
    for name, rows in grouped.items():
        out.append(f"# HELP {name} {rows[0].help}")
        out.append(f"# TYPE {name} {rows[0].kind}")
        out.extend(f"{name}{_labels(r.labels)} {_number(r.value)}" for r in rows)
    for metric in instruments:
        out.extend(metric.lines())
    return "\n".join(out) + "\n"
