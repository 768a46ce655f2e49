"""Issue 11 item 2: time travel, both kinds, on SQLite and PostgreSQL, through the library,
the CLI and the query service.

The story: an order promised for Thursday 09:00. The carrier delivered on Wednesday but
reported it only on Saturday — after the deadline, so the promise keeper had recorded the
promise broken on Friday (when its clock passed the deadline), and the customer had written
"where is my parcel?". A defect of the jacket, found on Wednesday, was registered on
Friday. A second customer id (an SMS stream) was merged into this customer on Sunday.

* **as of** Thursday 08:00 (event time): by all we know now, the parcel had arrived: the
  promise is kept, the shipment delivered — although nobody knew it then;
* **known at** Thursday 08:00 (log time): what the agent could see then — the parcel on its
  way, the promise pending, due in one hour (judged at Thursday 08:00, not today);
* **known at** Friday 12:00: the keeper's PromiseBroken had been logged, the customer's
  message too (unanswered); the delivery was still unknown;
* the merge on Sunday applies to neither view before Sunday, and both views at the end
  equal today's view.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from consumers.embedded_log import EmbeddedLog
from consumers.log import Log
from consumers.rebuild import rebuild
from consumers.runner import Runner
from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from journey.emitter import Emitter
from journey.pipeline import ManualClock, Pipeline
from journey.service import ServiceOptions
from journey.settings import Settings
from projections import travel as travel_module
from projections.customer_view import CustomerView, build_customer_view
from projections.store import JourneyStore, StoreAddress, active_store
from projections.travel import Cut
from tests.service.helpers import running_service

TOPIC = "journey.touchpoints"
MON = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
DUE = MON + timedelta(days=3)  # Thursday 09:00
THU_0800 = DUE - timedelta(hours=1)
FRI_1200 = MON + timedelta(days=4, hours=3)
SUN_1200 = MON + timedelta(days=6, hours=3)
END = MON + timedelta(days=10)
CID = "cust-travel"
SMS = "+4670-1234567"  # an SMS stream, keyed by the phone number


def _tp(customer: str, data: c.TouchpointData, at: datetime) -> Touchpoint:
    return new_touchpoint(data, customer_id=customer, occurred_at=at, source="test")


def _story() -> tuple[list[Touchpoint], list[datetime]]:
    """(touchpoints, when each reached the log)."""
    money = c.Money(amount=Decimal("499.00"), currency="SEK")
    happened = [
        (
            _tp(
                CID,
                c.OrderPlaced(
                    order_id="o-1",
                    lines=[c.OrderLine(sku="J-1", name="Jacket", unit_price=money)],
                    total=money,
                    promised_delivery_by=DUE,
                ),
                MON,
            ),
            MON,
        ),
        (
            _tp(
                CID,
                c.OrderShipped(order_id="o-1", shipment_id="S-1", carrier="Posten"),
                MON + timedelta(days=1),
            ),
            MON + timedelta(days=1),
        ),
        # Delivered on Wednesday, reported on Saturday: a late carrier report.
        (
            _tp(CID, c.Delivered(shipment_id="S-1", carrier="Posten"), MON + timedelta(days=2)),
            MON + timedelta(days=5),
        ),
        (
            _tp(
                CID,
                c.InquiryReceived(case_id="k-1", channel="email", subject="Where is my parcel?"),
                # written in Stockholm: the timeline says it in UTC, as today's does
                (MON + timedelta(days=4)).astimezone(timezone(timedelta(hours=1))),
            ),
            MON + timedelta(days=4),
        ),
        # A defect of the jacket found on Wednesday, registered on the log only on Friday.
        (
            _tp(
                c.product_key("Jacket"),
                c.KnownDefectRegistered(
                    defect_id="D-1", product="Jacket", description="Zip breaks", registered_by="QA"
                ),
                MON + timedelta(days=2, hours=3),
            ),
            MON + timedelta(days=4, hours=1),
        ),
        # The SMS stream: its own customer id, merged on Sunday.
        (
            _tp(
                SMS,
                c.InquiryReceived(case_id="k-sms", channel="sms", subject="Parcel?"),
                MON + timedelta(days=4, hours=1),
            ),
            MON + timedelta(days=4, hours=1),
        ),
        (
            _tp(
                CID,
                c.IdentityLinked(kind="customer_id", value=SMS, verified=True),
                MON + timedelta(days=6),
            ),
            MON + timedelta(days=6),
        ),
    ]
    return [t for t, _ in happened], [a for _, a in happened]


def _play(tmp_path: Path, store: StoreAddress) -> Path:
    """The story as it arrived, the keeper deciding by its clock; returns the log's path."""
    log_path = tmp_path / "log.db"
    log = EmbeddedLog(str(log_path))
    touchpoints, arrivals = _story()
    clock = ManualClock(MON)
    pipeline = Pipeline(log, store, topic=TOPIC, clock=clock)
    try:
        pipeline.play(touchpoints, clock, END, arrivals=arrivals)
    finally:
        pipeline.close()
        log.close()
    return log_path


