"""The metrics as a terminal table: one row per group, the headline figures as columns."""

from __future__ import annotations

from typing import Any

from rich.table import Table

__all__ = ["render_metrics"]

# (column title, path into the figures)
_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cust", ("customers",)),
    ("cases", ("cases", "opened")),
    ("1st h p50", ("first_reply_hours", "p50")),
    ("p90", ("first_reply_hours", "p90")),
    ("p99", ("first_reply_hours", "p99")),
    ("next h p50", ("next_reply_hours", "p50")),
    ("unansw", ("unanswered_share",)),
    ("contacts/ resolved", ("contacts_per_resolved_case",)),
    ("reopen", ("reopen_rate",)),
    ("prom", ("promises", "made")),
    ("kept", ("promises", "kept")),
    ("late", ("promises", "kept_late")),
    ("broken", ("promises", "broken")),
    ("canc", ("promises", "cancelled")),
    ("open", ("promises", "open")),
    ("repairs/ repl", ("repairs_before_replacement", "mean")),
    ("sat", ("satisfaction", "mean")),
    ("revw", ("reviews", "n")),
    ("1-2", ("reviews", "low_scores")),
    ("rev ans h p50", ("reviews", "answer_hours", "p50")),
    ("survey ans h p50", ("surveys", "answer_hours", "p50")),
)


def _cell(figures: dict[str, Any], path: tuple[str, ...]) -> str:
    value: Any = figures
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return "–"
    if isinstance(value, float):
        share = path[-1].endswith(("share", "rate"))
        return f"{value:.1%}" if share else f"{value:.2f}"
    return str(value)


def render_metrics(result: dict[str, Any]) -> Table:
    period = result["period"]
    by = period.get("by")
    table = Table(
        title=f"Service metrics {period['since']} – {period['until']}"
        + (f" by {by}" if by else ""),
        caption="Reply times in business hours where the team has them; "
        "definitions: docs/metrics.md",
    )
    table.add_column(by or "period", no_wrap=True)
    for title, _ in _COLUMNS:
        table.add_column(title, justify="right")
    rows = [("all", result), *result.get("groups", {}).items()]
    for name, figures in rows:
        table.add_row(name, *(_cell(figures, path) for _, path in _COLUMNS))
    return table
