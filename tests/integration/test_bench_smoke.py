"""`make bench` at a tiny size on the real Kafka: the driver runs end to end and writes
every figure as a number. No timing is asserted (performance belongs in the benchmark)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import kafka_bootstrap

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

SIZE = "2000"
NUMBERS = [
    "emit.emitter.per_s",
    "emit.bare_producer.per_s",
    "emit.ratio",
    f"rebuild.{SIZE}.rebuild.per_s",
    f"rebuild.{SIZE}.bare_json.per_s",
    f"rebuild.{SIZE}.bare_pydantic.per_s",
    f"rebuild.{SIZE}.ratio_json",
    f"rebuild.{SIZE}.ratio_pydantic",
    f"rebuild.{SIZE}.rebuild.peak_rss_mib",
    # over all the rebuild's processes
    f"rebuild.{SIZE}.rebuild.processes",
    f"rebuild.{SIZE}.rebuild.cpu_s",
    f"rebuild.{SIZE}.rebuild.peak_pss_sum_mib",
    f"rebuild.{SIZE}.rebuild.peak_rss_sum_mib",
    f"rebuild.{SIZE}.cpu_ratio_pydantic",
    f"rebuild.{SIZE}.store_bytes",
    f"rebuild.{SIZE}.log_bytes",
    f"rebuild.{SIZE}.store_bytes_per_touchpoint",
    f"rebuild.{SIZE}.store_over_log",
    "latency.visible.p50_ms",
    "latency.visible.p99_ms",
    "latency.bare_consumer.p50_ms",
    "latency.bare_consumer.p99_ms",
    "latency.background_achieved_per_s",
] + [
    f"view.{SIZE}.{kind}.{when}.{q}"
    for kind in ("heavy", "medium", "quiet")
    for when in ("cold", "warm", "store_open")
    for q in ("p50_ms", "p99_ms")
]


def at(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        assert isinstance(node, dict) and part in node, f"{path}: no {part!r}"
        node = node[part]
    return node


def test_a_tiny_run_writes_every_figure_as_a_number(tmp_path: Path, postgres_store: str) -> None:
    broker = kafka_bootstrap()
    if broker is None:
        pytest.skip("JOURNEY_TEST_KAFKA not set; run `make test` to start a real Kafka")
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--broker", f"kafka://{broker}", "--events", SIZE,
         "--quick", "--probes", "10", "--out-dir", str(out), "--cache-dir", str(tmp_path),
         "--postgres", postgres_store],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    latest = json.loads((out / "latest.json").read_text())
    stamped = [p for p in out.glob("*.json") if p.name != "latest.json"]
    assert len(stamped) == 1 and json.loads(stamped[0].read_text()) == latest
    missing = [p for p in NUMBERS if not isinstance(at(latest, p), int | float)]
    assert missing == [], f"not numbers: {missing}"
    assert all(at(latest, p) > 0 for p in NUMBERS if not p.startswith("view."))
    # not measured is said, never faked
    assert latest["rebuild_scaling"]["rate_ratio"] is None
    runs = latest["workers"]["runs"]
    assert sorted(runs) == ["1", "2", "4"]
    assert all(run["per_s"] > 0 for run in runs.values())
    assert all(isinstance(runs[n]["speedup"], float) for n in ("2", "4"))
    statuses = {t["figure"]: t["status"] for t in latest["targets"]}
    assert statuses["2 workers / 1 worker"] in {"PASS", "MISS"}
    assert set(statuses.values()) <= {"PASS", "MISS", "NOT MEASURED"}
    assert len(statuses) == 10
    # every figure is printed beside its baseline, with its target's verdict
    for needle in ("bare producer", "bare consumer, json", "bare consumer + pydantic", "PASS"):
        assert needle in done.stdout or needle.replace("PASS", "MISS") in done.stdout
