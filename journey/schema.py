"""The published contract, generated from the catalogue: JSON Schemas and docs/events.md.

A producer in any language validates a whole message with one file: ``<Type>.v<N>.schema.json``
is the complete envelope for that type and version (``type`` and ``schema_version`` fixed,
``data`` the type's body). ``envelope.schema.json`` is the envelope alone, ``index.json`` lists
the types, their versions and which one is current. The per-type sections of
``docs/events.md`` (between the GENERATED markers) come from the same models, so the schema,
the docs and the validator cannot disagree. Output is deterministic (sorted keys, trailing
newline): ``tests/unit/test_schema_drift.py`` fails when a model changed and ``make schema``
was not run.
"""

from __future__ import annotations

import copy
import inspect
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from domain.catalogue import CATALOGUE, CURRENT, TouchpointData
from domain.envelope import Envelope
from domain.errors import JourneyError

__all__ = [
    "BEGIN_MARKER",
    "END_MARKER",
    "ENVELOPE_FILE",
    "INDEX_FILE",
    "SchemaExportError",
    "envelope_schema",
    "example_envelope",
    "export_schemas",
    "render_events_markdown",
    "schema_files",
    "touchpoint_schema",
    "update_events_markdown",
    "write_events_markdown",
]

JSONObject = dict[str, Any]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
# A URN, not a URL: nothing is served at an address yet, and a schema's $id must not pretend.
ID_PREFIX = "urn:journey:schema:"
ENVELOPE_FILE = "envelope.schema.json"
INDEX_FILE = "index.json"
BEGIN_MARKER = "<!-- BEGIN GENERATED -->"
END_MARKER = "<!-- END GENERATED -->"

# RFC 3339 makes the offset mandatory, but JSON Schema treats "format" as an annotation
# unless a validator opts in; the pattern makes "offset required" an assertion everywhere.
OFFSET_PATTERN = r"([Zz]|[+-][0-9]{2}:?[0-9]{2})$"
TIME_NOTE = "RFC 3339 date-time; a zone offset is required (Z or +01:00)"
DECIMAL_NOTE = 'send it as a JSON string ("499.00") so no float rounds it; a number is accepted'


class SchemaExportError(JourneyError):
    """The schemas or the generated docs could not be written."""


# --------------------------------------------------------------------------- field glossary
# Descriptions for fields the models leave undocumented. A field name means the same thing in
# every type (case_id is always the helpdesk's case); (type, field) entries say where it is
# more specific. tests/unit/test_schema_drift.py requires every field to have a description.

