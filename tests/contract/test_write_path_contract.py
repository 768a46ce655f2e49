"""The write path's economies keep the store's contract, on every store: a customer's
touchpoints of a batch fold as one aggregate event yet a poison one is still blamed alone;
a rebuilding store defers snapshots yet a cold read is still one row and a short tail; the
view writes grouped into runs leave the same rows as one statement at a time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from domain.envelope import Touchpoint
from domain.journey import Journey
from projections.store import (
    SNAPSHOT_EVERY_MIN,
    BatchRejected,
    JourneyStore,
    content_hash,
    content_hash_of,
    envelope_bytes,
)
from tests.contract.test_store_contract import TP, Writer, canonical, inquiry, reply, resolved


def _history(cid: str, n: int, start: float = 0.0) -> list[Touchpoint]:
    out: list[Touchpoint] = []
    minute = start
    for k in range(n):
        minute += 2
        out.append(inquiry(cid, f"{cid}-k{k}", minute, body=f"message {k}"))
        if k % 3 == 0:
            out.append(reply(cid, f"{cid}-k{k}", minute + 1))
        if k % 5 == 4:
            out.append(resolved(cid, f"{cid}-k{k - 2}", minute - 7))  # late: a refold
    return out


def _dump(store: JourneyStore) -> dict[str, list[tuple[object, ...]]]:
    tables = ("customers", "identities", "links", "clocks", "stopped_clocks", "owned_products")
    # due_us is the promise keeper's (projections/due.py), and no keeper ran here: a live
    # store's fold leaves it pending, a rebuilding one's NULL; either way nothing worked out.
    # (It is those tables' first column: projections/schema.py.)
    out = {
        t: sorted(
            [r[1:] for r in store.query(f"SELECT * FROM {t}")]
            if t in ("clocks", "stopped_clocks")
            else store.query(f"SELECT * FROM {t}"),
            key=repr,
        )
        for t in tables
    }

    out["touchpoints"] = store.query(
        "SELECT event_id, customer_id, generation, seq, at, type, summary, case_id, text,"
        ' content_hash, "offset", fact FROM touchpoints ORDER BY customer_id, seq'
    )
    return out


def test_a_rebuilding_store_snapshots_a_customer_when_it_leaves_the_cache_and_at_the_end(
    store_address: Path | str,
) -> None:
    history = _history("cust-big", 120)
    reference = Journey("cust-big")
    for t in history:
        reference.apply(t)
    store = JourneyStore(store_address, rebuilding=True, cache_size=1)
    try:
        w = Writer(store)
        for start in range(0, len(history), 10):
            w.batch(history[start : start + 10])
        # Many batches, no snapshot and no clock rows yet: the customer never left the
        # writer's cache (its customers row is written with every batch).
        assert store.query("SELECT count(*) FROM snapshots") == [(0,)]
        assert store.query("SELECT count(*) FROM clocks") == [(0,)]
        assert store.query("SELECT touchpoints FROM customers") == [(len(history),)]
        w.batch(_history("cust-small", 40))  # the big one leaves the cache of one
        big = store.journey("cust-big")
        assert big is not None
        assert store.query("SELECT customer_id, touchpoints FROM snapshots") == [
            ("cust-big", big.touchpoints)
        ]
        assert store.query("SELECT DISTINCT customer_id FROM clocks") == [("cust-big",)]
        assert store.complete() > 0  # the small one, still cached: its rows and snapshot
        assert store.complete() == 0  # and nothing more
    finally:
        store.close()
    cold = JourneyStore(store_address)
    try:
        tails = cold.query(
            "SELECT c.customer_id, c.touchpoints - s.touchpoints FROM customers c"
            " JOIN snapshots s ON s.customer_id = c.customer_id ORDER BY 1"
        )
        assert tails == [("cust-big", 0), ("cust-small", 0)]
        read = cold.journey("cust-big")
        assert read is not None
        assert canonical(read.journey) == canonical(reference)
    finally:
        cold.close()


def test_deferred_snapshots_leave_the_same_rows_as_snapshots_on_the_way(
    new_store: Callable[[str], Path | str],
) -> None:
    make = new_store
    batches = [_history(f"cust-{n}", 8 + 6 * n, start=100.0 * n) for n in range(6)]
    dumps = []
    for name, defer in (("live", False), ("rebuilt", True)):
        store = JourneyStore(make(name), rebuilding=defer, cache_size=2)
        try:
            w = Writer(store)
            for round_ in range(4):  # interleaved customers, several batches each
                w.batch([t for b in batches for t in b[round_ * 10 : (round_ + 1) * 10]])
            w.batch([t for b in batches for t in b[40:]])
            store.complete()
            dumps.append(_dump(store))
            longest = store.query(
                "SELECT max(c.touchpoints - coalesce(s.touchpoints, 0)) FROM customers c"
                " LEFT JOIN snapshots s ON s.customer_id = c.customer_id"
            )[0][0]
            assert longest < SNAPSHOT_EVERY_MIN, "a cold read folds a short tail"
        finally:
            store.close()
    assert dumps[0] == dumps[1]


@pytest.fixture
def fold_raises_on_poison(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fold raises on an inquiry whose body is "poison" (standing in for a bug of ours
    that one message triggers)."""
    original = Journey.apply

    def apply(self: Journey, touchpoint: Touchpoint, raw: bytes | None = None) -> str:
        if getattr(touchpoint.data, "body", None) == "poison":
            raise RuntimeError("the fold broke")
        return original(self, touchpoint, raw)

    monkeypatch.setattr(Journey, "apply", apply)


