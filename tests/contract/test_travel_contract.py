"""Time travel against a model, on every store backend: a customer folded at a cut
(projections.travel) is exactly the pure fold (domain.journey.Journey) of the touchpoints
that pass the cut — statuses, counts, identities and every timeline line — whether the
customer's snapshot could be used or not.

The history has late reports (a tenth of the touchpoints reach the log five days after they
happened), so as-of and known-at sets differ, and a late fact recorded after the snapshot
rewrites the stored timeline lines of what the snapshot holds ("Repair #2" becomes "Repair
#3"): a known-at view before that report must not read those rewritten lines.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.envelope import Touchpoint
from domain.journey import Journey, fact_order
from domain.positions import TopicPartition
from journey.synthetic import generate_touchpoints
from projections import travel as travel_module
from projections.store import JourneyStore, StoreAddress
from projections.travel import Cut, TooLargeToTravel, travel

START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
TP = TopicPartition("journey.touchpoints", 0)


def _history(
    prefix: str, count: int, late_every: int | None, seed: int
) -> list[tuple[datetime, Touchpoint]]:
    """(logged at, touchpoint) in log order."""
    out = []
    for n, tp in enumerate(generate_touchpoints(count, 1, seed=seed, start=START, prefix=prefix)):
        late = late_every is not None and n % late_every == late_every - 1
        out.append((tp.occurred_at + (timedelta(days=5) if late else timedelta(minutes=1)), tp))
    out.sort(key=lambda pair: pair[0])
    return out


def _record(store: JourneyStore, history: list[tuple[datetime, Touchpoint]], first: int) -> int:
    offset = first
    for start in range(0, len(history), 20):
        batch = history[start : start + 20]
        items = [(offset + i, tp) for i, (_, tp) in enumerate(batch)]
        logged = {offset + i: at for i, (at, _) in enumerate(batch)}
        store.process(TP, items, offset + len(batch) - 1, logged_at=logged)
        offset += len(batch)
    return offset


def _model(history: list[tuple[datetime, Touchpoint]], cut: Cut) -> Journey:
    passing = [
        tp
        for logged, tp in history
        if (tp.occurred_at if cut.kind == "as_of" else logged) <= cut.at
    ]
    journey = Journey(passing[0].customer_id)
    for tp in sorted(passing, key=fact_order):
        journey.apply(tp)
    return journey


def _state(journey: Journey) -> dict[str, Any]:
    return {
        f.name: getattr(journey, f.name)
        for f in dataclasses.fields(journey)
        if f.compare and f.name != "timeline"
    }


def _lines(entries: list[Any]) -> list[tuple[Any, ...]]:
    return sorted((e.at, e.event_id, e.type, e.summary, e.case_id, e.text) for e in entries)


def test_a_customer_at_a_cut_is_the_fold_of_what_passes_it(
    store_address: StoreAddress, monkeypatch: pytest.MonkeyPatch
) -> None:
    late = _history("late", 300, late_every=10, seed=11)
    steady = _history("steady", 300, late_every=None, seed=12)
    used: list[bool] = []
    original = travel_module._from_snapshot

    def spy(*args: Any) -> Any:
        found = original(*args)
        used.append(found is not None)
        return found

    monkeypatch.setattr(travel_module, "_from_snapshot", spy)
    store = JourneyStore(store_address)
    try:
        offset = _record(store, late, 0)
        _record(store, steady, offset)
        assert store.snapshot(late[0][1].customer_id) is not None
        for history in (late, steady):
            cid = history[0][1].customer_id
            times = sorted(tp.occurred_at for _, tp in history)
            moments = [times[len(times) * q // 8] for q in range(1, 8)]
            moments += [max(at for at, _ in history)]
            for at in moments:
                for kind in ("as_of", "known_at"):
                    cut = Cut(kind, at)  # type: ignore[arg-type]
                    got = travel(store, cid, cut, [])
                    assert got is not None
                    want = _model(history, cut)
                    assert _state(got.journeys[0]) == _state(want), cut
                    assert _lines([e for e, _ in got.entries]) == _lines(want.timeline), cut
                    assert got.touchpoints == len(want.timeline)
        # Bounded: a view back in time reads at most so many rows (here 299 < 300).
        monkeypatch.setattr(travel_module, "TRAVEL_MAX_TOUCHPOINTS", 299)
        with pytest.raises(TooLargeToTravel, match="more than 299 touchpoints") as caught:
            travel(store, late[0][1].customer_id, Cut("as_of", START), [])
        assert "\n" not in str(caught.value) and "export" in str(caught.value)
    finally:
        store.close()
    # Both ways were taken: from the snapshot where it may be used, from the rows elsewhere.
    assert True in used and False in used