FIELD_NOTES: Mapping[str, str] = {
    "agent": "Name or id of the person who answered",
    "amount": "How much was paid back",
    "answered_by": "Who answered, e.g. a team or person",
    "awaiting_customer": (
        "True when the reply asks the customer for something: the service clock pauses "
        "until the customer writes again"
    ),
    "body": "The message text, verbatim",
    "carrier": "Carrier (delivery company), e.g. PostNord, FedEx",
    "case_id": (
        "The case (ticket) id in the emitting helpdesk; every touchpoint of one case "
        "carries the same id"
    ),
    "channel": "The channel it happened on",
    "comment": "The customer's comment, verbatim",
    "condition": "Condition of the product on arrival, in words",
    "copied_to": "Teams or people copied in (e.g. the Swedish team on a Polish reply)",
    "corrected_by": "Who worked out the corrected serial number",
    "corrected_serial_number": "The serial number we believe is right",
    "country": "ISO 3166 alpha-2 country of the team, e.g. SE",
    "currency": "ISO 4217 code, e.g. SEK",
    "defect_id": "Id of the known defect (see KnownDefectRegistered)",
    "deliver_by": "New delivery deadline; when given it is a promise",
    "delivery_address": "Delivery address as the customer entered it",
    "description": "Description, in words",
    "due_by": "Deadline",
    "escalation": "True when the handoff is an escalation (to more competence or authority)",
    "expected_delivery_by": "Delivery time the carrier announced",
    "from_country": "ISO 3166 alpha-2 country of the team handing off",
    "from_team": "Team handing the case off",
    "kept_by": "Who kept the promise",
    "kind": "Kind",
    "lines": "The ordered items",
    "location": "Where it happened (address, pick-up point)",
    "made_by": "Who made the promise (person, team, office)",
    "message": "The message sent, verbatim",
    "new_location": "New delivery place agreed, e.g. a post office",
    "note": "Free-text note",
    "order_id": "Order number in the web shop",
    "pickup_at": "When the pickup is booked for",
    "platform": "Where the review was posted, e.g. Trustpilot, Google",
    "product": "Product name or model, as the emitting system knows it",
    "promise_id": "Id of the promise; PromiseKept, PromiseWithdrawn and PromiseBroken refer to it",
    "withdrawn_by": "Who withdrew the promise (an agent, or a system such as the order service)",
    "promised_delivery_by": (
        "Delivery deadline shown at checkout: an implied promise, kept by Delivered before it"
    ),
    "purchase_date": "Date of purchase, if the customer gave it",
    "purchase_place": "Where the product was bought, if the customer said",
    "quantity": "Number of units",
    "rating": "Star rating on the platform, 1-5",
    "reason": "Why, in words",
    "remedy": "What affected customers are offered",
    "repaired_by": "Who did the repair (workshop, technician)",
    "resolution": "How the case was resolved, in words",
    "resolved_by": "Who resolved it",
    "review_id": "Id of the review on its platform",
    "score": "Rating from 1 (very poor) to 5 (excellent)",
    "serial_number": "Serial number of the unit concerned",
    "serial_number_as_given": "Serial number exactly as the customer gave it, right or wrong",
    "shipment_id": "Id of the shipment (parcel); delivery touchpoints refer to it",
    "sku": "Stock-keeping unit (article number)",
    "subject": "Subject line, if the channel has one",
    "target": "Which reply target passed: first_reply or next_reply",
    "team": "Team of the person who answered",
    "text": "The text, verbatim",
    "to_country": "ISO 3166 alpha-2 country of the receiving team",
    "to_team": "Team receiving the case",
    "total": "Order total as charged",
    "tracking_number": "Carrier's tracking number",
    "unit_price": "Price of one unit as charged",
    "url": "Link to the review",
    "value": "Value",
    "verified": "True when the link was verified (e.g. a confirmed e-mail or a login)",
    "warranty_claim": "True when the customer claims warranty (not just complains)",
    "what": "What was promised, in words the customer would recognise",
    "cancelled_by": "Who cancelled: the customer, the shop, the seller or a system",
    "decided_by": "Who decided (person, team, workshop)",
    "decision": "approved or rejected",
    "deliver_on": (
        "New delivery date: the promise ends at midnight at the end of that day in time_zone"
    ),
    "expected_delivery_date": "Delivery date the carrier announced (a day in time_zone)",
    "feedback_id": "Id of the feedback request (survey, review invitation); answers refer to it",
    "handoff_by": (
        "When the seller must hand the line to the carrier: an implied promise, "
        "id handoff:<order_id>:<seller>"
    ),
    "instalments": "Number of instalments the payment is split into",
    "method": "Payment method as the shop names it, e.g. credit_card, boleto, voucher",
    "promised_delivery_date": (
        "Delivery date shown at checkout: an implied promise (id delivery:<order_id>) "
        "that ends at midnight at the end of that day in time_zone"
    ),
    "registered_by": "Who registered it (team, quality department, supplier)",
    "seller": "The seller (on a marketplace: the seller's id)",
    "shipping_fee": "Shipping fee charged to the customer",
    "time_zone": "IANA time zone the date is a day in, e.g. Europe/Oslo",
    "title": "The title, verbatim",
}

