"""Where emit → visible goes: the `journey run` loop's steps timed one by one, and each
probe's latency split by what the loop was doing while the probe waited.

py-spy says where the loop's time goes on average; a p99 is made of rare long waits, which
an average hides. This runs `journey run` with its loop's steps wrapped in timers (the
runner's poll and each partition's fold and commit, the checkpoint, the group's offset
commit, the keeper's tick and its high-water-mark look-up, the intake relay, the progress
report, the garbage collector's passes), writes every span at exit, and then splits each
probe of ``bench.live_latency --turns`` over them:

    python -m bench.live_latency --probes 400 --turns /tmp/turns      # runs and splits
    python -m bench.turns split /tmp/turns                            # splits again

A probe's time from its emit to its partition's commit is cut where the loop was: before
the poll that returned it (what ran meanwhile, by span), in that poll, folding the other
partitions of the same poll first, and folding and committing its own. The timers cost a
few microseconds a span, measured beside the same run without them (``--turns`` off).
"""

from __future__ import annotations

import atexit
import functools
import gc
import json
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["install", "split"]

# name, start (wall clock, s), duration (s), detail
Span = tuple[str, float, float, Any]
_SPANS: list[Span] = []
_MAIN = threading.main_thread()


def _timed(name: str, fn: Callable[..., Any], detail: Callable[..., Any] | None = None) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start, t0 = time.time(), time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            # A step on another thread (the store's checkpoints) does not hold the loop up.
            label = name if threading.current_thread() is _MAIN else f"{name} (own thread)"
            _SPANS.append(
                (label, start, time.perf_counter() - t0, detail(*args) if detail else None)
            )

    return wrapper


def _patch(owner: Any, attr: str, name: str, detail: Callable[..., Any] | None = None) -> None:
    setattr(owner, attr, _timed(name, getattr(owner, attr), detail))


def install(out: Path) -> None:
    """Wrap the loop's steps in timers; write the spans to ``out`` when the process ends."""
    from eventsourcing.sqlite import SQLiteConnection

    from consumers.intake import IntakeRelay
    from consumers.kafka_log import KafkaConsumerAdapter, KafkaLog
    from consumers.keeper import PromiseKeeper
    from consumers.runner import Runner
    from consumers.supervisor import Supervisor
    from projections.backends import _Datastore
    from projections.due import DueClocks
    from projections.store import JourneyStore

    _patch(Supervisor, "turn", "turn")
    _patch(Supervisor, "_report_progress", "progress")
    _patch(Runner, "commit_offsets", "group commit")
    _patch(
        Runner,
        "_process_partition",
        "fold",
        lambda _self, tp, batch: (tp.topic, tp.partition, batch[-1].offset, len(batch)),
    )
    _patch(KafkaConsumerAdapter, "poll", "poll")
    _patch(KafkaLog, "high_watermarks", "high-water marks")
    _patch(PromiseKeeper, "tick", "keeper tick")
    _patch(JourneyStore, "positions", "store positions")
    _patch(JourneyStore, "partition_clocks", "partition clocks")
    _patch(DueClocks, "due", "due clocks")
    _patch(IntakeRelay, "step", "intake")
    _patch(_Datastore, "checkpoint", "checkpoint")
    _patch(SQLiteConnection, "commit", "sqlite commit")

    started: dict[int, tuple[float, float]] = {}

    def on_gc(phase: str, info: dict[str, int]) -> None:
        gen = info["generation"]
        if phase == "start":
            started[gen] = (time.time(), time.perf_counter())
        elif gen in started:
            wall, t0 = started.pop(gen)
            _SPANS.append((f"gc gen{gen}", wall, time.perf_counter() - t0, None))

    gc.callbacks.append(on_gc)

    def write() -> None:
        out.write_text(json.dumps(_SPANS))

    atexit.register(write)


# --------------------------------------------------------------------------- split


