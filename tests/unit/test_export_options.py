"""The export's options as an analyst types them: dates and times, and positions files
that belong to another export. Before: there was no export."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from consumers.embedded_log import EmbeddedLog
from journey.analytics.export import ExportError, export, parse_time, positions_path


def test_a_date_is_midnight_utc_and_a_time_needs_its_offset() -> None:
    assert parse_time("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_time("2026-11-01T08:00:00Z") == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert parse_time("2026-11-01T09:00:00+01:00") == datetime(
        2026, 11, 1, 9, tzinfo=timezone(timedelta(hours=1))
    )
    with pytest.raises(ExportError, match="no zone offset: add one"):
        parse_time("2026-11-01T08:00", "--since")
    with pytest.raises(ExportError, match="--until 'last week' is not a date or time"):
        parse_time("last week", "--until")


def test_positions_of_another_topic_or_beyond_the_log_are_refused(tmp_path: Path) -> None:
    log = EmbeddedLog(str(tmp_path / "log.db"))
    try:
        log.ensure_topics(["t"], 2)
        out = tmp_path / "x.csv"
        export(log, out, format="csv", topic="t")
        assert out.read_text().startswith('"event_id","type"')  # the header, no rows
        saved = json.loads(positions_path(out).read_text())
        assert saved["positions"] == {"0": 0, "1": 0}
        with pytest.raises(ExportError, match="of topic 't', not 'u'"):
            log.ensure_topics(["u"], 2)
            export(log, out, format="csv", topic="u", after_positions=positions_path(out))
        saved["positions"] = {"0": 5, "1": 0}
        positions_path(out).write_text(json.dumps(saved))
        with pytest.raises(ExportError, match="ahead of the log's end on partition"):
            export(log, out, format="csv", topic="t", after_positions=positions_path(out))
        positions_path(out).write_text("{}")
        with pytest.raises(ExportError, match="is not an export's positions file"):
            export(log, out, format="csv", topic="t", after_positions=positions_path(out))
        with pytest.raises(ExportError, match="cannot read topic 'nope'"):
            export(log, tmp_path / "y.csv", format="csv", topic="nope")
    finally:
        log.close()
