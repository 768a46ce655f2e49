"""Terminal rendering (rich) of the views, for the demo and `journey view`."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from projections.customer_view import CustomerView, DeadlineOut
from projections.defect_outreach import DefectOutreach
from projections.service_levels import ServiceLevels

__all__ = ["human_duration", "render_customer", "render_defects", "render_service_levels"]

_STATE_STYLE = {"ok": "green", "warning": "bold yellow", "breached": "bold red"}


def human_duration(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    days, rest = divmod(abs(int(seconds)), 86400)
    hours, minutes = rest // 3600, (rest % 3600) // 60
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes}m"
    return f"{sign}{minutes}m"


def _when(at: datetime) -> str:
    # One zone on one screen: everything in UTC, said so.
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _deadline(d: DeadlineOut | None) -> Text:
    if d is None:
        return Text("—", style="dim")
    label = d.kind.replace("_", " ")
    if d.state == "breached":
        return Text(f"{label}: MISSED {human_duration(-d.remaining_seconds)} ago", "bold red")
    text = f"{label}: due in {human_duration(d.remaining_seconds)} ({_when(d.due_at)})"
    return Text(("⚠ " if d.state == "warning" else "") + text, _STATE_STYLE[d.state])


def render_customer(view: CustomerView) -> RenderableType:
    parts: list[RenderableType] = []
    flags = view.flags
    badges = Text()
    if view.time_travel is not None:
        travel = view.time_travel
        what = "AS OF (event time)" if travel.kind == "as_of" else "AS KNOWN AT (log time)"
        badges.append(f" {what} {_when(travel.at)} ", "bold white on blue")
        badges.append(" ")
    if flags.erased:
        badges.append(" ASKED TO BE FORGOTTEN ", "bold white on grey30")
        badges.append(" ")
    if flags.unanswered_for_seconds is not None:
        badges.append(
            f" UNANSWERED FOR {human_duration(flags.unanswered_for_seconds)} ", "bold white on red"
        )
        badges.append(" ")
    if flags.deadline_breached:
        badges.append(" TARGET MISSED ", "bold white on red")
        badges.append(" ")
    if flags.deadline_warning:
        badges.append(" DEADLINE SOON ", "bold black on yellow")
        badges.append(" ")
    if flags.promise_broken:
        badges.append(" PROMISE BROKEN ", "bold white on dark_red")
        badges.append(" ")
    if flags.replace_dont_repair:
        badges.append(" REPLACE, DON'T REPAIR ", "bold black on orange1")
        badges.append(" ")
    for defect in flags.known_defects:
        badges.append(f" KNOWN DEFECT {defect}: REACH OUT ", "bold black on magenta")
        badges.append(" ")
    if flags.anomalies:
        badges.append(f" {flags.anomalies} ANOMALIES ", "black on cyan")
    head = Text()
    head.append(view.name or view.customer_id, "bold")
    head.append(f"   id {view.customer_id}", "dim")
    if view.linked_customer_ids:
        head.append(f" (+ linked {', '.join(view.linked_customer_ids)})", "dim")
    head.append(f"\ncontacted us {view.contacts}× · {view.touchpoints} touchpoints", "italic")
    parts.append(head)
    if badges:
        parts.append(badges)
    if view.identities:
        ids = Table(title="Identities", title_justify="left", show_edge=False, expand=False)
        ids.add_column("kind", overflow="fold")
        ids.add_column("value", overflow="fold")
        ids.add_column("note", style="dim", overflow="fold")
        for ident in view.identities:
            checked = "" if ident.verified else "claimed, not verified"
            ids.add_row(ident.kind, ident.value, "; ".join(p for p in (ident.note, checked) if p))
        parts.append(ids)
    if view.possible_matches:
        matches = Table(
            title="Possible matches to confirm (nothing merged until an agent does)",
            title_justify="left",
            show_edge=False,
        )
        matches.add_column("customer", overflow="fold")
        matches.add_column("shares", overflow="fold")
        matches.add_column("claimed by", style="dim", overflow="fold")
        for m in view.possible_matches:
            who = f"{m.name} ({m.customer_id})" if m.name else m.customer_id
            matches.add_row(who, f"{m.kind} {m.value}", m.claimed_by)
        parts.append(matches)
    for sub in view.submissions:
        table = Table(
            title=f"What they submitted — {sub.form} ({_when(sub.submitted_at)}, "
            f"{'answered' if sub.answered else 'NOT ANSWERED'})",
            title_justify="left",
            title_style="bold red" if not sub.answered else "bold",
            show_edge=False,
        )
        table.add_column("field", overflow="fold")
        table.add_column("exactly as typed", style="bold cyan", overflow="fold")
        for key, value in sub.fields.items():
            table.add_row(key, value)
        parts.append(table)
    if view.open_cases:
        cases = Table(
            title="Open cases" + _more(view.open_cases_total, len(view.open_cases)),
            title_justify="left",
            expand=True,
        )
        # Ids fold onto the next line rather than being cut: an agent copies them.
        cases.add_column("case", overflow="fold", min_width=8)
        for col in ("what", "owner", "next deadline", "steps"):
            cases.add_column(col, overflow="fold")
        for case in view.open_cases:
            owner = f"{case.owner_team or 'unassigned'}" + (
                f" ({case.owner_country})" if case.owner_country else ""
            )
            if case.copied_to:
                owner += f"\ncc {', '.join(case.copied_to)}"
            if case.handoffs:
                owner += "\n" + " → ".join(
                    [case.handoffs[0].from_country] + [h.to_country for h in case.handoffs]
                )
            what = f"{case.kind} via {case.channel}\n{case.subject or ''}"
            if case.waiting_on_customer:
                what += "\n(waiting on customer)"
            cases.add_row(
                case.case_id, what, owner, _deadline(case.next_deadline), "\n".join(case.steps[-4:])
            )
        parts.append(cases)
    if view.promises:
        promises = Table(
            title="Promises" + _more(view.promises_total, len(view.promises)),
            title_justify="left",
            expand=True,
        )
        for col in ("what", "made by", "due", "status"):
            promises.add_column(col, overflow="fold")
        for p in view.promises:
            style = {
                "kept": "green",
                "kept_late": "yellow",
                "withdrawn": "dim",
                "cancelled": "dim",
                "broken": "bold red",
                "overdue": "bold red",
            }.get(p.status, "yellow")
            status = "kept late" if p.status == "kept_late" else p.status
            promises.add_row(
                p.what + (" (implied)" if p.implied else ""),
                p.made_by,
                _when(p.due_by),
                Text(status, style),
            )
        parts.append(promises)
    if view.products:
        products = Table(
            title="Products" + _more(view.products_total, len(view.products)),
            title_justify="left",
            expand=True,
        )
        for col in ("product", "serial", "repairs", "warranty as shown"):
            products.add_column(col, overflow="fold")
        for prod in view.products:
            serial = prod.serial_corrected or prod.serial_as_given or "—"
            if prod.serial_corrected and prod.serial_as_given:
                serial = f"{prod.serial_as_given} → {prod.serial_corrected}"
            serial += f" ({prod.serial_status})"
            repairs = Text(str(prod.repairs), "bold red" if prod.replace_dont_repair else "")
            products.add_row(prod.name, serial, repairs, prod.warranty_terms_shown or "—")
        parts.append(products)
    if view.shipments:
        ships = Table(
            title="Deliveries" + _more(view.shipments_total, len(view.shipments)),
            title_justify="left",
            expand=True,
        )
        ships.add_column("shipment", overflow="fold", min_width=8)
        for col in ("carrier", "attempts", "what happened"):
            ships.add_column(col, overflow="fold")
        for sh in view.shipments:
            events = [f"failed: {f}" for f in sh.failures]
            if sh.rescheduled_to:
                events.append(f"rescheduled to {sh.rescheduled_to}")
            if sh.delivered_at:
                events.append(
                    f"delivered {_when(sh.delivered_at)}"
                    + (f" at {sh.delivered_location}" if sh.delivered_location else "")
                )
            ships.add_row(
                sh.shipment_id, sh.carrier or "—", str(sh.attempts), "\n".join(events) or "—"
            )
        parts.append(ships)
    if view.anomalies:
        anomalies = Table(title="Anomalies (kept, not dropped)", title_justify="left")
        anomalies.add_column("when")
        anomalies.add_column("problem", overflow="fold")
        for a in view.anomalies:
            anomalies.add_row(_when(a.at), a.problem)
        parts.append(anomalies)
    timeline = Table(
        title=f"Timeline (newest first, {len(view.timeline.entries)} of {view.timeline.total})",
        title_justify="left",
        expand=True,
    )
    timeline.add_column("when", no_wrap=True)
    timeline.add_column("what", overflow="fold")
    for entry in view.timeline.entries:
        cell = Text(entry.summary)
        if entry.text:
            # Verbatim: a Text, so brackets in what a customer wrote are never markup.
            cell.append("\n" + entry.text, "cyan")
        timeline.add_row(_when(entry.at), cell)
    parts.append(timeline)
    return Panel(Group(*parts), title="Customer view", border_style="blue")


def render_service_levels(levels: ServiceLevels) -> RenderableType:
    table = Table(
        title="Service levels: still without an answer, due soon, breached",
        title_justify="left",
        expand=True,
    )
    for col in ("customer", "what", "team", "channel", "age", "deadline"):
        table.add_column(col, overflow="fold")
    seen: set[tuple[str, str, str]] = set()
    for item in [*levels.breached, *levels.unanswered, *levels.due_soon]:
        key = (item.customer_id, item.kind, item.ref)
        if key in seen:
            continue
        seen.add(key)
        due = item.due_at - levels.computed_at
        deadline = (
            Text(
                f"MISSED {human_duration(-due.total_seconds())} ago"
                + (" (on the log)" if item.recorded else ""),
                "bold red",
            )
            if item.state == "breached"
            else Text(f"in {human_duration(due.total_seconds())}", _STATE_STYLE[item.state])
        )
        table.add_row(
            item.name or item.customer_id,
            f"{item.kind.replace('_', ' ')}: {item.label or item.ref}",
            item.team or "—",
            item.channel or "—",
            human_duration(item.age_seconds),
            deadline,
        )
    counts = Table(title="By team", title_justify="left")
    for col in ("team", "open", "unanswered", "warning", "breached"):
        counts.add_column(col, overflow="fold")
    for team, c in levels.by_team.items():
        counts.add_row(
            team, *(str(c.get(k, 0)) for k in ("open", "unanswered", "warning", "breached"))
        )
    return Group(table, counts)


def render_defects(defects: list[DefectOutreach]) -> RenderableType:
    table = Table(title="Known defects: proactive outreach", title_justify="left", expand=True)
    for col in ("defect", "customer", "product / batch", "reached"):
        table.add_column(col, overflow="fold")
    for d in defects:
        for a in d.affected:
            table.add_row(
                d.defect_id,
                a.name or a.customer_id,
                f"{a.product} / {a.batch or '—'}",
                Text(_when(a.reached_at), "green") if a.reached_at else Text("NOT YET", "bold red"),
            )
    return table


def _more(total: int, shown: int) -> str:
    """A list's title says when it shows only the first part (the view is bounded)."""
    return f" ({shown} of {total}: the rest by `GET /customers/KEY/lists`)" if total > shown else ""
