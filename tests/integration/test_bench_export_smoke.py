"""`make bench-export` at a tiny size: the driver runs every step end to end and writes
every figure as a number. No timing is asserted (performance belongs in the benchmark)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_export_benchmark_runs_and_reports_every_figure(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.export", "--events", "1500",
            "--cache-dir", str(tmp_path / "cache"), "--work-dir", str(tmp_path / "work"),
            "--results-dir", str(tmp_path / "results"),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    [written] = (tmp_path / "results").glob("export-*.json")
    results = json.loads(written.read_text())
    for step in ("read", "decode", "export-parquet", "export-duckdb", "export-csv"):
        figures = results[step]
        assert figures["touchpoints"] == 1500, step
        assert figures["per_s"] > 0 and figures["peak_rss_mib"] > 0, step
        assert figures["per_cpu_s"] > 0 and figures["cpu_seconds"] > 0, step
    for fmt in ("parquet", "duckdb", "csv"):
        figures = results[f"export-{fmt}"]
        assert figures["rows"] == 1500 and figures["out_bytes"] > 0
        assert len(figures["rss_mib_at"]) >= 2  # at the start and at the end at least
    assert "export-parquet" in done.stdout and "vs read" in done.stdout