def test_a_rebuilding_store_whose_batch_fails_reads_the_customers_it_let_go_from_the_store(
    new_store: Callable[[str], Path | str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that fails after it wrote the deferred rows of a customer the cache was
    letting go: that customer is read back from the store later, its tables rewritten
    whole, and the end is the same as a store that never failed."""
    import projections.store as store_module

    rows_of = store_module.customer_rows

    def rows_raise_on_case_kp(j: Journey, *args: Any, **kwargs: Any) -> Any:
        if "kp" in j.cases:  # standing in for a bug of ours in deriving one journey's rows
            raise RuntimeError("rows broke")
        return rows_of(j, *args, **kwargs)

    monkeypatch.setattr(store_module, "customer_rows", rows_raise_on_case_kp)
    make = new_store
    a1, a2 = _history("cust-a", 12), _history("cust-a", 6, start=500.0)
    b = _history("cust-b", 5, start=200.0)
    bad = inquiry("cust-b", "kp", 260.0)
    dumps = []
    for name, rebuilding in (("live", False), ("rebuilt", True)):
        store = JourneyStore(make(name), rebuilding=rebuilding, cache_size=1)
        try:
            w = Writer(store)
            w.batch(a1)
            if rebuilding:  # cust-a leaves the cache with this batch, which fails
                items = [(w.offset + 1 + n, t) for n, t in enumerate([*b, bad])]
                with pytest.raises(BatchRejected):
                    store.process(TP, items, items[-1][0])
            w.batch(b)
            w.batch(a2)  # cust-a again: read back from the store
            store.complete()
            dumps.append(_dump(store))
        finally:
            store.close()
    assert dumps[0] == dumps[1]


@pytest.mark.usefixtures("fold_raises_on_poison")
def test_the_fold_blames_the_one_touchpoint_it_raised_on_in_a_customers_batch(
    store_address: Path | str,
) -> None:
    store = JourneyStore(store_address)
    try:
        batch = [
            inquiry("cust-a", "k1", 0),
            inquiry("cust-b", "k9", 1),
            reply("cust-a", "k1", 2),
            inquiry("cust-a", "k2", 3, body="poison"),
            inquiry("cust-a", "k3", 4),
        ]
        with pytest.raises(BatchRejected) as caught:
            store.process(TP, list(enumerate(batch)), len(batch) - 1)
        assert [(r.offset, r.reason) for r in caught.value.rejections] == [(3, "fold_failed")]
        assert "the fold broke" in caught.value.rejections[0].error
        assert store.positions() == {}  # nothing of it recorded
        # Without it, the rest folds, and the customer's count is its touchpoints'.
        rest = [(n, t) for n, t in enumerate(batch) if n != 3]
        assert store.process(TP, rest, len(batch) - 1).applied == 4
        journey = store.journey("cust-a")
        assert journey is not None and journey.touchpoints == 3
        assert store.query("SELECT seq FROM touchpoints WHERE customer_id = 'cust-a'"
                           " ORDER BY seq") == [(1,), (2,), (3,)]  # fmt: skip
    finally:
        store.close()


def test_the_content_hash_from_the_envelope_is_the_hash_of_the_model() -> None:
    """Every story's touchpoints (every event type, non-ASCII text, money, nested lines):
    the write path hashes the envelope it encoded; the edge hashes the model; both must
    agree, or a re-sent touchpoint would read as a conflicting duplicate."""
    from datetime import UTC, datetime

    from domain.envelope import decode, encode
    from journey.stories import all_touchpoints

    touchpoints = all_touchpoints(datetime(2026, 1, 5, 9, tzinfo=UTC))
    examples = Path(__file__).parents[2] / "docs" / "examples" / "touchpoints.jsonl"
    touchpoints += [decode(line) for line in examples.read_bytes().splitlines() if line.strip()]
    assert len({t.type for t in touchpoints}) > 20
    for t in touchpoints:
        assert content_hash_of(encode(t)) == content_hash(t), t.type
        # The store's fact is the envelope ``encode`` gives, serialised the short way.
        assert envelope_bytes(t) == encode(t), t.type