TYPE_FIELD_NOTES: Mapping[tuple[str, str], str] = {
    ("AutoAcknowledgementSent", "channel"): "Channel the acknowledgement went out on",
    ("ComplaintFiled", "description"): "The customer's description of the problem, verbatim",
    ("ComplaintFiled", "serial_number"): (
        "Serial number as the customer gave it (v2 calls it serial_number_as_given)"
    ),
    ("ComplaintFiled", "order_id"): "Our order number, when the product was bought from us",
    ("DeliveryAttempted", "location"): "Where delivery was attempted",
    ("DeliveryFailed", "reason"): "Why it failed, e.g. nobody home, address not found",
    ("Delivered", "location"): "Where it was delivered (address or agreed pick-up point)",
    ("ErasureRequested", "channel"): "Where the customer asked",
    ("GoodwillGranted", "kind"): "What was given",
    ("GoodwillGranted", "value"): "Its value, when it has one",
    ("IdentityLinked", "kind"): (
        "What kind of identifier `value` is; `customer_id` means two customer ids are one "
        "person; `external_id` is an id another system gives this customer (a marketplace or "
        "shop account, a customer id issued per order), best prefixed with the system, "
        "e.g. olist:9ef432eb"
    ),
    ("IdentityLinked", "value"): "The identifier, e.g. an e-mail address or a serial number",
    ("IdentityLinked", "verified"): (
        "True only when the producer checked it (a login, a code sent to the number, an agent "
        "who confirmed it): only a verified link merges customers and answers lookups. "
        "False: a claim, shown to agents as a possible match"
    ),
    ("IdentityUnlinked", "kind"): "What kind of identifier `value` is, as it was linked",
    ("IdentityUnlinked", "value"): (
        "The identifier to unlink (case, spaces and punctuation aside); with kind "
        "`customer_id`, the other customer"
    ),
    ("IdentityUnlinked", "unlinked_by"): "The agent who undid the link",
    ("IdentityUnlinked", "reason"): "Why it is not this customer's",
    ("KnownDefectRegistered", "description"): "What the defect is",
    ("KnownDefectRegistered", "product"): "Affected product (model)",
    ("OrderPlaced", "channel"): "Where the order was placed",
    ("OrderCancelled", "reason"): "Why the order was cancelled",
    ("OrderShipped", "seller"): (
        "The seller handing over (keeps that seller's hand-off promise); "
        "none: the whole order, every seller's"
    ),
    ("PaymentApproved", "amount"): "Amount of this payment",
    ("PickupFailed", "reason"): "Why the collection failed, e.g. nobody home",
    ("PickupCompleted", "serial_number"): "Serial number of the unit collected",
    ("ProofOfPurchaseReceived", "kind"): "What the customer sent",
    ("ProofOfPurchaseReceived", "channel"): "How it arrived",
    ("ClaimDecided", "reason"): "Why it was approved or rejected, in words",
    ("FeedbackRequested", "channel"): "How the request went out",
    ("PublicReviewPosted", "score"): "Stars, 1-5 (the same scale as SatisfactionRated)",
    ("PublicReviewPosted", "rating"): "Star rating on the platform, 1-5 (v2 calls it score)",
    ("PublicReviewPosted", "title"): "The review's title, verbatim",
    ("PublicReviewPosted", "order_id"): "The order the review is about",
    ("KnownDefectRegistered", "registered_by"): (
        "Who registered it (team, quality department, supplier)"
    ),
    ("PickupBooked", "serial_number"): "Serial number of the unit to collect",
    ("ProactiveOutreachSent", "channel"): "How the customer was contacted",
    ("PromiseBroken", "due_by"): "The deadline that passed",
    ("PromiseBroken", "what"): "What had been promised",
    ("PromiseMade", "due_by"): (
        "Deadline; if it passes without PromiseKept, the promise keeper emits PromiseBroken"
    ),
    ("PromiseMade", "kind"): "What kind of promise",
    ("RefundIssued", "reason"): "Why the money was paid back",
    ("RepairCompleted", "description"): "What was repaired or replaced",
    ("ReplacementShipped", "serial_number"): "Serial number of the replacement unit",
    ("ReplyOverdue", "due_by"): "The reply deadline that passed",
    ("ReturnReceived", "serial_number"): "Serial number of the unit received",
    ("ReviewAnswered", "text"): "Our answer, verbatim",
    ("PublicReviewPosted", "text"): "The review text, verbatim",
    ("SerialConfirmationRequested", "channel"): "How the customer was asked",
    ("SerialConfirmationRequested", "serial_number"): "The serial number to confirm",
    ("SerialNumberConfirmed", "serial_number"): "The serial number the customer confirmed",
    ("SerialNumberCorrected", "serial_number_as_given"): "The serial number being corrected",
    ("SignupRequested", "channel"): "Where the form was submitted",
}


