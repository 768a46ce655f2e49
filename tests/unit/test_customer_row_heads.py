"""The customers row's name, email and phone (the first identity of each kind) are kept
beside a long journey and brought up to date from the identities added since: the row must
be what a walk of every identity gives, after appends, unlinks, an erasure and a snapshot's
round trip alike."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

from domain import catalogue as c
from domain.envelope import new_touchpoint
from domain.journey import Journey
from domain.positions import TopicPartition
from projections.rows import _HEADS_KEPT_FROM, customer_rows, display_name

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
TP = TopicPartition("t", 0)


def _walked(j: Journey) -> tuple[object, ...]:
    """The row's three columns as a walk of every identity gives them (the reference)."""
    first: dict[str, str | None] = {"email": None, "phone": None}
    for ident in j.identities:
        if ident.kind in first and first[ident.kind] is None:
            first[ident.kind] = ident.value
    return (display_name(j), first["email"], first["phone"])


def _row(j: Journey) -> tuple[object, ...]:
    (row,) = customer_rows(j, 0, 1, TP, ("customers",))["customers"].values()
    return tuple(row[3:6])


class _Fold:
    def __init__(self) -> None:
        self.journey = Journey("cust-a")
        self.at = AT

    def __call__(self, data: c.TouchpointData) -> None:
        self.at += timedelta(minutes=1)
        self.journey.apply(
            new_touchpoint(data, customer_id="cust-a", occurred_at=self.at, source="test")
        )


def test_the_row_matches_a_walk_of_every_identity() -> None:
    fold = _Fold()
    steps: list[c.TouchpointData] = [
        c.IdentityLinked(kind="order_number", value=f"o-{n}") for n in range(_HEADS_KEPT_FROM + 5)
    ]
    steps += [
        c.IdentityLinked(kind="email", value="a@example.com"),
        c.IdentityLinked(kind="order_number", value="o-late"),
        c.IdentityLinked(kind="email", value="b@example.com"),
        c.IdentityLinked(kind="phone", value="+4670111"),
        c.IdentityUnlinked(kind="email", value="a@example.com"),  # a new list
        c.IdentityLinked(kind="name", value="Ann"),
        c.ErasureRequested(),  # the same list, emptied
    ]
    steps += [
        c.IdentityLinked(kind="order_number", value=f"p-{n}") for n in range(_HEADS_KEPT_FROM + 5)
    ]
    steps += [c.IdentityLinked(kind="phone", value="+4670222")]
    seen = set()
    for data in steps:
        fold(data)
        assert _row(fold.journey) == _walked(fold.journey), data
        seen.add(_row(fold.journey))
    # The steps moved every column (so the comparison above was not of empty rows only).
    assert {"a@example.com", "b@example.com"} <= {row[1] for row in seen}
    assert {"+4670111", "+4670222"} <= {row[2] for row in seen}
    assert "Ann" in {row[0] for row in seen}


def test_a_snapshot_keeps_nothing_of_it() -> None:
    fold = _Fold()
    for n in range(_HEADS_KEPT_FROM + 1):
        fold(c.IdentityLinked(kind="order_number", value=f"o-{n}"))
    fold(c.IdentityLinked(kind="email", value="a@example.com"))
    assert _row(fold.journey) == (None, "a@example.com", None)
    state = fold.journey.__getstate__()
    assert "_identity_heads" not in state
    restored = pickle.loads(pickle.dumps(fold.journey))  # noqa: S301 -- our own bytes
    restored.apply(
        new_touchpoint(
            c.IdentityLinked(kind="phone", value="+4670111"),
            customer_id="cust-a",
            occurred_at=fold.at + timedelta(minutes=1),
            source="test",
        )
    )
    assert _row(restored) == _walked(restored) == (None, "a@example.com", "+4670111")
