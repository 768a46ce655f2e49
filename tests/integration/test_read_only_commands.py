"""Reading never disturbs the engine: `journey view`, `journey service-levels` and
`journey rebuild` while a `journey run` folds a backlog on real Kafka.

Before: both commands built a pipeline and joined the engine's consumer group to fold the
backlog themselves; the broker rebalanced, the running engine lost its partitions for as
long as they ran, and they could die with a TimeoutError traceback. Now they read the store
and say how far behind it is; rebuild reads every partition outside any group; the engine
keeps its partitions throughout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from consumers.log import Log
from journey.emitter import Emitter
from journey.synthetic import generate_touchpoints
from projections.keys import CustomerKeys
from projections.store import JourneyStore

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

JOURNEY = Path(sys.executable).with_name("journey")


def _members(bootstrap: str, group: str) -> list[tuple[str, frozenset[int]]]:
    """(member id, assigned partitions) of every member of ``group``, from the broker."""
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap], client_id="test-describe-group")
    try:
        info = admin.describe_groups([group])[group]
    finally:
        admin.close()
    return sorted(
        (
            str(member["member_id"]),
            frozenset(
                p
                for assigned in member["member_assignment"]["assigned_partitions"]
                for p in assigned["partitions"]
            ),
        )
        for member in info["members"]
    )


def test_view_service_levels_and_every_reader_never_join_the_engines_group(
    kafka_log: Log, tmp_path: Path, unique_topic: str
) -> None:
    log = kafka_log
    bootstrap = log.url.removeprefix("kafka://")
    group = f"views-{uuid.uuid4().hex[:8]}"
    store = tmp_path / "views.db"
    start = datetime.now(UTC) - timedelta(days=3)
    emitter = Emitter(
        log, topic=unique_topic, source="test", partitions=3, keys=CustomerKeys(store)
    )
    first, backlog = (
        generate_touchpoints(20, 5, seed=3, start=start),
        generate_touchpoints(2500, 200, seed=4, start=start),
    )
    emitter.emit_touchpoints(first)
    env = {
        **os.environ,
        "JOURNEY_BROKER": log.url,
        "JOURNEY_TOPIC": unique_topic,
        "JOURNEY_STORE": f"sqlite:///{store}",
        "JOURNEY_GROUP": group,
        # Each fold sleeps, so the backlog below stays a backlog while the readers run.
        "JOURNEY_CHAOS_FOLD_DELAY_MS": "20",
    }
    JourneyStore(store).close()  # made before the child, so only one process migrates
    out = (tmp_path / "run.err").open("wb")
    runner = subprocess.Popen(
        [str(JOURNEY), "--log-format", "json", "run"], env=env, stdout=out, stderr=out
    )
    out.close()
    watch = JourneyStore(store)
    try:
        deadline = time.monotonic() + 60
        while not watch.positions():
            assert runner.poll() is None, (tmp_path / "run.err").read_text()
            assert time.monotonic() < deadline, "journey run never folded anything"
            time.sleep(0.1)
        (engine,) = _members(bootstrap, group)
        assert engine[1] == frozenset({0, 1, 2}), engine

        emitter.emit_touchpoints(backlog)
        reader_env = {k: v for k, v in env.items() if k != "JOURNEY_CHAOS_FOLD_DELAY_MS"}
        runs = {
            args[0]: subprocess.run(
                [str(JOURNEY), *args],
                env=reader_env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            for args in (
                ["view", first[0].customer_id],
                ["service-levels", "--json"],
                ["rebuild"],  # reads the whole log, into a store of its own
                # the analysts' and auditors' commands read the log outside any group
                ["export", "--format", "csv", "--out", str(tmp_path / "export.csv")],
                ["metrics", "--since", "2020-01-01", "--until", "2100-01-01", "--json"],
                ["audit", "--customer", first[0].customer_id],
            )
        }
        for name, done in runs.items():
            assert done.returncode == 0, (name, done.stderr)
            assert "Traceback" not in done.stderr
        for name in ("view", "service-levels"):
            # The store is behind, and the reader says so instead of folding itself.
            assert "behind the log" in runs[name].stderr, runs[name].stderr
        assert runner.poll() is None, (tmp_path / "run.err").read_text()
        # The engine is still the only member and kept every partition, never revoked.
        assert _members(bootstrap, group) == [engine]
        run_log = (tmp_path / "run.err").read_text()
        assert "partitions revoked" not in run_log, run_log[-3000:]
        # The same member may be handed the same partitions again when kafka-python refreshes
        # its metadata (seen once in CI); what matters is that nothing was ever taken away
        # from it: still the same member id, all three partitions, no revocation.
    finally:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(timeout=60)
        finally:
            if runner.poll() is None:
                runner.kill()
        watch.close()