@pytest.fixture
def played(tmp_path: Path, store_address: StoreAddress) -> Iterator[tuple[Path, StoreAddress]]:
    log_path = _play(tmp_path, store_address)
    yield log_path, store_address


def _view(store: JourneyStore, cut: Cut | None) -> CustomerView:
    view = build_customer_view(store, CID, rules=_rules(), now=END, cut=cut)
    assert view is not None
    return view


def _rules() -> Any:
    from domain.rules import ServiceRules

    return ServiceRules()


def _essence(view: CustomerView) -> dict[str, Any]:
    """What a view says, without when it was computed."""
    out = view.model_dump(mode="json", exclude={"computed_at", "time_travel"})
    return out


def test_as_of_and_known_at_differ_for_a_late_carrier_report(
    played: tuple[Path, StoreAddress],
) -> None:
    _, address = played
    store = JourneyStore(active_store(address))
    try:
        # As of Thursday 08:00 (event time): the delivery had happened.
        as_of = _view(store, Cut("as_of", THU_0800))
        assert as_of.time_travel is not None and as_of.time_travel.kind == "as_of"
        assert [p.status for p in as_of.promises] == ["kept"]
        assert as_of.shipments[0].delivered_at == MON + timedelta(days=2)
        assert as_of.open_cases == [] and as_of.linked_customer_ids == []
        assert [e.type for e in as_of.timeline.entries] == [
            "Delivered",
            "OrderShipped",
            "OrderPlaced",
        ]
        assert as_of.touchpoints == as_of.timeline.total == 3
        assert as_of.flags.promise_broken is False
        assert as_of.flags.known_defects == ["D-1"]

        # Known at Thursday 08:00 (log time): the delivery was not reported yet; the promise
        # is pending and due in one hour — judged at that moment, not today.
        known = _view(store, Cut("known_at", THU_0800))
        assert [p.status for p in known.promises] == ["pending"]
        deadline = known.promises[0].deadline
        assert deadline is not None and deadline.remaining_seconds == 3600
        assert known.shipments[0].delivered_at is None
        assert [e.type for e in known.timeline.entries] == ["OrderShipped", "OrderPlaced"]
        assert known.computed_at == THU_0800
        assert known.flags.known_defects == []

        # Known at Friday 12:00: the keeper had logged the break, the customer had written.
        friday = _view(store, Cut("known_at", FRI_1200))
        assert [(p.status, p.broken_recorded) for p in friday.promises] == [("broken", True)]
        assert friday.flags.promise_broken is True
        assert [k.case_id for k in friday.open_cases] == ["k-1"]
        assert friday.flags.unanswered_for_seconds == timedelta(hours=3).total_seconds()
        assert friday.shipments[0].delivered_at is None
        assert friday.flags.known_defects == ["D-1"]
        assert "PromiseBroken" in {e.type for e in friday.timeline.entries}
        assert "Delivered" not in {e.type for e in friday.timeline.entries}
        # The SMS stream was merged only on Sunday.
        assert friday.linked_customer_ids == []

        # After Sunday the merge applies; at the end both views are today's.
        sunday = _view(store, Cut("known_at", SUN_1200))
        assert sunday.linked_customer_ids == [SMS]
        assert {k.case_id for k in sunday.open_cases} == {"k-1", "k-sms"}
        today = _view(store, None)
        assert today.linked_customer_ids == [SMS]
        for cut in (Cut("as_of", END), Cut("known_at", END)):
            assert _essence(_view(store, cut)) == _essence(today)
        # Before the customer's first touchpoint there is nothing to show.
        assert (
            build_customer_view(
                store, CID, rules=_rules(), now=END, cut=Cut("as_of", MON - timedelta(1))
            )
            is None
        )
    finally:
        store.close()


