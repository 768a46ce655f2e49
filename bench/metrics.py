"""`journey metrics` over a long embedded log beside a bare decode of it: rate and peak RSS.

    .venv/bin/python -m bench.metrics                      # 100,000 and 300,000 touchpoints
    .venv/bin/python -m bench.metrics --events 20000       # a smoke run

The log is ``journey.synthetic.service_journey`` spread over a year (cases, replies,
promises, repairs, reviews: what the metrics count), written once per size to a temporary
embedded log. Each step runs in a fresh process so its peak RSS is its own:

* ``decode``: a bare reader polls every message and decodes it as the engine does — the
  floor of anything that reads touchpoints;
* ``metrics``: ``journey.analytics.read`` (the fold of docs/metrics.md) and the figures
  overall and per week.

Prints touchpoints/s and peak RSS per step, and the fold's share of the decode rate.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["main"]

TOPIC = "journey.touchpoints"
START = datetime(2025, 1, 1, tzinfo=UTC)


def _peak_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _load(path: Path, events: int) -> None:
    from consumers.embedded_log import EmbeddedLog
    from consumers.log import OutgoingMessage
    from domain.envelope import encode
    from journey.synthetic import generate_touchpoints, service_journey

    touchpoints = generate_touchpoints(
        events, max(100, events // 35), seed=5, start=START, journey=service_journey,
        spread_days=365,
    )  # fmt: skip
    log = EmbeddedLog(str(path))
    log.ensure_topics([TOPIC], 6)
    for i in range(0, events, 5000):
        log.produce(
            TOPIC,
            [
                OutgoingMessage(
                    key=tp.customer_id.encode(),
                    value=encode(tp),
                    timestamp_ms=int(tp.occurred_at.timestamp() * 1000),
                )
                for tp in touchpoints[i : i + 5000]
            ],
        )
    log.close()


def _step(step: str, path: str, events: int) -> None:
    """One step, in this process; prints one JSON line."""
    from consumers.embedded_log import EmbeddedLog
    from domain.envelope import decode

    if step == "load":
        _load(Path(path), events)
        return

    log = EmbeddedLog(path)
    started = time.monotonic()
    if step == "decode":
        heads = log.high_watermarks(TOPIC)
        todo = {p: h for p, h in heads.items() if h}
        consumer = log.consumer(None, [TOPIC], on_assign=lambda tps: dict.fromkeys(tps, 0))
        n = 0
        while todo:
            for msg in consumer.poll(1.0, 2000):
                decode(msg.value)
                n += 1
                if msg.offset >= todo.get(msg.partition, 0) - 1:
                    todo.pop(msg.partition, None)
        consumer.close()
    else:
        from journey import analytics

        facts = analytics.read(log, START, START + timedelta(days=365), topic=TOPIC)
        analytics.metrics(facts, by="week", as_of=START + timedelta(days=400))
        n = facts.touchpoints
    seconds = time.monotonic() - started
    print(json.dumps({"step": step, "touchpoints": n, "seconds": round(seconds, 2),
                      "per_second": round(n / seconds), "peak_rss_mib": _peak_mib()}))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="*", default=[100_000, 300_000])
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        _step(args.step, args.log, args.events[0])
        return
    for events in args.events:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "log.db"
            rows = {}
            # every step in a fresh process: a child inherits its parent's peak RSS
            for step in ("load", "decode", "metrics"):
                out = subprocess.run(
                    [sys.executable, "-m", "bench.metrics", "--step", step, "--log", str(path),
                     "--events", str(events)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                if step != "load":
                    rows[step] = json.loads(out.stdout.strip().splitlines()[-1])
            share = rows["metrics"]["per_second"] / rows["decode"]["per_second"]
            for row in rows.values():
                print(json.dumps({"events": events, **row}))
            print(f"{events:,} touchpoints: metrics {rows['metrics']['per_second']:,}/s "
                  f"({share:.2f}x a bare decode at {rows['decode']['per_second']:,}/s), "
                  f"peak RSS {rows['metrics']['peak_rss_mib']} MiB "
                  f"(decode alone {rows['decode']['peak_rss_mib']} MiB)")  # fmt: skip


if __name__ == "__main__":
    main()
