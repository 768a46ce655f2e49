"""`make bench`: the engine beside bare Kafka clients, on real Kafka, measured in one run.

    .venv/bin/python -m bench.run                  # 100k touchpoints (about 5 minutes)
    .venv/bin/python -m bench.run --large          # and 1M (30 minutes or more on 2 cores)
    .venv/bin/python -m bench.run --profile        # + py-spy of each rebuild
    .venv/bin/python -m bench.run --events 2000 --quick    # a smoke run

Every figure is printed beside its baseline measured in the same run on the same broker:

* emit: ``journey.emitter.Emitter.emit_text`` (validates every envelope, as ``journey emit``
  and POST /events do) against a bare kafka-python producer sending the same bytes with the
  same producer settings, batch by batch, interleaved;
* rebuild: ``consumers.rebuild.rebuild`` into a fresh store, against a bare kafka-python
  consumer with ``json.loads`` and the same consumer with the engine's decoder
  (``domain.envelope.decode``: pydantic); each in a fresh process, peak RSS read there;
  store bytes against the log's bytes (key + value of every message);
* emit → visible: under background load (default 1,000 touchpoints/s) folded by a running
  ``journey run``, the time from emitting one touchpoint until the store's position covers
  it, against a bare consumer seeing the same message;
* view: ``projections.customer_view.build_customer_view`` (and the JSON of the answer) for
  customers with 10,000 and 1,000 touchpoints, cold (a fresh process and store handle) and
  warm, against a quiet customer's view;
* workers: not measured yet — it needs the PostgreSQL store.

Each figure's target from issue 10 is printed beside it with PASS or MISS. The figures go
to bench/results/<UTC timestamp>.json and bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.profiles import summarise_cprofile, summarise_speedscope
from bench.progress import Progress, summary_ms
from bench.workload import Shape, Workload, ensure_workload, iter_touchpoints, read_batches

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
LARGE = 1_000_000
EMIT_BATCH = 5_000
BARE_RUNS = 3
MiB = 1024 * 1024

# --------------------------------------------------------------------------- helpers


def now_utc() -> datetime:
    return datetime.now(UTC)


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def human(n: float) -> str:
    return f"{n:,.0f}"


def ms(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 4)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def machine() -> dict[str, Any]:
    """What the figures were measured on: they mean little without it."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        models = {
            line.split(":", 1)[1].strip()
            for line in cpuinfo.splitlines()
            if line.startswith("model name")
        }
        info["cpu_model"] = ", ".join(sorted(models)) or None
        meminfo = dict(
            line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines()
        )
        info["memory_mib"] = int(meminfo["MemTotal"].split()[0]) // 1024
        info["memory_available_mib_at_start"] = int(meminfo["MemAvailable"].split()[0]) // 1024
    except (OSError, KeyError, ValueError):
        pass
    try:
        from importlib.metadata import version

        info["kafka_python"] = version("kafka-python")
        info["eventsourcing"] = version("eventsourcing")
        info["pydantic"] = version("pydantic")
    except Exception as exc:  # a missing distribution only leaves a version out
        info["versions_error"] = str(exc)
    return info


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "branch": git("rev-parse", "--abbrev-ref", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


# --------------------------------------------------------------------------- children


@dataclass
class ChildRun:
    result: dict[str, Any]
    wall_s: float
    # (seconds since the step started, done) from its progress lines
    progress: list[tuple[float, int]]


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_child(
    args: list[str],
    *,
    label: str,
    logs: Path,
    total: int | None = None,
    time_limit_s: float | None = None,
    wrap: list[str] | None = None,
) -> ChildRun:
    """Run ``python -m bench.child ARGS`` (under ``wrap``, e.g. py-spy), echoing its
    progress every few seconds; returns its result line."""
    argv = [*(wrap or []), sys.executable, "-m", "bench.child", *args]
    err_path = logs / f"{label.replace(' ', '-').replace('/', '-')}.stderr"
    report = Progress(label, total)
    started = time.monotonic()
    timeline: list[tuple[float, int]] = []
    result: dict[str, Any] | None = None
    child_pid: int | None = None
    timer: threading.Timer | None = None
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=python_env(), stdout=subprocess.PIPE, stderr=err, text=True
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                kind, _, rest = line.strip().partition(" ")
                if kind == "pid":
                    child_pid = int(rest)
                    if time_limit_s is not None:
                        timer = threading.Timer(time_limit_s, os.kill, (child_pid, signal.SIGTERM))
                        timer.daemon = True
                        timer.start()
                elif kind == "progress":
                    done, of = (int(x) for x in rest.split())
                    report(done, of)
                    timeline.append((time.monotonic() - started, done))
                elif kind == "result":
                    result = json.loads(rest)
            proc.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    wall = time.monotonic() - started
    if result is None:
        tail = err_path.read_text()[-3000:]
        raise SystemExit(f"{label}: the step failed (exit {proc.returncode}):\n{tail}")
    if result.get("per_s") is not None:
        print(
            f"  {label}: {result['events']:,} in {result['seconds']:.1f} s = "
            f"{result['per_s']:,.0f}/s (measured in the step, without its start-up)",
            flush=True,
        )
    return ChildRun(result, wall, timeline)


def kafka_hosts(broker: str) -> list[str]:
    return [h for h in broker.removeprefix("kafka://").replace(";", ",").split(",") if h]


def bare_producer(hosts: list[str]) -> Any:
    """kafka-python's producer with the settings the engine's log uses (idempotent,
    acks=all, no linger): the comparison is the engine's work, not the producer's knobs."""
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=hosts,
        enable_idempotence=True,
        acks="all",
        linger_ms=0,
        client_id="bench-bare-producer",
    )


def delete_topics(hosts: list[str], topics: list[str]) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=hosts, client_id="bench-admin")
    try:
        existing = set(admin.list_topics())
        doomed = [t for t in topics if t in existing]
        if doomed:
            admin.delete_topics(doomed)
    finally:
        admin.close()


# --------------------------------------------------------------------------- emit


