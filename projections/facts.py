"""How a touchpoint's row stores what it needs compactly: its fact (the wire envelope,
compressed with zstd against a dictionary of the envelope's own words), its timeline summary
(deflated against the summaries' words and the customer's id), its id and content hash
as 16 bytes each, its type as a number, its time as microseconds since the epoch (integer
order is time order).

A fact is stored without the head its row already holds as columns: the envelope as
``encode`` writes it starts with event_id, type, schema_version, customer_id and
occurred_at, and the row has event_id, type, customer_id and at. :func:`pack` keeps only
the schema version and what follows (a third of the deflated bytes were that head: a
random id deflates to 20 bytes); :func:`unpack` puts the head back from the row's columns,
byte for byte. An envelope whose head the columns would not give back exactly (an
occurred_at with another UTC offset, a customer id JSON writes another way) is kept whole.

A fact's body is compressed with zstd against a prepared dictionary (projections/
fact_dictionary.py: the words below and what facts of synthetic journeys and the seed
stories repeat, with entropy tables fitted to them), digested once and used by one
compressor per thread: deflate set its 2 KB dictionary up again for every fact, most of the
~8 us a fact took (zstd: ~2 us; a read ~0.4 us where inflating took ~0.8). The customer's id,
which deflate took as the dictionary's last words, is replaced by one marker byte before
compressing and put back after: JSON holds no raw control byte, and a body that does anyway
is stored unmarked behind a byte no zstd frame starts with.

The dictionaries and the head are part of the store's format: changing either needs a new
schema version (projections/integrity.py), since rows written with one cannot be read with
another.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import uuid
import zlib
from datetime import UTC, datetime, timedelta

import zstandard

from projections.fact_dictionary import FACT_DICTIONARY

__all__ = [
    "at_micros",
    "from_micros",
    "hash_bytes",
    "hash_text",
    "id_bytes",
    "id_text",
    "pack",
    "pack_summary",
    "type_code",
    "type_name",
    "unpack",
    "unpack_summary",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Words every envelope repeats (field names, common values), the words a stored body starts
# with last (a match there costs least): a 300-byte envelope is stored in ~60 bytes.
_DICTIONARY = (
    b'"lines":[{"sku":"","name":"","quantity":1,"unit_price":{"amount":"","currency":"NOK"}}],'
    b'"total":{"amount":"","currency":"SEK"},"promised_delivery_by":"","delivery_address":"",'
    b'"shipment_id":"","carrier":"","tracking_number":"","expected_delivery_by":"","location":"",'
    b'"promise_id":"","due_by":"","what":"","kind":"delivery","made_by":"","made_to":"",'
    b'"agent":"","team":"","country":"NO","awaiting_customer":false,"resolution":"",'
    b'"case_id":"","channel":"email","subject":"","body":"","product":"","description":"",'
    b'"InquiryReceived","ComplaintFiled","ReplySent","CaseResolved","OrderPlaced",'
    b'"OrderShipped","Delivered","DeliveryAttempted","PromiseMade","PromiseKept",'
    b'"PromiseBroken","ReplyOverdue","IdentityLinked","SignupRequested","RepairCompleted",'
    b'{"event_id":"","type":"","schema_version":1,"customer_id":"","occurred_at":"2026-01-01T00'
    b':00:00Z"1,"source":"","correlation_id":"","causation_id":"","data":{"order_id":"'
)

# The other field names of the catalogue's data (as of schema 9), before the words above
# (a match this far back costs a few bits more): 50 -> 44 bytes a fact on the bench
# workload. A literal, not read from the catalogue: a field added later must not change
# how the rows already stored read back.
_FIELD_NAMES = (
    b'"agreed_by":"answered_by":"batch":"before_proof":"cancelled_by":"comment":"condition":"c'
    b'opied_to":"corrected_by":"corrected_serial_number":"decided_by":"decision":"defect_id":"'
    b'deliver_by":"deliver_on":"escalation":"expected_delivery_date":"feedback_id":"fields":"f'
    b'orm":"from_country":"from_team":"handoff_by":"instalments":"kept_by":"message":"method":'
    b'"new_location":"note":"notified_customer_by":"pickup_at":"platform":"products":"promised'
    b'_delivery_date":"purchase_date":"purchase_place":"rating":"reason":"ref":"registered_by"'
    b':"remedy":"repaired_by":"resolved_by":"review_id":"score":"seller":"serial_number":"seri'
    b'al_number_as_given":"shipping_fee":"target":"text":"time_zone":"title":"to_country":"to_'
    b'team":"unlinked_by":"url":"value":"verified":"warranty_claim":"warranty_terms_shown":"wi'
    b'thdrawn_by":'
)
# The first words of the facts' zstd dictionary (bench/fact_dictionary.py made it from them
# and from what synthetic facts repeat): read only when it is made again (and by the tests'
# schema 11 reference, which deflated against them and the customer's id).
_FACT_WORDS = _FIELD_NAMES + _DICTIONARY

# The head as ``encode`` writes it (pydantic's field order): event_id and type, then the
# schema version's digits, then customer_id and occurred_at.
_HEAD = re.compile(
    rb'\{"event_id":"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",'
    rb'"type":"([A-Za-z0-9_]{1,100})","schema_version":([0-9]{1,9})'
    rb',"customer_id":("(?:[^"\\]|\\.)*"),"occurred_at":"([^"]{1,64})"'
)


def _head_before(event_id: str, type_: str) -> bytes:
    return (
        b'{"event_id":"'
        + event_id.encode()
        + b'","type":"'
        + type_.encode()
        + b'","schema_version":'
    )


def _head_after(customer_id: str, at: int) -> bytes:
    when = from_micros(at)
    text = when.strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{when.microsecond:06d}" if when.microsecond else ""
    )
    return (
        b',"customer_id":'
        + json.dumps(customer_id, ensure_ascii=False).encode()
        + b',"occurred_at":"'
        + text.encode()
        + b'Z"'
    )


def _body(raw: bytes) -> bytes:
    """What of ``raw`` is stored: from the schema version on when the head is the one the
    row's columns give back exactly, else all of it (a body never starts with a digit then,
    a stripped one always does)."""
    plain = _PLAIN_HEAD.match(raw)
    if plain is not None:
        # The head as ``encode`` writes it (a plain id, UTC with Z): its round trip through
        # the columns is known to give it back, without building it again to compare (that
        # was half of what storing a fact cost). One match, not ``_HEAD``'s and then a
        # check of its groups: 2.0 -> 1.25 us a fact.
        try:
            datetime.fromisoformat(plain.group(2).decode())  # a real date and time
        except ValueError:
            return raw
        return raw[plain.start(1) : plain.end(1)] + raw[plain.end() :]
    # Any other head is built again from what the columns would give and compared.
    m = _HEAD.match(raw)
    return raw if m is None else _slow_body(raw, m)


# A customer id JSON writes as it is (no escapes), and an occurred_at as _head_after writes
# it: a four-digit year from 1000 (strftime's %Y pads no further), microseconds only when
# there are some, Z.
_PLAIN_ID = re.compile(rb'"[^"\\\x00-\x1f]*"')
_PLAIN_AT = re.compile(
    rb"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.(?!000000)[0-9]{6})?Z"
)


# ``_HEAD`` whose customer id matches ``_PLAIN_ID`` and whose occurred_at matches
# ``_PLAIN_AT``, as one pattern: ``_HEAD``'s groups are unambiguous (a JSON string ends at
# its first unescaped quote, occurred_at at the next quote), so this matches exactly when
# ``_body``'s short cut below applies, with the schema version and occurred_at as groups.
_PLAIN_HEAD = re.compile(
    rb'\{"event_id":"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",'
    rb'"type":"[A-Za-z0-9_]{1,100}","schema_version":([0-9]{1,9})'
    rb',"customer_id":' + _PLAIN_ID.pattern + rb',"occurred_at":"(' + _PLAIN_AT.pattern + rb')"'
)


def _slow_body(raw: bytes, m: re.Match[bytes]) -> bytes:
    event_id, type_, _, customer_id, occurred = (g.decode() for g in m.groups())
    try:
        at = at_micros(datetime.fromisoformat(occurred))
        cid = json.loads(customer_id)
    except (ValueError, OverflowError):
        return raw
    if not isinstance(cid, str) or _head_after(cid, at) != raw[m.end(3) : m.end()]:
        return raw
    if _head_before(event_id, type_) != raw[: m.start(3)]:
        return raw
    return raw[m.start(3) : m.end(3)] + raw[m.end() :]


def pack(raw: bytes, *, customer_id: str) -> bytes:
    """``raw`` (an envelope as ``encode`` writes it) as stored: without the head its row
    holds as columns, compressed against the facts' dictionary, ``customer_id`` (the ids in
    a body mostly repeat it: orders, cases, e-mail addresses, serials) as one marker byte.
    The row must hold the envelope's own event_id, type, customer_id and at (its
    occurred_at in microseconds): :func:`unpack` needs them."""
    body = _body(raw)
    marked = _marked(body, customer_id.encode())
    compressor = _contexts().compressor
    if marked is None:
        return _UNMARKED + compressor.compress(body)
    return compressor.compress(marked)


# The customer id's stand-in in a stored body: a byte JSON only ever holds escaped.
_MARK = b"\x01"
# Leads a stored fact whose body held the marker itself (not JSON as ``encode`` writes it):
# its body is compressed as it is. A magicless zstd frame starts with its header's
# descriptor, whose reserved bit 3 is always 0: never this byte.
_UNMARKED = b"\xff"


def _marked(body: bytes, customer_id: bytes) -> bytes | None:
    """``body`` with ``customer_id`` replaced by the marker, or None when the body holds the
    marker already (replacing it back would not give the body again)."""
    if _MARK in body:
        return None
    return body.replace(customer_id, _MARK) if customer_id else body


# zstd's settings for bodies of a few hundred bytes behind a 4 KB dictionary, all given (a
# library's level tables may change; these are what was measured): a window that holds the
# dictionary and the body, tables of 16 K entries (a thread's contexts ~120 KB), lazy matching of 4
# bytes and more (3: larger and slower). No magic number, checksum nor dictionary id: the
# row's column says what it is; the content size is 1 byte of the header up to 255 bytes.
_PARAMETERS = zstandard.ZstdCompressionParameters(
    format=zstandard.FORMAT_ZSTD1_MAGICLESS,
    window_log=14,
    hash_log=14,
    chain_log=14,
    search_log=4,
    min_match=4,
    target_length=16,
    strategy=zstandard.STRATEGY_LAZY2,
    write_content_size=True,
    write_checksum=False,
    write_dict_id=False,
)


@functools.cache
def _dictionary() -> zstandard.ZstdCompressionDict:
    words = zstandard.ZstdCompressionDict(FACT_DICTIONARY, dict_type=zstandard.DICT_TYPE_FULLDICT)
    words.precompute_compress(compression_params=_PARAMETERS)  # digested once, not per fact
    # Its decompression side is digested on first use too: once here, before any thread
    # shares it, not by two threads' first reads at once.
    decompressor = zstandard.ZstdDecompressor(
        dict_data=words, format=zstandard.FORMAT_ZSTD1_MAGICLESS
    )
    compressor = zstandard.ZstdCompressor(dict_data=words, compression_params=_PARAMETERS)
    decompressor.decompress(compressor.compress(_MARK))
    return words


class _Contexts:
    """zstd's contexts, reused fact after fact; one per thread (a context is not thread
    safe, and the service reads from several)."""

    __slots__ = ("compressor", "decompressor")

    def __init__(self) -> None:
        words = _dictionary()
        self.compressor = zstandard.ZstdCompressor(dict_data=words, compression_params=_PARAMETERS)
        self.decompressor = zstandard.ZstdDecompressor(
            dict_data=words, format=zstandard.FORMAT_ZSTD1_MAGICLESS
        )


_THREAD = threading.local()


def _contexts() -> _Contexts:
    try:
        return _THREAD.contexts  # type: ignore[no-any-return]
    except AttributeError:  # this thread's first fact: made on first use, not at import
        _THREAD.contexts = _Contexts()
        return _THREAD.contexts  # type: ignore[no-any-return]


def unpack(
    stored: bytes, *, event_id: bytes | str | uuid.UUID, type: str, customer_id: str, at: int
) -> bytes:
    """The envelope ``pack`` stored, whole again, from the row's columns."""
    stored = bytes(stored)
    decompressor = _contexts().decompressor
    if stored[:1] == _UNMARKED:
        body = decompressor.decompress(stored[1:])
    else:
        body = decompressor.decompress(stored).replace(_MARK, customer_id.encode())
    if not body[:1].isdigit():
        return body
    digits = len(body) - len(body.lstrip(b"0123456789"))
    if isinstance(event_id, bytes):
        event_id = uuid.UUID(bytes=event_id)
    return (
        _head_before(str(event_id), type)
        + body[:digits]
        + _head_after(customer_id, int(at))
        + body[digits:]
    )


