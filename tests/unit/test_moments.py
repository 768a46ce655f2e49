"""The moment a view looks back to (``--as-of``, ``--known-at``, ``?as_of=``, ``?known_at=``):
an ISO 8601 timestamp with a zone, from 1970 to now, as UTC; anything else is one line
saying what was wrong and what to give instead."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.bounds import MAX_MOMENT_CHARS, InvalidMoment, parse_moment
from domain.errors import JourneyError

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2026-11-23T10:15:00+01:00", datetime(2026, 11, 23, 9, 15, tzinfo=UTC)),
        ("2026-11-23T09:15:00Z", datetime(2026, 11, 23, 9, 15, tzinfo=UTC)),
        ("2026-11-23 09:15:00.123456+00:00", datetime(2026, 11, 23, 9, 15, 0, 123456, UTC)),
        ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC)),
        ("2026-12-01T13:00:00+01:00", NOW),
    ],
)
def test_a_moment_is_an_iso_timestamp_with_a_zone_as_utc(text: str, want: datetime) -> None:
    got = parse_moment(text, now=NOW, name="--as-of")
    assert got == want and got.utcoffset() is not None and got.tzinfo == UTC


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-11-23", "has no time zone"),
        ("2026-11-23T10:15:00", "has no time zone"),
        ("yesterday", "is not an ISO 8601 timestamp"),
        ("", "is not an ISO 8601 timestamp"),
        ("2026-13-01T00:00:00Z", "is not an ISO 8601 timestamp"),
        ("1969-12-31T23:59:59Z", "before 1970-01-01"),
        ("0001-01-01T00:00:00+01:00", "before 1970-01-01"),
        ("9999-12-31T23:59:59-01:00", "is in the future"),
        ("2026-12-01T12:00:01Z", "is in the future"),
        ("2" * (MAX_MOMENT_CHARS + 1), "characters long"),
    ],
)
def test_anything_else_is_one_line_naming_what_to_give(text: str, says: str) -> None:
    with pytest.raises(InvalidMoment) as caught:
        parse_moment(text, now=NOW, name="--known-at")
    message = str(caught.value)
    assert isinstance(caught.value, JourneyError)
    assert says in message and "\n" not in message and "--known-at" in message
