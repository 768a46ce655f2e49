"""Service rules: reply targets, warnings, promise deadlines, replace-don't-repair.

Rules are applied when a view is read (``now`` is passed in), not when touchpoints are
folded, so changing a target does not need a rebuild. Defaults are documented in
docs/projections.md; override them with a JSON file (``JOURNEY_RULES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.bounds import after_hours, shifted
from domain.business_hours import BusinessHours
from domain.journey import Case, Promise

__all__ = ["Deadline", "ServiceRules", "case_deadline", "promise_deadline"]

DeadlineState = Literal["ok", "warning", "breached"]


def _hours(**targets: float) -> dict[str, float]:
    return targets


# A target longer than ten years is a typo (hours meant as minutes, an extra zero run wild);
# refusing it at load keeps every deadline computable.
MAX_TARGET_HOURS = 24 * 365 * 10
Hours = Annotated[float, Field(ge=0, le=MAX_TARGET_HOURS, allow_inf_nan=False)]


class ServiceRules(BaseModel):
    """Targets in hours per channel. A channel not listed uses ``default``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    first_reply_hours: dict[str, Hours] = Field(
        default_factory=lambda: _hours(
            default=24,
            email=24,
            web_form=24,
            letter=72,
            chat=0.25,
            phone=1,
            social=4,
            store=24,
            sms=24,
            app=24,
        )
    )
    next_reply_hours: dict[str, Hours] = Field(
        default_factory=lambda: _hours(
            default=24,
            email=24,
            web_form=24,
            letter=72,
            chat=0.25,
            phone=4,
            social=8,
            store=24,
            sms=24,
            app=24,
        )
    )
    warn_at_fraction: float = Field(
        default=0.75, gt=0, lt=1, description="Warn when this share of a target has passed"
    )
    replace_after_repairs: int = Field(
        default=3, ge=1, description="Flag 'replace, don't repair' at this many repairs"
    )
    business_hours: dict[str, BusinessHours] = Field(
        default_factory=dict,
        description="Per team: time zone, opening hours per weekday, public holidays. "
        "Reply-time metrics count only open hours for a team listed here; a target does "
        "where ``business_time`` says so",
    )
    business_time: dict[Literal["first_reply", "next_reply"], list[str]] = Field(
        default_factory=dict,
        description="Targets counted in the team's business hours: per target, the "
        'channels ("*" for every channel), e.g. {"first_reply": ["email", "web_form"]}',
    )

    def target_hours(self, kind: str, channel: str) -> float:
        table = self.first_reply_hours if kind == "first_reply" else self.next_reply_hours
        return table.get(channel, table.get("default", 24))

    def target(self, kind: str, channel: str) -> timedelta:
        return timedelta(hours=self.target_hours(kind, channel))

    def calendar(self, kind: str, channel: str, team: str | None) -> BusinessHours | None:
        """The team's business hours when this target counts in them, else None (the
        target then runs around the clock)."""
        channels = next((v for k, v in self.business_time.items() if k == kind), None)
        if not channels or team is None or ("*" not in channels and channel not in channels):
            return None
        return self.business_hours.get(team)

    def deadline(
        self, kind: str, channel: str, team: str | None, start: datetime
    ) -> tuple[datetime, datetime]:
        """(warn at, due at) of a reply target that started at ``start``: in the team's
        business hours where the target says so, else around the clock."""
        hours = self.target_hours(kind, channel)
        calendar = self.calendar(kind, channel, team)
        if calendar is None:
            return after_hours(start, hours * self.warn_at_fraction), after_hours(start, hours)
        return (
            calendar.add(start, timedelta(hours=hours * self.warn_at_fraction)),
            calendar.add(start, timedelta(hours=hours)),
        )


@dataclass(frozen=True)
class Deadline:
    kind: str  # first_reply | next_reply | promise
    ref: str  # case id or promise id
    started_at: datetime
    warn_at: datetime
    due_at: datetime

    def state(self, now: datetime) -> DeadlineState:
        if now >= self.due_at:
            return "breached"
        if now >= self.warn_at:
            return "warning"
        return "ok"

    def remaining(self, now: datetime) -> timedelta:
        return self.due_at - now


def case_deadline(case: Case, rules: ServiceRules) -> Deadline | None:
    """The reply target currently running for a case, if any.

    None when the case is resolved, when nothing is owed (after a real answer), or while
    we wait on the customer (the clock is paused).
    """
    if case.status != "open" or case.reply_owed is None or case.reply_owed_since is None:
        return None
    if case.awaiting_customer_since is not None:
        return None
    start = case.reply_owed_since
    # saturating (around the clock): the bounds keep valid dates far from datetime's
    # edges, this keeps a read from failing on whatever slipped past them
    warn_at, due_at = rules.deadline(case.reply_owed, case.channel, case.team, start)
    return Deadline(case.reply_owed, case.case_id, start, warn_at, due_at)


def promise_deadline(promise: Promise, rules: ServiceRules) -> Deadline | None:
    if promise.status != "pending":
        return None
    span = max(promise.due_by - promise.made_at, timedelta(0))
    return Deadline(
        "promise",
        promise.promise_id,
        promise.made_at,
        shifted(promise.made_at, span * rules.warn_at_fraction),
        promise.due_by,
    )