SHARED_NOTES: Mapping[str, str] = {
    "Money": "An amount of money in one currency",
    "OrderLine": "One ordered item, as the customer saw it at checkout",
}


def field_note(owner: str, field: str) -> str | None:
    """Glossary description of ``field`` of ``owner`` (a type name or a shared part)."""
    return TYPE_FIELD_NOTES.get((owner, field)) or FIELD_NOTES.get(field)


# --------------------------------------------------------------------------- JSON Schema


class _WireSchema(GenerateJsonSchema):
    """pydantic's generator, tightened where its output is looser than what we accept."""

    def datetime_schema(self, schema: core_schema.DatetimeSchema) -> JsonSchemaValue:
        out = super().datetime_schema(schema)
        if schema.get("tz_constraint") == "aware":
            out["pattern"] = OFFSET_PATTERN
        return out

    def decimal_schema(self, schema: core_schema.DecimalSchema) -> JsonSchemaValue:
        out = super().decimal_schema(schema)
        ge, gt = schema.get("ge"), schema.get("gt")
        non_negative = (ge is not None and ge >= 0) or (gt is not None and gt >= 0)
        digits = r"[0-9]+(\.[0-9]+)?"
        for branch in out.get("anyOf", []):
            if branch.get("type") == "string":
                branch["pattern"] = f"^{digits}$" if non_negative else f"^-?{digits}$"
        return out


def _model_schema(model: type[Any]) -> JSONObject:
    schema: JSONObject = model.model_json_schema(schema_generator=_WireSchema)
    return schema


def _clean_text(text: str) -> str:
    # docstrings use reST literals; JSON Schema viewers and Markdown both read single backticks
    return inspect.cleandoc(text).replace("``", "`")


def _is_time(prop: JSONObject) -> bool:
    branches = [prop, *prop.get("anyOf", [])]
    return any(b.get("format") == "date-time" for b in branches)


def _is_decimal(prop: JSONObject) -> bool:
    types = {b.get("type") for b in prop.get("anyOf", [])}
    return types == {"number", "string"}


def _document_fields(schema: JSONObject, owner: str) -> None:
    """Fill missing field descriptions from the glossary and add the time/decimal rules."""
    for name, prop in schema.get("properties", {}).items():
        text = prop.get("description") or field_note(owner, name) or ""
        if _is_time(prop) and "offset" not in text:
            text = f"{text}. {TIME_NOTE}" if text else TIME_NOTE
        if _is_decimal(prop) and "JSON string" not in text:
            text = f"{text}; {DECIMAL_NOTE}" if text else DECIMAL_NOTE
        if text:
            prop["description"] = _clean_text(text)
        prop.pop("title", None)  # "Case Id" is the name again, not a title


def _body_schema(model: type[TouchpointData]) -> JSONObject:
    body = _model_schema(model)
    _document_fields(body, model.type_name)
    for def_name, sub in body.get("$defs", {}).items():
        _document_fields(sub, def_name)
        sub["description"] = _clean_text(sub.get("description") or SHARED_NOTES[def_name])
    return body


def _version_note(type_name: str, version: int) -> str:
    current = CURRENT[type_name]
    if version == current:
        return ""
    return (
        f"Superseded by v{current}: still accepted, and upcast to v{current} when read. "
        f"Emit v{current}."
    )


def _model_description(model: type[TouchpointData]) -> str:
    parts = [_clean_text(model.__doc__ or model.type_name)]
    note = _version_note(model.type_name, model.schema_version)
    if note:
        parts.append(note)
    return "\n\n".join(parts)


