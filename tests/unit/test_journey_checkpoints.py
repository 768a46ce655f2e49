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
