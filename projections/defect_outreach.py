"""Defect outreach: per known defect, the customers who own an affected product and
whether each was reached before they had to complain."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from projections.store import JourneyStore

__all__ = ["AffectedCustomer", "DefectOutreach", "build_defect_outreach"]


class AffectedCustomer(BaseModel):
    customer_id: str
    name: str | None
    product: str
    batch: str | None
    serial: str | None
    reached_at: datetime | None


class DefectOutreach(BaseModel):
    defect_id: str
    product: str
    batch: str | None
    description: str | None
    remedy: str | None
    registered_at: datetime
    affected: list[AffectedCustomer]
    reached: int
    not_reached: int


def build_defect_outreach(
    store: JourneyStore, defect_id: str | None = None
) -> list[DefectOutreach]:
    where, params = ("WHERE defect_id = ?", (defect_id,)) if defect_id else ("", ())
    defects = store.query(
        "SELECT defect_id, product, batch, description, remedy, registered_at FROM defects "
        f"{where} ORDER BY registered_at",
        params,
    )
    out = []
    for did, product, batch, description, remedy, registered in defects:
        rows = store.query(
            "SELECT o.customer_id, CASE WHEN c.erased_at IS NULL THEN c.name END, o.product,"
            " o.batch, CASE WHEN c.erased_at IS NULL THEN o.serial END, r.sent_at"
            " FROM owned_products o JOIN customers c USING (customer_id)"
            " LEFT JOIN outreach r ON r.customer_id = o.customer_id AND r.defect_id = ?"
            " WHERE o.product = ? AND (CAST(? AS TEXT) IS NULL OR o.batch = ?)"
            " ORDER BY r.sent_at IS NOT NULL, o.customer_id",
            (did, product, batch, batch),
        )
        affected = [
            AffectedCustomer(
                customer_id=r[0],
                name=r[1],
                product=r[2],
                batch=r[3],
                serial=r[4],
                reached_at=datetime.fromisoformat(r[5]) if r[5] else None,
            )
            for r in rows
        ]
        reached = sum(1 for a in affected if a.reached_at)
        out.append(
            DefectOutreach(
                defect_id=did,
                product=product,
                batch=batch,
                description=description,
                remedy=remedy,
                registered_at=datetime.fromisoformat(registered),
                affected=affected,
                reached=reached,
                not_reached=len(affected) - reached,
            )
        )
    return out