# deflate's hash table for its matches: 2^(memLevel + 7) entries, zeroed for every summary.
# Its default (9 for summaries) sized it for megabytes; for a few dozen bytes behind a 1 KB
# dictionary 5 finds the same matches (the same bytes for every summary of the bench
# workload) and saves 0.7 us a summary. Inflating needs no such setting.
_MEM_LEVEL = 5


# The words of the timeline's one-line summaries (domain/journey.py writes them), the most
# common last. A summary is deflated against them and its customer's id, which the row holds
# as a column and most ids in a summary repeat (orders, cases, e-mail addresses): a
# 44-character summary is stored in ~15 bytes, where PostgreSQL's row would hold all 45.
_SUMMARY_DICTIONARY = (
    b"Signup request via Identity unlinked Case handed over escalated Reopened: Feedback "
    b"requested Claim approved rejected Proof of purchase received Pickup of booked failed: "
    b"Missed promise acknowledged by Serial corrected , awaits the customer's confirmation "
    b"Asked the customer to confirm serial Customer confirmed serial Replacement shipped "
    b"Return of received Goodwill: Known defect registered: Proactive outreach about "
    b"Payment for order approved: cancelled by The carrier tried to deliver No first reply "
    b"by : target missed Promise withdrawn by Promise broken: (erased) Review answered by "
    b"Public review on Refund of issued Rated the service /5 Promise kept late: deliver "
    b"order Promise by Delivery of rescheduled delivered at Repair #1 of completed "
    b"Resolved: Automatic acknowledgement sent (not an answer) chat email phone web warranty "
    b"claim about complaint: inquiry: Reply by agent (Support , ) via Order handed to "
    b"Identity linked (unverified claim): (verified): email name phone "
)