def emit_figure(
    log: Any, hosts: list[str], workload: Workload, topic: str, scratch: str
) -> dict[str, Any]:
    """Emitter.emit_text to ``topic`` and a bare producer to ``scratch``, batch by batch
    interleaved so both see the same broker state; only the sending is timed."""
    from journey.emitter import Emitter
    from projections.keys import CustomerKeys

    # the emitter seals personal fields as every door does: that cost is part of the figure
    keys = CustomerKeys(Path(tempfile.mkdtemp(prefix="bench-keys-")) / "views.db")
    emitter = Emitter(log, topic=topic, source="bench", keys=keys)
    log.ensure_topics([scratch], 6)
    producer = bare_producer(hosts)
    emitter_s = bare_s = 0.0
    # CPU seconds of the process (every thread: the producers' senders too), beside the
    # wall clock: on a loaded machine the wall-clock ratio moves with the load
    emitter_cpu = bare_cpu = 0.0
    done = 0
    report = Progress("emitted (each path)", workload.shape.events)
    try:
        for batch in read_batches(workload.path, EMIT_BATCH):
            text = b"\n".join(batch).decode()
            keyed = [(json.loads(v)["customer_id"].encode(), v) for v in batch]
            c0, t0 = time.process_time(), time.perf_counter()
            emitter.emit_text(text)
            c1, t1 = time.process_time(), time.perf_counter()
            for key, value in keyed:
                producer.send(scratch, key=key, value=value)
            producer.flush()
            c2, t2 = time.process_time(), time.perf_counter()
            emitter_s += t1 - t0
            bare_s += t2 - t1
            emitter_cpu += c1 - c0
            bare_cpu += c2 - c1
            done += len(batch)
            report(done)
    finally:
        producer.close()
    report(done, final=True)
    figure: dict[str, Any] = {
        "events": done,
        "batch": EMIT_BATCH,
        "emitter": {"seconds": round(emitter_s, 3), "per_s": round(done / emitter_s, 1)},
        "bare_producer": {"seconds": round(bare_s, 3), "per_s": round(done / bare_s, 1)},
    }
    figure["ratio"] = ratio(figure["emitter"]["per_s"], figure["bare_producer"]["per_s"])
    figure["emitter"]["cpu_s"] = round(emitter_cpu, 3)
    figure["bare_producer"]["cpu_s"] = round(bare_cpu, 3)
    figure["cpu_ratio"] = round(bare_cpu / emitter_cpu, 3) if emitter_cpu else None
    print(
        f"  Emitter.emit_text {human(figure['emitter']['per_s'])}/s · bare producer "
        f"{human(figure['bare_producer']['per_s'])}/s · ratio {figure['ratio']:.3f}"
    )
    return figure


def fill_topic(log: Any, hosts: list[str], workload: Workload, topic: str) -> float:
    """The workload onto ``topic`` by the bare producer (for sizes after the first, whose
    emit figure would say nothing new)."""
    log.ensure_topics([topic, f"{topic}.dlq"], 6)
    producer = bare_producer(hosts)
    report = Progress("produced", workload.shape.events)
    started, done = time.perf_counter(), 0
    try:
        for batch in read_batches(workload.path, EMIT_BATCH):
            for value in batch:
                producer.send(topic, key=json.loads(value)["customer_id"].encode(), value=value)
            producer.flush()
            done += len(batch)
            report(done)
    finally:
        producer.close()
    report(done, final=True)
    return time.perf_counter() - started


# --------------------------------------------------------------------------- workers


