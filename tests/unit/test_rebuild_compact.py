"""A rebuild's new SQLite store is packed before it is swapped in by writing the packed copy
once, into a new file beside it that then takes its name (``VACUUM INTO``): an in-place
VACUUM wrote the copy to a temporary file and then back over the store through a journal of
every old page. The packed store is the same store: the same rows and settings, as small,
WAL, sound, vouched for (its next open does not read it whole), nothing left beside it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.workload import Shape, ensure_workload, read_batches
from domain.envelope import decode
from domain.positions import TopicPartition
from projections.integrity import _read_marker, check_if_changed, file_identity
from projections.store import JourneyStore

TP = TopicPartition("t", 0)
_SETTINGS = ("page_size", "auto_vacuum", "encoding", "user_version", "application_id")


def _written_bytes() -> int:
    """What this process has handed to write() and pwrite() so far (Linux)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def _filled(path: Path, tmp_path: Path) -> JourneyStore:
    workload = ensure_workload(tmp_path / "cache", Shape.for_events(1500), 5)
    store = JourneyStore(path, rebuilding=True)
    offset = -1
    for batch in read_batches(workload.path, 150):
        items = []
        for line in batch:
            offset += 1
            items.append((offset, decode(line)))
        store.process(TP, items, offset)
    store.complete()
    return store


def _everything(path: Path) -> dict[str, object]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            str(r[0])
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'touchpoints_fts_%'"
                " ORDER BY name"
            )
        ]
        out: dict[str, object] = {
            t: sorted(con.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables
        }
        out["schema"] = sorted(con.execute("SELECT type, name, sql FROM sqlite_master"), key=repr)
        for setting in _SETTINGS:
            out[setting] = con.execute(f"PRAGMA {setting}").fetchone()[0]
        return out
    finally:
        con.close()


def test_a_rebuilds_store_is_packed_by_writing_it_once(tmp_path: Path) -> None:
    path = tmp_path / "views.db.20261202T000000000000"
    store = _filled(path, tmp_path)
    before = _everything(path)
    unpacked = path.stat().st_size
    written = _written_bytes()
    store.compact()
    written = _written_bytes() - written
    packed = path.stat().st_size
    assert packed < unpacked
    # The packed store, once (plus a few pages of WAL header and the marker); an in-place
    # VACUUM wrote it two and a half to three times.
    assert written < 1.3 * packed, f"{written / packed:.2f} times the packed store written"
    assert store.query("PRAGMA journal_mode") == [("wal",)]
    assert store.query("SELECT count(*) FROM touchpoints")[0][0] == 1500
    store.close()
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(path.name))
    assert left == [path.name, f"{path.name}.checked"]
    assert _everything(path) == before
    identity = file_identity(path)
    assert check_if_changed(path) is None
    assert file_identity(path) == identity
    reopened = JourneyStore(path)
    assert reopened.query("PRAGMA integrity_check") == [("ok",)]
    assert reopened.query("PRAGMA freelist_count") == [(0,)]
    reopened.close()


def test_the_packed_store_is_vouched_for_only_when_the_rebuilds_file_was(
    tmp_path: Path,
) -> None:
    # Someone else wrote the rebuild's file (it keeps working: SQLite allows it): the packed
    # store is not vouched for, so its first open reads it whole.
    path = tmp_path / "views.db.20261202T000000000000"
    store = _filled(path, tmp_path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("INSERT INTO partition_clocks VALUES ('x', 9, '2026-01-01')")
    other.close()
    store.compact()
    store.close()
    assert _read_marker(path) != file_identity(path)
