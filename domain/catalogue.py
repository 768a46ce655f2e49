"""The touchpoint catalogue: one frozen pydantic model per touchpoint type and version.

Every model is the ``data`` body of an envelope (see :mod:`domain.envelope`). Names are in
the past tense: a touchpoint is a fact that already happened. Each class declares its wire
``type`` and ``schema_version``; the registry below maps both to the model. Old versions stay
registered so that old events still validate; :mod:`domain.upcasting` lifts them to the
current version on read.
"""

from __future__ import annotations

import datetime as dt
import re

# The tz database is reference data, like Unicode tables, not a clock or a state of the world:
# a zone and a past day give the same instant in every replay. (A country changing its
# rules changes the end of future days after a tzdata update; that is the new truth.)
import zoneinfo
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    model_validator,
)
from pydantic_core import PydanticCustomError

from domain.bounds import DATA_YEARS, in_data_years

__all__ = [
    "CATALOGUE",
    "CURRENT",
    "Amount",
    "Channel",
    "Day",
    "IdentityKind",
    "Instant",
    "TimeText",
    "TimeZone",
    "TouchpointData",
    "current_model",
    "end_of_day",
    "model_for",
    "product_key",
]

# web_shop: the shop's own site or app checkout; marketplace: a marketplace that sells for
# the shop (its orders, messages and reviews reach us through the marketplace).
Channel = Literal[
    "email",
    "phone",
    "chat",
    "web_form",
    "social",
    "store",
    "letter",
    "sms",
    "app",
    "web_shop",
    "marketplace",
]
# external_id: an id another system gives this customer — an account on a marketplace or
# shop, or a customer id the shop issues per order. Prefix it with the system
# ("olist:9ef432eb…") so ids of two systems never meet by accident.
IdentityKind = Literal[
    "name",
    "email",
    "phone",
    "social_handle",
    "order_number",
    "serial_number",
    "customer_id",
    "external_id",
]
# Free text (what someone wrote): up to 10,000 characters keeps a message far below Kafka's
# default 1 MB limit; attachments belong elsewhere, linked.
Text = Annotated[str, Field(max_length=10_000)]
# Names, ids, teams, products: never empty, at most 200 characters.
ShortText = Annotated[str, Field(min_length=1, max_length=200)]


def _time_as_text(value: Any) -> Any:
    # pydantic would read a JSON number as Unix seconds (or milliseconds): a producer's
    # epoch or a mistyped field would pass as a wrong time. The contract is RFC 3339 text.
    if isinstance(value, str | dt.datetime):
        return value
    raise PydanticCustomError(
        "time_not_rfc3339",
        "a time must be an RFC 3339 string with a zone offset, e.g. 2026-11-23T10:00:00+01:00",
    )


def _date_as_text(value: Any) -> Any:
    if isinstance(value, str | dt.date) and not isinstance(value, dt.datetime):
        return value
    raise PydanticCustomError("date_not_iso", "a date must be ISO 8601 text, e.g. 2026-11-23")


def _within_years(value: dt.date) -> dt.date:
    # Dates far outside a customer's lifetime are typos (9999 for "unknown", 0202 for 2020),
    # and at the edges of ``datetime`` every "+ 24 hours" overflows.
    if not in_data_years(value):
        raise PydanticCustomError(
            "out_of_range",
            "year {year} is out of range: dates must lie within the years {low}-{high}",
            {"year": value.year, "low": DATA_YEARS[0], "high": DATA_YEARS[1]},
        )
    return value


def _amount_as_number(value: Any) -> Any:
    # JSON numbers (or decimal text, which keeps cents exact); never true/false
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise PydanticCustomError("decimal_type", "an amount must be a JSON number, e.g. 499.00")
    return value


