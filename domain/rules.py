"""Service rules: reply targets, warnings, promise deadlines, replace-don't-repair.

Rules are applied when a view is read (``now`` is passed in), not when touchpoints are
folded, so changing a target does not need a rebuild. Defaults are documented in
docs/projections.md; override them with a JSON file (``JOURNEY_RULES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.journey import Case, Promise

__all__ = ["Deadline", "ServiceRules", "case_deadline", "promise_deadline"]

DeadlineState = Literal["ok", "warning", "breached"]


def _hours(**targets: float) -> dict[str, float]:
    return targets


class ServiceRules(BaseModel):
    """Targets in hours per channel. A channel not listed uses ``default``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    first_reply_hours: dict[str, float] = Field(
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
    next_reply_hours: dict[str, float] = Field(
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

    def target(self, kind: str, channel: str) -> timedelta:
        table = self.first_reply_hours if kind == "first_reply" else self.next_reply_hours
        return timedelta(hours=table.get(channel, table.get("default", 24)))


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
    target = rules.target(case.reply_owed, case.channel)
    start = case.reply_owed_since
    return Deadline(
        case.reply_owed,
        case.case_id,
        start,
        start + target * rules.warn_at_fraction,
        start + target,
    )


def promise_deadline(promise: Promise, rules: ServiceRules) -> Deadline | None:
    if promise.status != "pending":
        return None
    span = max(promise.due_by - promise.made_at, timedelta(0))
    return Deadline(
        "promise",
        promise.promise_id,
        promise.made_at,
        promise.made_at + span * rules.warn_at_fraction,
        promise.due_by,
    )
