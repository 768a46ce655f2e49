"""Bounds every touchpoint must keep, checked the same way at every door (ARCHITECTURE 8).

``journey emit``, ``POST /events`` and the consumer all decode through
:mod:`domain.envelope`, which applies these limits, so a message either passes all three
doors or none. The static limits (size, nesting, date years, the 1970 floor of
``occurred_at``) need no clock; the one limit relative to *now* (``occurred_at`` at most
``max_future`` ahead) takes ``now`` as a value in :class:`Bounds`: the domain reads no clock.

Why these numbers: 1 MiB is Kafka's default largest message, so an envelope that passes
here can be produced to any default broker; 32 levels of JSON is far more than any
catalogue body needs and keeps every parser (ours and the consumers') far from its
recursion limit; years 1900-2200 cover every real date of a customer's life and keep date
arithmetic (targets, warnings, horizons) far from ``datetime``'s year-9999 edge.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from itertools import accumulate

from domain.errors import JourneyError

__all__ = [
    "DATA_YEARS",
    "DEFAULT_MAX_FUTURE",
    "EARLIEST_OCCURRED_AT",
    "MAX_DEPTH",
    "MAX_ENVELOPE_BYTES",
    "MAX_MOMENT_CHARS",
    "Bounds",
    "InvalidMoment",
    "after_hours",
    "exceeds_depth",
    "parse_moment",
    "shifted",
]

MAX_ENVELOPE_BYTES = 1024 * 1024
MAX_DEPTH = 32
DATA_YEARS = (1900, 2200)
EARLIEST_OCCURRED_AT = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_MAX_FUTURE = timedelta(days=1)

_MIN = datetime.min.replace(tzinfo=UTC)
_MAX = datetime.max.replace(tzinfo=UTC)


def shifted(at: datetime, delta: timedelta) -> datetime:
    """``at + delta``, saturated at the ends of ``datetime`` instead of OverflowError.

    Bounds keep valid dates far from the ends; this keeps a misconfigured rule (a target
    of a million years) from turning a read into a 500.
    """
    try:
        return at + delta
    except OverflowError:
        edge = _MAX if delta > timedelta(0) else _MIN
        return edge if at.tzinfo is not None else edge.replace(tzinfo=None)


def after_hours(at: datetime, hours: float) -> datetime:
    """``at`` plus ``hours``, saturated like :func:`shifted` (also for hours too many for
    a ``timedelta``). NaN is refused: it is no amount of time."""
    if math.isnan(hours):
        raise ValueError("hours must be a number, not NaN")
    try:
        delta = timedelta(hours=hours)
    except OverflowError:
        delta = timedelta.max if hours > 0 else timedelta.min
    return shifted(at, delta)


def in_data_years(value: date) -> bool:
    return DATA_YEARS[0] <= value.year <= DATA_YEARS[1]


@dataclass(frozen=True)
class Bounds:
    """The limits relative to a moment: ``occurred_at`` must not lie after ``latest``.

    ``now`` is an input. At the edge (emit, POST) it is the wall clock; a consumer uses the
    message's log timestamp, so every replay judges a message as the live run did.
    """

    now: datetime
    max_future: timedelta = DEFAULT_MAX_FUTURE

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("Bounds.now must be timezone-aware")

    @cached_property
    def latest(self) -> datetime:
        # once per Bounds, not once per envelope: a batch shares one
        return shifted(self.now, self.max_future)


# A JSON string, escapes included, or a string that never closes (then it runs to the end
# of the text: no structure after it counts, and the parser will call the text invalid).
# The possessive ``*+`` never backtracks, and an unclosed string ends the scan instead of
# being retried at each quote inside it, so the scan is linear in the length of the text.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.S)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_DEPTH_STEP = [0] * 256
for _open in b"[{":
    _DEPTH_STEP[_open] = 1
for _close in b"]}":
    _DEPTH_STEP[_close] = -1


def exceeds_depth(raw: str | bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON text nests containers deeper than ``limit`` (the top value is level 1).

    Runs before any JSON parser sees the text, so a 5,000-deep value is refused without
    recursion. Nothing here recurses or loops in Python per character: strings are cut out
    by one regular expression, and the running depth over the brackets left is a C-level
    ``accumulate``. Brackets inside strings do not count. For text that is not JSON the
    answer may be either (the parser reports such text), but no parser can recurse deeper
    than ``limit`` into text this calls shallow.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    # Fast path: fewer opening brackets than the limit (almost every real envelope) cannot
    # nest deeper than it, whatever strings hold them.
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > limit


# The longest moment a client may give (an ISO 8601 timestamp with microseconds and an
# offset is 32 characters).
MAX_MOMENT_CHARS = 64
_MOMENT_EXAMPLE = "2026-11-23T10:15:00+01:00"


class InvalidMoment(JourneyError):
    """A moment to look back to (``--as-of``, ``--known-at``) that is no usable time."""


def parse_moment(text: str, *, now: datetime, name: str = "time") -> datetime:
    """``text`` as a UTC instant: an ISO 8601 timestamp with a zone, from 1970 (before it
    nothing can have happened: see ``EARLIEST_OCCURRED_AT``) to ``now`` (a view looks back;
    deadlines judged at a moment still to come would be a guess). ``name`` is what the
    caller calls it, for the one-line error."""
    if len(text) > MAX_MOMENT_CHARS:
        raise InvalidMoment(
            f"{name} is {len(text)} characters long: give an ISO 8601 timestamp with a zone, "
            f"e.g. {_MOMENT_EXAMPLE}"
        )
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidMoment(
            f"{name} {text!r} is not an ISO 8601 timestamp: give one with a zone, "
            f"e.g. {_MOMENT_EXAMPLE}"
        ) from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidMoment(
            f"{name} {text!r} has no time zone: add one (Z or +01:00), e.g. {_MOMENT_EXAMPLE}"
        )
    try:
        at = at.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00: before datetime's first instant
        at = _MIN if at.year == 1 else _MAX
    if at < EARLIEST_OCCURRED_AT:
        raise InvalidMoment(
            f"{name} {text!r} is before 1970-01-01T00:00:00Z, before any touchpoint can have "
            "happened: give a later time"
        )
    if at > now:
        raise InvalidMoment(
            f"{name} {text!r} is in the future (now is {now.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}):"
            " a view looks back only; leave it out for today's view"
        )
    return at
