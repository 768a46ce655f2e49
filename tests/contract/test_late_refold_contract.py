"""A late fact costs a bounded refold, on every store (SQLite and PostgreSQL).

A fact older than the newest one folded for its customer is folded in event-time order:
the journey is folded again from a checkpoint taken before the fact's place in event time,
not from the customer's first touchpoint. Counted in facts folded, never in seconds: a
customer with a tenth of its touchpoints reported late must cost a bounded number of folds
per late fact, whatever the length of its history, and end exactly as the same touchpoints
folded in event-time order (its state, and every timeline entry as stored).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from domain.envelope import Touchpoint
from domain.journey import CHECKPOINT_EVERY, Journey
from domain.positions import TopicPartition
from journey.synthetic import generate_touchpoints
from projections.store import JourneyStore

TP = TopicPartition("late.touchpoints", 0)
START = datetime(2025, 1, 6, 9, tzinfo=UTC)
HISTORY = 2000
LATE_EVERY = 10  # a tenth of the touchpoints are reported late ...
LATE_BY = 20  # ... by this many of the customer's touchpoints
BATCH = 100


def arrivals(history: list[Touchpoint]) -> list[Touchpoint]:
    """The history in log order: every LATE_EVERY-th touchpoint arrives LATE_BY later."""
    slots: list[tuple[int, int, Touchpoint]] = []
    for n, t in enumerate(history):
        late = n % LATE_EVERY == LATE_EVERY - 1
        slots.append((n + (LATE_BY if late else 0), n, t))
    return [t for _, _, t in sorted(slots, key=lambda s: (s[0], s[1]))]


def record(store: JourneyStore, touchpoints: list[Touchpoint]) -> None:
    offset = -1
    for start in range(0, len(touchpoints), BATCH):
        items = []
        for t in touchpoints[start : start + BATCH]:
            offset += 1
            items.append((offset, t))
        store.process(TP, items, offset)


def canonical(j: Journey) -> dict[str, Any]:
    dump = dataclasses.asdict(j)
    for bookkeeping in ("facts", "timeline", "last_fact", "earlier_facts", "refolded"):
        dump.pop(bookkeeping, None)
    return dump


@pytest.fixture
def folds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many facts the fold has been given (refolds included)."""
    count = [0]
    original = Journey._apply_in_order

    def counted(self: Journey, tp: Touchpoint, *args: Any, **kwargs: Any) -> str:
        count[0] += 1
        return original(self, tp, *args, **kwargs)

    monkeypatch.setattr(Journey, "_apply_in_order", counted)
    yield count


def test_late_facts_cost_a_bounded_refold(new_store: Any, folds: list[int], tmp_path: Path) -> None:
    history = generate_touchpoints(HISTORY, 1, seed=5, start=START, prefix="late")
    came = arrivals(history)
    late = HISTORY // LATE_EVERY
    store = JourneyStore(new_store("late"))
    record(store, came)
    folded = folds[0]
    # Each late fact folds again at most the facts since the checkpoint before it: up to
    # CHECKPOINT_EVERY before it, the LATE_BY after it, and the rest of its batch. From the
    # first touchpoint each time it would be ~HISTORY / 2 per late fact (~100,000 in all).
    bound = HISTORY + late * (2 * CHECKPOINT_EVERY + LATE_BY + BATCH)
    assert folded <= bound, f"{folded:,} facts folded for {HISTORY:,} ({late} late)"

    in_order = JourneyStore(new_store("in-order"))
    record(in_order, history)
    cid = history[0].customer_id
    got, want = store.journey(cid), in_order.journey(cid)
    assert got is not None and want is not None
    assert canonical(got.journey) == canonical(want.journey)
    assert got.touchpoints == want.touchpoints == HISTORY
    keys = [(cid, 0)]
    assert store.timeline(keys, limit=HISTORY) == in_order.timeline(keys, limit=HISTORY)
    store.close()
    in_order.close()
