"""What a late fact costs a long journey in checkpoints: keeping one pickles the whole folded
state, so their spacing grows with the history (``checkpoint_every``). With a fixed spacing of
64 facts, a late fact older than every kept checkpoint of a 4,000-touchpoint customer pickled
the growing state ~60 times over in one refold (a live worker stalled for minutes on the
keeper's late facts for a 10,000-touchpoint customer, 59 % of its time in ``pickle.dumps``).
Counted in bytes pickled, never timed."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.journey import CHECKPOINTS_KEPT, Journey, checkpoint_every
from journey.synthetic import generate_touchpoints

HISTORY = 4000


def test_the_spacing_grows_with_the_history() -> None:
    assert checkpoint_every(10) == checkpoint_every(512) == 64
    assert checkpoint_every(8000) == 1000 == 8000 // CHECKPOINTS_KEPT


def test_a_late_fact_older_than_every_checkpoint_pickles_the_state_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    history = generate_touchpoints(
        HISTORY, 1, seed=7, start=datetime(2025, 1, 6, 9, tzinfo=UTC), prefix="long"
    )
    journey = Journey(history[0].customer_id)
    # The second fact arrives last but one: the journey keeps checkpoints from then on.
    journey.apply(history[0])
    journey.apply(history[2])
    journey.apply(history[1])
    for tp in history[3:-1]:
        journey.apply(tp)
    state = pickle.dumps(journey.__getstate__(), protocol=pickle.HIGHEST_PROTOCOL)

    pickled: list[int] = []
    real_dumps = pickle.dumps

    def counted(obj: Any, *args: Any, **kwargs: Any) -> bytes:
        out = real_dumps(obj, *args, **kwargs)
        pickled.append(len(out))
        return out

    monkeypatch.setattr("domain.journey.pickle.dumps", counted)
    # A fact older than every kept checkpoint: the refold starts at the first touchpoint.
    oldest = history[-1].model_copy(update={"occurred_at": history[0].occurred_at})
    journey.apply(oldest)
    # Spaced with the history, the checkpoints of a whole refold add up to about twice the
    # final state (a geometric series: 23 pickles, 1.85x here); at a fixed 64 they were 62.
    assert sum(pickled) <= 4 * len(state), (len(pickled), sum(pickled), len(state))
    assert len(pickled) <= 30, len(pickled)


def _canonical(j: Journey) -> dict[str, Any]:
    import dataclasses

    dump = dataclasses.asdict(j)
    for bookkeeping in ("facts", "timeline", "last_fact", "earlier_facts", "refolded"):
        dump.pop(bookkeeping, None)
    return dump


def _replayed(history: list[Any], late_every: int) -> tuple[list[Any], list[Any]]:
    """In-order facts, and a batch of late ones (as a replay's keeper facts come: each dated
    far behind the customer's head)."""
    on_time = [t for n, t in enumerate(history) if n % late_every]
    late = [t for n, t in enumerate(history) if not n % late_every and n]
    return [history[0], *on_time], late


def test_a_batch_of_late_facts_refolds_once_and_ends_as_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from domain.aggregates import CustomerJourney

    history = generate_touchpoints(
        1500, 1, seed=11, start=datetime(2025, 1, 6, 9, tzinfo=UTC), prefix="keeper"
    )
    first, late = _replayed(history, 15)
    folded = [0]
    original = Journey._apply_in_order

    def counted(self: Journey, tp: Any, *args: Any, **kwargs: Any) -> str:
        folded[0] += 1
        return original(self, tp, *args, **kwargs)

    monkeypatch.setattr(Journey, "_apply_in_order", counted)
    ends = []
    for together in (False, True):
        agg = CustomerJourney(customer_id=history[0].customer_id)
        agg.fold_all([(t, None) for t in first])  # type: ignore[misc]
        folded[0] = 0
        if together:
            agg.fold_all([(t, None) for t in late])  # type: ignore[misc]
        else:
            for t in late:
                agg.fold_all([(t, None)])  # type: ignore[misc]
        ends.append((_canonical(agg.journey), folded[0], agg.touchpoints))
    (one_by_one, each_folds, n1), (together, once_folds, n2) = ends
    assert together == one_by_one and n1 == n2
    # One refold of the whole history (the late facts reach back to its start), against
    # one per late fact.
    assert once_folds <= len(history), (once_folds, each_folds)
    assert each_folds > 10 * once_folds, (once_folds, each_folds)


def test_a_late_batch_whose_refold_raises_is_folded_one_by_one_to_blame_the_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from domain.aggregates import CustomerJourney, FoldFailed

    history = generate_touchpoints(
        300, 1, seed=12, start=datetime(2025, 1, 6, 9, tzinfo=UTC), prefix="blame"
    )
    first, late = _replayed(history, 10)
    poison = late[5]
    original = Journey._apply_in_order

    def raising(self: Journey, tp: Any, *args: Any, **kwargs: Any) -> str:
        if tp.event_id == poison.event_id:  # a bug of ours that one fact triggers
            raise RuntimeError("the fold broke")
        return original(self, tp, *args, **kwargs)

    agg = CustomerJourney(customer_id=history[0].customer_id)
    agg.fold_all([(t, None) for t in first])  # type: ignore[misc]
    monkeypatch.setattr(Journey, "_apply_in_order", raising)
    with pytest.raises(FoldFailed) as failed:
        agg.fold_all([(t, None) for t in late])  # type: ignore[misc]
    assert failed.value.index == 5
