"""`make bench-export`: `journey export` of a long embedded log beside a bare read of it.

    .venv/bin/python -m bench.export                          # 1,000,000 touchpoints
    .venv/bin/python -m bench.export --events 20000           # a smoke run
    .venv/bin/python -m bench.export --formats parquet        # one format only

The log is the benchmark workload (``bench.workload``: ``journey.synthetic``'s customer
journeys, deterministic per seed, cached in bench/.cache) appended to an embedded log once.
Then each step runs in a fresh process, so its peak RSS is its own:

* ``read``: a bare reader (no group) polls every message to the end and does nothing with
  it: the floor of anything that reads the log;
* ``decode``: the same plus the engine's decoder (``domain.envelope.decode``: pydantic,
  upcasting, bounds), which every export row needs;
* ``export-<format>``: ``journey.analytics.export.export`` into a fresh Parquet dataset,
  DuckDB file or CSV file; its RSS is also sampled at every tenth of the way, so a memory
  that grew with the log would show.

Prints touchpoints/s and peak RSS per step beside the bare read, and writes them as JSON to
bench/results/export-<UTC timestamp>.json (``--results-dir``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.progress import Progress
from bench.workload import Shape, ensure_workload, read_batches

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "journey.touchpoints"
LOAD_BATCH = 5_000
MiB = 1024 * 1024


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / MiB, 1)


def size_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


# ---------------------------------------------------------------------- steps (child)


def _read(log_path: Path, decode: bool) -> dict[str, Any]:
    from consumers.embedded_log import EmbeddedLog
    from domain.envelope import decode as decode_one

    log = EmbeddedLog(str(log_path))
    ends = log.high_watermarks(TOPIC)
    total = sum(ends.values())
    consumer = log.consumer(None, [TOPIC])
    done = decoded = 0
    started = time.monotonic()
    try:
        while done < total:
            for msg in consumer.poll(1.0, 2000):
                done += 1
                if decode:
                    decode_one(msg.value)
                    decoded += 1
    finally:
        consumer.close()
        log.close()
    seconds = time.monotonic() - started
    return {"touchpoints": done, "seconds": round(seconds, 3), "per_s": round(done / seconds)}


def _export(log_path: Path, fmt: str, out: Path) -> dict[str, Any]:
    from consumers.embedded_log import EmbeddedLog
    from journey.analytics.export import export

    log = EmbeddedLog(str(log_path))
    samples: list[tuple[int, float]] = []
    next_tenth = [0]

    def progress(done: int, total: int) -> None:
        # RSS at every tenth of the way: flat memory shows as a flat line.
        if total and next_tenth[0] <= 10 and done * 10 >= next_tenth[0] * total:
            samples.append((done, rss_mib()))
            while next_tenth[0] <= 10 and done * 10 >= next_tenth[0] * total:
                next_tenth[0] += 1

    try:
        result = export(log, out, format=fmt, topic=TOPIC, progress=progress)  # type: ignore[arg-type]
    finally:
        log.close()
    return {
        "touchpoints": result.read,
        "rows": result.rows,
        "seconds": round(result.seconds, 3),
        "per_s": round(result.read / result.seconds),
        "rss_mib_at": samples,
        "out_bytes": size_bytes(out),
        "event_ids_bytes": size_bytes(out.with_name(out.name + ".event-ids.db")),
    }


def child(step: str, log_path: Path, out: Path | None) -> None:
    cpu = time.process_time()
    if step == "read":
        result = _read(log_path, decode=False)
    elif step == "decode":
        result = _read(log_path, decode=True)
    else:
        assert out is not None
        result = _export(log_path, step.removeprefix("export-"), out)
    result["peak_rss_mib"] = peak_rss_mib()
    # CPU seconds of the step (its imports included): on a shared machine the rate per CPU
    # second moves much less than the rate per wall-clock second.
    result["cpu_seconds"] = round(time.process_time() - cpu, 3)
    result["per_cpu_s"] = round(result["touchpoints"] / result["cpu_seconds"])
    result["load_average_at_end"] = round(os.getloadavg()[0], 2)  # the machine is shared
    print("result " + json.dumps(result), flush=True)


# ---------------------------------------------------------------------- driver


def _load(log_path: Path, workload_path: Path, events: int) -> None:
    """Append the workload to a fresh embedded log, unless it already holds it."""
    from consumers.embedded_log import EmbeddedLog
    from consumers.log import OutgoingMessage

    if log_path.exists():
        log = EmbeddedLog(str(log_path))
        try:
            if sum(log.high_watermarks(TOPIC).values()) == events:
                print(f"  log: {log_path} already holds {events:,} touchpoints")
                return
        finally:
            log.close()
        log_path.unlink()
    log = EmbeddedLog(str(log_path))
    report = Progress("appending to the embedded log", events)
    done = 0
    try:
        log.ensure_topics([TOPIC], 6)
        for batch in read_batches(workload_path, LOAD_BATCH):
            messages = [
                OutgoingMessage(key=json.loads(v)["customer_id"].encode(), value=v) for v in batch
            ]
            log.produce(TOPIC, messages)
            done += len(batch)
            report(done)
        report(done, final=True)
    finally:
        log.close()


def _run_step(step: str, log_path: Path, out: Path | None) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.export", "--step", step, "--log", str(log_path)]
    if out is not None:
        argv += ["--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JOURNEY_LOG_LEVEL": "warning"}
    print(f"  {step} ...", flush=True)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("result ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"step {step} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("result "))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--formats", default="parquet,duckdb,csv")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "bench" / ".cache")
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        child(args.step, args.log, args.out)
        return
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    print(f"bench-export: {args.events:,} touchpoints, formats {', '.join(formats)}", flush=True)
    shape = Shape.for_events(args.events)
    report = Progress("generating the workload", args.events)
    workload = ensure_workload(args.cache_dir, shape, args.seed, progress=report)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / f"log-{args.events}-{args.seed}.db"
    _load(log_path, workload.path, args.events)
    results: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(),
        "events": args.events,
        "customers": workload.customers,
        "log_bytes": size_bytes(log_path),
        "cpus": os.cpu_count(),
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }
    results["read"] = _run_step("read", log_path, None)
    results["decode"] = _run_step("decode", log_path, None)
    suffix = {"parquet": "parquet", "duckdb": "duckdb", "csv": "csv"}
    for fmt in formats:
        out = work / f"export.{suffix[fmt]}"
        for stale in (out, out.with_name(out.name + ".positions.json")):
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink(missing_ok=True)
        out.with_name(out.name + ".event-ids.db").unlink(missing_ok=True)
        results[f"export-{fmt}"] = _run_step(f"export-{fmt}", log_path, out)
    base = results["read"]["per_s"]
    base_cpu = results["read"]["per_cpu_s"]
    print(
        f"\n{'step':<16}{'touchpoints/s':>15}{'vs read':>9}{'seconds':>10}"
        f"{'per CPU s':>12}{'vs read':>9}{'peak RSS':>12}"
    )
    for name in ["read", "decode", *(f"export-{f}" for f in formats)]:
        r = results[name]
        print(
            f"{name:<16}{r['per_s']:>15,}{r['per_s'] / base:>8.2f}x{r['seconds']:>10.1f}"
            f"{r['per_cpu_s']:>12,}{r['per_cpu_s'] / base_cpu:>8.2f}x"
            f"{r['peak_rss_mib']:>9.1f} MiB"
        )
    for fmt in formats:
        r = results[f"export-{fmt}"]
        rss = ", ".join(f"{mib:.0f}" for _, mib in r["rss_mib_at"])
        print(
            f"export-{fmt}: {r['out_bytes'] / MiB:.1f} MiB written (+ event ids "
            f"{r['event_ids_bytes'] / MiB:.1f} MiB); RSS MiB at each tenth: {rss}"
        )
    print(f"log: {results['log_bytes'] / MiB:.1f} MiB, {workload.customers:,} customers")
    out_dir = args.results_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out_dir / f"export-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
