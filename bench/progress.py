"""Progress lines for long steps, and the percentile summaries every figure uses."""

from __future__ import annotations

import statistics
import time

__all__ = ["PROGRESS_EVERY_S", "Progress", "percentile", "summary_ms"]

PROGRESS_EVERY_S = 3.0


class Progress:
    """Prints ``label: done/total pct rate/s`` at most every few seconds, and at the end.

    A step that prints nothing for minutes looks hung on a shared machine; one that prints
    every message drowns the figures."""

    def __init__(self, label: str, total: int | None, every_s: float = PROGRESS_EVERY_S) -> None:
        self.label, self.total, self.every_s = label, total, every_s
        self.started = self.last = time.monotonic()
        self.done = 0

    def __call__(self, done: int, total: int | None = None, *, final: bool = False) -> None:
        self.done = done
        if total:
            self.total = total
        now = time.monotonic()
        if not final and now - self.last < self.every_s:
            return
        self.last = now
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total:,} {100 * done / self.total:5.1f}%" if self.total else ""
        print(f"  {self.label}: {done:,}{of}  {rate:,.0f}/s  {elapsed:,.0f} s", flush=True)


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: with few samples p99 is the maximum)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary_ms(seconds: list[float]) -> dict[str, float | None]:
    """n, p50, p99, max and mean in milliseconds of samples given in seconds (None for
    each when there are no samples: JSON has no NaN)."""
    if not seconds:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }
