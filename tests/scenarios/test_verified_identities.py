"""Only verified identities merge customers (issue 12, item 4): the attacks replayed.

A stranger who types someone else's phone number into a web form, or whose stream carries
an unverified ``IdentityLinked``, must not read that person's view (their SMS PIN
included), must not keep anything of it after that person's erasure, and must not hijack a
lookup by e-mail. Unverified claims are shown to agents as possible matches; an agent's
verified ``IdentityLinked`` confirms one; ``IdentityUnlinked`` undoes a merge.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consumers.embedded_log import EmbeddedLog
from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from journey.pipeline import ManualClock, Pipeline
from projections.customer_view import CustomerView
from tests.conftest import fresh_postgres_database

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
T0 = NOW - timedelta(days=2)
PIN = "PIN 80417"
PHONE = "+46 70 555 12 34"
EMAIL = "anna.lind@example.se"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def pipe(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pipeline]:
    """The embedded log into a SQLite store, and into a PostgreSQL one (the lookups and the
    possible matches are SQL both must answer alike)."""
    with contextlib.ExitStack() as stack:
        store = (
            stack.enter_context(fresh_postgres_database())
            if request.param == "postgresql"
            else tmp_path / "views.db"
        )
        log = EmbeddedLog(str(tmp_path / "log.db"))
        pipeline = Pipeline(log, store, topic="ids", clock=ManualClock(NOW), idle_timeout=None)
        yield pipeline
        pipeline.close()
        log.close()


def tp(cid: str, data: c.TouchpointData, minutes: float, source: str = "test") -> Touchpoint:
    return new_touchpoint(
        data, customer_id=cid, occurred_at=T0 + timedelta(minutes=minutes), source=source
    )


def play(pipe: Pipeline, *touchpoints: Touchpoint) -> None:
    pipe.emit(list(touchpoints))
    pipe.catch_up()


def view(pipe: Pipeline, key: str) -> CustomerView:
    found = pipe.customer(key)
    assert found is not None, key
    return found


def anna(cid: str = "cust-anna") -> list[Touchpoint]:
    """The victim: her bank verified her phone and e-mail; the bank texted her a PIN."""
    return [
        tp(cid, c.IdentityLinked(kind="name", value="Anna Lind", verified=True), 0, "bank-crm"),
        tp(cid, c.IdentityLinked(kind="phone", value=PHONE, verified=True), 0, "bank-crm"),
        tp(cid, c.IdentityLinked(kind="email", value=EMAIL, verified=True), 0, "bank-crm"),
        tp(cid, c.InquiryReceived(case_id="a-1", channel="sms", body="New card please"), 5),
        tp(
            cid,
            c.ReplySent(
                case_id="a-1",
                channel="sms",
                agent="Bank SMS",
                team="Cards",
                country="SE",
                body=f"Your new card's {PIN}",
            ),
            6,
        ),
    ]


def stranger_form(cid: str = "cust-stranger", minutes: float = 60) -> Touchpoint:
    return tp(
        cid,
        c.SignupRequested(
            case_id=f"{cid}-form",
            form="become-a-customer",
            fields={"name": "Sam Stranger", "phone": PHONE, "email": EMAIL},
        ),
        minutes,
        "web",
    )


def dumped(v: CustomerView) -> str:
    return v.model_dump_json()


# ---------------------------------------------------------------------- the attacks


def test_a_web_form_with_someone_elses_phone_does_not_merge(pipe: Pipeline) -> None:
    play(pipe, *anna(), stranger_form())
    stranger = view(pipe, "cust-stranger")
    assert stranger.linked_customer_ids == []
    assert PIN not in dumped(stranger)
    assert "a-1" not in {k.case_id for k in stranger.open_cases + stranger.closed_cases}
    # ... and the victim's view does not take the stranger in either.
    victim = view(pipe, "cust-anna")
    assert victim.linked_customer_ids == []
    assert "cust-stranger-form" not in {k.case_id for k in victim.open_cases}
    # Each is shown to agents as a possible match to confirm, through what was claimed.
    assert {(m.customer_id, m.kind) for m in stranger.possible_matches} == {
        ("cust-anna", "phone"),
        ("cust-anna", "email"),
    }
    assert {(m.customer_id, m.kind) for m in victim.possible_matches} == {
        ("cust-stranger", "phone"),
        ("cust-stranger", "email"),
    }
    # She holds them verified; the stranger only claims them.
    assert all(m.verified and m.claimed_by == "cust-stranger" for m in stranger.possible_matches)
    assert all(not m.verified and m.claimed_by == "cust-stranger" for m in victim.possible_matches)


def test_a_form_phone_does_not_reach_a_stream_keyed_by_that_phone(pipe: Pipeline) -> None:
    # The SMS system keys its messages by the number; Anna's verified phone merges them.
    sms = tp(
        PHONE,
        c.ReplySent(
            case_id="sms-1", channel="sms", agent="PIN bot", team="Auth", country="SE", body=PIN
        ),
        7,
        "sms-gateway",
    )
    play(pipe, *anna(), sms, stranger_form())
    assert PHONE in view(pipe, "cust-anna").linked_customer_ids
    stranger = view(pipe, "cust-stranger")
    assert stranger.linked_customer_ids == []
    assert PIN not in dumped(stranger)
    assert view(pipe, PHONE).linked_customer_ids == ["cust-anna"]


def test_an_unverified_identity_linked_does_not_merge(pipe: Pipeline) -> None:
    play(
        pipe,
        *anna(),
        tp("cust-mallory", c.InquiryReceived(case_id="m-1", channel="chat", subject="hi"), 30),
        tp("cust-mallory", c.IdentityLinked(kind="customer_id", value="cust-anna"), 31),
        tp("cust-mallory", c.IdentityLinked(kind="phone", value=PHONE, verified=False), 32),
    )
    mallory = view(pipe, "cust-mallory")
    assert mallory.linked_customer_ids == []
    assert PIN not in dumped(mallory)
    assert {m.customer_id for m in mallory.possible_matches} == {"cust-anna"}
    assert {m.kind for m in mallory.possible_matches} == {"customer_id", "phone"}
    assert view(pipe, "cust-anna").linked_customer_ids == []


def test_after_the_victims_erasure_the_stranger_keeps_nothing_of_her(pipe: Pipeline) -> None:
    play(pipe, *anna(), stranger_form())
    play(pipe, tp("cust-anna", c.ErasureRequested(channel="email"), 120))
    stranger = view(pipe, "cust-stranger")
    text = dumped(stranger)
    assert PIN not in text and "Anna Lind" not in text
    assert stranger.linked_customer_ids == []
    # Not even a possible match names her: she has no identities any more.
    assert all(m.customer_id != "cust-anna" for m in stranger.possible_matches)


def test_a_confirmed_merge_keeps_nothing_after_the_erasure(pipe: Pipeline) -> None:
    # Had an agent confirmed the match (wrongly), her erasure still leaves nothing of her.
    play(
        pipe,
        *anna(),
        stranger_form(),
        tp(
            "cust-stranger",
            c.IdentityLinked(kind="customer_id", value="cust-anna", verified=True),
            70,
            "agent:Nina",
        ),
    )
    assert PIN in dumped(view(pipe, "cust-stranger"))
    play(pipe, tp("cust-anna", c.ErasureRequested(channel="email"), 120))
    text = dumped(view(pipe, "cust-stranger"))
    assert PIN not in text and "Anna Lind" not in text


def test_a_lookup_by_email_is_not_hijacked_by_an_older_unverified_claim(pipe: Pipeline) -> None:
    # The stranger claimed the e-mail first and has far more touchpoints ...
    claims = [stranger_form(minutes=-600)] + [
        tp("cust-stranger", c.InquiryReceived(case_id=f"s-{n}", channel="chat", subject="x"), -n)
        for n in range(1, 12)
    ]
    play(pipe, *claims, *anna())
    # ... yet the e-mail (and the phone) lead to their verified owner.
    for key in (EMAIL, EMAIL.upper(), PHONE, "+46705551234"):
        assert view(pipe, key).customer_id == "cust-anna", key


def test_a_lookup_by_an_unverified_identity_answers_with_candidates(pipe: Pipeline) -> None:
    play(pipe, stranger_form(), stranger_form("cust-other", 61))
    for key in (PHONE, EMAIL):
        assert pipe.customer(key) is None, key
        found = pipe.lookup(key)
        assert found.customer_id is None
        assert {(m.customer_id, m.verified) for m in found.candidates} == {
            ("cust-stranger", False),
            ("cust-other", False),
        }
    # The customer id itself still answers.
    assert view(pipe, "cust-stranger").customer_id == "cust-stranger"
    # A verified link of one of them settles it.
    play(pipe, tp("cust-other", c.IdentityLinked(kind="phone", value=PHONE, verified=True), 90))
    assert view(pipe, PHONE).customer_id == "cust-other"
    assert pipe.customer(EMAIL) is None


def test_an_agent_confirming_a_possible_match_merges(pipe: Pipeline) -> None:
    play(pipe, *anna(), stranger_form("cust-anna-web"))
    assert view(pipe, "cust-anna-web").linked_customer_ids == []
    confirm = tp(
        "cust-anna-web",
        c.IdentityLinked(kind="customer_id", value="cust-anna", verified=True),
        90,
        "agent:Nina",
    )
    play(pipe, confirm)
    merged = view(pipe, "cust-anna-web")
    assert merged.linked_customer_ids == ["cust-anna"]
    assert merged.possible_matches == []
    assert view(pipe, "cust-anna").linked_customer_ids == ["cust-anna-web"]


# ---------------------------------------------------------------------- undoing a merge


def two_customers() -> list[Touchpoint]:
    return [
        tp("cust-x", c.InquiryReceived(case_id="x-1", channel="chat", subject="x says"), 1),
        tp("cust-y", c.ComplaintFiled(case_id="y-1", channel="email", product="Kettle"), 2),
    ]


def cases(v: CustomerView) -> set[str]:
    return {k.case_id for k in v.open_cases + v.closed_cases}


def test_identity_unlinked_undoes_a_merge_for_both_views(pipe: Pipeline) -> None:
    link = c.IdentityLinked(kind="customer_id", value="cust-y", verified=True)
    play(pipe, *two_customers(), tp("cust-x", link, 3, "agent:Nina"))
    assert cases(view(pipe, "cust-x")) == cases(view(pipe, "cust-y")) == {"x-1", "y-1"}
    unlink = c.IdentityUnlinked(kind="customer_id", value="cust-y", unlinked_by="Nina")
    play(pipe, tp("cust-x", unlink, 4, "agent:Nina"))
    x, y = view(pipe, "cust-x"), view(pipe, "cust-y")
    assert (cases(x), cases(y)) == ({"x-1"}, {"y-1"})
    assert x.linked_customer_ids == y.linked_customer_ids == []
    assert {e.customer_id for e in y.timeline.entries} == {"cust-y"}
    # Linked again, they merge again.
    play(pipe, tp("cust-x", link, 5, "agent:Nina"))
    assert cases(view(pipe, "cust-y")) == {"x-1", "y-1"}


def test_an_unlink_from_the_other_side_undoes_that_sides_link(pipe: Pipeline) -> None:
    link = c.IdentityLinked(kind="customer_id", value="cust-x", verified=True)
    play(pipe, *two_customers(), tp("cust-y", link, 3))
    assert cases(view(pipe, "cust-x")) == {"x-1", "y-1"}
    play(pipe, tp("cust-y", c.IdentityUnlinked(kind="customer_id", value="cust-x"), 4))
    assert cases(view(pipe, "cust-x")) == {"x-1"}
    assert cases(view(pipe, "cust-y")) == {"y-1"}


def test_unlinking_an_identity_splits_a_stream_keyed_by_it(pipe: Pipeline) -> None:
    sms = tp(PHONE, c.InquiryReceived(case_id="sms-9", channel="sms", body="call me"), 8)
    play(pipe, *anna(), sms)
    assert cases(view(pipe, "cust-anna")) == {"a-1", "sms-9"}
    play(pipe, tp("cust-anna", c.IdentityUnlinked(kind="phone", value="+46705551234"), 9))
    anna_now = view(pipe, "cust-anna")
    assert cases(anna_now) == {"a-1"}
    assert PHONE not in {i.value for i in anna_now.identities}
    assert view(pipe, PHONE).linked_customer_ids == []
    # The phone no longer names her: nobody holds it verified.
    assert pipe.customer("+46705551234") is not None  # the SMS stream's own id
    assert view(pipe, "+46705551234").customer_id == PHONE


def test_a_late_unlink_refolds_and_a_late_link_before_it_stays_undone(pipe: Pipeline) -> None:
    link = c.IdentityLinked(kind="customer_id", value="cust-y", verified=True)
    unlink = c.IdentityUnlinked(kind="customer_id", value="cust-y")
    later = tp("cust-x", c.InquiryReceived(case_id="x-2", channel="chat", subject="again"), 50)
    play(pipe, *two_customers(), tp("cust-x", link, 3), later)
    # Reported late: the unlink happened before the later inquiry was folded.
    play(pipe, tp("cust-x", unlink, 10))
    assert cases(view(pipe, "cust-x")) == {"x-1", "x-2"}
    assert cases(view(pipe, "cust-y")) == {"y-1"}


def test_unlinking_what_was_never_linked_is_an_anomaly(pipe: Pipeline) -> None:
    play(
        pipe,
        *two_customers(),
        tp("cust-x", c.IdentityUnlinked(kind="email", value="nobody@example.org"), 5),
    )
    x = view(pipe, "cust-x")
    assert [a.type for a in x.anomalies] == ["IdentityUnlinked"]


def test_identities_say_whether_they_are_verified(pipe: Pipeline) -> None:
    play(pipe, *anna(), stranger_form())
    shown = {(i.kind, i.value): i.verified for i in view(pipe, "cust-stranger").identities}
    assert shown[("phone", PHONE)] is False
    shown = {(i.kind, i.value): i.verified for i in view(pipe, "cust-anna").identities}
    assert shown[("phone", PHONE)] is True


def test_the_cli_view_shows_claims_and_possible_matches(pipe: Pipeline) -> None:
    from rich.console import Console

    from journey.render import render_customer

    play(pipe, *anna(), stranger_form())
    console = Console(record=True, width=160)
    console.print(render_customer(view(pipe, "cust-stranger")))
    text = console.export_text()
    assert "Possible matches to confirm" in text and "Anna Lind (cust-anna)" in text
    assert "claimed, not verified" in text
