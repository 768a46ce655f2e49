"""The seed stories (shared/seeds/) as touchpoints: the demo data and the scenario tests.

Every story is a list of touchpoints relative to a start time ``t0``. Event ids are derived
from the story and step, so emitting a story twice is a duplicate the views ignore.

Every ``IdentityLinked`` says whether it was verified: a card company's and Dell's CRM hold
accounts their customers signed in to (verified); the names web shops, flust.no and the
carrier took from what customers typed are claims (``verified=False``). The bank's web forms
carry e-mail and phone as claims too: a lookup by them answers with the candidates, and only
the Dell agent's confirmed phone merges a stream (the text keyed by that number).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint

__all__ = ["STORIES", "Story", "all_touchpoints"]

_NS = uuid.UUID("3e7c1f0a-95b2-4d6e-8f31-2a9b6c4d7e10")


def _sek(amount: str, currency: str = "SEK") -> c.Money:
    return c.Money(amount=Decimal(amount), currency=currency)


@dataclass(frozen=True)
class Step:
    after: timedelta
    customer_id: str
    data: c.TouchpointData
    source: str


@dataclass(frozen=True)
class Story:
    name: str
    title: str
    focus: str  # the customer id the story is about
    steps: Callable[[datetime], list[Step]]

    def touchpoints(self, t0: datetime) -> list[Touchpoint]:
        out = []
        for index, step in enumerate(self.steps(t0)):
            out.append(
                new_touchpoint(
                    step.data,
                    customer_id=step.customer_id,
                    occurred_at=t0 + step.after,
                    source=step.source,
                    event_id=uuid.uuid5(_NS, f"{self.name}:{index}"),
                    correlation_id=f"story:{self.name}",
                )
            )
        return out


H = timedelta(hours=1)
D = timedelta(days=1)
M = timedelta(minutes=1)


def _bank(t0: datetime) -> list[Step]:
    """003: three web forms to become a full customer; Nordbank never answers, Fokus Bank
    calls after three days with data that has nothing to do with what was typed."""
    erik = "cust-erik"
    form = {
        "name": "Erik Haugen",
        "email": "erik.haugen@example.no",
        "phone": "+47 912 34 567",
        "wants": "full customer: mortgage, car loan, salary account, savings, insurance",
        "loan_type": "floating rate",
        "current_bank": "Sparebank 1",
        "spoke_to_adviser_before": "no",
    }
    products = ["mortgage", "car loan", "salary account", "savings account", "insurance"]
    return [
        Step(
            0 * H,
            erik,
            c.SignupRequested(
                case_id="nordbank-signup-1",
                form="become-a-full-customer",
                products=products,
                fields=form,
                team="Nordbank private customers",
                country="NO",
            ),
            "nordbank-web",
        ),
        Step(
            1 * M,
            erik,
            c.AutoAcknowledgementSent(case_id="nordbank-signup-1", channel="email"),
            "nordbank-mailer",
        ),
        Step(
            10 * M,
            erik,
            c.SignupRequested(
                case_id="fokus-signup-1",
                form="bli-totalkunde",
                products=products,
                fields=form,
                team="Fokus Bank customer centre",
                country="NO",
            ),
            "fokus-web",
        ),
        Step(
            3 * D,
            erik,
            c.ReplySent(
                case_id="fokus-signup-1",
                channel="phone",
                agent="Adviser Lund",
                team="Fokus Bank customer centre",
                country="NO",
                body="Called about a fixed-rate loan for a DnB Nor customer who spoke to an "
                "adviser yesterday",
            ),
            "fokus-phone",
        ),
    ]


def _dell(t0: datetime) -> list[Step]:
    """000: monitor dead five days before Christmas; Poland answers and copies Sweden;
    Sweden ships a new one before asking for proof, corrects the serial, asks the customer
    to confirm, books the pickup."""
    sven = "cust-sven"
    return [
        # His Dell account: he signed in with the e-mail, so the CRM links it verified.
        Step(
            0 * H,
            sven,
            c.IdentityLinked(kind="name", value="Sven Berg", verified=True),
            "dell-crm",
        ),
        Step(
            0 * H,
            sven,
            c.IdentityLinked(kind="email", value="sven.berg@example.se", verified=True),
            "dell-crm",
        ),
        Step(
            1 * M,
            sven,
            c.ComplaintFiled(
                case_id="dell-4711",
                channel="email",
                product="Dell U2719D monitor",
                serial_number_as_given="CN-0X1Y2Z",
                warranty_claim=True,
                description="Screen went black, five days before Christmas",
                purchase_place="dell.se",
                team="Dell support",
                country="PL",
            ),
            "dell-support-mail",
        ),
        Step(
            2 * M,
            sven,
            c.AutoAcknowledgementSent(case_id="dell-4711", channel="email"),
            "dell-support-mail",
        ),
        Step(
            20 * H,
            sven,
            c.ReplySent(
                case_id="dell-4711",
                channel="email",
                agent="Tomasz K.",
                team="Dell support",
                country="PL",
                copied_to=["Dell support SE"],
                body="We are sorry. The Swedish team will take over.",
            ),
            "dell-helpdesk",
        ),
        Step(
            21 * H,
            sven,
            c.CaseHandedOff(
                case_id="dell-4711",
                from_team="Dell support",
                from_country="PL",
                to_team="Dell support SE",
                to_country="SE",
                copied_to=["Tomasz K."],
                reason="Replacement must ship from the Nordic warehouse",
            ),
            "dell-helpdesk",
        ),
        Step(
            1 * D + 2 * H,
            sven,
            c.ReplacementShipped(
                case_id="dell-4711",
                product="Dell U2719D monitor",
                carrier="DHL",
                tracking_number="JD0146",
                before_proof=True,
            ),
            "dell-warehouse",
        ),
        Step(
            2 * D,
            sven,
            c.SerialNumberCorrected(
                case_id="dell-4711",
                product="Dell U2719D monitor",
                serial_number_as_given="CN-0X1Y2Z",
                corrected_serial_number="CN-0X1Y2Z-74210",
                corrected_by="Dell support SE",
            ),
            "dell-helpdesk",
        ),
        Step(
            2 * D + 5 * M,
            sven,
            c.SerialConfirmationRequested(
                case_id="dell-4711", serial_number="CN-0X1Y2Z-74210", channel="email"
            ),
            "dell-helpdesk",
        ),
        Step(
            3 * D,
            sven,
            c.SerialNumberConfirmed(case_id="dell-4711", serial_number="CN-0X1Y2Z-74210"),
            "dell-helpdesk",
        ),
        Step(
            3 * D + 1 * H,
            sven,
            c.PickupBooked(
                case_id="dell-4711",
                product="Dell U2719D monitor",
                serial_number="CN-0X1Y2Z-74210",
                carrier="DHL",
                pickup_at=t0 + 6 * D,
            ),
            "dell-warehouse",
        ),
        # He writes again from his phone: the message is keyed by the number only.
        Step(
            4 * D,
            "+46 70 123 45 67",
            c.InquiryReceived(
                case_id="dell-sms-1",
                channel="sms",
                body="Will DHL call before the pickup?",
                team="Dell support SE",
                country="SE",
            ),
            "dell-sms",
        ),
        # Sweden called the number back and he confirmed it is his: a verified link, made by
        # the agent, merges the text into his view (an unverified one would only be shown as
        # a possible match).
        Step(
            4 * D + 1 * M,
            sven,
            c.IdentityLinked(kind="phone", value="+46 70 123 45 67", verified=True),
            "agent:Dell support SE",
        ),
    ]


def _tv(t0: datetime) -> list[Step]:
    """000: a TV replaced only after three repairs; a warranty shown online that did not
    apply to the model."""
    lina = "cust-lina"
    tv = "LG OLED55C1"
    steps = [
        Step(
            0 * D,
            lina,
            c.IdentityLinked(kind="name", value="Lina Ek", verified=False),
            "elshop-web",
        ),
        Step(
            0 * D,
            lina,
            c.OrderPlaced(
                order_id="EL-88231",
                channel="web_form",
                total=_sek("14990.00"),
                lines=[
                    c.OrderLine(
                        sku="OLED55C1",
                        name=tv,
                        unit_price=_sek("14990.00"),
                        serial_number="LG55-301",
                        warranty_terms_shown="5 years panel warranty (shown on product page)",
                    )
                ],
            ),
            "elshop-web",
        ),
    ]
    for n, day in enumerate((40, 95, 160), start=1):
        case = f"tv-{n}"
        steps += [
            Step(
                day * D,
                lina,
                c.ComplaintFiled(
                    case_id=case,
                    channel="phone",
                    product=tv,
                    serial_number_as_given="LG55-301",
                    warranty_claim=True,
                    description="No picture, clicking sound",
                    team="Elshop service",
                    country="SE",
                ),
                "elshop-phone",
            ),
            Step(
                day * D + 2 * H,
                lina,
                c.ReplySent(
                    case_id=case,
                    channel="phone",
                    agent="Service desk",
                    team="Elshop service",
                    country="SE",
                ),
                "elshop-phone",
            ),
            Step(
                (day + 12) * D,
                lina,
                c.RepairCompleted(
                    case_id=case,
                    product=tv,
                    serial_number="LG55-301",
                    description=f"repair {n}: main board",
                ),
                "lg-service",
            ),
            Step(
                (day + 12) * D + H,
                lina,
                c.CaseResolved(case_id=case, resolution="repaired"),
                "elshop-phone",
            ),
        ]
    steps.append(
        Step(
            200 * D,
            lina,
            c.ComplaintFiled(
                case_id="tv-4",
                channel="email",
                product=tv,
                serial_number_as_given="LG55-301",
                warranty_claim=True,
                description="Broken again. Fourth time. I want a new TV.",
                team="Elshop service",
                country="SE",
            ),
            "elshop-mail",
        )
    )
    return steps


def _amex(t0: datetime) -> list[Step]:
    """002: a callback promised within two days came a month later, from an outsourced
    office with no authority."""
    anders = "cust-anders"
    return [
        Step(
            0 * H,
            anders,
            c.IdentityLinked(kind="name", value="Anders Vik", verified=True),
            "amex-crm",
        ),
        Step(
            0 * H,
            anders,
            c.InquiryReceived(
                case_id="amex-77",
                channel="phone",
                subject="Wrong annual fee charged",
                team="Card services",
                country="SE",
            ),
            "amex-phone",
        ),
        Step(
            5 * M,
            anders,
            c.ReplySent(
                case_id="amex-77",
                channel="phone",
                agent="Agent 114",
                team="Card services",
                country="SE",
                awaiting_customer=False,
            ),
            "amex-phone",
        ),
        Step(
            6 * M,
            anders,
            c.PromiseMade(
                promise_id="amex-77-callback",
                case_id="amex-77",
                kind="callback",
                what="A supervisor calls back about the fee",
                due_by=t0 + 2 * D,
                made_by="Agent 114, Card services",
                made_to="Anders",
            ),
            "amex-phone",
        ),
        Step(
            31 * D,
            anders,
            c.ReplySent(
                case_id="amex-77",
                channel="phone",
                agent="Outsourced office",
                team="Partner call centre",
                country="IE",
                body="No authority to refund the fee",
            ),
            "amex-phone",
        ),
        Step(
            31 * D + M,
            anders,
            c.PromiseKept(
                promise_id="amex-77-callback",
                kept_by="Partner call centre",
                note="Called back a month late",
            ),
            "amex-phone",
        ),
    ]


def _parcel(t0: datetime) -> list[Step]:
    """001: Posten's central office agrees to deliver to the post office; the local office
    tries the house again. FedEx texts after a missed attempt and meets at a petrol
    station."""
    mari = "cust-mari"
    jonas = "cust-jonas"
    return [
        Step(
            0 * H, mari, c.IdentityLinked(kind="name", value="Mari Dahl", verified=False), "webshop"
        ),
        Step(
            0 * H, jonas, c.IdentityLinked(kind="name", value="Jonas Moe", verified=False), "fedex"
        ),
        Step(
            0 * H,
            mari,
            c.OrderPlaced(
                order_id="WEB-5521",
                total=_sek("899.00", "NOK"),
                promised_delivery_by=t0 + 3 * D,
                lines=[
                    c.OrderLine(sku="JKT-1", name="Winter jacket", unit_price=_sek("899.00", "NOK"))
                ],
            ),
            "webshop",
        ),
        Step(
            1 * D,
            mari,
            c.OrderShipped(order_id="WEB-5521", shipment_id="PN-70012", carrier="Posten"),
            "webshop",
        ),
        Step(2 * D, mari, c.DeliveryAttempted(shipment_id="PN-70012", carrier="Posten"), "posten"),
        Step(
            2 * D + M,
            mari,
            c.DeliveryFailed(shipment_id="PN-70012", carrier="Posten", reason="Nobody at home"),
            "posten",
        ),
        Step(
            2 * D + 3 * H,
            mari,
            c.DeliveryRescheduled(
                shipment_id="PN-70012",
                carrier="Posten",
                new_location="Post office Majorstuen",
                deliver_by=t0 + 3 * D,
                agreed_by="Posten central customer service",
                promise_id="posten-majorstuen",
            ),
            "posten",
        ),
        Step(
            3 * D + 2 * H,
            mari,
            c.DeliveryAttempted(shipment_id="PN-70012", carrier="Posten", location="home address"),
            "posten",
        ),
        Step(
            3 * D + 2 * H + M,
            mari,
            c.DeliveryFailed(
                shipment_id="PN-70012",
                carrier="Posten",
                reason="Local office tried the house again",
            ),
            "posten",
        ),
        Step(
            0 * H,
            jonas,
            c.OrderShipped(order_id="FX-1", shipment_id="FDX-99", carrier="FedEx"),
            "fedex",
        ),
        Step(
            1 * D,
            jonas,
            c.DeliveryFailed(
                shipment_id="FDX-99",
                carrier="FedEx",
                reason="Nobody at home",
                notified_customer_by="sms",
            ),
            "fedex",
        ),
        Step(
            1 * D + H,
            jonas,
            c.DeliveryRescheduled(
                shipment_id="FDX-99",
                carrier="FedEx",
                new_location="Shell petrol station, Ring 3",
                deliver_by=t0 + 1 * D + 6 * H,
                agreed_by="FedEx driver by sms",
                promise_id="fedex-petrol",
            ),
            "fedex",
        ),
        Step(
            1 * D + 3 * H,
            jonas,
            c.Delivered(
                shipment_id="FDX-99", carrier="FedEx", location="Shell petrol station, Ring 3"
            ),
            "fedex",
        ),
    ]


def _flust(t0: datetime) -> list[Step]:
    """003: a 500 NOK gift card to every buyer of a furniture set with a known paint
    defect, before anyone complained."""
    sofa = "Hagesett Oslo"
    owners = ["cust-per", "cust-siri", "cust-ali"]
    names = ["Per Lie", "Siri Nilsen", "Ali Khan"]
    steps = [
        Step(0 * H, cid, c.IdentityLinked(kind="name", value=name, verified=False), "flust-web")
        for cid, name in zip(owners, names, strict=True)
    ]
    steps += [
        Step(
            i * H,
            cid,
            c.OrderPlaced(
                order_id=f"FL-{100 + i}",
                total=_sek("6490.00", "NOK"),
                lines=[
                    c.OrderLine(
                        sku="HS-OSLO",
                        name=sofa,
                        unit_price=_sek("6490.00", "NOK"),
                        batch="2026-09" if i < 2 else "2026-10",
                    )
                ],
            ),
            "flust-web",
        )
        for i, cid in enumerate(owners)
    ]
    steps += [
        Step(
            20 * D,
            c.product_key(sofa),
            c.KnownDefectRegistered(
                defect_id="paint-2026-09",
                product=sofa,
                batch="2026-09",
                description="Paint flakes after rain",
                remedy="500 NOK gift card and repaint kit",
            ),
            "flust-quality",
        ),
        Step(
            21 * D,
            "cust-per",
            c.ProactiveOutreachSent(
                defect_id="paint-2026-09",
                channel="email",
                message="We found a paint defect in your set; here is a gift card",
            ),
            "flust-crm",
        ),
        Step(
            21 * D + M,
            "cust-per",
            c.GoodwillGranted(
                defect_id="paint-2026-09",
                kind="gift_card",
                value=_sek("500.00", "NOK"),
                reason="Known paint defect",
            ),
            "flust-crm",
        ),
    ]
    return steps


def _returns(t0: datetime) -> list[Step]:
    """001/004: Asos-style return with a status at every step."""
    emma = "cust-emma"
    return [
        Step(
            0 * H, emma, c.IdentityLinked(kind="name", value="Emma Stone", verified=False), "shop"
        ),
        Step(
            0 * H,
            emma,
            c.OrderPlaced(
                order_id="AS-300",
                total=_sek("599.00"),
                promised_delivery_by=t0 + 2 * D,
                lines=[c.OrderLine(sku="DRS-9", name="Dress, size 38", unit_price=_sek("599.00"))],
            ),
            "shop",
        ),
        Step(
            1 * D,
            emma,
            c.OrderShipped(order_id="AS-300", shipment_id="AS-300-1", carrier="PostNord"),
            "shop",
        ),
        Step(2 * D - H, emma, c.Delivered(shipment_id="AS-300-1", carrier="PostNord"), "postnord"),
        Step(
            3 * D,
            emma,
            c.InquiryReceived(
                case_id="ret-300",
                channel="web_form",
                subject="Return: wrong size",
                team="Returns",
                country="GB",
            ),
            "shop",
        ),
        Step(
            3 * D + H,
            emma,
            c.ReplySent(
                case_id="ret-300", channel="email", agent="Nina", team="Returns", country="GB"
            ),
            "shop",
        ),
        Step(
            5 * D,
            emma,
            c.ReturnReceived(case_id="ret-300", product="Dress, size 38", condition="unused"),
            "warehouse",
        ),
        Step(
            5 * D + H,
            emma,
            c.RefundIssued(case_id="ret-300", order_id="AS-300", amount=_sek("599.00")),
            "payments",
        ),
        Step(5 * D + 2 * H, emma, c.CaseResolved(case_id="ret-300", resolution="refunded"), "shop"),
        Step(
            6 * D,
            emma,
            c.SatisfactionRated(case_id="ret-300", score=5, comment="Easy, and I knew every step"),
            "survey",
        ),
    ]


def _marketplace(t0: datetime) -> list[Step]:
    """A marketplace order (the integrator's guide in docs/events.md): the seller hands the
    parcel over a day late, the survey is answered with a public review, which we answer;
    a second order is cancelled before its day, so its promise is cancelled, not broken."""
    bia = "cust-bia"
    zone = "America/Sao_Paulo"
    seller = "seller-casa-sul"

    def day(after: timedelta) -> date:
        return (t0 + after).astimezone(ZoneInfo(zone)).date()

    return [
        Step(0 * H, bia, c.IdentityLinked(kind="name", value="Beatriz Souza"), "marketplace"),
        Step(
            0 * H,
            bia,
            c.IdentityLinked(kind="external_id", value="marketplace-buyer:77a1c0de", verified=True),
            "marketplace",
        ),
        Step(
            0 * H,
            bia,
            c.OrderPlaced(
                order_id="MK-501",
                channel="marketplace",
                total=_sek("149.90", "BRL"),
                shipping_fee=_sek("19.90", "BRL"),
                lines=[
                    c.OrderLine(
                        sku="LUM-7",
                        name="Desk lamp",
                        unit_price=_sek("130.00", "BRL"),
                        seller=seller,
                        handoff_by=t0 + 2 * D,
                    )
                ],
                promised_delivery_date=day(8 * D),
                time_zone=zone,
            ),
            "marketplace",
        ),
        Step(
            1 * H,
            bia,
            c.PaymentApproved(
                order_id="MK-501",
                method="credit_card",
                instalments=3,
                amount=_sek("149.90", "BRL"),
            ),
            "marketplace",
        ),
        Step(
            3 * D,
            bia,
            c.OrderShipped(order_id="MK-501", shipment_id="MK-501-1", seller=seller),
            "marketplace",
        ),
        Step(6 * D, bia, c.Delivered(shipment_id="MK-501-1"), "marketplace"),
        Step(
            6 * D + 2 * H,
            bia,
            c.FeedbackRequested(
                feedback_id="survey-MK-501",
                channel="email",
                order_id="MK-501",
                platform="marketplace",
            ),
            "marketplace",
        ),
        Step(
            7 * D,
            bia,
            c.PublicReviewPosted(
                review_id="rev-MK-501",
                platform="marketplace",
                score=2,
                title="Arrived, but late",
                text="The lamp is fine, but it left the seller two days after I paid.",
                order_id="MK-501",
                feedback_id="survey-MK-501",
            ),
            "marketplace",
        ),
        Step(
            7 * D + 5 * H,
            bia,
            c.ReviewAnswered(
                review_id="rev-MK-501",
                answered_by="Casa Sul customer care",
                text="Sorry for the wait: we have changed how we pack orders.",
            ),
            "marketplace",
        ),
        Step(
            7 * D + 6 * H,
            bia,
            c.OrderPlaced(
                order_id="MK-502",
                channel="marketplace",
                total=_sek("89.00", "BRL"),
                promised_delivery_date=day(15 * D),
                time_zone=zone,
            ),
            "marketplace",
        ),
        Step(
            7 * D + 8 * H,
            bia,
            c.OrderCancelled(
                order_id="MK-502", reason="Out of stock at the seller", cancelled_by=seller
            ),
            "marketplace",
        ),
    ]


STORIES: dict[str, Story] = {
    s.name: s
    for s in (
        Story("bank", "The bank that never answered a signup request", "cust-erik", _bank),
        Story(
            "dell", "Dell: Poland → Sweden, serial corrected, replacement first", "cust-sven", _dell
        ),
        Story("tv", "The TV replaced only after three repairs", "cust-lina", _tv),
        Story("amex", "The callback promised and broken", "cust-anders", _amex),
        Story("parcel", "Posten and FedEx: missed parcels", "cust-mari", _parcel),
        Story("flust", "flust.no: known paint defect, proactive gift card", "cust-siri", _flust),
        Story("returns", "A return with a status at every step", "cust-emma", _returns),
        Story(
            "marketplace",
            "A marketplace order: late hand-off, survey answered, order cancelled",
            "cust-bia",
            _marketplace,
        ),
    )
}


def all_touchpoints(now: datetime, stories: list[str] | None = None) -> list[Touchpoint]:
    """Every story's touchpoints in time order, each story ending an hour before ``now``
    (so the demo shows deadlines as they stand today)."""
    tps = []
    for story in STORIES.values():
        if stories is not None and story.name not in stories:
            continue
        span = max(step.after for step in story.steps(now))
        tps.extend(story.touchpoints(now - span - H))
    tps.sort(key=lambda tp: tp.occurred_at)
    return tps
