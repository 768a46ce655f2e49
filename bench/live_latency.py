"""Emit → visible under live background load, alone: the step of `make bench` that measures
it (``bench.run.latency_figure``: a `journey run` folding ``--rate`` touchpoints/s while
probes are emitted one by one, beside a bare consumer seeing the same messages in the same
run), and optionally a py-spy profile of that `journey run` while it works.

    python -m bench.live_latency --probes 600                        # p50/p99 beside bare
    python -m bench.live_latency --probes 600 --py-spy /tmp/live.json --py-spy-s 25

The py-spy profile (speedscope, ``--idle``: time waiting shows as well as time working)
samples the runner's main thread from the end of its warm-up; its summary — own time by
area and function, time including callees — is printed and written beside it (``.txt``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from bench.profiles import summarise_speedscope
from bench.run import delete_topics, kafka_hosts, latency_figure, pyspy_usable
from bench.turns import split

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.live_latency", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--broker", default="kafka://" + os.environ.get("JOURNEY_TEST_KAFKA", "127.0.0.1:19092")
    )
    parser.add_argument("--rate", type=int, default=1000, help="background touchpoints/s")
    parser.add_argument("--probes", type=int, default=300, help="emit → visible samples")
    parser.add_argument("--warmup-s", type=float, default=10)
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="seconds of background load (the probes stop when it runs out; default: enough "
        "for every probe): equal runs of two versions fold the same load",
    )
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--py-spy", type=Path, default=None, help="speedscope file to write")
    parser.add_argument("--py-spy-s", type=int, default=25, help="seconds py-spy samples")
    parser.add_argument(
        "--py-spy-after-s",
        type=float,
        default=0,
        help="start sampling this long after the warm-up (the writer's cache fills after a "
        "minute or so at 1,000/s, and customers start coming back from the store)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--turns",
        type=Path,
        default=None,
        help="a folder: run `journey run` with its loop's steps timed (bench/turns.py), keep "
        "the spans and the probes there, and split each probe's latency over the steps",
    )
    args = parser.parse_args(argv)

    from consumers.kafka_log import KafkaLog
    from journey.logs import configure_logging

    configure_logging("console", "warning")
    hosts = kafka_hosts(args.broker)
    log = KafkaLog(hosts)
    topic = f"bench.{uuid.uuid4().hex[:8]}.live"
    workdir = Path(tempfile.mkdtemp(prefix="journey-live-"))
    logs = workdir / "logs"
    logs.mkdir()
    spy: list[subprocess.Popen[bytes]] = []

    cpu: dict[str, float] = {}
    stop = threading.Event()

    def sample_cpu(pid: int) -> None:
        """The runner's CPU seconds (user + system), the last reading before it ends."""
        tick = os.sysconf("SC_CLK_TCK")
        while not stop.is_set():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return
            cpu.setdefault("first", (int(fields[11]) + int(fields[12])) / tick)
            cpu["last"] = (int(fields[11]) + int(fields[12])) / tick
            stop.wait(0.25)

    def profile(pid: int) -> None:
        threading.Thread(target=sample_cpu, args=(pid,), daemon=True).start()
        if args.py_spy is None:
            return
        binary = pyspy_usable()
        if binary is None:
            print("  py-spy cannot sample here (ptrace refused?): no profile")
            return
        spy.append(
            subprocess.Popen(
                [
                    "sh",
                    "-c",
                    f'sleep {args.py_spy_after_s} && exec "$0" "$@"',
                    binary,
                    "record",
                    "--idle",
                    "--format",
                    "speedscope",
                    "--duration",
                    str(args.py_spy_s),
                    "-o",
                    str(args.py_spy),
                    "--pid",
                    str(pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=(logs / "py-spy.stderr").open("w"),
            )
        )

    out: dict[str, Any] = {}
    probes: list[dict[str, Any]] = []
    runner_command = None
    if args.turns is not None:
        args.turns.mkdir(parents=True, exist_ok=True)
        spans = args.turns.resolve() / "spans.json"
        spans.unlink(missing_ok=True)
        runner_command = [sys.executable, "-m", "bench.turns", "run", str(spans), "--"]
    try:
        out = latency_figure(
            log,
            args.broker,
            topic,
            workdir,
            logs,
            rate=args.rate,
            probes=args.probes,
            warmup_s=args.warmup_s,
            seed=args.seed,
            on_runner=profile,
            budget_s=args.seconds,
            runner_command=runner_command,
            probes_out=probes,
        )
        stop.set()
        folded = out["background_sent"] - out["lag_at_end"] + out["probes"]
        if cpu and folded > 0:
            # From the runner's first fold to its end: warm-up and probes, at the load.
            out["runner_cpu_s"] = round(cpu["last"] - cpu["first"], 2)
            out["runner_cpu_us_per_touchpoint"] = round(1e6 * out["runner_cpu_s"] / folded, 1)
            print(
                f"  journey run: {out['runner_cpu_s']} CPU s for {folded:,} touchpoints folded"
                f" = {out['runner_cpu_us_per_touchpoint']} µs each"
            )
        for proc in spy:
            proc.wait(timeout=args.py_spy_after_s + args.py_spy_s + 120)
        if spy and args.py_spy is not None and args.py_spy.exists():
            text, top = summarise_speedscope(
                args.py_spy, focus=("Supervisor.run", "consumers/supervisor.py")
            )
            args.py_spy.with_suffix(".txt").write_text(text)
            out["profile"] = top
            print(text)
    finally:
        for proc in spy:
            if proc.poll() is None:
                proc.terminate()
        delete_topics(hosts, [topic, f"{topic}.dlq", f"{topic}.intake"])
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.turns is not None:
        (args.turns / "probes.json").write_text(json.dumps(probes))
        if (args.turns / "spans.json").exists():
            out["turns"] = split(args.turns / "spans.json", args.turns / "probes.json")
        else:
            print("  journey run wrote no spans (did it end by a signal it did not handle?)")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
