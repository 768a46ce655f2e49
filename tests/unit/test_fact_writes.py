"""The rows a touchpoint writes straight from itself (defects, outreach, breaches), whoever's
journey it is in; every other touchpoint writes none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain import catalogue as c
from domain.envelope import new_touchpoint
from projections.rows import fact_writes

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
DUE = AT - timedelta(hours=2)


def _writes(
    data: c.TouchpointData, customer_id: str = "cust-a"
) -> list[tuple[str, tuple[object, ...]]]:
    tp = new_touchpoint(data, customer_id=customer_id, occurred_at=AT, source="test")
    return [
        (sql.split(" (")[0].split(" VALUES")[0], tuple(params)) for sql, params in fact_writes(tp)
    ]


def test_the_four_fact_rows_carry_the_touchpoints_time() -> None:
    at = AT.isoformat()
    assert _writes(c.ProactiveOutreachSent(defect_id="d-1", channel="email")) == [
        ("INSERT INTO outreach", ("cust-a", "d-1", at))
    ]
    assert _writes(c.ReplyOverdue(case_id="k-1", target="first_reply", due_by=DUE)) == [
        ("INSERT INTO breaches", ("cust-a", "first_reply", "k-1", DUE.isoformat(), at))
    ]
    assert _writes(c.PromiseBroken(promise_id="p-1", due_by=DUE)) == [
        ("INSERT INTO breaches", ("cust-a", "promise", "p-1", DUE.isoformat(), at))
    ]
    defect = c.KnownDefectRegistered(
        defect_id="d-1", product="anorak", description="zip", registered_by="qa"
    )
    ((table, params),) = _writes(defect, customer_id="product:anorak")
    assert table == "INSERT INTO defects" and params[0] == "d-1" and params[5] == at


def test_other_touchpoints_write_no_fact_row() -> None:
    assert _writes(c.InquiryReceived(case_id="k-1", channel="chat", subject="x", body="y")) == []
