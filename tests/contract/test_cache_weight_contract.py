"""A writer's cache bounded by what its customers weigh (touchpoints folded), not only by how
many it keeps: a few very long histories weigh as much as thousands of short ones (a
10,000-touchpoint journey held megabytes, a dozen-touchpoint one kilobytes). Letting
customers go by weight changes when their deferred rows and snapshots are written, never
what the store ends up holding."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from projections.store import JourneyStore
from tests.contract.test_store_contract import Writer
from tests.contract.test_write_path_contract import _dump, _history


def test_a_cache_bounded_by_weight_lets_customers_go_and_leaves_the_same_rows(
    new_store: Callable[[str], Path | str],
) -> None:
    # One long history among short ones, interleaved over several batches.
    batches = [_history("cust-long", 60), *(_history(f"cust-{n}", 14, 100.0 * n) for n in range(5))]
    dumps, let_go = [], []
    for name, weight in (("unbounded", 10**9), ("bounded", 150)):
        store = JourneyStore(new_store(name), rebuilding=True, cache_weight=weight)
        try:
            w = Writer(store)
            for round_ in range(5):
                w.batch([t for b in batches for t in b[round_ * 20 : (round_ + 1) * 20]])
            # Customers the cache let go were completed then: their snapshots are written.
            let_go.append(store.query("SELECT count(*) FROM snapshots")[0][0])
            store.complete()
            dumps.append(_dump(store))
            long = store.journey("cust-long")
            assert long is not None and long.touchpoints == len(batches[0])
        finally:
            store.close()
    assert let_go[0] == 0 < let_go[1], let_go
    assert dumps[0] == dumps[1]


def test_customers_completed_and_let_go_are_read_back_the_same_by_a_later_batch(
    new_store: Callable[[str], Path | str],
) -> None:
    # ``complete`` lets each customer go once written whole (a 1M rebuild's peak was its
    # end, every cached customer held while the heaviest were written): one that turns up
    # again is read back from the store and ends as if it had stayed.
    batches = [_history("cust-long", 40), *(_history(f"cust-{n}", 10, 100.0 * n) for n in range(3))]
    dumps = []
    for name, between in (("kept", False), ("let-go", True)):
        store = JourneyStore(new_store(name), rebuilding=True)
        try:
            w = Writer(store)
            w.batch([t for b in batches for t in b[:20]])
            if between:
                assert store.complete() > 0
            w.batch([t for b in batches for t in b[20:]])
            store.complete()
            dumps.append(_dump(store))
        finally:
            store.close()
    assert dumps[0] == dumps[1]