def _q(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def split(spans_file: Path, probes_file: Path, *, tail: float = 0.95) -> dict[str, Any]:
    """Each probe's latency cut by where the loop was; the tail's (probes at or above the
    ``tail`` quantile) summed by cause. Prints and returns the figures."""
    spans: list[Span] = [(s[0], s[1], s[2], s[3]) for s in json.loads(spans_file.read_text())]
    probes = json.loads(probes_file.read_text())
    first = min((s[1] for s in spans), default=0.0)
    by_name: dict[str, list[float]] = defaultdict(list)
    for name, _, dur, _ in spans:
        by_name[name].append(dur)
    span_s = (max(s[1] + s[2] for s in spans) - first) if spans else 0.0
    print(f"spans over {span_s:.0f} s of `journey run`:")
    print(f"  {'step':<18}{'count':>8}{'share':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    steps: dict[str, dict[str, float]] = {}
    for name, durs in sorted(by_name.items(), key=lambda kv: -sum(kv[1])):
        row = {
            "count": len(durs),
            "share": sum(durs) / span_s if span_s else 0.0,
            "p50_ms": _q(durs, 0.5) * 1000,
            "p99_ms": _q(durs, 0.99) * 1000,
            "max_ms": max(durs) * 1000,
        }
        steps[name] = row
        print(
            f"  {name:<18}{row['count']:>8}{row['share']:>8.1%}{row['p50_ms']:>9.1f}"
            f"{row['p99_ms']:>9.1f}{row['max_ms']:>9.1f}"
        )
    folds = sorted((s for s in spans if s[0] == "fold"), key=lambda s: s[1])
    polls = sorted((s for s in spans if s[0] == "poll"), key=lambda s: s[1])
    # What can hold the loop up between a probe's emit and the poll that returns it.
    causes = [
        s for s in spans if s[0] not in ("turn", "sqlite commit") and "own thread" not in s[0]
    ]
    cuts: list[dict[str, float]] = []
    for probe in probes:
        t0, partition, offset, visible = (
            probe["t0"],
            probe["partition"],
            probe["offset"],
            probe["visible_s"],
        )
        fold = next(
            (f for f in folds if f[3][1] == partition and f[3][2] >= offset and f[1] + f[2] >= t0),
            None,
        )
        if fold is None:
            continue
        poll = next((p for p in reversed(polls) if p[1] <= fold[1]), None)
        if poll is None:
            continue
        poll_start, poll_end = poll[1], poll[1] + poll[2]
        cut: dict[str, float] = {"visible": visible}
        before = max(0.0, poll_start - t0)
        # Before the poll: by span overlapping [t0, poll_start] (nested spans count in
        # each: a keeper tick's high-water marks inside its tick).
        for name, start, dur, _ in causes:
            lo, hi = max(start, t0), min(start + dur, poll_start)
            if hi > lo:
                key = f"before: {name}"
                cut[key] = cut.get(key, 0.0) + hi - lo
        cut["before the poll"] = before
        cut["in its poll"] = max(0.0, poll_end - max(poll_start, t0))
        cut["other partitions first"] = max(0.0, fold[1] - poll_end)
        cut["its fold + commit"] = fold[2]
        cuts.append(cut)
    if not cuts:
        print("no probe matched a fold")
        return {"steps": steps}
    threshold = _q([c["visible"] for c in cuts], tail)
    worst = [c for c in cuts if c["visible"] >= threshold]
    keys = sorted({k for c in cuts for k in c if k != "visible"})
    print(
        f"\n{len(cuts)} probes: visible p50 {_q([c['visible'] for c in cuts], 0.5) * 1000:.1f}"
        f" ms, p{tail * 100:.0f} {threshold * 1000:.1f} ms; mean ms per probe, all and the"
        f" {len(worst)} at or above p{tail * 100:.0f}:"
    )
    table: dict[str, dict[str, float]] = {}
    for key in sorted(keys, key=lambda k: -sum(c.get(k, 0.0) for c in worst)):
        every = statistics.fmean(c.get(key, 0.0) for c in cuts) * 1000
        tail_mean = statistics.fmean(c.get(key, 0.0) for c in worst) * 1000
        table[key] = {"all_ms": every, "tail_ms": tail_mean}
        print(f"  {key:<34}{every:>9.1f}{tail_mean:>9.1f}")
    return {
        "steps": steps,
        "probes": len(cuts),
        "tail_threshold_ms": threshold * 1000,
        "split": table,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 2 and args[0] == "run":
        # python -m bench.turns run SPANS.json -- <journey arguments>
        out = Path(args[1])
        rest = args[2:]
        if rest and rest[0] == "--":
            rest = rest[1:]
        install(out)
        from journey.cli import main as journey_main

        sys.argv = ["journey", *rest]
        journey_main()
        return 0
    if len(args) == 2 and args[0] == "split":
        folder = Path(args[1])
        result = split(folder / "spans.json", folder / "probes.json")
        (folder / "split.json").write_text(json.dumps(result, indent=2))
        return 0
    print(__doc__.split("\n\n")[0], file=sys.stderr)
    print("usage: python -m bench.turns run SPANS.json -- ARGS | split FOLDER", file=sys.stderr)
    return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
