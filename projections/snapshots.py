"""Per-customer snapshots: eventsourcing's ``Snapshot`` of a ``CustomerJourney``, stored
through eventsourcing's ``Mapper`` (transcoder + zlib compressor, and AES-GCM when a key is
configured), one row per customer.

The folded state is a graph of plain dataclasses (domain.journey); JSON would need a
transcoding per class and a second model to keep in step with the fold, so the transcoder
pickles. A pickle runs whatever its bytes name, so decoding goes through an unpickler that
only builds the classes a journey is made of: a snapshot that names anything else (a file
damaged or written by someone else) is refused, and the store falls back to the log.
"""

from __future__ import annotations

import io
import pickle
from typing import Any
from uuid import UUID

from eventsourcing.compressor import ZlibCompressor
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder

from domain import journey as journey_module
from domain.aggregates import CustomerJourney
from domain.errors import JourneyError

__all__ = ["SnapshotRefused", "mapper", "restore", "take"]

# Every class a folded journey may contain, by module: nothing else is ever built.
_ALLOWED: dict[str, frozenset[str]] = {
    "datetime": frozenset({"datetime", "date", "timedelta", "timezone"}),
    "decimal": frozenset({"Decimal"}),
    "uuid": frozenset({"UUID"}),
    "pydantic_core._pydantic_core": frozenset({"TzInfo"}),
    "domain.journey": frozenset(
        name
        for name, value in vars(journey_module).items()
        if isinstance(value, type) and getattr(value, "__dataclass_fields__", None) is not None
    ),
}


class SnapshotRefused(JourneyError):
    """A stored snapshot names a class a journey is not made of."""


class _JourneyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name in _ALLOWED.get(module, ()):
            return super().find_class(module, name)
        raise SnapshotRefused(f"a snapshot names {module}.{name}, which no journey contains")


class PickleTranscoder(Transcoder):
    """eventsourcing transcoder for snapshot state: pickle out, allow-listed pickle in."""

    def encode(self, obj: Any) -> bytes:
        return pickle.dumps(obj, protocol=5)

    def decode(self, data: bytes) -> Any:
        return _JourneyUnpickler(io.BytesIO(data)).load()


def mapper(cipher: Any = None) -> Mapper[UUID]:
    """The mapper snapshots go through (``cipher``: an eventsourcing AESCipher, or None)."""
    return Mapper(transcoder=PickleTranscoder(), compressor=ZlibCompressor(), cipher=cipher)


def take(m: Mapper[UUID], agg: CustomerJourney) -> StoredEvent:
    """The aggregate as a stored snapshot (its facts and timeline live in rows, not here)."""
    return m.to_stored_event(Snapshot.take(agg))


def restore(m: Mapper[UUID], stored: StoredEvent) -> CustomerJourney:
    snapshot = m.to_domain_event(stored)
    if not isinstance(snapshot, Snapshot):
        raise SnapshotRefused(f"a stored snapshot decodes to a {type(snapshot).__name__}")
    agg = snapshot.mutate(None)
    if not isinstance(agg, CustomerJourney):
        raise SnapshotRefused(f"a snapshot holds a {type(agg).__name__}, not a CustomerJourney")
    return agg
