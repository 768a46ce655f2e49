"""What the commands print, on the demo's data: filters that name what exists, tables that
fit the terminal without cutting an id, and JSON from every command that prints.

Before: `service-levels --team <typo>` printed an empty table and exited 0; at 80 columns
case ids were cut ("nordbank-sign…"); `demo` and `schema` had no --json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

JOURNEY = Path(sys.executable).with_name("journey")
DEMO = ("--broker", "embedded://.demo/log.db", "--store", "sqlite:///.demo/views.db")


def journey(cwd: Path, *args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEY_")}
    env["COLUMNS"] = str(columns)
    return subprocess.run(
        [str(JOURNEY), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("demo")
    done = journey(cwd, "demo")
    assert done.returncode == 0, done.stderr
    return cwd


def test_an_unknown_team_is_an_error_listing_the_known_ones(demo: Path) -> None:
    done = journey(demo, *DEMO, "service-levels", "--team", "Nordbank")
    assert done.returncode == 2, done.stdout
    assert done.stdout == ""
    assert "unknown team 'Nordbank'" in done.stderr
    assert "Nordbank private customers" in done.stderr  # the one meant


def test_a_known_team_still_filters(demo: Path) -> None:
    done = journey(demo, *DEMO, "service-levels", "--team", "Returns", "--json")
    assert done.returncode == 0, done.stderr
    levels = json.loads(done.stdout)
    assert set(levels["by_team"]) <= {"Returns"}


def test_a_view_by_a_claimed_identity_names_the_candidates_not_a_view(demo: Path) -> None:
    # Erik's e-mail was typed into web forms: a claim, never a way into his view.
    done = journey(demo, *DEMO, "view", "erik.haugen@example.no")
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "candidates: cust-erik (email, unverified)" in line
    # His verified e-mail finds Sven.
    sven = journey(demo, *DEMO, "view", "sven.berg@example.se", "--json")
    assert sven.returncode == 0 and json.loads(sven.stdout)["customer_id"] == "cust-sven"


def test_at_80_columns_no_id_is_cut(demo: Path) -> None:
    as_json = journey(demo, *DEMO, "view", "cust-erik", "--json")
    view = json.loads(as_json.stdout)
    ids = [c["case_id"] for c in view["open_cases"]]
    assert any(len(i) > 14 for i in ids), ids  # long enough to be cut before
    shown = journey(demo, *DEMO, "view", "cust-erik", columns=80)
    assert shown.returncode == 0, shown.stderr
    assert "…" not in shown.stdout
    # A folded id reads whole once the table's cell borders are taken out.
    cells = "".join(
        line.split("│")[2].strip() if line.count("│") > 2 else ""
        for line in shown.stdout.splitlines()
    )
    for case_id in ids:
        assert case_id in cells, (case_id, shown.stdout)
    assert max(len(line) for line in shown.stdout.splitlines()) <= 80


def test_service_levels_at_80_columns_cut_nothing(demo: Path) -> None:
    shown = journey(demo, *DEMO, "service-levels", columns=80)
    assert shown.returncode == 0, shown.stderr
    assert "…" not in shown.stdout


def test_the_demo_at_80_columns_cuts_nothing(tmp_path: Path) -> None:
    shown = journey(tmp_path, "demo", columns=80)
    assert shown.returncode == 0, shown.stderr
    assert "…" not in shown.stdout
    assert max(len(line) for line in shown.stdout.splitlines()) <= 80


def test_demo_prints_json_with_json(tmp_path: Path) -> None:
    done = journey(tmp_path, "demo", "--customer", "cust-erik", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["customer"]["customer_id"] == "cust-erik"
    assert out["folded"] >= out["emitted"] > 0
    assert "breached" in out["service_levels"]
    assert out["log"].startswith("embedded://")


def test_schema_prints_json_with_json(tmp_path: Path) -> None:
    done = journey(tmp_path, "schema", "--out", "schemas", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["schemas"] and all((tmp_path / p).is_file() for p in out["schemas"])