# The models are strict (no "1" for 1, no true for a number, no 1 for a string): the wire is
# JSON, and a lax parser would turn a producer's mistake into a wrong fact. JSON has no
# type for times, dates or decimals, so exactly these read their JSON form (text, or a
# number for an amount) and nothing else; ``Strict(False)`` lets them parse it.
TimeText = Annotated[AwareDatetime, Strict(False), BeforeValidator(_time_as_text)]
"""RFC 3339 text with a zone offset, any year (see ``Instant`` for the bounded one)."""
# The year range (and, for times, the zone offset) in the exported JSON Schema too, so a
# producer's own validator enforces them.
YEARS_1900_2200 = "(19[0-9]{2}|2[01][0-9]{2}|2200)"
OFFSET_AT_END = "([Zz]|[+-][0-9]{2}:?[0-9]{2})$"
Instant = Annotated[
    TimeText,
    AfterValidator(_within_years),
    Field(json_schema_extra={"pattern": f"^{YEARS_1900_2200}-.*{OFFSET_AT_END}"}),
]
"""A point in time on the wire: RFC 3339 text with a zone offset (``Z`` or ``+01:00``),
within the years 1900-2200."""
Day = Annotated[
    dt.date,
    Strict(False),
    BeforeValidator(_date_as_text),
    AfterValidator(_within_years),
    Field(json_schema_extra={"pattern": f"^{YEARS_1900_2200}-"}),
]
"""A calendar date on the wire: ISO 8601 text ``YYYY-MM-DD``, within the years 1900-2200."""


def _date_only(value: Any) -> Any:
    # pydantic reads "2026-12-01T00:00:00Z" as a date too; for a day that ends at midnight
    # in a stated zone, a time (and a zone offset) beside it would be a second, conflicting
    # answer, so exactly YYYY-MM-DD.
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise PydanticCustomError(
            "date_not_iso", "a date must be YYYY-MM-DD without a time, e.g. 2026-11-23"
        )
    return value


CalendarDay = Annotated[
    Day,
    BeforeValidator(_date_only),
    Field(json_schema_extra={"pattern": f"^{YEARS_1900_2200}-[0-9]{{2}}-[0-9]{{2}}$"}),
]
"""A day that ends at midnight in a stated time zone: exactly ``YYYY-MM-DD``."""
Amount = Annotated[Decimal, Strict(False), BeforeValidator(_amount_as_number)]
"""A decimal amount: a JSON number or decimal text."""


def _known_zone(value: str) -> str:
    # zoneinfo reads a key as a path below the tz database: the pattern keeps it a name
    # ("Europe/Oslo"), never "../x" or an absolute path, before zoneinfo sees it.
    try:
        zoneinfo.ZoneInfo(value)
    # OSError: a folder of the tz database ("America") is a name the pattern lets through.
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise PydanticCustomError(
            "unknown_time_zone",
            "unknown time zone {zone!r}: use an IANA name, e.g. Europe/Oslo or UTC",
            {"zone": value},
        ) from None
    return value


TimeZone = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$",
        description="IANA time zone name, e.g. Europe/Oslo",
    ),
    AfterValidator(_known_zone),
]
"""An IANA time zone name (``Europe/Oslo``, ``America/Sao_Paulo``, ``UTC``)."""


def end_of_day(day: dt.date, zone: str) -> dt.datetime:
    """The instant a calendar day ends in ``zone``: midnight at the start of the next day,
    local time, with the fixed offset it has then (so the value pickles and prints without
    the tz database). A promise "by 1 December" in Oslo is kept by 23:59:59 local time."""
    local = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), zoneinfo.ZoneInfo(zone))
    offset = local.utcoffset()
    assert offset is not None
    return local.astimezone(dt.timezone(offset))


def product_key(product: str) -> str:
    """The log key (envelope ``customer_id``) of a fact about a product, not a customer."""
    return f"product:{product}"


def _date_needs_zone(day: dt.date | None, zone: str | None, day_field: str) -> None:
    if day is not None and zone is None:
        raise ValueError(
            f"{day_field} needs time_zone: a date ends at midnight in some zone, "
            "e.g. time_zone = Europe/Oslo"
        )


# (type name, version) -> model
CATALOGUE: dict[tuple[str, int], type[TouchpointData]] = {}
# type name -> current version
CURRENT: dict[str, int] = {}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False, strict=True)


