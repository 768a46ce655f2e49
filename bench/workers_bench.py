"""The workers phase of ``make bench`` alone: 1 and 2 (or more) ``journey run`` processes in
one consumer group folding the bench workload into a fresh PostgreSQL database each, with
the speed-up of each count over one worker measured in the same run.

    python -m bench.workers_bench --broker kafka://127.0.0.1:19092 \\
        --postgres postgresql://journey@127.0.0.1:15432/journey --events 100000 --counts 1,2

Extra ``--env NAME=VALUE`` settings go to the workers (to compare a setting against the
default in one run, run twice in a row: the machine's load moves between minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import uuid
from pathlib import Path

from bench.run import kafka_hosts, workers_figure
from bench.workload import Shape, ensure_workload
from consumers.kafka_log import KafkaLog

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--postgres", required=True)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--counts", default="1,2")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--cache-dir", type=Path, default=Path("bench/.cache"))
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the workers")
    args = parser.parse_args(argv)
    for setting in args.env:
        name, _, value = setting.partition("=")
        os.environ[name] = value
    hosts = kafka_hosts(args.broker)
    log = KafkaLog(hosts)
    workload = ensure_workload(args.cache_dir, Shape.for_events(args.events), args.seed)
    counts = tuple(int(n) for n in args.counts.split(","))
    try:
        with tempfile.TemporaryDirectory(prefix="workers-bench-") as logs:
            out = workers_figure(
                log,
                hosts,
                args.broker,
                workload,
                args.postgres,
                uuid.uuid4().hex[:8],
                Path(logs),
                counts=counts,
            )
    finally:
        log.close()
    out["env"] = args.env
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print("result", json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
