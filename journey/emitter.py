"""Emitting touchpoints: the typed Python emitter and the batch parser behind `journey emit`.

Everything in a batch is validated before anything is produced: a batch with one bad line
produces nothing.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from consumers.log import Log, OutgoingMessage, Position
from domain import catalogue as c
from domain.bounds import DEFAULT_MAX_FUTURE, MAX_DEPTH, MAX_ENVELOPE_BYTES, Bounds, exceeds_depth
from domain.catalogue import TouchpointData
from domain.envelope import (
    Touchpoint,
    check_bounds,
    check_size,
    encode_sealed,
    event_id_bytes,
    new_touchpoint,
    parse_envelope,
)
from domain.errors import InvalidEvent, JourneyError
from domain.personal import CustomerKey, carries_personal_values
from projections.keys import CustomerKeys

__all__ = ["BatchError", "Emitter", "NoKeyStore", "needs_keys", "parse_batch", "to_message"]

logger = structlog.get_logger(__name__)


class BatchError(JourneyError):
    """A line of an emit batch is invalid; nothing of the batch was produced."""

    def __init__(self, line: int, error: InvalidEvent, origin: str) -> None:
        where = f"{origin}:{line}" if origin else f"line {line}"
        super().__init__(f"{where}: {error.message} — nothing of this batch was emitted")
        self.line = line
        self.error = error


def parse_batch(text: str, origin: str = "", bounds: Bounds | None = None) -> list[Touchpoint]:
    """Parse one JSON envelope, a JSON array of envelopes, or JSON lines.

    Every envelope must keep the bounds (domain.bounds): ``bounds`` defaults to the wall
    clock and the default future skew. Raises BatchError naming the (1-based) line and the
    field of the first bad event.
    """
    with _fewer_collections():
        return [tp for tp, _ in _parse_batch(text, origin, bounds)]


def _parse_batch(
    text: str, origin: str = "", bounds: Bounds | None = None
) -> list[tuple[Touchpoint, bytes]]:
    """:func:`parse_batch`, each touchpoint with its envelope's bytes (``encode``: what
    the size bound measured, and what goes on the log when nothing is to be sealed)."""
    if bounds is None:
        bounds = Bounds(now=datetime.now(UTC))
    stripped = text.strip()
    if not stripped:
        raise BatchError(1, InvalidEvent("not_json", "no input: expected a JSON envelope"), origin)
    if stripped.startswith("[") or ("\n" in stripped and _is_single_json(stripped)):
        # an array holds its envelopes one level down
        obj = _load(text, 1, origin, MAX_DEPTH + stripped.startswith("["), whole=True)
        items = obj if isinstance(obj, list) else [obj]
        out = []
        for index, item in enumerate(items, start=1):
            try:
                out.append(_one(item, bounds))
            except InvalidEvent as exc:
                raise BatchError(index, exc, origin) from None
        return out
    out = []
    # JSON lines end at "\n" (and "\r\n") only: str.splitlines would also cut at U+2028,
    # U+2029, U+0085 and other characters that may stand raw inside a JSON string.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line or line.isspace():  # blank (what strip() would empty, without a copy)
            continue
        obj = _load(line, number, origin, MAX_DEPTH)
        try:
            out.append(_one(obj, bounds))
        except InvalidEvent as exc:
            raise BatchError(number, exc, origin) from None
    return out


def _load(text: str, line: int, origin: str, depth: int, whole: bool = False) -> Any:
    """json.loads behind the nesting bound (checked first: the parser recurses)."""
    try:
        if exceeds_depth(text, depth):
            raise InvalidEvent(
                "too_deep",
                f"JSON nested deeper than {MAX_DEPTH} levels (the envelope is level 1): "
                "flatten the data",
            )
        # parse ``text``, not stripped: error line numbers must count leading blank lines
        if text.startswith("\ufeff"):  # json.loads names a byte order mark: let it
            return json.loads(text, parse_constant=_no_constant)
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        error = InvalidEvent("not_json", f"not JSON: {exc.msg}")
        raise BatchError(line + exc.lineno - 1 if whole else line, error, origin) from None
    except (InvalidEvent, ValueError) as exc:  # too deep; NaN; a 5,000-digit integer
        error = (
            exc if isinstance(exc, InvalidEvent) else InvalidEvent("not_json", f"not JSON: {exc}")
        )
        raise BatchError(line, error, origin) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# one decoder for every line: json.loads with an argument builds a new one per call
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _is_single_json(text: str) -> bool:
    # The common case first, without scanning the whole batch: a first line that is a
    # JSON value on its own means JSON lines (as one value, the text would have more after
    # it: ``text`` is stripped, so something follows the first newline).
    first = text[: text.find("\n")]
    if not exceeds_depth(first, MAX_DEPTH) and _parses(first):
        return False
    if exceeds_depth(text, MAX_DEPTH):
        # JSON lines each within the bound, or one value too deep: a first line that is
        # JSON on its own means lines; otherwise it is one value, refused as too deep
        first = text.lstrip().split("\n", 1)[0]
        return exceeds_depth(first, MAX_DEPTH) or not _parses(first)
    return _parses(text)


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _one(obj: object, bounds: Bounds) -> tuple[Touchpoint, bytes]:
    if not isinstance(obj, dict):
        raise InvalidEvent("invalid_envelope", "an envelope must be a JSON object")
    touchpoint = parse_envelope(obj, bounds)
    return touchpoint, check_size(touchpoint)


@functools.cache
def _type_header(type_name: str) -> tuple[str, bytes]:
    # one per type (the catalogue's few dozen), not one per record
    return ("journey-type", type_name.encode())


def to_message(
    tp: Touchpoint, key: CustomerKey | None = None, *, encoded: bytes | None = None
) -> OutgoingMessage:
    """The record of ``tp`` on the log of record, its personal values sealed with ``key``
    (the customer's); InvalidEvent ``too_large`` when sealing took it over 1 MiB.
    ``encoded``: ``encode(tp)``, when the caller has it."""
    if encoded is not None and key is None:
        value = encoded  # nothing to seal (encode_sealed would give these bytes)
    else:
        value = encode_sealed(tp, key, encoded=encoded)
    if len(value) > MAX_ENVELOPE_BYTES:
        raise InvalidEvent(
            "too_large",
            f"envelope of {len(value):,} bytes (its personal fields encrypted) is larger than "
            f"{MAX_ENVELOPE_BYTES:,} bytes (1 MiB): keep large content out of the log and link "
            "to it",
        )
    return OutgoingMessage(
        key=tp.customer_id.encode(),
        value=value,
        headers=(_type_header(tp.type), ("journey-event-id", event_id_bytes(tp, value))),
    )


def needs_keys(touchpoints: Sequence[Touchpoint]) -> set[str]:
    """The customers of ``touchpoints`` that carry personal values (to be sealed)."""
    return {tp.customer_id for tp in touchpoints if carries_personal_values(tp.data)}


@dataclass(frozen=True)
class _Batch:
    """A validated batch ready to produce."""

    messages: list[OutgoingMessage]
    erased: set[str]  # customers whose ErasureRequested is in the batch
    first_event_id: str
    touchpoints: Sequence[Touchpoint] | None  # only for the debug lines


class NoKeyStore(JourneyError):
    """Personal fields to emit and no key store to seal them with."""


class Emitter:
    """Validates and produces touchpoints to the log of record, their personal fields sealed
    with each customer's key from ``keys`` (the key table beside the store the engine folds
    into: ``CustomerKeys(store_address)``).

    >>> emitter = Emitter(log, topic="journey.touchpoints", source="helpdesk", keys=keys)
    >>> emitter.emit(ReplySent(...), customer_id="c-1", occurred_at=now)
    Position(topic='journey.touchpoints', partition=3, offset=41)
    """

    def __init__(
        self,
        log: Log,
        *,
        topic: str,
        source: str,
        partitions: int = 6,
        max_future: timedelta = DEFAULT_MAX_FUTURE,
        keys: CustomerKeys | None = None,
    ) -> None:
        self.log = log
        self.keys = keys
        self.max_future = max_future
        self.topic = topic
        self.source = source
        log.ensure_topics([topic, f"{topic}.dlq"], partitions)

    def _bounds(self) -> Bounds:
        return Bounds(now=datetime.now(UTC), max_future=self.max_future)

    def emit(
        self,
        data: TouchpointData,
        *,
        customer_id: str,
        occurred_at: datetime,
        event_id: uuid.UUID | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        source: str | None = None,
    ) -> Position:
        tp = new_touchpoint(
            data,
            customer_id=customer_id,
            occurred_at=occurred_at,
            source=source or self.source,
            event_id=event_id,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        # the Python door keeps the same bounds as emit and POST /events
        check_bounds(tp, self._bounds())
        return self.emit_touchpoints([tp])[0]

    def emit_touchpoints(
        self, touchpoints: Sequence[Touchpoint], *, logged_at: datetime | None = None
    ) -> list[Position]:
        """Produce them; ``logged_at`` stamps the records (default: the log's own clock), as
        a replay of history does with each touchpoint's arrival time."""
        return self._emit(touchpoints, None, logged_at)

    def _emit(
        self,
        touchpoints: Sequence[Touchpoint],
        encoded: Sequence[bytes] | None,
        logged_at: datetime | None = None,
    ) -> list[Position]:
        if not touchpoints:
            return []
        with _fewer_collections():
            batch = self._prepare(touchpoints, encoded)
            return self._send(batch, logged_at)

    def _prepare(
        self, touchpoints: Sequence[Touchpoint], encoded: Sequence[bytes] | None
    ) -> _Batch:
        """The records and what is said about them after producing; the touchpoints
        themselves are kept only for the debug lines."""
        debug = logger.is_enabled_for(logging.DEBUG)
        return _Batch(
            messages=self.messages(touchpoints, encoded),
            erased={
                tp.customer_id for tp in touchpoints if isinstance(tp.data, c.ErasureRequested)
            },
            first_event_id=str(touchpoints[0].event_id),
            touchpoints=touchpoints if debug else None,
        )

    def _send(self, batch: _Batch, logged_at: datetime | None = None) -> list[Position]:
        messages = batch.messages
        if logged_at is not None:
            stamp = int(logged_at.timestamp() * 1000)
            messages = [replace(m, timestamp_ms=stamp) for m in messages]
        positions = self.log.produce(self.topic, messages)
        self._forget_erased(batch.erased)
        # One line per touchpoint only at debug: at info, a line per batch (a bulk emit of a
        # million touchpoints would spend more time logging than producing). Each event is
        # still followed by its ids: the debug lines here, the runner's where it is folded.
        # Below debug not even the call is made (its arguments cost as much as the check).
        for tp, pos in zip(batch.touchpoints, positions, strict=True) if batch.touchpoints else ():
            logger.debug(
                "touchpoint emitted",
                event_id=str(tp.event_id),
                customer_id=tp.customer_id,
                type=tp.type,
                topic=pos.topic,
                partition=pos.partition,
                offset=pos.offset,
            )
        first, last = positions[0], positions[-1]
        logger.info(
            "touchpoints emitted",
            count=len(positions),
            topic=self.topic,
            first_event_id=batch.first_event_id,
            first=f"{first.partition}:{first.offset}",
            last=f"{last.partition}:{last.offset}",
        )
        return positions

    def messages(
        self, touchpoints: Sequence[Touchpoint], encoded: Sequence[bytes] | None = None
    ) -> list[OutgoingMessage]:
        """The records of ``touchpoints``, personal values sealed (keys made as needed).
        ``encoded``: each one's ``encode`` bytes, when the caller has them (parse_batch
        made them for the size bound): a touchpoint with nothing to seal goes as those."""
        personal = [carries_personal_values(tp.data) for tp in touchpoints]
        sealed = {tp.customer_id for tp, p in zip(touchpoints, personal, strict=True) if p}
        if sealed and self.keys is None:
            raise NoKeyStore(
                "touchpoints with personal fields (e.g. of customer "
                f"{sorted(sealed)[0]!r}) and no key store to encrypt them with: give the "
                "Emitter keys=CustomerKeys(<store>) — personal data never reaches the log "
                "unencrypted"
            )
        keys = self.keys.for_writing(sealed) if self.keys is not None and sealed else {}
        out = []
        for index, tp in enumerate(touchpoints, start=1):
            raw = encoded[index - 1] if encoded is not None else None
            if raw is not None and not personal[index - 1]:
                # what to_message makes of it: nothing to seal, the bytes the size bound
                # measured (within it), without a call and a handler per record
                headers = (_type_header(tp.type), ("journey-event-id", event_id_bytes(tp, raw)))
                out.append(OutgoingMessage(key=tp.customer_id.encode(), value=raw, headers=headers))
                continue
            key = keys.get(tp.customer_id) if personal[index - 1] else None
            try:
                out.append(to_message(tp, key, encoded=raw))
            except InvalidEvent as exc:
                raise BatchError(index, exc, "") from None
        return out

    def _forget_erased(self, erased: set[str]) -> None:
        """An erasure on the log deletes the customer's key at once (the engine does it
        again when it folds the erasure, for erasures from other doors)."""
        if erased and self.keys is not None:
            self.keys.forget(erased, datetime.now(UTC))

    def emit_text(self, text: str, origin: str = "") -> list[Position]:
        """Validate every envelope in ``text`` first, then produce them all."""
        return self.emit_all([(text, origin)])

    def emit_all(self, texts: Iterable[tuple[str, str]]) -> list[Position]:
        with _fewer_collections():
            parsed = [
                pair
                for text, origin in texts
                for pair in _parse_batch(text, origin, self._bounds())
            ]
            if not parsed:
                return []
            batch = self._prepare([tp for tp, _ in parsed], [raw for _, raw in parsed])
            del parsed  # the touchpoints go now, freed as their last reference does
            return self._send(batch)


# The collector's young generation is scanned every 700 new objects by default (every
# 50,000 in the runner); validating, sealing and producing a batch makes dozens of objects
# per envelope that all live until the broker acknowledged the batch, so each pass scanned
# the batch so far again, for nothing: about half the CPU of a batch at 700, still ~5 µs an
# envelope at 50,000, and a sixth of Log.produce (kafka-python makes a reference cycle per
# record, its future and its batch's holding each other, and keeps them all until the
# batch is acknowledged). So the collector is off while a batch is built and produced;
# building makes no cycles, and kafka-python's are collected by the first pass after.
# Threads share the switch: the first to enter turns it off, the last to leave turns it on
# again (if it was on). So that threads emitting back to back cannot keep it off for long
# (other code of the process may make cycles meanwhile), one leaving after _GC_MAX_OFF_S
# runs a young-generation pass.
_GC_MAX_OFF_S = 1.0


class _Collections:
    """The shared switch: the first thread in turns the collector off, the last one out
    turns it back on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.was_enabled = False
        self.off_since = 0.0

    @contextmanager
    def fewer(self) -> Iterator[None]:
        with self.lock:
            if self.users == 0:
                self.was_enabled = gc.isenabled()
                gc.disable()
                self.off_since = time.monotonic()
            self.users += 1
        try:
            yield
        finally:
            with self.lock:
                self.users -= 1
                if self.was_enabled:
                    if self.users == 0:
                        gc.enable()
                    elif time.monotonic() - self.off_since > _GC_MAX_OFF_S:
                        gc.collect(0)
                        self.off_since = time.monotonic()


_fewer_collections = _Collections().fewer