def _envelope_properties() -> tuple[JSONObject, list[str]]:
    schema = _model_schema(Envelope)
    _document_fields(schema, "Envelope")
    props: JSONObject = schema["properties"]
    required: list[str] = schema["required"]
    return props, required


def envelope_schema() -> JSONObject:
    """JSON Schema of the envelope alone, ``data`` any object (validated per type)."""
    props, required = _envelope_properties()
    return {
        "$schema": DIALECT,
        "$id": f"{ID_PREFIX}{ENVELOPE_FILE}",
        "title": "Touchpoint envelope",
        "description": (
            "The one wire format of every touchpoint on the topic journey.touchpoints "
            "(Kafka key = customer_id, value = this object as UTF-8 JSON). data is validated "
            "against the schema of type and schema_version: see <Type>.v<N>.schema.json and "
            "docs/events.md. Unknown fields are rejected. Times are RFC 3339 with a zone "
            "offset."
        ),
        "type": "object",
        "additionalProperties": False,
        "properties": props,
        "required": required,
    }


def schema_file_name(type_name: str, version: int) -> str:
    return f"{type_name}.v{version}.schema.json"


def touchpoint_schema(type_name: str, version: int) -> JSONObject:
    """The full envelope for one type and version, so one file validates a whole message."""
    model = CATALOGUE[(type_name, version)]
    body = _body_schema(model)
    defs = body.pop("$defs", None)
    body["description"] = _model_description(model)
    body["title"] = f"{type_name} v{version} data"
    props, required = _envelope_properties()
    props["type"] = {
        "const": type_name,
        "description": props["type"]["description"],
        "type": "string",
    }
    props["schema_version"] = {
        "const": version,
        "description": props["schema_version"]["description"],
        "type": "integer",
    }
    props["data"] = body
    schema: JSONObject = {
        "$schema": DIALECT,
        "$id": f"{ID_PREFIX}{schema_file_name(type_name, version)}",
        "title": f"{type_name} v{version}",
        "description": _model_description(model),
        "type": "object",
        "additionalProperties": False,
        "properties": props,
        "required": required,
    }
    if version != CURRENT[type_name]:
        schema["deprecated"] = True
    if defs:
        schema["$defs"] = defs
    return schema


def _index() -> JSONObject:
    types: JSONObject = {}
    for type_name in sorted(CURRENT):
        versions = sorted(v for (t, v) in CATALOGUE if t == type_name)
        model = CATALOGUE[(type_name, CURRENT[type_name])]
        types[type_name] = {
            "current_version": CURRENT[type_name],
            "summary": _clean_text(model.summary),
            "versions": [
                {
                    "version": v,
                    "schema": schema_file_name(type_name, v),
                    "current": v == CURRENT[type_name],
                }
                for v in versions
            ],
        }
    return {
        "$comment": "Generated by `journey schema` (make schema) from domain/catalogue.py.",
        "envelope": ENVELOPE_FILE,
        "json_schema_dialect": DIALECT,
        "types": types,
    }


def _dumps(obj: object) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_files() -> dict[str, str]:
    """File name -> exact text of every file ``export_schemas`` writes."""
    files = {ENVELOPE_FILE: _dumps(envelope_schema()), INDEX_FILE: _dumps(_index())}
    for type_name, version in sorted(CATALOGUE):
        files[schema_file_name(type_name, version)] = _dumps(touchpoint_schema(type_name, version))
    return files


def export_schemas(out: Path) -> list[Path]:
    """Write every schema and the index into ``out``; remove schema files of types that no
    longer exist. Returns the paths written (unchanged files are not rewritten)."""
    files = schema_files()
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stale in sorted(out.glob("*.schema.json")):
            if stale.name not in files:
                stale.unlink()
        written = []
        for name, text in files.items():
            path = out / name
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise SchemaExportError(f"cannot write schemas to {out}: {exc.strerror}") from None
    return written


# --------------------------------------------------------------------------- docs/events.md

