"""Short cuts of the fold and the touchpoint row (issue 10, the store's CPU a touchpoint):
each gives what the long way gives."""

from __future__ import annotations

import ast
import inspect
import random
import uuid
from datetime import UTC, datetime

from domain import catalogue as c
from domain import journey as journey_module
from domain.envelope import Touchpoint, decode, encode, event_id_bytes
from domain.journey import _SAYING, fact_order, said
from journey.stories import STORIES, all_touchpoints

_RNG = random.Random(1202)  # noqa: S311 -- reproducible ids, not secrets


def _ids() -> list[uuid.UUID]:
    special = [uuid.UUID(int=0), uuid.UUID(int=(1 << 128) - 1), uuid.UUID(int=1), uuid.uuid1()]
    named = [uuid.uuid5(uuid.NAMESPACE_DNS, f"n{n}") for n in range(50)]
    return special + named + [uuid.UUID(int=_RNG.getrandbits(128)) for _ in range(2000)]


_T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _story_touchpoints() -> list[Touchpoint]:
    return all_touchpoints(_T0)


def test_the_event_id_read_from_the_envelope_is_str_of_its_uuid() -> None:
    """``fact_order``, the timeline's entries and the store key a touchpoint by the event
    id read from ``encode``'s bytes: the very text ``str(UUID)`` gives, for any UUID."""
    base = _story_touchpoints()[0]
    for event_id in _ids():
        tp = base.model_copy(update={"event_id": event_id})
        raw = encode(tp)
        assert event_id_bytes(tp, raw).decode() == str(event_id)
        assert fact_order(tp, raw) == fact_order(tp)
        again = decode(raw.replace(str(event_id).encode(), str(event_id).upper().encode()))
        assert fact_order(again, encode(again)) == fact_order(tp)


def test_every_story_orders_its_facts_the_same_from_their_bytes() -> None:
    for tp in _story_touchpoints():
        assert fact_order(tp, encode(tp)) == fact_order(tp)


def _said_long_way(d: c.TouchpointData) -> str | None:
    """``said`` as it was: the cases, each checked in turn."""
    match d:
        case c.InquiryReceived():
            return d.body
        case c.ComplaintFiled():
            return d.description
        case c.ReplySent():
            return d.body
        case c.SignupRequested():
            return "\n".join(f"{key}: {value}" for key, value in d.fields.items()) or None
        case c.PublicReviewPosted():
            return "\n".join(t for t in (d.title, d.text) if t) or None
        case c.ReviewAnswered():
            return d.text
    return None


def test_said_checks_first_for_the_types_its_cases_name() -> None:
    source = inspect.getsource(said)
    cases = {
        node.pattern.cls.attr
        for node in ast.walk(ast.parse(source.lstrip()))
        if isinstance(node, ast.match_case) and isinstance(node.pattern, ast.MatchClass)
        if isinstance(node.pattern.cls, ast.Attribute)
    }
    assert cases == {t.__name__ for t in _SAYING}
    for tp in _story_touchpoints():
        assert said(tp.data) == _said_long_way(tp.data)


def test_a_journey_folded_with_its_envelopes_equals_one_folded_without() -> None:
    for story in STORIES.values():
        tps = story.touchpoints(_T0)
        with_raw, without = journey_module.Journey(story.focus), journey_module.Journey(story.focus)
        for tp in tps:
            with_raw.apply(tp, encode(tp))
            without.apply(tp)
        assert with_raw == without
        assert [e.event_id for e in with_raw.timeline] == [e.event_id for e in without.timeline]
        assert [k for k, _ in with_raw.facts] == [k for k, _ in without.facts]
