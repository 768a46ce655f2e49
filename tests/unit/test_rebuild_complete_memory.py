"""A rebuilding store's ``complete()`` lets each chunk of cached customers go once it is
written, before it completes the next: the folded state of the customers already written
is freed as it goes, not held (with the rows their completion made) to the end, where it
was the 1M rebuild's peak memory (docs/BENCHMARKS.md, "Rebuild: the end's peak and a poll
that fills")."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from domain.positions import TopicPartition
from projections.store import JourneyStore

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
TP = TopicPartition("t", 0)
CUSTOMERS = 450  # complete() writes at most 200 customers a transaction: three chunks


def _inquiry(customer_id: str, n: int) -> Touchpoint:
    return new_touchpoint(
        c.InquiryReceived(case_id=f"k-{customer_id}", channel="chat", subject="x", body=f"b{n}"),
        customer_id=customer_id,
        occurred_at=T0 + timedelta(minutes=n),
        source="test",
    )


def test_complete_frees_each_chunk_of_customers_before_the_next(tmp_path: Path) -> None:
    store = JourneyStore(tmp_path / "views.db", rebuilding=True)
    try:
        items = [(n, _inquiry(f"cust-{n:04d}", n)) for n in range(CUSTOMERS)]
        for start in range(0, CUSTOMERS, 50):
            batch = items[start : start + 50]
            store.process(TP, batch, batch[-1][0])
        held = [weakref.ref(live) for live in store._live.values()]
        assert len(held) == CUSTOMERS
        alive_at_writes: list[int] = []
        real = store.backend.execute

        def execute(writes: Sequence[Any]) -> None:
            alive_at_writes.append(sum(ref() is not None for ref in held))
            real(writes)

        store.backend.execute = execute  # type: ignore[method-assign]
        store.complete()
        # Each chunk's writes go out while only the customers not yet written are held.
        assert alive_at_writes == [450, 250, 50]
        assert all(ref() is None for ref in held)
        assert store.journey("cust-0000") is not None  # written whole, read back
    finally:
        store.close()
