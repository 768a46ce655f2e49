"""Business hours: when a team is open, and how much of a span of time falls inside them.

A team's calendar is a time zone, opening hours per weekday (local wall-clock times) and
public holidays (local dates, closed all day). Reply-time metrics and the service-level
targets that say so count only the time a team is open: a complaint on Friday evening
answered on Monday at 09:30 waited one and a half business hours with a team that opens
at 08:00, not sixty.

Pure: the time zone rules come from the standard library's ``zoneinfo``; no clock.
"""

from __future__ import annotations

import itertools
import re
from datetime import date, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from domain.errors import JourneyError

__all__ = ["WEEKDAYS", "BusinessHours", "Weekday"]

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_SPAN = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
# A calendar is walked day by day; ten years and a day bounds every walk (targets are at
# most ten years, see domain.rules) so a calendar open one hour a year still terminates.
_MAX_DAYS = 366 * 10 + 1

Span = Annotated[str, Field(max_length=11, examples=["08:00-17:00"])]


def _minutes(span: str) -> tuple[int, int]:
    match = _SPAN.match(span)
    if match is None:
        raise ValueError(f"opening hours {span!r} are not HH:MM-HH:MM, e.g. 08:00-17:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60 or end <= start:
        raise ValueError(
            f"opening hours {span!r}: open before close, within 00:00-24:00, e.g. 08:00-17:00"
        )
    return start, end


class BusinessHours(BaseModel):
    """One team's calendar. ``hours`` maps a weekday (mon..sun) to its opening spans in
    local time (``["08:00-12:00", "13:00-17:00"]``); a weekday not listed is closed.
    ``holidays`` are local dates closed all day."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_zone: str = Field(description="IANA time zone, e.g. Europe/Stockholm")
    hours: dict[Weekday, list[Span]] = Field(
        description="Opening spans per weekday in local time; an unlisted weekday is closed"
    )
    holidays: list[date] = Field(default_factory=list, max_length=5000)
    _holiday_set: frozenset[date] = PrivateAttr(default=frozenset())

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {name!r}: use an IANA name such as Europe/Stockholm"
            ) from None
        return name

    @field_validator("hours")
    @classmethod
    def _well_formed(cls, hours: dict[Weekday, list[str]]) -> dict[Weekday, list[str]]:
        for spans in hours.values():
            for span in spans:
                _minutes(span)
        return hours

    @model_validator(mode="after")
    def _spans(self) -> BusinessHours:
        total = 0
        for day, spans in self.hours.items():
            parsed = sorted(_minutes(s) for s in spans)
            for (_, end), (start, _) in itertools.pairwise(parsed):
                if start < end:
                    raise ValueError(f"opening hours on {day} overlap: {', '.join(spans)}")
            total += sum(e - s for s, e in parsed)
        if total == 0:
            raise ValueError("a calendar must be open some time in the week")
        self._holiday_set = frozenset(self.holidays)
        return self

    def _zone_info(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def _open_spans(self, day: date, zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
        """The day's opening spans as aware times (local wall clock, then its UTC offset)."""
        if day in self._holiday_set:
            return []
        midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
        out = []
        for span in self.hours.get(WEEKDAYS[day.weekday()], []):
            start, end = _minutes(span)
            # wall-clock arithmetic within one zone: 08:00 local on either side of a DST change
            out.append((midnight + timedelta(minutes=start), midnight + timedelta(minutes=end)))
        return out

    def open_between(self, start: datetime, end: datetime) -> timedelta:
        """How much of [start, end) the team is open; zero when end is not after start."""
        if end <= start:
            return timedelta(0)
        zone = self._zone_info()
        day = start.astimezone(zone).date() - timedelta(days=1)
        last = end.astimezone(zone).date() + timedelta(days=1)
        total = timedelta(0)
        while day <= last:
            for open_at, close_at in self._open_spans(day, zone):
                lo, hi = max(open_at, start), min(close_at, end)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total

    def add(self, start: datetime, open_time: timedelta) -> datetime:
        """The moment ``open_time`` of opening hours has passed after ``start``."""
        if open_time <= timedelta(0):
            return start
        zone = self._zone_info()
        remaining = open_time
        day = start.astimezone(zone).date() - timedelta(days=1)
        for _ in range(_MAX_DAYS + 2):
            for open_at, close_at in self._open_spans(day, zone):
                lo = max(open_at, start)
                if close_at <= lo:
                    continue
                if remaining <= close_at - lo:
                    return lo + remaining
                remaining -= close_at - lo
            day += timedelta(days=1)
        raise JourneyError(
            f"no {open_time} of opening hours within ten years after {start.isoformat()} "
            f"in the calendar for {self.time_zone}: check its hours and holidays"
        )
