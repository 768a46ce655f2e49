"""bench/turns.py cuts a probe's emit -> visible where the `journey run` loop was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.turns import split


def test_a_probe_is_cut_by_what_the_loop_did_before_its_poll(tmp_path: Path) -> None:
    spans = [
        ["keeper tick", 9.95, 0.04, None],
        ["high-water marks", 9.96, 0.01, None],
        ["poll", 10.00, 0.01, None],
        ["fold", 10.01, 0.02, ["t", 1, 9, 3]],  # another partition, folded first
        ["fold", 10.03, 0.02, ["t", 0, 5, 2]],  # the probe's (offset 5)
        ["fold", 10.20, 0.02, ["t", 0, 9, 4]],  # a later one: not the probe's
    ]
    probes = [{"t0": 9.94, "partition": 0, "offset": 5, "visible_s": 0.11, "bare_s": 0.01}]
    (tmp_path / "spans.json").write_text(json.dumps(spans))
    (tmp_path / "probes.json").write_text(json.dumps(probes))
    result = split(tmp_path / "spans.json", tmp_path / "probes.json")
    cut = {k: v["all_ms"] for k, v in result["split"].items()}
    assert cut["before the poll"] == pytest.approx(60)
    assert cut["before: keeper tick"] == pytest.approx(40)
    assert cut["before: high-water marks"] == pytest.approx(10)
    assert cut["in its poll"] == pytest.approx(10)
    assert cut["other partitions first"] == pytest.approx(20)
    assert cut["its fold + commit"] == pytest.approx(20)
    assert result["steps"]["fold"]["count"] == 3
