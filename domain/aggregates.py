"""The event-sourced aggregate behind every customer view (eventsourcing).

A ``CustomerJourney`` aggregate records each touchpoint it folds as its own domain event,
so the store holds, per customer, the exact sequence the view was built from; time travel
is ``repository.get(id, version=n)``. Erasure starts a new *generation*: the old
aggregate's events are deleted from the store (see projections.store) and the new one
remembers only that, and when, the customer asked to be forgotten.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain.envelope import parse_envelope
from domain.journey import Journey

__all__ = ["CustomerJourney", "journey_id"]

_NAMESPACE = uuid.UUID("6f1d3c1e-4a8b-4f7e-9a43-0c6b7f1a2d55")


def journey_id(customer_id: str, generation: int = 0) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{customer_id}#{generation}")


class CustomerJourney(Aggregate):
    @staticmethod
    def create_id(customer_id: str, generation: int = 0, erased_at: str | None = None) -> uuid.UUID:
        return journey_id(customer_id, generation)

    @event("Started")
    def __init__(self, customer_id: str, generation: int = 0, erased_at: str | None = None) -> None:
        self.customer_id = customer_id
        self.generation = generation
        self.journey = Journey(customer_id)
        if erased_at is not None:
            self.journey.erased_at = datetime.fromisoformat(erased_at)

    @event("TouchpointRecorded")
    def record(self, envelope: dict[str, Any]) -> None:
        """Fold one touchpoint (its wire envelope, current version) into the journey."""
        self.journey.apply(parse_envelope(envelope))

    @property
    def touchpoints(self) -> int:
        return int(self.version) - 1
