"""Where a one-process rebuild's resident memory goes at its end, step by step.

Runs the engine's rebuild (``consumers.rebuild.rebuild``, one process) with its last steps
wrapped: the folding, ``JourneyStore.complete()`` (each chunk of customers written and
let go), the timeline index's sorted build, the search index, and ``compact`` (VACUUM).
A thread samples ``VmRSS`` every 0.1 s; the report gives each step's RSS on entry, its
highest sample and on exit, SQLite's own allocations (``sqlite3_memory_used`` /
``_highwater``) and, from ``complete()`` on, what Python allocated (tracemalloc started
there, so the folding runs at full speed).

    python -m bench.rss_phases --broker kafka://127.0.0.1:19092 --topic shared.bench.1m \
        --store-dir /tmp/x

Prints one line per step, then ``result {json}``. A measuring aid, not part of
``make bench``: the wrappers change nothing the rebuild does.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _sqlite_lib() -> Any:
    import _sqlite3

    try:
        lib = ctypes.CDLL(_sqlite3.__file__)
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        lib.sqlite3_memory_highwater.restype = ctypes.c_int64
        lib.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
        return lib
    except (OSError, AttributeError):
        return None


class Phases:
    def __init__(self) -> None:
        self.phase = "fold"
        self.rows: list[dict[str, Any]] = []
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._sqlite = _sqlite_lib()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            rss = _rss_kib()
            self.peak[self.phase] = max(self.peak.get(self.phase, 0), rss)

    def sqlite_mib(self, reset: bool = False) -> tuple[float, float]:
        if self._sqlite is None:
            return (0.0, 0.0)
        used = self._sqlite.sqlite3_memory_used() / 2**20
        high = self._sqlite.sqlite3_memory_highwater(1 if reset else 0) / 2**20
        return round(used, 1), round(high, 1)

    def mark(self, what: str) -> None:
        rss = _rss_kib()
        self.peak[self.phase] = max(self.peak.get(self.phase, 0), rss)
        used, high = self.sqlite_mib(reset=True)
        py = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else (0, 0)
        if tracemalloc.is_tracing():
            tracemalloc.reset_peak()
        row = {
            "t": round(time.monotonic(), 2),
            "at": what,
            "phase_was": self.phase,
            "rss_mib": round(rss / 1024, 1),
            "phase_peak_mib": round(self.peak.get(self.phase, 0) / 1024, 1),
            "sqlite_used_mib": used,
            "sqlite_high_since_last_mib": high,
            "py_traced_mib": round(py[0] / 2**20, 1),
            "py_peak_since_last_mib": round(py[1] / 2**20, 1),
        }
        self.rows.append(row)
        print(json.dumps(row), flush=True)

    def enter(self, phase: str) -> None:
        self.mark(f"enter {phase}")
        self.phase = phase

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _wrap(
    owner: Any,
    name: str,
    phases: Phases,
    label: str,
    *,
    trace: bool = False,
    only_in: str | None = None,
) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if only_in is not None and phases.phase != only_in:
            return original(*args, **kwargs)
        if trace and not tracemalloc.is_tracing():
            tracemalloc.start()
        outer = phases.phase
        phases.enter(label)
        try:
            return original(*args, **kwargs)
        finally:
            phases.mark(f"leave {label}")
            phases.phase = outer

    setattr(owner, name, wrapped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--store-dir", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument(
        "--tracemalloc", action="store_true", help="trace Python's allocations from complete()"
    )
    args = parser.parse_args(argv)

    from consumers import open_log
    from consumers.rebuild import rebuild
    from journey.logs import configure_logging
    from journey.settings import Settings
    from projections import backends, store

    configure_logging("console", "warning")
    phases = Phases()
    _wrap(store.JourneyStore, "complete", phases, "complete", trace=args.tracemalloc)
    _wrap(store.JourneyStore, "compact", phases, "compact")
    _wrap(backends.SQLiteBackend, "timeline_wanted", phases, "timeline_index")
    _wrap(backends.SQLiteBackend, "index_search", phases, "search_index")
    # complete()'s chunks (the folding's writes go through record(), not here)
    _wrap(backends.Backend, "execute", phases, "chunk", only_in="complete")
    log = open_log(args.broker, partition_fetch_bytes=Settings().kafka_fetch_kib * 1024)
    started = time.monotonic()
    try:
        _, stats, _ = rebuild(
            log,
            args.store_dir / "views.db",
            topic=args.topic,
            dlq_topic=f"{args.topic}.dlq",
            batch_size=args.batch,
            processes=1,
        )
    finally:
        log.close()
    phases.mark("done")
    phases.stop()
    import resource

    print(
        "result",
        json.dumps(
            {
                "events": stats.processed,
                "seconds": round(time.monotonic() - started, 1),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "phase_peaks_mib": {k: round(v / 1024, 1) for k, v in phases.peak.items()},
            }
        ),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
