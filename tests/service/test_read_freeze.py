"""A large customer's first read leaves its objects to the collector's permanent generation.

The collector's first passes after loading a 10,000-touchpoint customer walked its tens of
thousands of objects (and the heap of imports): ~10 ms of the first read. ``ReadStore``
freezes them as soon as they are loaded, and gives the permanent generation back to the
collector every ``UNFREEZE_EVERY`` freezes, so cyclic garbage frozen along stays bounded.
The view itself is unchanged (tests/contract/test_view_cache_contract.py).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain import catalogue as c
from domain.envelope import new_touchpoint
from domain.positions import TopicPartition
from journey.service import reading
from journey.service.reading import ReadStore
from projections.store import JourneyStore

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
TP = TopicPartition("freeze.touchpoints", 0)


@pytest.fixture
def address(tmp_path: Path) -> Path:
    path = tmp_path / "views.db"
    writer = JourneyStore(path)
    items = [
        (
            i,
            new_touchpoint(
                c.InquiryReceived(case_id=f"k-{i}", channel="email", body="Help"),
                customer_id="cust-big" if i < 6 else "cust-small",
                occurred_at=T0 + timedelta(minutes=i),
                source="test",
            ),
        )
        for i in range(8)
    ]
    writer.process(TP, items, 7)
    writer.close()
    return path


@pytest.fixture(autouse=True)
def thawed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(reading, "FREEZE_FROM", 5)
    monkeypatch.setattr(reading, "_freezer", reading._Freezer())
    gc.unfreeze()
    yield
    gc.unfreeze()


def tracked(obj: object) -> bool:
    """Whether the collector's generations (not the permanent one) hold ``obj``."""
    return any(o is obj for o in gc.get_objects())


def test_a_large_customer_is_frozen_once_loaded(address: Path) -> None:
    store = ReadStore(address)
    try:
        agg = store.journey("cust-big")
        assert agg is not None and agg.touchpoints == 6
        assert gc.get_freeze_count() > 0
        assert not tracked(agg.journey.cases["k-0"])
    finally:
        store.close()


def test_a_small_customer_is_left_to_the_collector(address: Path) -> None:
    store = ReadStore(address)
    try:
        agg = store.journey("cust-small")
        assert agg is not None and agg.touchpoints == 2
        assert gc.get_freeze_count() == 0
        assert tracked(agg.journey.cases["k-6"])
    finally:
        store.close()


def test_the_permanent_generation_goes_back_to_the_collector(
    address: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reading, "UNFREEZE_EVERY", 3)
    store = ReadStore(address)
    try:
        counts = []
        for _ in range(3):
            store._snapshots.clear()  # a cold load each time
            assert store.journey("cust-big") is not None
            counts.append(gc.get_freeze_count())
        assert counts[0] > 0 and counts[1] > 0
        assert counts[2] == 0
    finally:
        store.close()