def test_a_rebuild_gives_the_same_views_back_in_time(played: tuple[Path, StoreAddress]) -> None:
    """The log time comes from the log, not from when a store folded it: a store rebuilt
    from the log, days later, knows what the live one knew, at every moment."""
    log_path, address = played
    before = JourneyStore(active_store(address))
    try:
        cuts = [Cut(kind, at) for kind in ("as_of", "known_at") for at in (THU_0800, FRI_1200)]
        old = [_essence(_view(before, cut)) for cut in cuts]
    finally:
        before.close()
    log = EmbeddedLog(str(log_path))
    try:
        rebuilt, _, _ = rebuild(log, address, topic=TOPIC, dlq_topic=f"{TOPIC}.dlq")
    finally:
        log.close()
    after = JourneyStore(rebuilt)
    try:
        assert [_essence(_view(after, cut)) for cut in cuts] == old
    finally:
        after.close()


JOURNEY = Path(sys.executable).with_name("journey")


def _journey(log_path: Path, store: StoreAddress, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEY_")}
    env["COLUMNS"] = "160"
    target = store if isinstance(store, str) else f"sqlite:///{store}"
    return subprocess.run(
        [
            str(JOURNEY),
            "--broker",
            f"embedded://{log_path}",
            "--store",
            target,
            "--topic",
            TOPIC,
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_looks_back_both_ways(played: tuple[Path, StoreAddress]) -> None:
    log_path, address = played
    when = THU_0800.isoformat()
    as_of = _journey(log_path, address, "view", CID, "--as-of", when, "--json")
    assert as_of.returncode == 0, as_of.stderr
    body = json.loads(as_of.stdout)
    assert body["time_travel"] == {"kind": "as_of", "at": "2025-03-06T08:00:00Z"}
    assert [p["status"] for p in body["promises"]] == ["kept"]
    known = _journey(log_path, address, "view", CID, "--known-at", when, "--json")
    assert known.returncode == 0, known.stderr
    assert [p["status"] for p in json.loads(known.stdout)["promises"]] == ["pending"]
    shown = _journey(log_path, address, "view", CID, "--known-at", when)
    assert shown.returncode == 0, shown.stderr
    assert "AS KNOWN AT (log time) 2025-03-06 08:00 UTC" in shown.stdout
    # Bad moments: one line each, exit 2, nothing read.
    for args, says in [
        (("--as-of", "2025-03-06"), "has no time zone"),
        (("--known-at", "yesterday"), "is not an ISO 8601 timestamp"),
        (("--as-of", "1969-12-31T23:00:00Z"), "before 1970-01-01"),
        (("--as-of", "2999-01-01T00:00:00Z"), "is in the future"),
        (("--as-of", when, "--known-at", when), "not both"),
    ]:
        done = _journey(log_path, address, "view", CID, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
    before = _journey(log_path, address, "view", CID, "--as-of", "2025-01-01T00:00:00Z")
    assert before.returncode == 1
    assert "had no touchpoint as of 2025-01-01T00:00:00+00:00" in before.stderr


def test_the_service_looks_back_both_ways(
    played: tuple[Path, StoreAddress], monkeypatch: pytest.MonkeyPatch
) -> None:
    log_path, address = played
    store = address if isinstance(address, str) else f"sqlite:///{address}"
    settings = Settings(broker=f"embedded://{log_path}", store=store, topic=TOPIC)
    options = ServiceOptions(max_wait_ms=1000, run_pipeline=False)
    with running_service(settings, options) as svc:
        when = THU_0800.isoformat()
        as_of = svc.get(f"/customers/{CID}", params={"as_of": when})
        assert as_of.status_code == 200, as_of.text
        data = as_of.json()["data"]
        assert data["time_travel"] == {"kind": "as_of", "at": "2025-03-06T08:00:00Z"}
        assert [p["status"] for p in data["promises"]] == ["kept"]
        known = svc.get(f"/customers/{CID}", params={"known_at": when}).json()["data"]
        assert [p["status"] for p in known["promises"]] == ["pending"]
        # The lists and the timeline look back the same way.
        friday = {"known_at": FRI_1200.isoformat()}
        cases = svc.get(f"/customers/{CID}/cases", params=friday).json()["data"]
        assert [k["case_id"] for k in cases["items"]] == ["k-1"]
        promises = svc.get(f"/customers/{CID}/lists/promises", params=friday).json()["data"]
        assert [p["status"] for p in promises["items"]] == ["broken"]
        page = svc.get(f"/customers/{CID}/timeline", params={**friday, "limit": 2}).json()
        rest = svc.get(
            f"/customers/{CID}/timeline",
            params={**friday, "limit": 50, "cursor": page["data"]["next"]},
        ).json()
        types = [e["type"] for e in page["data"]["entries"] + rest["data"]["entries"]]
        assert "Delivered" not in types and len(types) == page["data"]["total"] == 4
        case = svc.get(f"/customers/{CID}/cases/k-1", params={"as_of": when})
        assert case.status_code == 404, case.text
        # Errors: one line naming the parameter.
        for params, says in [
            ({"as_of": "2025-03-06"}, "has no time zone"),
            ({"known_at": "2999-01-01T00:00:00Z"}, "is in the future"),
            ({"as_of": when, "known_at": when}, "not both"),
        ]:
            bad = svc.get(f"/customers/{CID}", params=params)
            assert bad.status_code == 422, bad.text
            error = bad.json()["error"]
            assert says in error["message"] and "\n" not in error["message"]
            assert error["field"] in ("as_of", "known_at")
        # The console shows it with a banner, and does not keep it live (live is today).
        console = svc.get(f"/console/customers/{CID}", params={"known_at": when})
        assert console.status_code == 200, console.text
        assert "As known at" in console.text and 'data-live=""' in console.text
        assert "live-state" not in console.text  # no "Connecting…" that never connects
        today = svc.get(f"/console/customers/{CID}")
        assert "As known at" not in today.text and 'data-live="/customers/' in today.text
        bad = svc.get(f"/console/customers/{CID}", params={"as_of": "2025-03-06"})
        assert bad.status_code == 422 and "has no time zone" in bad.text
        # Bounded: more rows than a view back in time reads is 422, not a slow answer.
        monkeypatch.setattr(travel_module, "TRAVEL_MAX_TOUCHPOINTS", 3)
        large = svc.get(f"/customers/{CID}", params={"as_of": when})
        assert large.status_code == 422 and large.json()["error"]["code"] == "too_large"
        monkeypatch.undo()
        none_yet = svc.get(f"/customers/{CID}", params={"as_of": "2025-01-01T00:00:00Z"})
        assert none_yet.status_code == 404
        assert "had no touchpoint as of" in none_yet.json()["error"]["message"]


def test_the_log_time_is_the_record_timestamp_on_either_log(
    log: Log, unique_topic: str, tmp_path: Path
) -> None:
    """Known-at goes by when each record reached the log (its timestamp, on Kafka as on the
    embedded log), carried through the runner into the store, not by when it was folded."""
    asked = MON + timedelta(hours=1)
    touchpoints = [
        _tp("cust-k", c.InquiryReceived(case_id="k-9", channel="chat", subject="Hello?"), MON),
        _tp(
            "cust-k",
            c.ReplySent(case_id="k-9", channel="chat", agent="A", team="T", country="SE"),
            MON + timedelta(minutes=10),
        ),
    ]
    emitter = Emitter(log, topic=unique_topic, source="test")
    emitter.emit_touchpoints(touchpoints[:1], logged_at=MON + timedelta(minutes=1))
    emitter.emit_touchpoints(touchpoints[1:], logged_at=MON + timedelta(days=3))  # late
    runner = Runner(
        log, tmp_path / "views.db", topic=unique_topic, dlq_topic=f"{unique_topic}.dlq", group=None
    )
    try:
        runner.run_until_caught_up(120)
        store = runner.store
        known = build_customer_view(
            store, "cust-k", rules=_rules(), now=END, cut=Cut("known_at", asked)
        )
        assert known is not None and [k.answered for k in known.open_cases] == [False]
        assert known.flags.unanswered_for_seconds == 3600
        as_of = build_customer_view(
            store, "cust-k", rules=_rules(), now=END, cut=Cut("as_of", asked)
        )
        assert as_of is not None and [k.answered for k in as_of.open_cases] == [True]
    finally:
        runner.close()
