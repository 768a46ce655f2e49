"""Several processes opening one brand-new store file at once (a runner and a query
service started together) must all succeed."""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.queues import Queue
from pathlib import Path


def _open(path: str, results: Queue[str]) -> None:
    try:
        from projections.store import JourneyStore

        store = JourneyStore(path)
        store.positions()
        store.close()
        results.put("ok")
    except Exception as exc:  # reported to the test, which names it
        results.put(repr(exc))


def test_processes_racing_to_create_one_store(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    outcomes: list[str] = []
    for round_ in range(5):
        path = str(tmp_path / f"views-{round_}.db")
        results: Queue[str] = ctx.Queue()
        procs = [ctx.Process(target=_open, args=(path, results)) for _ in range(4)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        outcomes += [results.get(timeout=10) for _ in procs]
    assert [o for o in outcomes if o != "ok"] == []


def _another_process_opens_and_closes(path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('SELECT count(*) FROM tracking').fetchall(); c.close()"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)


def test_a_second_handle_in_the_writers_process_keeps_the_write_ahead_log_safe(
    tmp_path: Path,
) -> None:
    """The query service opens its own handle on the store its in-process runner writes.
    Opening one used to read the file's header with open()/close(), which drops every
    POSIX lock the process holds on the file; the next process to close a connection then
    took the write-ahead log for unused and deleted it, and the runner's later commits went
    to a deleted file: invisible to every other process, lost at restart."""
    from datetime import UTC, datetime

    from domain import catalogue as c
    from domain.envelope import new_touchpoint
    from domain.positions import TopicPartition
    from projections.store import JourneyStore

    path = tmp_path / "views.db"
    tp = TopicPartition("t", 0)

    def touch(n: int) -> list[tuple[int, object]]:
        data = c.InquiryReceived(case_id=f"k{n}", channel="email", subject="s")
        at = datetime(2026, 3, 1, tzinfo=UTC)
        return [(n, new_touchpoint(data, customer_id="c", occurred_at=at, source="t"))]

    writer = JourneyStore(path)
    writer.process(tp, touch(0), 0)  # type: ignore[arg-type]
    reader = JourneyStore(path)  # a second handle in the same process
    _another_process_opens_and_closes(path)
    writer.process(tp, touch(1), 1)  # type: ignore[arg-type]
    assert Path(str(path) + "-wal").exists(), "the write-ahead log was deleted under the writer"
    # A third process sees the writer's latest commit.
    import subprocess
    import sys

    seen = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("
            "\"SELECT notification_id FROM tracking WHERE application_name = 't:0'\")"
            ".fetchone()[0])",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert seen == "1"
    reader.close()
    writer.close()
