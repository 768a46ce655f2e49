"""The event-sourced aggregate behind every customer view (eventsourcing).

A ``CustomerJourney`` aggregate records each touchpoint it folds as its own domain event,
so the store holds, per customer, the exact sequence the view was built from; time travel
is ``repository.get(id, version=n)``. Erasure starts a new *generation*: the old
aggregate's events are deleted from the store (see projections.store) and the new one
remembers only that, and when, the customer asked to be forgotten.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain.envelope import Touchpoint, parse_envelope
from domain.journey import Journey

__all__ = ["CustomerJourney", "already_parsed", "journey_id"]

# The live path has just validated the touchpoint it records; replaying stored events
# (another process, a cold cache) validates again. This slot lets the live path hand the
# parsed object over instead of parsing the same envelope a second time.
_PARSED: ContextVar[Touchpoint | None] = ContextVar("journey_parsed_touchpoint", default=None)


@contextmanager
def already_parsed(touchpoint: Touchpoint) -> Iterator[None]:
    token = _PARSED.set(touchpoint)
    try:
        yield
    finally:
        _PARSED.reset(token)


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
        parsed = _PARSED.get()
        if parsed is None or str(parsed.event_id) != envelope.get("event_id"):
            parsed = parse_envelope(envelope)
        self.journey.apply(parsed)

    @property
    def touchpoints(self) -> int:
        return int(self.version) - 1
