"""Queries the agents' service needs beyond the projections' own: search and case detail."""

from __future__ import annotations

from datetime import datetime

from domain.rules import ServiceRules
from journey.service.models import CaseDetail, SearchHit
from projections.customer_view import customer_case
from projections.store import JourneyStore, norm_identity
from projections.travel import Cut

__all__ = ["case_detail", "search_customers"]


def _like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _snippet(text: str, query: str, width: int = 120) -> str:
    """The words around the first match, on one line."""
    flat = " ".join(text.split())
    at = max(flat.lower().find(query.lower()), 0)
    start = max(at - width // 3, 0)
    cut = flat[start : start + width]
    return ("…" if start else "") + cut + ("…" if start + width < len(flat) else "")


def search_customers(store: JourneyStore, query: str, limit: int = 20) -> list[SearchHit]:
    """Customers whose name (any word of it), e-mail, phone, serial, order number or other
    identity, or customer id starts with ``query``, or who wrote or were told words that
    contain it (message and reply bodies, complaints, form fields, reviews); best known
    (most touchpoints) first. Erased customers are never found by what they were."""
    q = query.strip()
    if not q:
        return []
    name_prefix = _like_prefix(q.lower())
    norm = norm_identity(q)
    rows: list[tuple[object, ...]] = []
    rows += store.query(
        "SELECT customer_id, name, email, phone, touchpoints, last_seen, 'name', name"
        " FROM customers WHERE erased_at IS NULL AND name IS NOT NULL"
        " AND (lower(name) LIKE ? ESCAPE '\\' OR lower(name) LIKE ? ESCAPE '\\')"
        " ORDER BY touchpoints DESC LIMIT ?",
        (name_prefix, "% " + name_prefix, limit),
    )
    if norm:
        digits = norm.lstrip("+")
        rows += store.query(
            "SELECT c.customer_id, c.name, c.email, c.phone, c.touchpoints, c.last_seen,"
            " i.kind, i.value FROM identities i JOIN customers c USING (customer_id)"
            " WHERE c.erased_at IS NULL AND (i.norm LIKE ? ESCAPE '\\'"
            " OR (i.kind = 'phone' AND ltrim(i.norm, '+') LIKE ? ESCAPE '\\'))"
            " ORDER BY c.touchpoints DESC LIMIT ?",
            (_like_prefix(norm), _like_prefix(digits or norm), limit),
        )
        rows += store.query(
            "SELECT customer_id, name, email, phone, touchpoints, last_seen, 'customer_id',"
            " customer_id FROM customers WHERE id_norm LIKE ? ESCAPE '\\'"
            " ORDER BY touchpoints DESC LIMIT ?",
            (_like_prefix(norm), limit),
        )
    if len(q) >= 3:
        # Through the trigram index: the phrase is any substring of 3+ characters, any case.
        # Joined back to said, so text deleted there (erasure) is never found.
        rows += store.search_said(q, limit)
    hits: dict[str, SearchHit] = {}
    for cid, name, email, phone, touchpoints, last_seen, kind, value in rows:
        key = str(cid)
        if key in hits:
            continue
        hits[key] = SearchHit(
            customer_id=key,
            name=None if name is None else str(name),
            email=None if email is None else str(email),
            phone=None if phone is None else str(phone),
            matched=str(kind),
            matched_value=_snippet(str(value), q) if kind == "said" else str(value),
            touchpoints=int(str(touchpoints)),
            last_seen=datetime.fromisoformat(str(last_seen)) if last_seen else None,
        )
    ranked = sorted(hits.values(), key=lambda h: (-h.touchpoints, h.customer_id))
    return ranked[:limit]


def case_detail(
    store: JourneyStore,
    customer_id: str,
    case_id: str,
    *,
    rules: ServiceRules,
    now: datetime,
    cut: Cut | None = None,
) -> CaseDetail | None:
    """One case of a customer (or of a customer linked to them) with its whole timeline
    (with ``cut``: back in time)."""
    found = customer_case(store, customer_id, case_id, rules=rules, now=now, cut=cut)
    if found is None:
        return None
    case, submission, timeline = found
    return CaseDetail(customer_id=customer_id, case=case, submission=submission, timeline=timeline)