EXAMPLE_CUSTOMER = "cust-4711"
EXAMPLE_TIME = "2026-11-23T10:15:00+01:00"
EXAMPLE_SOURCE = "helpdesk"

# Values for required fields in the minimal examples, by field name (then by the first enum
# member). They tell small stories from the seeds, so the examples read like real traffic.
EXAMPLE_VALUES: Mapping[str, Any] = {
    "agent": "Marta K.",
    "amount": {"amount": "499.00", "currency": "SEK"},
    "answered_by": "Customer care",
    "carrier": "PostNord",
    "case_id": "case-1042",
    "corrected_serial_number": "CN-0FX2K3-74261",
    "country": "PL",
    "defect_id": "defect-2026-07",
    "description": "Paint comes off the armrests of the Oslo sofa set",
    "due_by": "2026-11-24T16:00:00+01:00",
    "fields": {"name": "Ola Nordmann", "wants": "fixed-rate mortgage", "customer_of": "none"},
    "form": "become-a-customer",
    "from_country": "PL",
    "from_team": "Technical support",
    "lines": [
        {
            "sku": "MON-U27",
            "name": "UltraSharp 27 monitor",
            "unit_price": {"amount": "4990.00", "currency": "SEK"},
        }
    ],
    "made_by": "Erik, customer care SE",
    "order_id": "ord-77120",
    "platform": "Trustpilot",
    "product": "UltraSharp 27 monitor",
    "promise_id": "prm-88",
    "withdrawn_by": "agent-ola",
    "reason": "Nobody home",
    "resolution": "Replacement delivered, broken unit collected",
    "review_id": "rev-3141",
    "score": 2,
    "serial_number": "CN-0FX2K3-74261",
    "shipment_id": "shp-5531",
    "team": "Technical support",
    "to_country": "SE",
    "to_team": "Customer care",
    "total": {"amount": "4990.00", "currency": "SEK"},
    "value": "anna.svensson@example.com",
    "what": "Call the customer back about the replacement",
    "decision": "rejected",
    "feedback_id": "survey-ord-77120",
    "method": "credit_card",
}
TYPE_EXAMPLE_VALUES: Mapping[tuple[str, str], Any] = {
    ("IdentityLinked", "kind"): "email",  # goes with the e-mail address in "value"
    ("IdentityUnlinked", "kind"): "email",
    ("BreachAcknowledged", "kind"): "promise",  # goes with the promise id in "ref"
    ("BreachAcknowledged", "ref"): "prm-88",
    ("OrderCancelled", "reason"): "The customer changed their mind before shipping",
    ("PickupFailed", "reason"): "Nobody home",
    ("ClaimDecided", "reason"): "Water damage is not covered by the warranty",
    ("FeedbackRequested", "channel"): "email",
    ("KnownDefectRegistered", "product"): "Hagesett Oslo",
}
EXAMPLE_SOURCE_BY_TYPE: Mapping[str, str] = {
    "OrderPlaced": "webshop",
    "RefundIssued": "webshop",
    "SignupRequested": "website",
    "OrderShipped": "warehouse",
    "ReplacementShipped": "warehouse",
    "ReturnReceived": "warehouse",
    "PickupBooked": "warehouse",
    "DeliveryAttempted": "carrier-postnord",
    "DeliveryFailed": "carrier-postnord",
    "DeliveryRescheduled": "carrier-postnord",
    "Delivered": "carrier-postnord",
    "PromiseBroken": "promise-keeper",
    "ReplyOverdue": "promise-keeper",
    "PublicReviewPosted": "review-monitor",
    "ReviewAnswered": "review-monitor",
    "OrderCancelled": "webshop",
    "PaymentApproved": "webshop",
    "FeedbackRequested": "webshop",
    "PickupCompleted": "carrier-postnord",
    "PickupFailed": "carrier-postnord",
    "KnownDefectRegistered": "quality",
}
EXAMPLE_CUSTOMER_BY_TYPE: Mapping[tuple[str, int], str] = {
    # v1: registered by the company, as if a customer; v2: keyed by the product
    ("KnownDefectRegistered", 1): "company",
    ("KnownDefectRegistered", 2): "product:Hagesett Oslo",
}


