"""Issue 9 item 1: everything the customer said or was told reaches the view, the timeline
and the console verbatim (escaped, long texts folded behind "show all"), and is searchable."""

from __future__ import annotations

import html as html_lib
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from tests.service.helpers import Running

BANK_FORM = {
    "name": "Erik Haugen",
    "email": "erik.haugen@example.no",
    "phone": "+47 912 34 567",
    "wants": "full customer: mortgage, car loan, salary account, savings, insurance",
    "loan_type": "floating rate",
    "current_bank": "Sparebank 1",
    "spoke_to_adviser_before": "no",
}
FOKUS_REPLY = (
    "Called about a fixed-rate loan for a DnB Nor customer who spoke to an adviser yesterday"
)
HOSTILE = 'Hello <script>alert("x")</script> & <b>bold</b>\nsecond line'


def _touch(customer: str, data: c.TouchpointData) -> Touchpoint:
    return new_touchpoint(data, customer_id=customer, occurred_at=datetime.now(UTC), source="test")


def _view(svc: Running, customer: str) -> dict[str, Any]:
    response = svc.get(f"/customers/{customer}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def _texts(view: dict[str, Any]) -> list[str]:
    return [e["text"] for e in view["timeline"]["entries"] if e.get("text")]


def test_the_bank_storys_form_fields_and_reply_are_verbatim(svc: Running) -> None:
    view = _view(svc, "cust-erik")
    assert [s["fields"] for s in view["submissions"]] == [BANK_FORM, BANK_FORM]
    texts = _texts(view)
    assert "\n".join(f"{k}: {v}" for k, v in BANK_FORM.items()) in texts
    assert FOKUS_REPLY in texts
    fokus = next(k for k in view["open_cases"] if k["case_id"] == "fokus-signup-1")
    assert [m["text"] for m in fokus["messages"] if not m["from_customer"]] == [FOKUS_REPLY]
    page = svc.get("/console/customers/cust-erik").text
    for value in [*BANK_FORM.values(), FOKUS_REPLY]:
        assert html_lib.escape(value, quote=False) in page, value


def test_an_inquiry_with_a_subject_keeps_its_body_escaped(svc: Running) -> None:
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    case_id = "k-hostile"
    svc.emitter.emit_touchpoints(
        [
            _touch(
                customer,
                c.InquiryReceived(
                    case_id=case_id, channel="email", subject="Where is it?", body=HOSTILE
                ),
            )
        ]
    )
    view = _view(svc, customer)
    assert _texts(view) == [HOSTILE]
    (case,) = view["open_cases"]
    assert case["subject"] == "Where is it?"
    assert [(m["subject"], m["text"]) for m in case["messages"]] == [("Where is it?", HOSTILE)]
    page = svc.get(f"/console/customers/{customer}").text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert '<script>alert("x")' not in page and "<b>bold</b>" not in page
    assert '<details class="said"' not in page, "a short text is shown whole"


def test_long_texts_fold_behind_show_all_and_stay_whole(svc: Running) -> None:
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    long_body = "The parcel never came. " * 40 + "THE-VERY-END"
    svc.emitter.emit_touchpoints(
        [
            _touch(
                customer,
                c.ComplaintFiled(
                    case_id="k-long", channel="web_form", product="Jacket", description=long_body
                ),
            ),
            _touch(
                customer,
                c.PublicReviewPosted(
                    review_id="r-1", platform="Trustpilot", score=1, text="Never again <3"
                ),
            ),
            _touch(
                customer,
                c.ReviewAnswered(
                    review_id="r-1", answered_by="Social team", text="Sorry & thank you"
                ),
            ),
        ]
    )
    view = _view(svc, customer)
    assert long_body in _texts(view)
    (review,) = view["reviews"]
    assert (review["text"], review["answer"], review["status"]) == (
        "Never again <3",
        "Sorry & thank you",
        "answered",
    )
    page = svc.get(f"/console/customers/{customer}").text
    folded = re.findall(r"<details class=\"said\">.*?</details>", page, re.S)
    assert folded, "a long text is folded"
    assert all("show all" in d and "THE-VERY-END" in d for d in folded)
    assert "Never again &lt;3" in page and "Sorry &amp; thank you" in page


def test_search_finds_a_customer_by_what_they_wrote(svc: Running) -> None:
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    svc.emitter.emit_touchpoints(
        [
            _touch(
                customer,
                c.InquiryReceived(
                    case_id="k-words",
                    channel="chat",
                    subject="Broken zipper",
                    body="The zipper on my Fjellduk anorak broke on day two",
                ),
            )
        ]
    )
    body = svc.get("/search", params={"q": "fjellduk anorak"}).json()
    hits = {h["customer_id"]: h for h in body["data"]["hits"]}
    assert customer in hits, body
    assert hits[customer]["matched"] == "said"
    assert "Fjellduk anorak" in hits[customer]["matched_value"]
    # The bank story's form, by what Erik typed.
    hits = svc.get("/search", params={"q": "Sparebank"}).json()["data"]["hits"]
    assert "cust-erik" in {h["customer_id"] for h in hits}