def workers_figure(  # noqa: PLR0917 (one call site, every argument named there)
    log: Any,
    hosts: list[str],
    broker: str,
    workload: Workload,
    postgres: str,
    run_id: str,
    logs: Path,
    counts: tuple[int, ...] = (1, 2, 4),
) -> dict[str, Any]:
    """1, 2 and 4 `journey run` processes in one consumer group folding the same workload
    (its own copy of the topic each time) into a fresh PostgreSQL database: seconds from the
    first position recorded to every partition caught up, and the rate that makes."""
    import psycopg

    from domain.positions import TopicPartition
    from projections.store import JourneyStore

    out: dict[str, Any] = {"measured": True, "postgres": True, "runs": {}}
    base, _, _ = postgres.rpartition("/")
    journey = Path(sys.executable).with_name("journey")
    for count in counts:
        topic = f"bench.{run_id}.workers{count}"
        fill_topic(log, hosts, workload, topic)
        heads = log.high_watermarks(topic)
        total = sum(heads.values())
        db = f"bench_{run_id.replace('-', '_')}_{count}"
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        url = f"{base}/{db}"
        JourneyStore(url).close()  # the tables, made before the workers start
        env = {
            **os.environ,
            "JOURNEY_BROKER": broker,
            "JOURNEY_TOPIC": topic,
            "JOURNEY_STORE": url,
            "JOURNEY_GROUP": f"bench-workers-{run_id}-{count}",
            "JOURNEY_LOG_LEVEL": "warning",
        }
        procs = [
            subprocess.Popen(
                [str(journey), "run"],
                env=env,
                stdout=(logs / f"workers{count}-{n}.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            for n in range(count)
        ]
        watch = JourneyStore(url)
        report = Progress(f"{count} worker(s) folded", total)
        first: float | None = None
        try:
            deadline = time.monotonic() + 3600
            while True:
                positions = watch.positions()
                done = sum(positions.get(TopicPartition(topic, p), -1) + 1 for p in heads)
                if done and first is None:
                    first = time.monotonic()
                report(done)
                if done >= total:
                    break
                if any(proc.poll() is not None for proc in procs):
                    raise RuntimeError(f"a worker exited; see {logs}/workers{count}-*.log")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{count} workers did not fold {total:,} in an hour")
                time.sleep(0.2)
            seconds = time.monotonic() - (first or time.monotonic())
            report(done, final=True)
        finally:
            watch.close()
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
            delete_topics(hosts, [topic, f"{topic}.dlq"])
            with psycopg.connect(postgres, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        out["runs"][str(count)] = {"seconds": round(seconds, 2), "per_s": total / seconds}
        print(f"  {count} worker(s): {total:,} in {seconds:,.1f} s = {total / seconds:,.0f}/s")
    one = out["runs"].get("1", {}).get("per_s")
    for count in counts[1:]:
        rate = out["runs"][str(count)]["per_s"]
        out["runs"][str(count)]["speedup"] = rate / one if one else None
    return out


# --------------------------------------------------------------------------- profile


def pyspy_usable() -> str | None:
    """The py-spy binary if it can sample a child here (ptrace may be refused)."""
    binary = Path(sys.executable).with_name("py-spy")
    found = str(binary) if binary.exists() else shutil.which("py-spy")
    if found is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        probe = subprocess.run(
            [
                found,
                "record",
                "--rate",
                "50",
                "--format",
                "raw",
                "-o",
                f"{tmp}/p.txt",
                "--",
                sys.executable,
                "-c",
                "import time; time.sleep(0.3)",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    return found if probe.returncode == 0 else None


# --------------------------------------------------------------------------- rebuild


def rebuild_figures(
    broker: str,
    workload: Workload,
    topic: str,
    *,
    workdir: Path,
    logs: Path,
    results_dir: Path,
    stamp: str,
    batch: int,
    profile: str | None,
    time_limit_s: float | None,
    processes: int | None = None,
) -> dict[str, Any]:
    size = workload.shape.events
    hosts = ",".join(kafka_hosts(broker))
    out: dict[str, Any] = {"events": size, "batch": batch}
    # A bare read of 100k takes a second or two: one run is at the mercy of whatever else
    # the machine does that second. The median of three, each run kept.
    for mode in ("json", "pydantic"):
        runs = [
            run_child(
                ["consume", "--hosts", hosts, "--topic", topic, "--decode", mode, "--batch",
                 str(batch)],
                label=f"bare consumer + {mode} ({size:,}) run {n + 1}", logs=logs,
                total=size,
            ).result
            for n in range(BARE_RUNS if size < 500_000 else 1)
        ]  # fmt: skip
        median = sorted(runs, key=lambda r: float(r["per_s"]))[len(runs) // 2]
        out[f"bare_{mode}"] = {**median, "runs_per_s": [r["per_s"] for r in runs]}
    store_dir = workdir / f"store-{size}"
    store_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "rebuild",
        "--broker",
        broker,
        "--topic",
        topic,
        "--store-dir",
        str(store_dir),
        "--batch",
        str(batch),
    ]
    if processes is not None:
        args += ["--processes", str(processes)]
    wrap: list[str] | None = None
    prof: dict[str, Any] | None = None
    if profile == "cprofile":
        prof_path = results_dir / f"{stamp}-rebuild-{size}.prof"
        args += ["--cprofile", str(prof_path)]
        prof = {"tool": "cProfile", "raw": str(prof_path)}
    elif profile:
        prof_path = results_dir / f"{stamp}-rebuild-{size}.speedscope.json"
        wrap = [
            profile,
            "record",
            "--rate",
            "100",
            "--format",
            "speedscope",
            "--nonblocking",
            "--subprocesses",  # a rebuild's forked processes too
            "-o",
            str(prof_path),
            "--",
        ]
        prof = {"tool": "py-spy", "raw": str(prof_path), "view": "https://www.speedscope.app/"}
    run = run_child(
        args,
        label=f"rebuild ({size:,})",
        logs=logs,
        total=size,
        time_limit_s=time_limit_s,
        wrap=wrap,
    )
    rebuilt = run.result
    rebuilt["rate_by_tenth"] = rate_by_tenth(run.progress, size)
    out["rebuild"] = rebuilt
    if not rebuilt["completed"]:
        print(f"  rebuild stopped at its time limit: {rebuilt['events']:,} of {size:,}")
    tenths = " · ".join("—" if r is None else human(r) for r in rebuilt["rate_by_tenth"])
    print(f"  rebuild rate by tenth of the log (/s): {tenths}")
    store_bytes = dir_bytes(store_dir)
    out["store_dir"] = str(store_dir)
    out["store_bytes"] = store_bytes
    out["log_bytes"] = workload.log_bytes
    events = max(1, rebuilt["events"])
    out["store_bytes_per_touchpoint"] = round(store_bytes / events, 1)
    out["log_bytes_per_touchpoint"] = round(workload.log_bytes / size, 1)
    out["store_over_log"] = ratio(
        out["store_bytes_per_touchpoint"], out["log_bytes_per_touchpoint"]
    )
    out["ratio_json"] = ratio(rebuilt["per_s"], out["bare_json"]["per_s"])
    out["ratio_pydantic"] = ratio(rebuilt["per_s"], out["bare_pydantic"]["per_s"])
    # CPU seconds over all the rebuild's processes against the bare consumer's own: what the
    # work costs, whatever the cores and the load let the wall clock show.
    out["cpu_ratio_pydantic"] = ratio(out["bare_pydantic"].get("cpu_s"), rebuilt.get("cpu_s"))
    print(
        f"  rebuild on {rebuilt.get('processes', 1)} process(es): {rebuilt.get('cpu_s')} CPU s"
        f" (bare + pydantic {out['bare_pydantic'].get('cpu_s')}) · peak memory of all: RSS sum"
        f" {rebuilt.get('peak_rss_sum_mib')} MiB, PSS sum {rebuilt.get('peak_pss_sum_mib')} MiB"
    )
    print(
        f"  rebuild {human(rebuilt['per_s'])}/s · bare json {human(out['bare_json']['per_s'])}/s"
        f" · bare + pydantic {human(out['bare_pydantic']['per_s'])}/s · peak RSS "
        f"{rebuilt['peak_rss_mib']} MiB · store {store_bytes / MiB:.1f} MiB "
        f"({out['store_bytes_per_touchpoint']:,.0f} B/touchpoint, "
        f"{out['store_over_log']:.2f}× the log)"
    )
    if prof is not None:
        summary_path = results_dir / f"{stamp}-rebuild-{size}.profile.txt"
        raw = Path(prof["raw"])
        if raw.exists():
            text, top = (
                summarise_cprofile(raw) if prof["tool"] == "cProfile" else summarise_speedscope(raw)
            )
            summary_path.write_text(text)
            prof["summary"] = str(summary_path)
            prof["top"] = top
            print(f"  profile ({prof['tool']}): {raw}\n  summary: {summary_path}")
            # the areas, and the functions' own time: the rest is in the summary file
            shown = text.split("\n\n")[:3]
            print("\n".join("    " + line for part in shown for line in part.splitlines()[:16]))
        else:
            prof["error"] = "the profiler wrote no file (see the step's stderr in the logs)"
        out["profile"] = prof
    return out


def rate_by_tenth(timeline: list[tuple[float, int]], total: int) -> list[float | None]:
    """The rebuild's rate over each tenth of the log, from its progress lines: whether the
    cost per touchpoint grows with the history already folded, within one run."""
    rates: list[float | None] = []
    last_t, last_n = 0.0, 0
    for tenth in range(1, 11):
        mark = total * tenth // 10
        point = next(((t, n) for t, n in timeline if n >= mark), None)
        if point is None or point[0] <= last_t:
            rates.append(None)
            continue
        rates.append(round((point[1] - last_n) / (point[0] - last_t), 1))
        last_t, last_n = point
    return rates


# --------------------------------------------------------------------------- views


def view_figures(
    workload: Workload, store_dir: Path, logs: Path, *, cold_runs: int, quick: bool
) -> dict[str, Any]:
    """Cold: ``cold_runs`` fresh processes, each opening the store and reading once.
    Warm: one process reading the same customer again and again."""
    picks = [
        ("heavy", workload.heavy_ids[0], 5 if quick else 40),
        ("medium", workload.medium_ids[0], 10 if quick else 200),
        ("quiet", workload.quiet_id, 10 if quick else 200),
    ]
    out: dict[str, Any] = {}
    for kind, customer, rounds in picks:
        opens: list[float] = []
        firsts: list[float] = []
        result: dict[str, Any] = {}
        for i in range(cold_runs):
            result = run_child(
                [
                    "view",
                    "--store-dir",
                    str(store_dir),
                    "--customer",
                    customer,
                    "--rounds",
                    str(rounds if i == cold_runs - 1 else 0),
                ],
                label=f"view {kind} {customer}",
                logs=logs,
            ).result
            opens.append(result["open_s"])
            firsts.append(result["first_view_s"])
        entry = {
            "customer": customer,
            "touchpoints": result["touchpoints"],
            "answer_bytes": result["answer_bytes"],
            "store_open": summary_ms(opens),
            "cold": summary_ms(firsts),
            "warm": summary_ms(result["warm_s"]),
        }
        out[kind] = entry
        print(
            f"  {kind:<6} {customer} ({entry['touchpoints']:,} touchpoints, "
            f"{entry['answer_bytes'] / 1024:,.0f} KiB): store open p50 "
            f"{ms(entry['store_open']['p50_ms'])} ms · cold p50 {ms(entry['cold']['p50_ms'])} ms"
            f" · warm p50 {ms(entry['warm']['p50_ms'])} / p99 {ms(entry['warm']['p99_ms'])} ms",
            flush=True,
        )
    return out


# --------------------------------------------------------------------------- latency


class RawReader:
    """The latency baseline: a bare consumer on its own thread noting when each message
    arrives (group-less, every partition, from the end)."""

    def __init__(self, hosts: list[str], topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(
            bootstrap_servers=hosts,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
            client_id="bench-raw-reader",
        )
        parts = [
            TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic))
        ]
        self.consumer.assign(parts)
        self.consumer.seek_to_end(*parts)
        for tp in parts:
            self.consumer.position(tp)  # resolve "end" now, before anything is produced
        self.seen: dict[tuple[int, int], float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="raw-reader")
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            batches = self.consumer.poll(timeout_ms=50, max_records=2000)
            now = time.perf_counter()
            with self.lock:
                for tp, records in batches.items():
                    for record in records:
                        self.seen[(tp.partition, record.offset)] = now

    def wait(self, partition: int, offset: int, timeout_s: float) -> float | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                at = self.seen.pop((partition, offset), None)
            if at is not None:
                return at
            time.sleep(0.001)
        return None

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.consumer.close()


class Background:
    """Paced background load: ``rate`` touchpoints/s, sent in tenth-of-a-second slices."""

    def __init__(
        self, hosts: list[str], topic: str, messages: list[tuple[bytes, bytes]], rate: int
    ):
        self.producer = bare_producer(hosts)
        self.topic, self.messages, self.rate = topic, messages, rate
        self.sent = 0
        self.started = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="background")

    def start(self) -> None:
        self.started = time.monotonic()
        self.thread.start()

    def _run(self) -> None:
        slice_n = max(1, self.rate // 10)
        tick = self.started
        while not self.stop.is_set() and self.sent < len(self.messages):
            for key, value in self.messages[self.sent : self.sent + slice_n]:
                self.producer.send(self.topic, key=key, value=value)
            self.sent = min(len(self.messages), self.sent + slice_n)
            tick += 0.1
            self.stop.wait(max(0.0, tick - time.monotonic()))
        self.producer.flush()

    @property
    def achieved_per_s(self) -> float:
        return self.sent / max(1e-9, time.monotonic() - self.started)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.producer.close()


def runner_lag(log: Any, store: Any, topic: str) -> int:
    """Messages on the log the store has not folded yet."""
    from consumers.log import TopicPartition

    heads = log.high_watermarks(topic)
    positions = store.positions()
    return sum(
        max(0, hwm - 1 - positions.get(TopicPartition(topic, p), -1)) for p, hwm in heads.items()
    )


def journey_command() -> list[str]:
    script = Path(sys.executable).with_name("journey")
    found = str(script) if script.exists() else shutil.which("journey")
    if found is None:
        raise SystemExit("the `journey` command is not installed: run `make install` first")
    return [found]


def latency_figure(
    log: Any,
    broker: str,
    topic: str,
    workdir: Path,
    logs: Path,
    *,
    rate: int,
    probes: int,
    warmup_s: float,
    seed: int,
    on_runner: Callable[[int], None] | None = None,
    budget_s: float | None = None,
    runner_command: list[str] | None = None,
    probes_out: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``on_runner``: called with the `journey run` process's id once it folds, before the
    warm-up (bench/live_latency.py starts py-spy on it there). ``budget_s``: seconds of
    background load (default: enough for the warm-up and every probe at ~2/s); the probes
    stop when it runs out. ``runner_command``: what runs `journey run` (default the
    `journey` script; bench/turns.py's timed loop). ``probes_out``: each probe's emit time
    (wall clock), position and latencies are appended to it."""
    from consumers.log import TopicPartition
    from domain import catalogue as c
    from domain.envelope import encode, new_touchpoint
    from journey.emitter import Emitter
    from projections.keys import CustomerKeys
    from projections.store import JourneyStore

    hosts = kafka_hosts(broker)
    # makes the topics; seals with the keys of the store `journey run` folds into below
    keys = CustomerKeys(workdir / "live" / "views.db")
    emitter = Emitter(log, topic=topic, source="bench", keys=keys)
    # enough background for the warm-up and every probe at ~5/s, with room to spare
    if budget_s is None:
        budget_s = warmup_s + probes * 0.5 + 30
    # Live traffic: many customers adding a few touchpoints each (quiet ones only; the long
    # histories are the rebuild's and the views' subject), each stamped with about the
    # moment it is sent, so deadlines lie ahead as they would live (a history replayed at
    # 1,000/s would make the keeper decide months of deadlines in a few minutes).
    shape = Shape.quiet_only(max(1000, int(rate * budget_s)))
    print(f"  generating {shape.events:,} background touchpoints ({rate:,}/s, ≤ {budget_s:.0f} s)")
    begin = now_utc() + timedelta(seconds=warmup_s / 2)
    messages = [
        (tp.customer_id.encode(), encode(tp))
        for tp in iter_touchpoints(
            shape,
            seed + 7,
            prefix="live",
            start=begin,
            end=begin + timedelta(seconds=budget_s),
            quiet_steps_s=(1, 30),
        )
    ]
    store_dir = workdir / "live"
    store_dir.mkdir(parents=True, exist_ok=True)
    store_path = store_dir / "views.db"
    env = python_env() | {"JOURNEY_GROUP": f"bench-live-{uuid.uuid4().hex[:8]}"}
    err = (logs / "journey-run.stderr").open("w")
    runner = subprocess.Popen(
        [
            *(runner_command or journey_command()),
            "--broker",
            broker,
            "--topic",
            topic,
            "--store",
            f"sqlite:///{store_path}",
            "--log-level",
            "warning",
            "run",
        ],
        cwd=workdir,
        env=env,
        stdout=err,
        stderr=subprocess.STDOUT,
    )
    raw = RawReader(hosts, topic)
    background = Background(hosts, topic, messages, rate)
    store: JourneyStore | None = None
    visible: list[float] = []
    baseline: list[float] = []
    acked: list[float] = []
    timeouts = 0
    try:
        background.start()
        deadline = time.monotonic() + 120
        while store is None:
            if runner.poll() is not None:
                raise SystemExit(f"journey run exited with {runner.returncode}: see {err.name}")
            if time.monotonic() > deadline:
                raise SystemExit("journey run folded nothing within 120 s")
            if store_path.exists():
                candidate = JourneyStore(store_path)
                if candidate.positions():
                    store = candidate
                else:
                    candidate.close()
            time.sleep(0.2)
        print(f"  journey run is folding (pid {runner.pid}); warming up {warmup_s:.0f} s")
        if on_runner is not None:
            on_runner(runner.pid)
        time.sleep(warmup_s)
        report = Progress("probes", probes)
        probes_from = last_lag = time.monotonic()
        lags: list[tuple[float, int]] = []
        probes_until = probes_from + budget_s - warmup_s
        for i in range(probes):
            if background.sent >= len(background.messages) or time.monotonic() > probes_until:
                print("  the background load ran out: stopping the probes early")
                break
            tp = new_touchpoint(
                c.InquiryReceived(case_id=f"probe-{i}", channel="chat", subject=f"probe {i}"),
                customer_id=f"live-probe-{i % 25:02d}",
                occurred_at=now_utc(),
                source="bench",
            )
            t0, wall = time.perf_counter(), time.time()
            (pos,) = emitter.emit_touchpoints([tp])
            acked.append(time.perf_counter() - t0)
            tpart = TopicPartition(pos.topic, pos.partition)
            seen_at: float | None = None
            limit = time.monotonic() + 30
            while time.monotonic() < limit:
                if store.positions().get(tpart, -1) >= pos.offset:
                    seen_at = time.perf_counter()
                    break
                time.sleep(0.002)
            raw_at = raw.wait(pos.partition, pos.offset, 5.0)
            if seen_at is None or raw_at is None:
                timeouts += 1
            else:
                visible.append(seen_at - t0)
                baseline.append(raw_at - t0)
                if probes_out is not None:
                    probes_out.append(
                        {
                            "t0": wall,
                            "partition": pos.partition,
                            "offset": pos.offset,
                            "visible_s": seen_at - t0,
                            "bare_s": raw_at - t0,
                        }
                    )
            report(i + 1)
            if time.monotonic() - last_lag >= 3.0:
                last_lag = time.monotonic()
                behind = runner_lag(log, store, topic)
                lags.append((round(last_lag - probes_from, 1), behind))
                p50 = statistics.median(visible) * 1000 if visible else float("nan")
                base = statistics.median(baseline) * 1000 if baseline else float("nan")
                print(
                    f"    visible p50 {p50:.1f} ms · bare consumer p50 {base:.1f} ms · "
                    f"journey run behind by {behind:,} · background {background.sent:,} sent",
                    flush=True,
                )
            time.sleep(0.1)
        report(len(acked), final=True)
        achieved = background.achieved_per_s
        background.close()
        lag = runner_lag(log, store, topic)
    finally:
        background.stop.set()
        raw.close()
        if store is not None:
            store.close()
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(60)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait()
        err.close()
    out: dict[str, Any] = {
        "background_target_per_s": rate,
        "background_achieved_per_s": round(achieved, 1),
        "background_sent": background.sent,
        "probes": len(acked),
        "timeouts": timeouts,
        "lag_at_end": lag,
        "lag_every_3s": lags,
        "emit_ack": summary_ms(acked),
        "visible": summary_ms(visible),
        "bare_consumer": summary_ms(baseline),
    }
    # Behind by more than two seconds of background at the end: the rate was not sustained.
    out["sustained"] = lag <= 2 * rate
    if not out["sustained"]:
        print(f"  journey run did not keep up with {rate:,}/s here: {lag:,} behind at the end")
    seen, bare = out["visible"], out["bare_consumer"]
    print(
        f"  emit → visible p50 {ms(seen['p50_ms'])} / p99 {ms(seen['p99_ms'])} ms · bare consumer"
        f" p50 {ms(bare['p50_ms'])} / p99 {ms(bare['p99_ms'])} ms · background {achieved:,.0f}/s"
        f" · lag at end {lag:,}"
    )
    return out


# --------------------------------------------------------------------------- targets


def evaluate(results: dict[str, Any], sizes: list[int]) -> list[dict[str, Any]]:
    """Issue 10's targets against what was measured. A target stated at 1M but measured
    at a smaller size says so; one not measured says why."""
    base, top = str(sizes[0]), str(sizes[-1])
    at_top = "" if sizes[-1] >= LARGE else f"measured at {sizes[-1]:,}; the target is at 1M"
    rows: list[dict[str, Any]] = []

    def row(figure: str, value: float | None, op: str, target: float, note: str = "") -> None:
        if value is None:
            status = "NOT MEASURED"
        elif op == ">=":
            status = "PASS" if value >= target else "MISS"
        else:
            status = "PASS" if value <= target else "MISS"
        rows.append(
            {
                "figure": figure,
                "value": value,
                "op": op,
                "target": target,
                "status": status,
                "note": note,
            }
        )

    row("emit / bare producer", results["emit"]["ratio"], ">=", 0.5)
    rb = results["rebuild"][top]
    if not rb["rebuild"]["completed"]:
        stopped = f"stopped at its time limit after {rb['rebuild']['events']:,} of {top}"
        at_top = f"{at_top}; {stopped}" if at_top else stopped
    row("rebuild / bare consumer + pydantic", rb["ratio_pydantic"], ">=", 0.5, at_top)
    row("rebuild / bare consumer (json)", rb["ratio_json"], ">=", 0.25, at_top)
    row(
        "rebuild rate at 1M / at 100k",
        results["rebuild_scaling"]["rate_ratio"],
        ">=",
        0.85,
        "" if results["rebuild_scaling"]["rate_ratio"] is not None else "run with --large",
    )
    row("rebuild peak RSS (MiB)", rb["rebuild"]["peak_rss_mib"], "<=", 300, at_top)
    row("store bytes / log bytes", rb["store_over_log"], "<=", 1.5)
    viewed = [size for size in sizes if results["view"].get(str(size))]
    views = results["view"][str(viewed[-1])] if viewed else None
    heavy_note = ""
    if viewed and viewed[-1] < LARGE:
        heavy_note = f"measured at {viewed[-1]:,}; the target is at 1M"
    if views is None:
        heavy_note = "no view was measured"
        views = {"heavy": {"touchpoints": 0, "cold": {"p50_ms": None}, "warm": {"p99_ms": None}}}
    elif views["heavy"]["touchpoints"] < 10_000:
        heavy_note = f"this run's heavy customer has {views['heavy']['touchpoints']:,} touchpoints"
    row(
        "view of a heavy customer, cold p50 (ms)",
        views["heavy"]["cold"]["p50_ms"],
        "<=",
        50,
        heavy_note,
    )
    row(
        "view of a heavy customer, warm p99 (ms)",
        views["heavy"]["warm"]["p99_ms"],
        "<=",
        5,
        heavy_note,
    )
    growth = None
    if len(viewed) > 1:
        growth = ratio(
            views["heavy"]["warm"]["p99_ms"], results["view"][base]["heavy"]["warm"]["p99_ms"]
        )
    row(
        "heavy view warm p99 at 1M / at 100k (no growth: ≤ 1.2)",
        growth,
        "<=",
        1.2,
        "" if growth is not None else "run with --large",
    )
    runs = results["workers"].get("runs", {})
    row(
        "2 workers / 1 worker",
        runs.get("2", {}).get("speedup"),
        ">=",
        1.7,
        "2 cores, shared with Kafka and PostgreSQL" if runs else "give --postgres URL",
    )
    return rows


def mark(value: float | None, op: str, target: float, unit: str) -> str:
    """E.g. ``≥ 0.5 MISS``: the issue's target for a figure, and whether this value meets it."""
    sign = "≥" if op == ">=" else "≤"
    if value is None:
        return f"{sign} {target:g}{unit} NOT MEASURED"
    met = value >= target if op == ">=" else value <= target
    return f"{sign} {target:g}{unit} {'PASS' if met else 'MISS'}"


def print_table(results: dict[str, Any], sizes: list[int]) -> None:
    """Each figure beside its baseline from this run, then the targets."""
    step("figures (each beside its baseline, measured in this run)")
    lines: list[tuple[str, str, str, str, str]] = []
    e = results["emit"]
    lines.append(
        (
            f"emit, Emitter.emit_text ({e['events']:,})",
            f"{human(e['emitter']['per_s'])}/s",
            f"bare producer {human(e['bare_producer']['per_s'])}/s",
            f"{e['ratio']:.3f}×",
            mark(e["ratio"], ">=", 0.5, "×"),
        )
    )
    for size in sizes:
        rb = results["rebuild"][str(size)]
        r = rb["rebuild"]
        done = "" if r["completed"] else f" (stopped at {r['events']:,})"
        lines.append(
            (
                f"rebuild {size:,}{done}",
                f"{human(r['per_s'])}/s",
                f"bare consumer, json {human(rb['bare_json']['per_s'])}/s",
                f"{rb['ratio_json']:.3f}×",
                mark(rb["ratio_json"], ">=", 0.25, "×"),
            )
        )
        lines.append(
            (
                "",
                "",
                f"bare consumer + pydantic {human(rb['bare_pydantic']['per_s'])}/s",
                f"{rb['ratio_pydantic']:.3f}×",
                mark(rb["ratio_pydantic"], ">=", 0.5, "×"),
            )
        )
        lines.append(
            (
                f"  peak RSS, rebuild {size:,}",
                f"{r['peak_rss_mib']:,} MiB",
                f"bare consumer + pydantic {rb['bare_pydantic']['peak_rss_mib']:,} MiB",
                "",
                mark(r["peak_rss_mib"], "<=", 300, " MiB"),
            )
        )
        lines.append(
            (
                f"  store, {size:,}",
                f"{rb['store_bytes_per_touchpoint']:,.0f} B/touchpoint",
                f"log {rb['log_bytes_per_touchpoint']:,.0f} B/touchpoint",
                f"{rb['store_over_log']:.2f}×",
                mark(rb["store_over_log"], "<=", 1.5, "×"),
            )
        )
    scaling = results["rebuild_scaling"]["rate_ratio"]
    if scaling is not None:
        lines.append(
            ("rebuild rate 1M / 100k", f"{scaling:.3f}", "", "", mark(scaling, ">=", 0.85, "×"))
        )
    lat = results["latency"]
    if lat:
        lines.append(
            (
                f"emit → visible p50/p99 ({lat['background_achieved_per_s']:,.0f}/s background"
                + ("" if lat["sustained"] else ", not kept up")
                + ")",
                f"{ms(lat['visible']['p50_ms'], 1)} / {ms(lat['visible']['p99_ms'], 1)} ms",
                f"bare consumer {ms(lat['bare_consumer']['p50_ms'], 1)} / "
                f"{ms(lat['bare_consumer']['p99_ms'], 1)} ms",
                "",
                "(no target)",
            )
        )
    for size in sizes:
        views = results["view"][str(size)]
        if not views:
            lines.append(
                (f"views at {size:,}", "not measured", "the rebuild did not finish", "", "")
            )
            continue
        quiet = views["quiet"]
        for kind in ("heavy", "medium"):
            v = views[kind]
            lines.append(
                (
                    f"view {v['touchpoints']:,} tp at {size:,}, cold p50/p99",
                    f"{ms(v['cold']['p50_ms'], 1)} / {ms(v['cold']['p99_ms'], 1)} ms",
                    f"quiet ({quiet['touchpoints']} tp) {ms(quiet['cold']['p50_ms'], 1)} / "
                    f"{ms(quiet['cold']['p99_ms'], 1)} ms",
                    "",
                    mark(v["cold"]["p50_ms"], "<=", 50, " ms (p50)") if kind == "heavy" else "",
                )
            )
            lines.append(
                (
                    "  warm p50/p99",
                    f"{ms(v['warm']['p50_ms'], 2)} / {ms(v['warm']['p99_ms'], 2)} ms",
                    f"quiet {ms(quiet['warm']['p50_ms'], 2)} / {ms(quiet['warm']['p99_ms'], 2)} ms",
                    "",
                    mark(v["warm"]["p99_ms"], "<=", 5, " ms (p99)") if kind == "heavy" else "",
                )
            )
    runs = results["workers"].get("runs", {})
    if runs:
        one = runs["1"]["per_s"]
        for count, run in runs.items():
            lines.append(
                (
                    f"workers on PostgreSQL: {count}",
                    f"{run['per_s']:,.0f}/s",
                    f"1 worker {one:,.0f}/s",
                    f"{run['per_s'] / one:.2f}×",
                    mark(run["per_s"] / one, ">=", 1.7, "×") if count == "2" else "",
                )
            )
    else:
        lines.append(
            ("workers (1, 2, 4)", "not measured", "give --postgres URL", "", "≥ 1.7× NOT MEASURED")
        )
    print(f"  {'figure':<44} {'value':>22}   {'baseline, same run':<40} {'ratio':<8} target")
    for name, value, base, r, target in lines:
        print(f"  {name:<44} {value:>22}   {base:<40} {r:<8} {target}")
    step("targets (issue 10)")
    for t in results["targets"]:
        value = "—" if t["value"] is None else f"{t['value']:,.3f}".rstrip("0").rstrip(".")
        note = f"  ({t['note']})" if t["note"] else ""
        print(f"  {t['status']:<12} {t['figure']:<56} {value:>10} {t['op']} {t['target']}{note}")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--broker", default="kafka://" + os.environ.get("JOURNEY_TEST_KAFKA", "127.0.0.1:19092")
    )
    parser.add_argument("--events", type=int, default=100_000, help="the base size (100k)")
    parser.add_argument("--large", action="store_true", help="also 1M touchpoints")
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke run")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy (else cProfile) each rebuild"
    )
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--batch", type=int, default=2000, help="poll batch of every consumer")
    parser.add_argument("--rate", type=int, default=1000, help="background load, touchpoints/s")
    parser.add_argument("--probes", type=int, default=None, help="emit → visible samples")
    parser.add_argument("--no-latency", action="store_true", help="skip emit → visible")
    parser.add_argument(
        "--postgres",
        default=None,
        help="a PostgreSQL URL (make postgres prints one) to measure 1, 2 and 4 workers on",
    )
    parser.add_argument(
        "--rebuild-limit-min",
        type=float,
        default=None,
        help="stop a rebuild after this long and report how far it got",
    )
    parser.add_argument(
        "--rebuild-processes",
        type=int,
        default=None,
        help="processes of each rebuild (default: the engine's, JOURNEY_REBUILD_PROCESSES)",
    )
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "bench" / ".cache")
    parser.add_argument("--keep", action="store_true", help="keep the stores and topics")
    args = parser.parse_args(argv)

    from consumers.kafka_log import KafkaLog
    from journey.logs import configure_logging

    configure_logging("console", "warning")
    sizes = [args.events] + ([LARGE] if args.large and args.events < LARGE else [])
    probes = args.probes if args.probes is not None else (20 if args.quick else 300)
    run_id = uuid.uuid4().hex[:8]
    started_at = now_utc()
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="journey-bench-"))
    logs = workdir / "logs"
    logs.mkdir()
    hosts = kafka_hosts(args.broker)
    log = KafkaLog(hosts)
    topics: list[str] = []
    profiler: str | None = None
    results: dict[str, Any] = {
        "schema": 1,
        "started_at": started_at.isoformat(),
        "git": git_state(),
        "machine": machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "broker": log.url,
        "sizes": sizes,
        "workloads": {},
        "emit": {},
        "rebuild": {},
        "rebuild_scaling": {"rate_ratio": None},
        "view": {},
        "latency": {},
        "workers": {
            "measured": False,
            "note": "1, 2 and 4 `journey run` workers in one group need a PostgreSQL store: "
            "give --postgres URL (make bench does).",
        },
    }
    m = results["machine"]
    print(
        f"bench {run_id}: {', '.join(f'{s:,}' for s in sizes)} touchpoints on {log.url} · "
        f"{m.get('cpus')} cpus, {m.get('memory_mib', 0):,} MiB, load {m['load_average_at_start']}"
        f" · commit {str(results['git']['commit'])[:10]} · work dir {workdir}",
        flush=True,
    )
    if args.profile:
        profiler = pyspy_usable()
        if profiler is None:
            print("py-spy cannot sample a process here (ptrace refused?): profiling with cProfile")
            profiler = "cprofile"
        else:
            print(f"profiling each rebuild with py-spy ({profiler})")
    try:
        for index, size in enumerate(sizes):
            key = str(size)
            step(f"workload: {size:,} touchpoints (seed {args.seed})")
            shape = Shape.for_events(size)
            report = Progress("generated", size)
            workload = ensure_workload(args.cache_dir, shape, args.seed, progress=report)
            report(size, final=True)
            results["workloads"][key] = workload.facts()
            print(
                f"  {workload.customers:,} customers: {shape.heavy} × {shape.heavy_size:,}, "
                f"{shape.medium} × {shape.medium_size:,}, the rest quiet · "
                f"{len(workload.types)} types · {workload.log_bytes / MiB:,.1f} MiB on the log "
                f"({workload.log_bytes / size:,.0f} B/touchpoint) · sha256 {workload.sha256[:12]}"
            )
            topic = f"bench.{run_id}.{size}"
            topics += [topic, f"{topic}.dlq"]
            if index == 0:
                step(f"emit: Emitter.emit_text vs a bare producer, {size:,} touchpoints")
                scratch = f"bench.{run_id}.bare-producer"
                topics.append(scratch)
                results["emit"] = emit_figure(log, hosts, workload, topic, scratch)
                if not args.keep:
                    delete_topics(hosts, [scratch])
            else:
                step(f"filling the log with {size:,} touchpoints (bare producer)")
                seconds = fill_topic(log, hosts, workload, topic)
                print(f"  {size / seconds:,.0f}/s")
            step(f"rebuild vs bare consumers, {size:,} touchpoints")
            results["rebuild"][key] = rebuild_figures(
                args.broker,
                workload,
                topic,
                workdir=workdir,
                logs=logs,
                results_dir=args.out_dir,
                stamp=stamp,
                batch=args.batch,
                profile=profiler,
                time_limit_s=args.rebuild_limit_min * 60 if args.rebuild_limit_min else None,
                processes=args.rebuild_processes,
            )
            step(f"customer views at {size:,} (the engine's view builder; cold = fresh process)")
            if not results["rebuild"][key]["rebuild"]["completed"]:
                # a half-built store would show half a history: no figure rather than that
                print("  skipped: the rebuild stopped at its time limit")
                results["view"][key] = None
                continue
            results["view"][key] = view_figures(
                workload,
                Path(results["rebuild"][key]["store_dir"]),
                logs,
                cold_runs=2 if args.quick else 7,
                quick=args.quick,
            )
        if len(sizes) > 1:
            results["rebuild_scaling"]["rate_ratio"] = ratio(
                results["rebuild"][str(sizes[-1])]["rebuild"]["per_s"],
                results["rebuild"][str(sizes[0])]["rebuild"]["per_s"],
            )
        if args.no_latency:
            step("emit → visible: skipped (--no-latency)")
        else:
            step(f"emit → visible under {args.rate:,} touchpoints/s of background (journey run)")
            live = f"bench.{run_id}.live"
            topics += [live, f"{live}.dlq"]
            results["latency"] = latency_figure(
                log,
                args.broker,
                live,
                workdir,
                logs,
                rate=args.rate,
                probes=probes,
                warmup_s=3 if args.quick else 10,
                seed=args.seed,
            )
        step("workers: 1, 2 and 4 journey run processes on PostgreSQL")
        if args.postgres is None:
            print(f"  not measured: {results['workers']['note']}")
        else:
            first_size = sizes[0]
            results["workers"] = workers_figure(
                log,
                hosts,
                args.broker,
                ensure_workload(args.cache_dir, Shape.for_events(first_size), args.seed),
                args.postgres,
                run_id,
                logs,
            )
    finally:
        log.close()
        if not args.keep:
            try:
                delete_topics(hosts, topics)
            except Exception as exc:  # cleaning up must not hide the run's own error
                print(f"could not delete the bench topics {topics}: {exc}")
    finished = now_utc()
    results["finished_at"] = finished.isoformat()
    results["seconds"] = round((finished - started_at).total_seconds(), 1)
    results["targets"] = evaluate(results, sizes)
    print_table(results, sizes)
    out = args.out_dir / f"{stamp}.json"
    text = json.dumps(results, indent=2, allow_nan=False) + "\n"
    out.write_text(text)
    (args.out_dir / "latest.json").write_text(text)
    shutil.copytree(logs, args.out_dir / f"{stamp}-logs", dirs_exist_ok=True)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nwrote {out} and {args.out_dir / 'latest.json'} ({results['seconds']:,.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