def _example_value(type_name: str, name: str, prop: JSONObject) -> Any:
    if (type_name, name) in TYPE_EXAMPLE_VALUES:
        return copy.deepcopy(TYPE_EXAMPLE_VALUES[(type_name, name)])
    if name in EXAMPLE_VALUES:
        return copy.deepcopy(EXAMPLE_VALUES[name])  # callers may change their example
    if "enum" in prop:
        return prop["enum"][0]
    raise SchemaExportError(
        f"no example value for required field {name!r}: add one to EXAMPLE_VALUES in "
        "journey/schema.py"
    )


def example_envelope(type_name: str, version: int) -> JSONObject:
    """A minimal valid envelope: only the required fields, deterministic ids and times."""
    body = _model_schema(CATALOGUE[(type_name, version)])
    data = {
        name: _example_value(type_name, name, prop)
        for name, prop in body["properties"].items()
        if name in body.get("required", [])
    }
    return {
        "event_id": str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"{ID_PREFIX}example:{type_name}:{version}")
        ),
        "type": type_name,
        "schema_version": version,
        "customer_id": EXAMPLE_CUSTOMER_BY_TYPE.get((type_name, version), EXAMPLE_CUSTOMER),
        "occurred_at": EXAMPLE_TIME,
        "source": EXAMPLE_SOURCE_BY_TYPE.get(type_name, EXAMPLE_SOURCE),
        "data": data,
    }


@dataclass(frozen=True)
class _Row:
    name: str
    type: str
    required: bool
    description: str


def _resolve(prop: JSONObject, defs: JSONObject) -> tuple[JSONObject, str | None]:
    """(schema without null branch and $ref resolved, name of the shared part if any)."""
    branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
    one = branches[0] if len(branches) == 1 else prop
    ref = one.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        resolved: JSONObject = defs[name]
        return resolved, name
    return one, None


def _type_text(prop: JSONObject, defs: JSONObject) -> str:
    if _is_decimal(prop):
        number = next(b for b in prop["anyOf"] if b.get("type") == "number")
        floor = " ≥ 0" if number.get("minimum") == 0 else ""
        return f'decimal{floor} (string "499.00" or number)'
    resolved, def_name = _resolve(prop, defs)
    if def_name is not None:
        return f"object ({def_name})"
    if "enum" in resolved:
        return "one of " + ", ".join(f"`{v}`" for v in resolved["enum"])
    if "const" in resolved:
        return f"`{resolved['const']}`"
    kind = resolved.get("type")
    fmt = resolved.get("format")
    if fmt == "date-time":
        return "date-time (RFC 3339, offset required)"
    if fmt == "date":
        return "date (YYYY-MM-DD)"
    if fmt == "uuid":
        return "UUID (string)"
    if kind == "array":
        items, item_def = _resolve(resolved.get("items", {}), defs)
        inner = f"objects ({item_def})" if item_def else _type_text(items, defs)
        at_least = resolved.get("minItems")
        return f"array of {inner}" + (f", at least {at_least}" if at_least else "")
    if kind == "object":
        values = resolved.get("additionalProperties")
        if isinstance(values, dict):
            return f"object of string → {_type_text(values, defs)}"
        return "object"
    if kind == "integer":
        low, high = resolved.get("minimum"), resolved.get("maximum")
        if low is not None and high is not None:
            return f"integer {low} to {high}"
        return f"integer ≥ {low}" if low is not None else "integer"
    if kind == "string":
        notes = []
        if resolved.get("minLength") == 1:
            notes.append("non-empty")
        if "pattern" in resolved:
            notes.append(f"matching `{resolved['pattern']}`")
        return "string" + (f" ({', '.join(notes)})" if notes else "")
    return str(kind)


