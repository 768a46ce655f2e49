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