def _summary_words(customer_id: str) -> bytes:
    return _SUMMARY_DICTIONARY + customer_id.encode()


def pack_summary(summary: str, customer_id: str) -> bytes:
    """A timeline summary as stored: deflated against the summaries' words and the id of
    the customer whose row it is in (:func:`unpack_summary` needs the same id)."""
    c = zlib.compressobj(
        9, zlib.DEFLATED, -15, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, _summary_words(customer_id)
    )
    return c.compress(summary.encode()) + c.flush()


def unpack_summary(stored: bytes, customer_id: str) -> str:
    d = zlib.decompressobj(-15, _summary_words(customer_id))
    return (d.decompress(bytes(stored)) + d.flush()).decode()


# Each touchpoint type's number in the store (touchpoints.type, a SMALLINT: 2 bytes where
# its name took 15). Part of the store's format: a new type is appended, none is ever
# reordered or removed (tests/unit/test_store_size.py checks every catalogue type has one).
TYPE_CODES: tuple[str, ...] = (
    "AutoAcknowledgementSent",
    "BreachAcknowledged",
    "CaseHandedOff",
    "CaseReopened",
    "CaseResolved",
    "ClaimDecided",
    "ComplaintFiled",
    "Delivered",
    "DeliveryAttempted",
    "DeliveryFailed",
    "DeliveryRescheduled",
    "ErasureRequested",
    "FeedbackRequested",
    "GoodwillGranted",
    "IdentityLinked",
    "IdentityUnlinked",
    "InquiryReceived",
    "KnownDefectRegistered",
    "OrderCancelled",
    "OrderPlaced",
    "OrderShipped",
    "PaymentApproved",
    "PickupBooked",
    "PickupCompleted",
    "PickupFailed",
    "ProactiveOutreachSent",
    "PromiseBroken",
    "PromiseKept",
    "PromiseMade",
    "PromiseWithdrawn",
    "ProofOfPurchaseReceived",
    "PublicReviewPosted",
    "RefundIssued",
    "RepairCompleted",
    "ReplacementShipped",
    "ReplyOverdue",
    "ReplySent",
    "ReturnReceived",
    "ReviewAnswered",
    "SatisfactionRated",
    "SerialConfirmationRequested",
    "SerialNumberConfirmed",
    "SerialNumberCorrected",
    "SignupRequested",
)
_TYPE_CODE = {name: code for code, name in enumerate(TYPE_CODES, 1)}


def type_code(name: str) -> int:
    """The number ``name`` is stored as."""
    code = _TYPE_CODE.get(name)
    if code is None:  # a catalogue type added without a number: a developer's error
        raise ValueError(f"touchpoint type {name!r} has no number: add it to TYPE_CODES")
    return code


def type_name(code: int) -> str:
    return TYPE_CODES[int(code) - 1]


def id_bytes(event_id: uuid.UUID | str) -> bytes:
    return (event_id if isinstance(event_id, uuid.UUID) else uuid.UUID(event_id)).bytes


def id_text(stored: bytes) -> str:
    return str(uuid.UUID(bytes=bytes(stored)))


def hash_bytes(digest: str) -> bytes:
    """``sha256:<32 hex>`` (content_hash) as its 16 bytes."""
    return bytes.fromhex(digest.removeprefix("sha256:"))


def hash_text(stored: bytes) -> str:
    return "sha256:" + bytes(stored).hex()


def at_micros(at: datetime) -> int:
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)