def _rows(schema: JSONObject, defs: JSONObject, prefix: str = "") -> Iterator[_Row]:
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        text = prop.get("description", "")
        if "default" in prop and prop["default"] not in (None, [], {}):
            default = f"Default `{json.dumps(prop['default'])}`"
            text = f"{text}. {default}" if text else default
        yield _Row(f"{prefix}{name}", _type_text(prop, defs), name in required, text)
        resolved, def_name = _resolve(prop, defs)
        if def_name is not None:
            yield from _rows(resolved, defs, f"{prefix}{name}.")
        elif resolved.get("type") == "array":
            items, item_def = _resolve(resolved.get("items", {}), defs)
            if item_def is not None:
                yield from _rows(items, defs, f"{prefix}{name}[].")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(rows: list[_Row]) -> list[str]:
    out = ["| Field | Type | Required | Description |", "|---|---|---|---|"]
    for row in rows:
        cells = [
            f"`{row.name}`",
            _cell(row.type),
            "yes" if row.required else "no",
            _cell(row.description),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _version_section(type_name: str, version: int, heading: str) -> list[str]:
    model = CATALOGUE[(type_name, version)]
    schema = touchpoint_schema(type_name, version)
    data = schema["properties"]["data"]
    defs = schema.get("$defs", {})
    lines = [heading, ""]
    lines += [_clean_text(model.__doc__ or type_name), ""]
    note = _version_note(type_name, version)
    if note:
        lines += [note, ""]
    file = f"schema/{schema_file_name(type_name, version)}"
    lines += [f"JSON Schema: [`docs/{file}`]({file})", ""]
    rows = list(_rows(data, defs))
    if rows:
        lines += [*_table(rows), ""]
    else:
        lines += ["No data fields: `data` is `{}` or only optional fields.", ""]
    lines += [
        "Minimal example:",
        "",
        "```json",
        json.dumps(example_envelope(type_name, version), indent=2, ensure_ascii=False),
        "```",
        "",
    ]
    return lines


def render_events_markdown() -> str:
    """The generated part of docs/events.md: an index and one section per touchpoint type."""
    lines = [
        "<!-- Generated from domain/catalogue.py by `make schema`. Do not edit by hand: "
        "edit the models (or the glossary in journey/schema.py) and run `make schema`. -->",
        "",
        "## Touchpoint types",
        "",
        "| Type | Current version | Meaning |",
        "|---|---|---|",
    ]
    for type_name in sorted(CURRENT):
        model = CATALOGUE[(type_name, CURRENT[type_name])]
        lines.append(
            f"| [{type_name}](#{type_name.lower()}) | {CURRENT[type_name]} "
            f"| {_cell(_clean_text(model.summary))} |"
        )
    lines.append("")
    for type_name in sorted(CURRENT):
        current = CURRENT[type_name]
        lines += _version_section(type_name, current, f"### {type_name}")
        older = sorted(v for (t, v) in CATALOGUE if t == type_name and v != current)
        for version in reversed(older):
            lines += _version_section(
                type_name, version, f"#### {type_name} v{version} (superseded)"
            )
    return "\n".join(lines).rstrip("\n") + "\n"


def update_events_markdown(text: str) -> str:
    """``text`` with the part between the GENERATED markers replaced by fresh output."""
    begin, end = text.find(BEGIN_MARKER), text.find(END_MARKER)
    if begin < 0 or end < 0 or end < begin:
        raise SchemaExportError(
            f"docs/events.md needs the markers {BEGIN_MARKER} and {END_MARKER} (in that "
            "order) around the generated part"
        )
    head = text[: begin + len(BEGIN_MARKER)]
    return f"{head}\n{render_events_markdown()}{text[end:]}"


def write_events_markdown(path: Path) -> bool:
    """Regenerate the generated part of ``path``; True when the file changed."""
    try:
        text = path.read_text(encoding="utf-8")
        fresh = update_events_markdown(text)
        if fresh == text:
            return False
        path.write_text(fresh, encoding="utf-8")
    except OSError as exc:
        raise SchemaExportError(f"cannot update {path}: {exc.strerror}") from None
    return True
