"""Upcasting: old versions of a touchpoint body are lifted to the current one on read.

The log is never rewritten. An upcaster takes the JSON body of version N (already valid
against the version-N model) and returns the body of version N+1. Chains run until the
current version is reached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["UPCASTERS", "upcast", "upcaster"]

Body = dict[str, Any]
Upcaster = Callable[[Body], Body]

# (type name, from version) -> function returning the body of from_version + 1
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(type_name, from_version)] = fn
        return fn

    return register


def upcast(type_name: str, version: int, body: Body, target: int) -> Body:
    """Return ``body`` lifted from ``version`` to ``target``. Raises KeyError when a step
    of the chain is missing (a programming error: every retired version needs one)."""
    while version < target:
        body = UPCASTERS[(type_name, version)](dict(body))
        version += 1
    return body


@upcaster("ComplaintFiled", 1)
def _complaint_v1_to_v2(body: Body) -> Body:
    # v1 called the serial plain "serial_number"; v2 makes explicit that it is what the
    # customer gave (possibly wrong), so a correction can sit beside it. v1 had no notion
    # of a warranty claim: absent means "not claimed", which is what v1 producers meant.
    serial = body.pop("serial_number", None)
    body["serial_number_as_given"] = serial
    body.setdefault("warranty_claim", False)
    return body


@upcaster("PublicReviewPosted", 1)
def _review_v1_to_v2(body: Body) -> Body:
    # v1 called the stars "rating"; v2 calls them "score", as SatisfactionRated does, so
    # one name means one scale. v1 had no title, order or invitation: absent.
    rating = body.pop("rating", None)
    body["score"] = rating
    return body


@upcaster("KnownDefectRegistered", 1)
def _defect_v1_to_v2(body: Body) -> Body:
    # v2 only changes the key (the product, not the registering organisation): the body is
    # the same, and who registered it was the v1 key, which a body upcaster cannot see.
    return body
