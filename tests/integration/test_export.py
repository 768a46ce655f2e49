"""`journey export`: the log as one row per touchpoint, read by pandas and DuckDB as they are.

On both logs (the embedded one and a real Kafka): the Parquet export holds every touchpoint
once with the right values and types, identity merges applied; two incremental exports hold
exactly the rows of one full export in every format; dead letters are skipped and counted,
re-sent touchpoints exported once, old versions upcast. Before: there was no export at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from consumers.log import Log, Message, OutgoingMessage
from domain.envelope import Touchpoint
from journey.analytics.export import (
    COLUMNS,
    ExportError,
    ExportFormat,
    export,
    positions_path,
    store_resolver,
)
from journey.emitter import Emitter
from journey.pipeline import Pipeline
from journey.stories import all_touchpoints
from journey.synthetic import generate_touchpoints

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
JOURNEY = Path(sys.executable).with_name("journey")
PHONE = "+46 70 123 45 67"  # the Dell story: Sven writes from his phone, keyed by the number


def read_all(log: Log, topic: str) -> list[Message]:
    """Every message on the topic, outside any group, in (partition, offset) order."""
    ends = log.high_watermarks(topic)
    consumer = log.consumer(None, [topic])
    got: dict[tuple[int, int], Message] = {}
    try:
        for _ in range(600):
            if len(got) >= sum(ends.values()):
                break
            for msg in consumer.poll(0.2, 2000):
                got[(msg.partition, msg.offset)] = msg
    finally:
        consumer.close()
    return [got[k] for k in sorted(got)]


def raw(customer: str, body: dict[str, Any]) -> OutgoingMessage:
    return OutgoingMessage(key=customer.encode(), value=json.dumps(body).encode())


def envelope(customer: str, type_: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "schema_version": version,
        "customer_id": customer,
        "occurred_at": "2026-11-20T10:00:00+01:00",
        "source": "old-helpdesk",
        "data": data,
    }


@pytest.fixture
def stories(log: Log, tmp_path: Path, unique_topic: str) -> Iterator[Pipeline]:
    """The seed stories folded into a store (with the keeper's derived facts on the log)."""
    pipeline = Pipeline(log, tmp_path / "views.db", topic=unique_topic)
    try:
        pipeline.emit(all_touchpoints(NOW))
        pipeline.catch_up()
        yield pipeline
    finally:
        pipeline.close()


def test_parquet_export_is_read_by_pandas_with_every_touchpoint_its_values_and_types(
    stories: Pipeline, tmp_path: Path
) -> None:
    log, topic = stories.log, stories.topic
    messages = read_all(log, topic)
    out = tmp_path / "history.parquet"

    result = export(log, out, topic=topic, resolve=store_resolver(stories.store))

    assert result.rows == len(messages) == result.read
    assert result.dead_letters == {} and result.duplicates == 0
    df = pd.read_parquet(out)
    assert tuple(df.columns) == COLUMNS
    assert len(df) == len(messages)
    assert str(df["occurred_at"].dtype) == "datetime64[us, UTC]"
    assert str(df["logged_at"].dtype) == "datetime64[us, UTC]"
    assert str(df["partition"].dtype) == "int32"
    assert str(df["offset"].dtype) == "int64"
    assert str(df["schema_version"].dtype) == "int32"
    # Every row is its message: same event, same time, same place, same log time.
    by_place = {(m.partition, m.offset): m for m in messages}
    for row in df.itertuples(index=False):
        msg = by_place[(row.partition, row.offset)]
        sent = json.loads(msg.value or b"")
        assert row.event_id == sent["event_id"]
        assert row.type == sent["type"]
        assert row.customer_id == sent["customer_id"] == (msg.key or b"").decode()
        assert row.occurred_at == pd.Timestamp(sent["occurred_at"])
        assert row.logged_at == pd.Timestamp(msg.timestamp_ms, unit="ms", tz="UTC")
        assert row.topic == topic
        assert json.loads(row.data) == {
            k: v for k, v in json.loads(row.data).items() if v is not None
        }
    # The typed columns and the JSON body of one known touchpoint.
    sms = df[df["case_id"] == "dell-sms-1"].iloc[0]
    assert sms["type"] == "InquiryReceived"
    assert sms["channel"] == "sms"
    assert sms["team"] == "Dell support SE"
    assert json.loads(sms["data"])["body"] == "Will DHL call before the pickup?"
    # Identity merges applied: the phone-keyed stream is Sven.
    assert sms["customer_id"] == PHONE
    assert sms["resolved_customer_id"] == "cust-sven"
    assert set(df[df["customer_id"] == "cust-sven"]["resolved_customer_id"]) == {"cust-sven"}
    replies = df[df["type"] == "ReplySent"]
    assert len(replies) > 0 and replies["agent"].notna().all()
    promises = df[df["type"] == "PromiseMade"]
    assert len(promises) > 0 and promises["promise_id"].notna().all()
    assert df[df["type"] == "OrderPlaced"]["order_id"].notna().all()
    # The derived facts the keeper recorded are on the log, so they are rows too.
    assert (df["type"] == "PromiseBroken").any()
    saved = json.loads(positions_path(out).read_text())
    assert {int(p): o for p, o in saved["positions"].items()} == log.high_watermarks(topic)


@pytest.mark.parametrize("fmt", ["parquet", "duckdb", "csv"])
def test_two_incremental_exports_hold_exactly_the_rows_of_one_full_export(
    log: Log, tmp_path: Path, unique_topic: str, fmt: ExportFormat
) -> None:
    emitter = Emitter(log, topic=unique_topic, source="test")
    early = generate_touchpoints(300, 25, seed=11, start=NOW - timedelta(days=30))
    late = generate_touchpoints(300, 25, seed=12, start=NOW - timedelta(days=20), prefix="b")
    emitter.emit_touchpoints(early)
    complaint_v1 = {"case_id": "old-1", "channel": "email", "product": "Lamp"}
    complaint_v1["serial_number"] = "SN-1"
    resolved = {"case_id": "c", "resolution": "done"}
    log.produce(  # an old version, and two messages the engine dead-letters
        unique_topic,
        [
            raw("cust-old", envelope("cust-old", "ComplaintFiled", 1, complaint_v1)),
            raw("cust-bad", envelope("cust-bad", "ReplySent", 1, {"case_id": 7})),
            raw("someone-else", envelope("cust-x", "CaseResolved", 1, resolved)),
        ],
    )
    inc = tmp_path / f"inc.{fmt}"
    first = export(log, inc, format=fmt, topic=unique_topic, batch_rows=64)
    assert first.dead_letters == {"invalid_data": 1, "key_mismatch": 1}
    emitter.emit_touchpoints(late)
    resent: list[Touchpoint] = [early[3], late[5], early[3]]  # re-sent, across the split too
    emitter.emit_touchpoints(resent)
    second = export(
        log, inc, format=fmt, topic=unique_topic, batch_rows=64,
        after_positions=positions_path(inc),
    )  # fmt: skip
    assert second.rows == len(late) and second.duplicates == 3 and second.appended
    full = tmp_path / f"full.{fmt}"
    whole = export(log, full, format=fmt, topic=unique_topic, batch_rows=1000)
    assert whole.rows == first.rows + second.rows == len(early) + len(late) + 1
    assert whole.duplicates == 3
    assert whole.positions == second.positions == log.high_watermarks(unique_topic)

    a, b = _rows(inc, fmt), _rows(full, fmt)
    assert len(a) == whole.rows
    pd.testing.assert_frame_equal(a, b)
    assert a["event_id"].is_unique
    old = a[a["customer_id"] == "cust-old"].iloc[0]
    assert (old["schema_version"], old["emitted_schema_version"]) == (2, 1)
    assert json.loads(old["data"])["serial_number_as_given"] == "SN-1"  # upcast
    # Nothing new: an incremental export appends nothing and says so.
    third = export(log, inc, format=fmt, topic=unique_topic, after_positions=positions_path(inc))
    assert third.rows == 0 and third.read == 0
    assert len(_rows(inc, fmt)) == whole.rows


def _rows(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == "parquet":
        df = pd.read_parquet(path)
    elif fmt == "csv":
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        with duckdb.connect(str(path), read_only=True) as con:
            df = con.execute("SELECT * FROM touchpoints").df()
    if fmt == "csv":
        df["partition"] = df["partition"].astype(int)
        df["offset"] = df["offset"].astype(int)
        df["schema_version"] = df["schema_version"].astype(int)
        df["emitted_schema_version"] = df["emitted_schema_version"].astype(int)
    return df.sort_values(["partition", "offset"]).reset_index(drop=True)


def test_duckdb_reads_its_export_with_timestamps_and_resolved_customers(
    embedded_log: Log, tmp_path: Path, unique_topic: str
) -> None:
    pipeline = Pipeline(embedded_log, tmp_path / "views.db", topic=unique_topic)
    try:
        pipeline.emit(all_touchpoints(NOW))
        pipeline.catch_up()
        out = tmp_path / "history.duckdb"
        result = export(
            embedded_log, out, format="duckdb", topic=unique_topic,
            resolve=store_resolver(pipeline.store),
        )  # fmt: skip
    finally:
        pipeline.close()
    with duckdb.connect(str(out), read_only=True) as con:
        types = dict(
            con.execute("SELECT column_name, column_type FROM (DESCRIBE touchpoints)").fetchall()
        )
        assert types["occurred_at"] == "TIMESTAMP WITH TIME ZONE"
        assert types["logged_at"] == "TIMESTAMP WITH TIME ZONE"
        assert types["offset"] == "BIGINT"
        assert types["schema_version"] == "INTEGER"
        assert con.execute("SELECT count(*) FROM touchpoints").fetchone() == (result.rows,)
        sven = con.execute(
            "SELECT count(*), count(DISTINCT customer_id) FROM touchpoints "
            "WHERE resolved_customer_id = 'cust-sven'"
        ).fetchone()
        assert sven is not None and sven[1] >= 2  # his own id and his phone number
        con.execute("SET TimeZone = 'UTC'")
        first = con.execute(
            "SELECT strftime(occurred_at, '%Y-%m-%dT%H:%M:%S'), data->>'$.body' "
            "FROM touchpoints WHERE case_id = 'dell-sms-1'"
        ).fetchone()
    sms = next(
        tp for tp in all_touchpoints(NOW) if getattr(tp.data, "case_id", None) == "dell-sms-1"
    )
    assert first == (
        sms.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "Will DHL call before the pickup?",
    )


def test_filters_choose_rows_and_a_customer_includes_the_ids_merged_with_it(
    embedded_log: Log, tmp_path: Path, unique_topic: str
) -> None:
    pipeline = Pipeline(embedded_log, tmp_path / "views.db", topic=unique_topic)
    try:
        pipeline.emit(all_touchpoints(NOW))
        pipeline.catch_up()
        resolve = store_resolver(pipeline.store)
        sven = export(
            embedded_log, tmp_path / "sven.parquet", topic=unique_topic, customer="cust-sven",
            resolve=resolve,
        )  # fmt: skip
        since, until = NOW - timedelta(days=3), NOW - timedelta(days=1)
        window = export(
            embedded_log, tmp_path / "window.parquet", topic=unique_topic, since=since,
            until=until, types=["ReplySent", "InquiryReceived"],
        )  # fmt: skip
    finally:
        pipeline.close()
    df = pd.read_parquet(tmp_path / "sven.parquet")
    assert set(df["customer_id"]) == {"cust-sven", PHONE}
    assert sven.rows + sven.filtered_out == sven.read
    w = pd.read_parquet(tmp_path / "window.parquet")
    expected = [
        tp for tp in all_touchpoints(NOW)
        if tp.type in {"ReplySent", "InquiryReceived"} and since <= tp.occurred_at < until
    ]  # fmt: skip
    assert 0 < len(w) == len(expected) == window.rows
    assert set(w["event_id"]) == {str(tp.event_id) for tp in expected}


def test_what_cannot_be_done_is_refused_and_leaves_the_export_as_it_was(
    embedded_log: Log, tmp_path: Path, unique_topic: str
) -> None:
    Emitter(embedded_log, topic=unique_topic, source="t").emit_touchpoints(
        generate_touchpoints(20, 3, seed=1, start=NOW - timedelta(days=3))
    )
    out = tmp_path / "x.csv"
    export(embedded_log, out, format="csv", topic=unique_topic, types=["ReplySent"])
    before = out.read_bytes()
    with pytest.raises(ExportError, match="already exists"):
        export(embedded_log, out, format="csv", topic=unique_topic)
    with pytest.raises(ExportError, match="other filters"):
        export(
            embedded_log, out, format="csv", topic=unique_topic, after_positions=positions_path(out)
        )
    with pytest.raises(ExportError, match="belongs to a csv export"):
        export(
            embedded_log, out, format="parquet", topic=unique_topic, types=["ReplySent"],
            after_positions=positions_path(out),
        )  # fmt: skip
    with pytest.raises(ExportError, match="unknown touchpoint type"):
        export(
            embedded_log, tmp_path / "y.csv", format="csv", topic=unique_topic, types=["Replied"]
        )
    with pytest.raises(ExportError, match="does not exist"):
        export(
            embedded_log, tmp_path / "z.csv", format="csv", topic=unique_topic,
            types=["ReplySent"], after_positions=positions_path(out),
        )  # fmt: skip
    assert out.read_bytes() == before
    assert not (tmp_path / "y.csv").exists() and not (tmp_path / "z.csv").exists()


def journey(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEY_")}
    return subprocess.run(
        [str(JOURNEY), "--log-level", "warning", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_command_prints_a_summary_and_says_when_no_store_resolves_identities(
    embedded_log: Log, tmp_path: Path, unique_topic: str
) -> None:
    Emitter(embedded_log, topic=unique_topic, source="t").emit_touchpoints(
        generate_touchpoints(50, 5, seed=2, start=NOW - timedelta(days=3))
    )
    common = ("--broker", f"embedded://{tmp_path}/log.db", "--topic", unique_topic,
              "--store", f"sqlite:///{tmp_path}/none.db")  # fmt: skip
    done = journey(tmp_path, *common, "export", "--format", "duckdb", "--out", "h.duckdb")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows"] == 50 and summary["resolved_with"] == "none"
    assert "no store at" in done.stderr and "as emitted" in done.stderr
    again = journey(tmp_path, *common, "export", "--format", "duckdb", "--out", "h.duckdb")
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1].startswith("error: h.duckdb already exists")
    bad = journey(tmp_path, *common, "export", "--out", "p", "--since", "2026-11-01T10:00")
    assert bad.returncode == 2 and "no zone offset" in bad.stderr


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("fmt", ["parquet", "duckdb", "csv"])
def test_an_append_that_fails_half_way_leaves_the_export_as_it_was(
    embedded_log: Log,
    tmp_path: Path,
    unique_topic: str,
    fmt: ExportFormat,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emitter = Emitter(embedded_log, topic=unique_topic, source="t")
    emitter.emit_touchpoints(generate_touchpoints(300, 20, seed=3, start=NOW - timedelta(days=9)))
    out = tmp_path / f"h.{fmt}"
    export(embedded_log, out, format=fmt, topic=unique_topic)
    before = _rows(out, fmt)
    saved = positions_path(out).read_text()
    emitter.emit_touchpoints(
        generate_touchpoints(2500, 50, seed=4, start=NOW - timedelta(days=8), prefix="c")
    )
    calls = []

    def fail_on_the_second_poll(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 3:  # the start, the first poll (its batches written), the second
            raise Interrupted

    with pytest.raises(Interrupted):
        export(
            embedded_log, out, format=fmt, topic=unique_topic, batch_rows=100,
            after_positions=positions_path(out), progress=fail_on_the_second_poll,
        )  # fmt: skip
    pd.testing.assert_frame_equal(_rows(out, fmt), before)
    assert positions_path(out).read_text() == saved
    if fmt == "duckdb":
        # A run that died without cleaning up (SIGKILL) left its batches in the table: the
        # next append removes them before it writes.
        from journey.analytics import export as module

        monkeypatch.setattr(module._DuckDbSink, "abort", lambda self: self.con.close())
        with pytest.raises(Interrupted):
            calls.clear()
            export(
                embedded_log, out, format=fmt, topic=unique_topic, batch_rows=100,
                after_positions=positions_path(out), progress=fail_on_the_second_poll,
            )  # fmt: skip
        assert len(_rows(out, fmt)) > len(before)
    again = export(
        embedded_log, out, format=fmt, topic=unique_topic, after_positions=positions_path(out)
    )
    assert again.rows == 2500
    full = tmp_path / f"full.{fmt}"
    export(embedded_log, full, format=fmt, topic=unique_topic)
    pd.testing.assert_frame_equal(_rows(out, fmt), _rows(full, fmt))


@pytest.mark.parametrize("fmt", ["parquet", "duckdb", "csv"])
def test_a_run_published_but_whose_positions_were_not_written_is_neither_lost_nor_doubled(
    embedded_log: Log,
    tmp_path: Path,
    unique_topic: str,
    fmt: ExportFormat,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The rows and their ids are committed, then writing the positions fails (a full disk,
    # a kill): the next append starts from the old positions again. Before: DuckDB deleted
    # that run's rows by position and then skipped every message as already exported.
    from journey.analytics import export as module

    emitter = Emitter(embedded_log, topic=unique_topic, source="t")
    emitter.emit_touchpoints(generate_touchpoints(200, 20, seed=5, start=NOW - timedelta(days=9)))
    out = tmp_path / f"h.{fmt}"
    export(embedded_log, out, format=fmt, topic=unique_topic)
    saved = positions_path(out).read_text()
    emitter.emit_touchpoints(
        generate_touchpoints(300, 20, seed=6, start=NOW - timedelta(days=8), prefix="d")
    )
    real = module._write_positions

    def disk_full(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "_write_positions", disk_full)
    with pytest.raises(OSError, match="No space"):
        export(embedded_log, out, format=fmt, topic=unique_topic,
               after_positions=positions_path(out))  # fmt: skip
    monkeypatch.setattr(module, "_write_positions", real)
    assert positions_path(out).read_text() == saved
    export(embedded_log, out, format=fmt, topic=unique_topic, after_positions=positions_path(out))
    full = tmp_path / f"full.{fmt}"
    export(embedded_log, full, format=fmt, topic=unique_topic)
    pd.testing.assert_frame_equal(_rows(out, fmt), _rows(full, fmt))


@pytest.mark.parametrize("fmt", ["parquet", "duckdb", "csv"])
def test_an_out_in_a_directory_that_does_not_exist_is_refused_in_one_line(
    embedded_log: Log, tmp_path: Path, unique_topic: str, fmt: ExportFormat
) -> None:
    # Before: "unexpected OperationalError: unable to open database file" (the ids file).
    Emitter(embedded_log, topic=unique_topic, source="t").emit_touchpoints(
        generate_touchpoints(10, 2, seed=1, start=NOW - timedelta(days=3))
    )
    out = tmp_path / "no-such-dir" / f"h.{fmt}"
    with pytest.raises(ExportError, match=r"no-such-dir does not exist: create it"):
        export(embedded_log, out, format=fmt, topic=unique_topic)
    assert not out.parent.exists()


def test_a_time_without_a_zone_is_refused_by_the_python_api_too(
    embedded_log: Log, tmp_path: Path, unique_topic: str
) -> None:
    # Before: a TypeError (naive and aware datetimes compared) once the first row was read.
    Emitter(embedded_log, topic=unique_topic, source="t").emit_touchpoints(
        generate_touchpoints(10, 2, seed=1, start=NOW - timedelta(days=3))
    )
    naive = datetime(2026, 11, 1, 8, 0)
    with pytest.raises(ExportError, match=r"since .* has no zone"):
        export(embedded_log, tmp_path / "h.csv", format="csv", topic=unique_topic, since=naive)
    assert not (tmp_path / "h.csv").exists()
