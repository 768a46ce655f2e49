"""Personal fields and their sealing: crypto-shredding (ARCHITECTURE decision 10).

The catalogue marks each field that holds what identifies a customer or what was said
(names, e-mails, phones, addresses, free text, form fields) with :data:`PERSONAL`. Before a
touchpoint reaches the log of record each such value is *sealed*: encrypted with the
customer's own key (AES-256-GCM) and replaced by a small JSON object (the wire format, see
docs/events.md "Personal fields")::

    {"enc": "v1", "kid": "<key id>", "iv": "<base64 nonce>", "ct": "<base64 ciphertext+tag>"}

The additional authenticated data binds the ciphertext to its event and field, so a sealed
value cannot be moved into another event or field. The key itself is never on the log: a
key store holds it (projections/keys.py), and deleting it makes every sealed value of that
customer unreadable everywhere at once — the log, its replicas, the dead letters.

Opening is the reverse; a value whose key is gone (or that does not authenticate) opens as
:data:`ERASED`. Pure: no I/O here (the keys come in as values; the nonce is random).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel

from domain.catalogue import PERSONAL, SEALED_SCHEMA, SEALED_VERSION, TouchpointData

__all__ = [
    "ERASED",
    "SEALED_SCHEMA",
    "SEALED_VERSION",
    "UNOPENED",
    "CustomerKey",
    "KeyLookup",
    "carries_personal_values",
    "has_personal_values",
    "is_sealed",
    "new_key",
    "open_bytes",
    "open_data",
    "personal_fields",
    "seal_bytes",
    "seal_data",
    "sealed_data_or_none",
    "sealed_kids",
]

ERASED: Final = "(erased)"
"""What a personal value reads as once its customer's key is gone."""
UNOPENED: Final = "(encrypted)"
"""What a personal value reads as when the reader was given no keys at all."""

_KEY_BYTES = 32  # AES-256
_NONCE_BYTES = 12  # the GCM standard nonce
# A sealed value is small and fixed in shape; anything else in its place is not one.
_SEALED_KEYS = frozenset({"enc", "kid", "iv", "ct"})


@dataclass(frozen=True)
class CustomerKey:
    """One customer's data key: its id (on the log, in every sealed value) and its bytes
    (never on the log)."""

    customer_id: str
    kid: str
    key: bytes

    def __repr__(self) -> str:  # a key must never reach a log line or a traceback
        return f"CustomerKey(customer_id={self.customer_id!r}, kid={self.kid!r})"


def new_key(customer_id: str) -> CustomerKey:
    """A fresh random key for ``customer_id``."""
    kid = "k" + base64.urlsafe_b64encode(os.urandom(12)).decode().rstrip("=")
    return CustomerKey(customer_id, kid, AESGCM.generate_key(bit_length=_KEY_BYTES * 8))


KeyLookup = Callable[[str, str], bytes | None]
"""(customer id, key id) -> the key's bytes, or None when it is gone."""