class TouchpointData(_Frozen):
    """Base of every touchpoint body. Subclasses register themselves by type and version."""

    type_name: ClassVar[str]
    schema_version: ClassVar[int]
    summary: ClassVar[str]
    # A fact about a product, keyed by ``product_key(self.product)`` rather than a customer.
    keyed_by_product: ClassVar[bool] = False

    def __init_subclass__(
        cls,
        *,
        type_name: str | None = None,
        version: int = 1,
        current: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if type_name is None:
            return
        if (type_name, version) in CATALOGUE:
            raise TypeError(f"touchpoint {type_name} v{version} registered twice")
        # check before registering: a refused class must not stay half-registered
        if current and CURRENT.get(type_name, 0) > version:
            raise TypeError(f"{type_name}: current version must be the highest")
        cls.type_name = type_name
        cls.schema_version = version
        cls.summary = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        CATALOGUE[(type_name, version)] = cls
        if current:
            CURRENT[type_name] = version


def model_for(type_name: str, version: int) -> type[TouchpointData] | None:
    return CATALOGUE.get((type_name, version))


def current_model(type_name: str) -> type[TouchpointData] | None:
    version = CURRENT.get(type_name)
    return None if version is None else CATALOGUE[(type_name, version)]


# --------------------------------------------------------------------------- shared parts


class Money(_Frozen):
    amount: Amount = Field(ge=0, description="Decimal amount, e.g. 499.00")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. SEK")


class OrderLine(_Frozen):
    sku: ShortText = Field(min_length=1)
    name: ShortText = Field(min_length=1, description="Product name as the customer saw it")
    quantity: int = Field(ge=1, default=1)
    unit_price: Money
    serial_number: ShortText | None = None
    batch: ShortText | None = Field(
        default=None, description="Production batch, used to find owners of a known defect"
    )
    warranty_terms_shown: Text | None = Field(
        default=None, description="The warranty text shown to the customer at purchase, verbatim"
    )
    seller: ShortText | None = Field(
        default=None, description="Who sells this line (on a marketplace: the seller's id)"
    )
    handoff_by: Instant | None = Field(
        default=None,
        description="When the seller must hand this line to the carrier: an implied promise "
        "(id handoff:<order_id>:<seller>), kept by OrderShipped of the order",
    )


# --------------------------------------------------------------------------- orders & delivery


class OrderPlaced(TouchpointData, type_name="OrderPlaced", version=1):
    """The customer placed an order: items, price and what was promised at checkout.

    ``promised_delivery_by`` (an instant), or ``promised_delivery_date`` with ``time_zone``
    (the end of that day there), is an implied promise with the id ``delivery:<order_id>``:
    kept by ``Delivered`` of a shipment of the order by then, broken otherwise, cancelled by
    ``OrderCancelled``. A line's ``handoff_by`` is the seller's promise to hand it to the
    carrier (id ``handoff:<order_id>:<seller>``, or ``handoff:<order_id>`` without a
    seller), kept by ``OrderShipped`` of the order. ``lines`` may be empty when the shop
    does not send them.
    """

    order_id: ShortText = Field(min_length=1)
    lines: list[OrderLine] = Field(default_factory=list)
    total: Money
    shipping_fee: Money | None = None
    channel: Channel = "web_form"
    promised_delivery_by: Instant | None = None
    promised_delivery_date: CalendarDay | None = None
    time_zone: TimeZone | None = None
    delivery_address: Text | None = None

    @model_validator(mode="after")
    def _one_promise(self) -> OrderPlaced:
        _date_needs_zone(self.promised_delivery_date, self.time_zone, "promised_delivery_date")
        if self.promised_delivery_by is not None and self.promised_delivery_date is not None:
            raise ValueError(
                "give promised_delivery_by (an instant) or promised_delivery_date, not both"
            )
        return self


class OrderCancelled(TouchpointData, type_name="OrderCancelled", version=1):
    """The order was cancelled: its implied promises (delivery, seller hand-off) are
    cancelled, not broken.

    Cancelled by the deadline, a promise is never recorded broken; cancelled after it, the
    deadline passed while the promise stood, so the break stays a fact (like
    ``PromiseWithdrawn``).
    """

    order_id: ShortText = Field(min_length=1)
    reason: Text
    cancelled_by: ShortText | None = Field(
        default=None, description="Who cancelled: the customer, the shop, the seller, a system"
    )


class PaymentApproved(TouchpointData, type_name="PaymentApproved", version=1):
    """Payment for an order was approved (one fact per payment: an order paid with a
    voucher and a card has two)."""

    order_id: ShortText = Field(min_length=1)
    method: ShortText = Field(
        description="How it was paid, as the shop names it, e.g. credit_card, boleto, "
        "voucher, invoice, swish"
    )
    instalments: int = Field(default=1, ge=1, le=360, description="Number of instalments")
    amount: Money | None = None


class OrderShipped(TouchpointData, type_name="OrderShipped", version=1):
    """The order (or a shipment of it) was handed to a carrier.

    It keeps the seller hand-off promises of the order: those of ``seller``, or every one
    when no seller is given.
    """

    order_id: ShortText = Field(min_length=1)
    shipment_id: ShortText = Field(min_length=1)
    carrier: ShortText | None = None
    seller: ShortText | None = None
    tracking_number: ShortText | None = None
    expected_delivery_by: Instant | None = None
    expected_delivery_date: CalendarDay | None = None
    time_zone: TimeZone | None = None

    @model_validator(mode="after")
    def _zone(self) -> OrderShipped:
        _date_needs_zone(self.expected_delivery_date, self.time_zone, "expected_delivery_date")
        return self


class DeliveryAttempted(TouchpointData, type_name="DeliveryAttempted", version=1):
    """The carrier tried to deliver a shipment."""

    shipment_id: ShortText = Field(min_length=1)
    carrier: ShortText | None = None
    location: Text | None = None


class DeliveryFailed(TouchpointData, type_name="DeliveryFailed", version=1):
    """A delivery attempt failed (nobody home, wrong address, ...)."""

    shipment_id: ShortText = Field(min_length=1)
    carrier: ShortText | None = None
    reason: Text
    notified_customer_by: Channel | None = Field(
        default=None, description="How the customer was told, e.g. sms after a failed attempt"
    )


class DeliveryRescheduled(TouchpointData, type_name="DeliveryRescheduled", version=1):
    """A new delivery was agreed: a new time and/or place.

    When ``deliver_by`` (an instant) or ``deliver_on`` with ``time_zone`` (the end of that
    day there) is given it is a promise, kept only by ``Delivered`` of the shipment by then.
    Its id is ``promise_id``, or ``reschedule:<shipment_id>:<occurred_at>`` without one.
    """

    shipment_id: ShortText = Field(min_length=1)
    carrier: ShortText | None = None
    new_location: Text | None = None
    deliver_by: Instant | None = None
    deliver_on: CalendarDay | None = None
    time_zone: TimeZone | None = None
    agreed_by: ShortText | None = Field(
        default=None, description="Who agreed to it, e.g. 'customer service, central office'"
    )
    promise_id: ShortText | None = Field(
        default=None, description="Set to track the reschedule as a promise"
    )

    @model_validator(mode="after")
    def _one_deadline(self) -> DeliveryRescheduled:
        _date_needs_zone(self.deliver_on, self.time_zone, "deliver_on")
        if self.deliver_by is not None and self.deliver_on is not None:
            raise ValueError("give deliver_by (an instant) or deliver_on (a date), not both")
        return self


class Delivered(TouchpointData, type_name="Delivered", version=1):
    """The shipment reached the customer (or the agreed pick-up point)."""

    shipment_id: ShortText = Field(min_length=1)
    carrier: ShortText | None = None
    location: Text | None = None


# --------------------------------------------------------------------------- identity & forms


class SignupRequested(TouchpointData, type_name="SignupRequested", version=1):
    """The customer asked to become a customer through a form; the fields are kept verbatim.

    It opens a case that needs a first reply like any inquiry.
    """

    case_id: ShortText = Field(min_length=1)
    channel: Channel = "web_form"
    form: ShortText = Field(description="Which form, e.g. 'become-a-customer'")
    products: list[ShortText] = Field(
        default_factory=list, description="What the customer asked for, e.g. mortgage, car loan"
    )
    fields: dict[str, Text] = Field(
        description="Every field the customer submitted, exactly as typed"
    )
    team: ShortText | None = Field(
        default=None, description="Team the contact was routed to at intake, if known"
    )
    country: ShortText | None = Field(default=None, description="Country of that team")


class IdentityLinked(TouchpointData, type_name="IdentityLinked", version=1):
    """An identifier was linked to this customer; only a verified link merges customers.

    ``verified = true`` says the producer checked it (a login, a code sent to the number, an
    agent who confirmed it with the customer): the identifier is this customer's, a lookup by
    it answers this customer's view, and with ``kind = customer_id`` the two customer ids are
    one person and their views merge. ``verified = false`` (the default) is only a claim, as
    is what a form carries: agents see it as a possible match to confirm, nothing merges, and
    a lookup by it answers with the candidates, never with a view.
    """

    kind: IdentityKind
    value: ShortText = Field(min_length=1)
    verified: bool = Field(
        default=False, description="Checked by the producer; only a verified link merges"
    )


class IdentityUnlinked(TouchpointData, type_name="IdentityUnlinked", version=1):
    """An identifier linked to this customer is not theirs after all: the link is undone.

    It withdraws this customer's own link (verified or not) to the identifier; with
    ``kind = customer_id`` the two views separate again. A link made on the other customer's
    stream is withdrawn by an ``IdentityUnlinked`` there.
    """

    kind: IdentityKind
    value: ShortText = Field(min_length=1)
    unlinked_by: ShortText | None = Field(default=None, description="Who undid it (agent)")
    reason: Text | None = None


class ErasureRequested(TouchpointData, type_name="ErasureRequested", version=1):
    """The customer asked to be forgotten: views erase their personal data."""

    channel: Channel | None = None
    reason: Text | None = None


# --------------------------------------------------------------------------- cases


class InquiryReceived(TouchpointData, type_name="InquiryReceived", version=1):
    """The customer contacted us. A new ``case_id`` opens a case; a known one is a follow-up."""

    case_id: ShortText = Field(min_length=1)
    channel: Channel
    subject: Text | None = None
    body: Text | None = None
    product: ShortText | None = None
    team: ShortText | None = Field(
        default=None, description="Team the contact was routed to at intake, if known"
    )
    country: ShortText | None = Field(default=None, description="Country of that team")


class ComplaintFiledV1(TouchpointData, type_name="ComplaintFiled", version=1, current=False):
    """A complaint or warranty claim (version 1, superseded: the serial was not marked as
    given by the customer). Upcast to version 2 on read."""

    case_id: ShortText = Field(min_length=1)
    channel: Channel
    product: ShortText
    serial_number: ShortText | None = None
    description: Text | None = None


class ComplaintFiled(TouchpointData, type_name="ComplaintFiled", version=2):
    """The customer filed a complaint or warranty claim about a product.

    ``serial_number_as_given`` is what the customer wrote, right or wrong; a later
    ``SerialNumberCorrected`` records the corrected one.
    """

    case_id: ShortText = Field(min_length=1)
    channel: Channel
    product: ShortText
    serial_number_as_given: ShortText | None = None
    description: Text | None = None
    warranty_claim: bool = False
    purchase_place: ShortText | None = None
    purchase_date: Day | None = None
    order_id: ShortText | None = None
    team: ShortText | None = Field(
        default=None, description="Team the contact was routed to at intake, if known"
    )
    country: ShortText | None = Field(default=None, description="Country of that team")


class AutoAcknowledgementSent(TouchpointData, type_name="AutoAcknowledgementSent", version=1):
    """An automatic "we received your message" went out. It is NOT an answer."""

    case_id: ShortText = Field(min_length=1)
    channel: Channel


class ReplySent(TouchpointData, type_name="ReplySent", version=1):
    """A person answered the customer.

    ``awaiting_customer`` pauses the service clock until the customer writes again.
    """

    case_id: ShortText = Field(min_length=1)
    channel: Channel
    agent: ShortText
    team: ShortText
    country: ShortText = Field(description="ISO 3166 alpha-2 country of the answering team")
    body: Text | None = None
    copied_to: list[ShortText] = Field(default_factory=list)
    awaiting_customer: bool = False


class CaseHandedOff(TouchpointData, type_name="CaseHandedOff", version=1):
    """The case moved to another team (and maybe country), possibly with copies."""

    case_id: ShortText = Field(min_length=1)
    from_team: ShortText
    from_country: ShortText
    to_team: ShortText
    to_country: ShortText
    copied_to: list[ShortText] = Field(default_factory=list)
    escalation: bool = False
    reason: Text | None = None


class CaseResolved(TouchpointData, type_name="CaseResolved", version=1):
    """The case was resolved."""

    case_id: ShortText = Field(min_length=1)
    resolution: Text
    resolved_by: ShortText | None = None


class CaseReopened(TouchpointData, type_name="CaseReopened", version=1):
    """A resolved case was opened again."""

    case_id: ShortText = Field(min_length=1)
    reason: Text | None = None


class SatisfactionRated(TouchpointData, type_name="SatisfactionRated", version=1):
    """The customer rated the service (1 = very poor, 5 = excellent)."""

    case_id: ShortText | None = None
    score: int = Field(ge=1, le=5)
    comment: Text | None = None
    feedback_id: ShortText | None = Field(
        default=None, description="The survey (FeedbackRequested) this rating answers"
    )


class FeedbackRequested(TouchpointData, type_name="FeedbackRequested", version=1):
    """We asked the customer for feedback: a satisfaction survey or review invitation went
    out. Its answer (``SatisfactionRated`` or ``PublicReviewPosted`` with this
    ``feedback_id``) says how long the customer took to answer."""

    feedback_id: ShortText = Field(min_length=1)
    channel: Channel
    order_id: ShortText | None = None
    case_id: ShortText | None = None
    platform: ShortText | None = Field(
        default=None, description="Where the answer is collected, e.g. a marketplace, Trustpilot"
    )


# --------------------------------------------------------------------------- promises


class PromiseMade(TouchpointData, type_name="PromiseMade", version=1):
    """Someone promised the customer something by a deadline (a callback, a delivery...)."""

    promise_id: ShortText = Field(min_length=1)
    case_id: ShortText | None = None
    what: Text
    kind: Literal["callback", "reply", "delivery", "refund", "replacement", "visit", "other"] = (
        "other"
    )
    due_by: Instant
    made_by: ShortText
    made_to: ShortText | None = Field(default=None, description="Name of the person promised to")


class PromiseKept(TouchpointData, type_name="PromiseKept", version=1):
    """The promise was fulfilled."""

    promise_id: ShortText = Field(min_length=1)
    kept_by: ShortText | None = None
    note: Text | None = None


class PromiseWithdrawn(TouchpointData, type_name="PromiseWithdrawn", version=1):
    """The promise no longer stands (the customer cancelled, or agreed to something else):
    nobody owes it any more. Withdrawn by its deadline, it is never broken; withdrawn after
    the deadline passed, the break stays a fact but leaves the agents' "missed" lists."""

    promise_id: ShortText = Field(min_length=1)
    withdrawn_by: ShortText = Field(min_length=1, description="Who withdrew it (agent or system)")
    reason: Text | None = None


class PromiseBroken(TouchpointData, type_name="PromiseBroken", version=1):
    """Derived by the promise keeper: the deadline passed and the promise was not kept."""

    promise_id: ShortText = Field(min_length=1)
    due_by: Instant
    what: Text | None = None


class ReplyOverdue(TouchpointData, type_name="ReplyOverdue", version=1):
    """Derived by the promise keeper: a reply target passed without a real answer."""

    case_id: ShortText = Field(min_length=1)
    target: Literal["first_reply", "next_reply"]
    due_by: Instant


class BreachAcknowledged(TouchpointData, type_name="BreachAcknowledged", version=1):
    """An agent has seen a missed deadline and taken it on: it leaves the agents' "missed"
    lists (the breach itself stays a fact on the log)."""

    kind: Literal["promise", "first_reply", "next_reply"] = Field(
        description="Which deadline: a promise, or a case's first or next reply target"
    )
    ref: ShortText = Field(min_length=1, description="The promise id, or the case id")
    due_by: Instant = Field(description="The deadline acknowledged as missed")
    agent: ShortText = Field(min_length=1, description="Who acknowledged it")
    note: Text | None = None


# --------------------------------------------------------------------------- products & repairs


class SerialNumberCorrected(TouchpointData, type_name="SerialNumberCorrected", version=1):
    """We worked out the right serial number; it waits for the customer's confirmation."""

    case_id: ShortText | None = None
    product: ShortText
    serial_number_as_given: ShortText | None = None
    corrected_serial_number: ShortText = Field(min_length=1)
    corrected_by: ShortText | None = None


class SerialConfirmationRequested(
    TouchpointData, type_name="SerialConfirmationRequested", version=1
):
    """We asked the customer to confirm a (corrected) serial number."""

    case_id: ShortText | None = None
    serial_number: ShortText = Field(min_length=1)
    channel: Channel = "email"


class SerialNumberConfirmed(TouchpointData, type_name="SerialNumberConfirmed", version=1):
    """The customer confirmed the serial number."""

    case_id: ShortText | None = None
    serial_number: ShortText = Field(min_length=1)


class RepairCompleted(TouchpointData, type_name="RepairCompleted", version=1):
    """A repair of the product was completed."""

    case_id: ShortText | None = None
    product: ShortText
    serial_number: ShortText | None = None
    description: Text | None = None
    repaired_by: ShortText | None = None


class ReplacementShipped(TouchpointData, type_name="ReplacementShipped", version=1):
    """A replacement product was sent to the customer."""

    case_id: ShortText | None = None
    product: ShortText
    serial_number: ShortText | None = None
    carrier: ShortText | None = None
    tracking_number: ShortText | None = None
    shipment_id: ShortText | None = Field(
        default=None, description="Id of the shipment: delivery touchpoints refer to it"
    )
    before_proof: bool = Field(
        default=False, description="Shipped before the customer proved purchase or defect"
    )


class PickupBooked(TouchpointData, type_name="PickupBooked", version=1):
    """Collection of a product from the customer was booked."""

    case_id: ShortText | None = None
    product: ShortText
    serial_number: ShortText | None = None
    carrier: ShortText | None = None
    pickup_at: Instant | None = None


class PickupCompleted(TouchpointData, type_name="PickupCompleted", version=1):
    """The product was collected from the customer."""

    case_id: ShortText | None = None
    product: ShortText
    serial_number: ShortText | None = None
    carrier: ShortText | None = None


class PickupFailed(TouchpointData, type_name="PickupFailed", version=1):
    """A booked collection did not happen (nobody home, wrong address, no parcel)."""

    case_id: ShortText | None = None
    product: ShortText
    carrier: ShortText | None = None
    reason: Text


class ProofOfPurchaseReceived(TouchpointData, type_name="ProofOfPurchaseReceived", version=1):
    """The customer sent proof of purchase (a receipt, invoice or order confirmation)."""

    case_id: ShortText | None = None
    order_id: ShortText | None = None
    kind: Literal["receipt", "invoice", "order_confirmation", "bank_statement", "other"] = "receipt"
    channel: Channel | None = None


class ClaimDecided(TouchpointData, type_name="ClaimDecided", version=1):
    """A complaint or warranty claim was decided: approved or rejected, with the reason."""

    case_id: ShortText = Field(min_length=1)
    decision: Literal["approved", "rejected"]
    reason: Text | None = None
    decided_by: ShortText | None = None


class ReturnReceived(TouchpointData, type_name="ReturnReceived", version=1):
    """A returned or collected product arrived at our warehouse."""

    case_id: ShortText | None = None
    product: ShortText
    serial_number: ShortText | None = None
    condition: Text | None = None


class RefundIssued(TouchpointData, type_name="RefundIssued", version=1):
    """Money was paid back."""

    case_id: ShortText | None = None
    order_id: ShortText | None = None
    amount: Money
    reason: Text | None = None


class GoodwillGranted(TouchpointData, type_name="GoodwillGranted", version=1):
    """A gesture of goodwill: gift card, voucher, discount."""

    case_id: ShortText | None = None
    defect_id: ShortText | None = None
    kind: Literal["gift_card", "voucher", "discount", "free_shipping", "other"]
    value: Money | None = None
    reason: Text | None = None


class KnownDefectRegisteredV1(
    TouchpointData, type_name="KnownDefectRegistered", version=1, current=False
):
    """A defect affecting a product (and batch) became known (version 1, superseded: keyed
    by the registering organisation, as if it were a customer). Upcast to version 2 on read.

    ``customer_id`` of this envelope is the registering organisation's id (e.g. ``company``).
    """

    defect_id: ShortText = Field(min_length=1)
    product: ShortText
    batch: ShortText | None = Field(default=None, description="None means every batch")
    description: Text
    remedy: Text | None = None


class KnownDefectRegistered(TouchpointData, type_name="KnownDefectRegistered", version=2):
    """A defect affecting a product (and batch) became known: a fact about the product,
    not about a customer.

    Keyed by the product: the envelope's ``customer_id`` (and so the Kafka key) must be
    ``product:`` followed by ``product`` exactly, e.g. ``product:Hagesett Oslo``, so every
    fact about one product is read in order. Every owner of a matching product (an order
    line's ``name``, a complaint's ``product``; and ``batch`` when given) is flagged for
    proactive outreach until one is sent.
    """

    keyed_by_product: ClassVar[bool] = True

    defect_id: ShortText = Field(min_length=1)
    product: ShortText = Field(
        description="Affected product (model), as order lines name it; the key is "
        "product:<product>, so at most 192 characters here"
    )
    batch: ShortText | None = Field(default=None, description="None means every batch")
    description: Text
    remedy: Text | None = None
    registered_by: ShortText | None = Field(
        default=None, description="Who registered it (team, quality department, supplier)"
    )


class ProactiveOutreachSent(TouchpointData, type_name="ProactiveOutreachSent", version=1):
    """We contacted the customer about a known defect before they complained."""

    defect_id: ShortText = Field(min_length=1)
    channel: Channel
    message: Text | None = None


# --------------------------------------------------------------------------- public voice


class PublicReviewPostedV1(
    TouchpointData, type_name="PublicReviewPosted", version=1, current=False
):
    """The customer posted a public review (version 1, superseded: the score was called
    ``rating``, and the review named no order). Upcast to version 2 on read."""

    review_id: ShortText = Field(min_length=1)
    platform: ShortText
    rating: int | None = Field(default=None, ge=1, le=5)
    text: Text | None = None
    url: Text | None = None


class PublicReviewPosted(TouchpointData, type_name="PublicReviewPosted", version=2):
    """The customer posted a public review, or answered a review invitation.

    ``score`` is the number of stars (1-5), the same scale as ``SatisfactionRated``.
    ``feedback_id`` names the ``FeedbackRequested`` it answers: the time from that request
    to this review is how long the customer took to answer; the time from this review to
    ``ReviewAnswered`` is how long we took to answer the review.
    """

    review_id: ShortText = Field(min_length=1)
    platform: ShortText
    score: int | None = Field(default=None, ge=1, le=5)
    title: Text | None = None
    text: Text | None = None
    url: Text | None = None
    order_id: ShortText | None = None
    feedback_id: ShortText | None = Field(
        default=None, description="The review invitation (FeedbackRequested) this answers"
    )


class ReviewAnswered(TouchpointData, type_name="ReviewAnswered", version=1):
    """We answered a public review."""

    review_id: ShortText = Field(min_length=1)
    answered_by: ShortText
    text: Text | None = None
