"""What a long folded journey weighs: a writer keeps thousands of journeys in its cache (a
10,000-touchpoint customer held 5.8 MB there), and a snapshot pickles each one. Checked on
the objects' structure and in bytes, never timed."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import UTC, datetime
from typing import Any

from domain import journey as journey_module
from domain.journey import Case, Journey, Promise, Reply, Shipment
from journey.synthetic import generate_touchpoints
from projections import snapshots


def _long_journey(count: int = 1500) -> Journey:
    history = generate_touchpoints(
        count, 1, seed=21, start=datetime(2025, 1, 6, 9, tzinfo=UTC), prefix="weight"
    )
    journey = Journey(history[0].customer_id)
    for tp in history:
        journey.apply(tp)
    return journey


def _parts(journey: Journey) -> list[Any]:
    out: list[Any] = []
    for value in (*journey.cases.values(), *journey.promises.values()):
        out.append(value)
    out.extend(journey.identities)
    out.extend(journey.products)
    out.extend(journey.shipments.values())
    for case in journey.cases.values():
        out.extend(case.replies)
        out.extend(case.messages)
        out.extend(case.steps)
    return out


def test_the_parts_of_a_journey_carry_no_instance_dict() -> None:
    # An instance dict per case, promise, identity, reply... was a third of a heavy journey.
    parts = [
        value
        for name, value in vars(journey_module).items()
        if isinstance(value, type) and dataclasses.is_dataclass(value) and name != "Journey"
    ]
    assert len(parts) >= 14
    for cls in parts:
        assert "__slots__" in vars(cls), cls.__name__
    journey = _long_journey(400)
    folded = _parts(journey)
    assert folded and not any(hasattr(part, "__dict__") for part in folded)


def test_equal_short_values_of_different_touchpoints_are_one_string() -> None:
    journey = _long_journey()
    values: list[str] = []
    for case in journey.cases.values():
        values.extend(r.team for r in case.replies if r.team)
        values.extend(r.country for r in case.replies if r.country)
        values.extend(r.agent for r in case.replies if r.agent)
    values.extend(s.carrier for s in journey.shipments.values() if s.carrier)
    assert len(values) > 5 * len(set(values)), (len(values), len(set(values)))
    # One object per distinct value, however many touchpoints carried it.
    assert len({id(v) for v in values}) == len(set(values))


def test_a_snapshot_of_a_long_journey_restores_it_equal_and_still_shared() -> None:
    from domain.aggregates import CustomerJourney

    history = generate_touchpoints(
        1500, 1, seed=22, start=datetime(2025, 1, 6, 9, tzinfo=UTC), prefix="snap"
    )
    agg = CustomerJourney(customer_id=history[0].customer_id)
    agg.fold_all([(tp, None) for tp in history])  # type: ignore[misc]
    agg.journey.hand_over()
    m = snapshots.mapper()
    restored = snapshots.restore(m, snapshots.take(m, agg))
    assert dataclasses.asdict(restored.journey) == dataclasses.asdict(agg.journey)
    assert restored.touchpoints == agg.touchpoints
    # Cases, promises and shipments come back as the classes they were, fields and all.
    for cls in (Case, Promise, Reply, Shipment):
        assert any(isinstance(p, cls) for p in _parts(restored.journey)), cls.__name__
    # The pickle shares what the fold shared: a team named by every reply is one string.
    teams = [r.team for case in restored.journey.cases.values() for r in case.replies if r.team]
    assert teams and len({id(t) for t in teams}) == len(set(teams))


def test_a_part_pickles_as_its_field_values_without_their_names() -> None:
    # The default pickle of a dataclass writes a dict of field names for each of a heavy
    # journey's ~10,000 parts; loading sets them back one at a time.
    blob = pickle.dumps(_long_journey(600).__getstate__(), protocol=pickle.HIGHEST_PROTOCOL)
    for name in ("reply_owed_since", "awaiting_customer_since", "serial_as_given", "made_at"):
        assert name.encode() not in blob, name