@functools.cache
def personal_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of ``model`` the catalogue marks personal, in declaration order."""
    return tuple(name for name, info in model.model_fields.items() if PERSONAL in info.metadata)


def is_sealed(value: object) -> bool:
    return (
        isinstance(value, dict)
        and value.get("enc") == SEALED_VERSION
        and set(value) == (_SEALED_KEYS)
    )


def _values(data: Mapping[str, Any], model: type[TouchpointData]) -> Iterator[tuple[str, Any]]:
    """(path, value) of each personal value in a body: a field, or each value of a mapping
    field (a form's fields: the names are the form's, the values the customer's)."""
    for name in personal_fields(model):
        value = data.get(name)
        if isinstance(value, dict) and not is_sealed(value):
            for key, inner in value.items():
                yield f"{name}/{key}", inner
        elif value is not None:
            yield name, value


class _Nonces:
    """Random GCM nonces read from the OS a few thousand at a time: a system call per
    sealed value cost more than the encryption (and let other threads take the GIL each
    time). A nonce is public (it is the ``iv`` on the log); what matters is that none is
    used twice: each is handed out once, under a lock, and a forked child starts with an
    empty pool, never its parent's."""

    _BATCH = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0

    def take(self) -> bytes:
        with self._lock:
            if self._at + _NONCE_BYTES > len(self._pool):
                self._pool, self._at = os.urandom(_NONCE_BYTES * self._BATCH), 0
            nonce = self._pool[self._at : self._at + _NONCE_BYTES]
            self._at += _NONCE_BYTES
            return nonce

    def forget(self) -> None:
        self._lock = threading.Lock()
        self._pool, self._at = b"", 0


_NONCES = _Nonces()
os.register_at_fork(after_in_child=_NONCES.forget)


def _aad(event_id: str, path: str) -> bytes:
    return f"journey/{SEALED_VERSION}|{event_id}|{path}".encode()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _replace(data: dict[str, Any], path: str, value: Any) -> None:
    name, _, key = path.partition("/")
    if key:
        data[name] = {**data[name], key: value}
    else:
        data[name] = value


def seal_data(
    data: Mapping[str, Any], model: type[TouchpointData], key: CustomerKey, event_id: str
) -> dict[str, Any]:
    """``data`` (plain JSON of a body) with every personal string sealed with ``key``."""
    return sealed_data_or_none(data, model, key, event_id) or dict(data)


def sealed_data_or_none(
    data: Mapping[str, Any], model: type[TouchpointData], key: CustomerKey, event_id: str
) -> dict[str, Any] | None:
    """:func:`seal_data`, or None when ``data`` has no personal value to seal (what
    :func:`has_personal_values` says, found in the same walk)."""
    out: dict[str, Any] | None = None
    cipher = None
    for path, value in list(_values(data, model)):
        if not isinstance(value, str):
            continue  # already sealed, or not a value the schema allows: left to validation
        if out is None or cipher is None:
            out, cipher = dict(data), AESGCM(key.key)
        nonce = _NONCES.take()
        ct = cipher.encrypt(nonce, value.encode("utf-8"), _aad(event_id, path))
        sealed = {"enc": SEALED_VERSION, "kid": key.kid, "iv": _b64(nonce), "ct": _b64(ct)}
        _replace(out, path, sealed)
    return out


def has_personal_values(data: Mapping[str, Any], model: type[TouchpointData]) -> bool:
    return any(isinstance(v, str) for _, v in _values(data, model))


def carries_personal_values(body: TouchpointData) -> bool:
    """:func:`has_personal_values` of a validated body, read from its attributes (its
    personal fields hold a string, a mapping of strings, or None) without dumping it."""
    for name in personal_fields(type(body)):  # most types: none at all
        value = getattr(body, name)
        if isinstance(value, str):
            return True
        # a mapping (a form's fields): its values, unless it is itself a sealed value
        if (
            isinstance(value, dict)
            and not is_sealed(value)
            and any(isinstance(inner, str) for inner in value.values())
        ):
            return True
    return False


def sealed_kids(data: Mapping[str, Any], model: type[TouchpointData]) -> set[str]:
    return {v["kid"] for _, v in _values(data, model) if is_sealed(v)}


def open_data(
    data: Mapping[str, Any],
    model: type[TouchpointData],
    customer_id: str,
    event_id: str,
    keys: KeyLookup | None,
) -> dict[str, Any]:
    """``data`` with every sealed value opened: the plain text, or :data:`ERASED` when its
    key is gone (or it does not authenticate: tampered, or moved from another event),
    :data:`UNOPENED` when ``keys`` is None. A plain value passes as it is."""
    names = personal_fields(model)
    if not any(isinstance(data.get(name), dict) for name in names):
        return dict(data)  # nothing sealed (the common case): no walk
    out: dict[str, Any] | None = None
    for path, value in list(_values(data, model)):
        if not is_sealed(value):
            continue
        if out is None:
            out = dict(data)
        _replace(out, path, _open(value, customer_id, event_id, path, keys))
    return out if out is not None else dict(data)


def _open(
    sealed: dict[str, Any], customer_id: str, event_id: str, path: str, keys: KeyLookup | None
) -> str:
    if keys is None:
        return UNOPENED
    key = keys(customer_id, str(sealed["kid"]))
    if key is None:
        return ERASED
    try:
        nonce = base64.b64decode(str(sealed["iv"]), validate=True)
        ct = base64.b64decode(str(sealed["ct"]), validate=True)
        plain = AESGCM(key).decrypt(nonce, ct, _aad(event_id, path))
        return plain.decode("utf-8")
    except (InvalidTag, ValueError, binascii.Error, UnicodeDecodeError):
        return ERASED


def seal_bytes(plain: bytes, key: CustomerKey, label: str) -> bytes:
    """A whole payload sealed with ``key`` (a dead letter that cannot be parsed): compact
    JSON ``{"enc": "v1", "kid", "iv", "ct"}`` with ``label`` as the authenticated data."""
    nonce = os.urandom(_NONCE_BYTES)
    ct = AESGCM(key.key).encrypt(nonce, plain, label.encode())
    sealed = {"enc": SEALED_VERSION, "kid": key.kid, "iv": _b64(nonce), "ct": _b64(ct)}
    return json.dumps(sealed, separators=(",", ":")).encode()


def open_bytes(sealed: bytes, key: bytes, label: str) -> bytes | None:
    """The payload :func:`seal_bytes` sealed, or None when it does not open with ``key``."""
    try:
        obj = json.loads(sealed)
        if not is_sealed(obj):
            return None
        nonce = base64.b64decode(obj["iv"], validate=True)
        ct = base64.b64decode(obj["ct"], validate=True)
        return AESGCM(key).decrypt(nonce, ct, label.encode())
    except (InvalidTag, ValueError, binascii.Error):
        return None
