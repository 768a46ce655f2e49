"""The event-sourced aggregate behind every customer view (eventsourcing).

A ``CustomerJourney`` folds one customer's touchpoints: one eventsourcing event per
touchpoint (``fold``), or one per customer and poll batch (``fold_all``: a writer pays the
event machinery once per customer and batch, not once per touchpoint); ``touchpoints``
counts the touchpoints folded either way. Those events are not stored: the
log of record is Kafka (or the embedded log), and the store keeps, per customer, a snapshot
of the folded state (eventsourcing's ``Snapshot``) plus one compact row per touchpoint. A
cold read is the snapshot and the few touchpoints folded since it. Erasure starts a new
*generation*: a new aggregate that remembers only that, and when, the customer asked to be
forgotten (see projections.store).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain.envelope import Touchpoint
from domain.errors import JourneyError
from domain.journey import Journey

__all__ = ["CustomerJourney", "FoldFailed", "journey_id"]

_NAMESPACE = uuid.UUID("6f1d3c1e-4a8b-4f7e-9a43-0c6b7f1a2d55")


def journey_id(customer_id: str, generation: int = 0) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{customer_id}#{generation}")


class FoldFailed(JourneyError):
    """``fold_all``: the fold raised on the touchpoint at ``index`` (``__cause__``)."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(f"touchpoint {index} of the batch: {type(error).__name__}: {error}")
        self.index = index
        self.error = error


class CustomerJourney(Aggregate):
    @staticmethod
    def create_id(customer_id: str, generation: int = 0, erased_at: str | None = None) -> uuid.UUID:
        return journey_id(customer_id, generation)

    @event("Started")
    def __init__(self, customer_id: str, generation: int = 0, erased_at: str | None = None) -> None:
        self.customer_id = customer_id
        self.generation = generation
        self.journey = Journey(customer_id)
        self.folded = 0
        if erased_at is not None:
            self.journey.erased_at = datetime.fromisoformat(erased_at)

    @event("TouchpointFolded")
    def fold(self, touchpoint: Touchpoint, raw: bytes) -> None:
        """Fold one touchpoint (decoded once, ``raw`` its wire envelope) into the journey."""
        count = self.touchpoints
        self.journey.apply(touchpoint, raw)
        self.folded = count + 1

    class TouchpointsFolded(Aggregate.Event):
        """Several touchpoints folded in order (``fold_all``). An event class of its own,
        applied by its ``apply`` (eventsourcing's way for an event to evolve its aggregate):
        through ``@event`` every call built a bound decorator and matched its arguments to
        the method's signature twice, ~6 us a customer and batch of a rebuild's."""

        touchpoints: Sequence[tuple[Touchpoint, bytes]]

        def apply(self, aggregate: Any) -> None:
            aggregate._fold_together(self.touchpoints)

    def fold_all(self, touchpoints: Sequence[tuple[Touchpoint, bytes]]) -> None:
        """Fold several touchpoints in order, as one event. Raises :class:`FoldFailed`
        naming the one the fold raised on (the journey is then partly folded: discard it)."""
        self.trigger_event(self.TouchpointsFolded, touchpoints=touchpoints)

    def _fold_together(self, touchpoints: Sequence[tuple[Touchpoint, bytes]]) -> None:
        count = self.touchpoints
        if self.journey.apply_together(touchpoints):
            self.folded = count + len(touchpoints)
            return
        apply = self.journey.apply
        for index, (touchpoint, raw) in enumerate(touchpoints):
            try:
                apply(touchpoint, raw)
            except Exception as exc:
                raise FoldFailed(index, exc) from exc
        self.folded = count + len(touchpoints)

    @property
    def touchpoints(self) -> int:
        # A snapshot taken before ``folded`` existed: every event then folded one.
        folded = self.__dict__.get("folded")
        return int(self.version) - 1 if folded is None else int(folded)
