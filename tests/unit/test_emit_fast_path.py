"""The emit path's shortcuts change nothing: the common-case parse accepts and refuses
exactly what the step-by-step parse does (with the same error), ``encode`` gives the bytes
the Envelope gave, and the records ``Emitter.emit_text`` makes from the bytes it already
had are the records it made before (issue 10, emit)."""

from __future__ import annotations

import gc
import json
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.log import OutgoingMessage, Position
from domain.bounds import Bounds
from domain.catalogue import CATALOGUE
from domain.envelope import (
    Envelope,
    Touchpoint,
    _parse_full,
    decode,
    encode,
    encode_sealed,
    loads,
    parse_envelope,
)
from domain.errors import InvalidEvent
from domain.personal import new_key, seal_data
from journey.emitter import BatchError, Emitter, parse_batch
from journey.schema import example_envelope
from journey.synthetic import generate_touchpoints
from projections.keys import CustomerKeys
from tests import bounds_cases
from tests.unit.test_emit_parsing import CASES

NOW = datetime(2026, 12, 1, tzinfo=UTC)  # after every example envelope


def _outcome(parse: Any, obj: Any, bounds: Bounds | None, keys: Any = None) -> tuple[Any, ...]:
    try:
        tp = parse(obj, bounds, keys)
    except InvalidEvent as exc:
        return ("refused", type(exc).__name__, exc.reason, exc.message, exc.field)
    assert type(tp) is Touchpoint
    return ("accepted", tp, tp.model_dump(), encode(tp))


def _same_both_ways(obj: Any, bounds: Bounds | None = None, keys: Any = None) -> tuple[Any, ...]:
    fast = _outcome(parse_envelope, obj, bounds, keys)
    assert fast == _outcome(_parse_full, obj, bounds, keys)
    return fast


def _old_encode(tp: Touchpoint) -> bytes:
    """What ``encode`` was: through an Envelope (validated) of the body's JSON."""
    return tp.to_envelope().model_dump_json(exclude_none=True).encode()


def _touchpoints() -> list[Touchpoint]:
    return generate_touchpoints(3_000, 60, seed=11, start=NOW - timedelta(days=400))


# --------------------------------------------------------------------------- accepted


def test_every_catalogue_type_and_version_parses_the_same_both_ways() -> None:
    # old versions are upcast (the full path), current ones take the short one: each the same
    for type_name, version in sorted(CATALOGUE):
        env = example_envelope(type_name, version)
        outcome = _same_both_ways(env, Bounds(now=NOW))
        assert outcome[0] == "accepted", (type_name, version, outcome)


def test_generated_touchpoints_parse_and_encode_the_same_both_ways() -> None:
    for tp in _touchpoints():
        raw = encode(tp)
        assert raw == _old_encode(tp)
        outcome = _same_both_ways(json.loads(raw), Bounds(now=NOW))
        assert outcome == ("accepted", tp, tp.model_dump(), raw)


def test_sealed_values_open_the_same_both_ways() -> None:
    tps = _touchpoints()
    keys = {tp.customer_id: new_key(tp.customer_id) for tp in tps}
    by_kid = {k.kid: k.key for k in keys.values()}

    def lookup(_customer: str, kid: str) -> bytes | None:
        return by_kid.get(kid)

    sealed = 0
    for tp in tps:
        raw = encode_sealed(tp, keys[tp.customer_id])
        sealed += raw != encode(tp)
        obj = json.loads(raw)
        for given_keys in (lookup, None, lambda _c, _k: None):
            _same_both_ways(obj, Bounds(now=NOW), given_keys)
        assert parse_envelope(obj, Bounds(now=NOW), lookup) == tp
        # an upper-case event id is the same id: the values still open
        shouted = {**obj, "event_id": obj["event_id"].upper()}
        assert _same_both_ways(shouted, None, lookup)[1] == tp
    assert sealed > 100


# --------------------------------------------------------------------------- refused


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_bad_event_is_refused_the_same_both_ways(name: str) -> None:
    obj = loads(CASES[name].text) if name != "not JSON" else None
    assert _same_both_ways(obj, Bounds(now=NOW))[0] == "refused"


@pytest.mark.parametrize("name", sorted(bounds_cases.cases()))
def test_each_bound_is_refused_the_same_both_ways(name: str) -> None:
    case = bounds_cases.cases()[name]
    try:
        obj = loads(case.text)
    except InvalidEvent:
        return  # refused before any parse (nesting): nothing to compare
    outcome = _same_both_ways(obj, Bounds(now=datetime.now(UTC)))
    if case.reason != "too_large":  # the size is judged on the encoded bytes, after parsing
        assert outcome[0] == "refused" and outcome[2] == case.reason, outcome


def test_a_product_fact_under_a_customer_key_is_refused_the_same_both_ways() -> None:
    keyed = [(t, v) for (t, v), m in CATALOGUE.items() if m.keyed_by_product]
    assert keyed
    for type_name, version in keyed:
        env = {**example_envelope(type_name, version), "customer_id": "cust-1"}
        assert _same_both_ways(env, Bounds(now=NOW))[0] == "refused"


_hostile = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(
        [
            "9999-12-31T23:59:59Z",
            "2026-05-31T10:00:00Z",
            "2026-05-31T10:00:00",
            "1969-12-31T23:59:59Z",
            "PromiseMade",
            "InquiryReceived",
            "FEB1C1E2-5B6D-4E7F-8A9B-0C1D2E3F4A5B",
            "{feb1c1e2-5b6d-4e7f-8a9b-0c1d2e3f4a5b}",
            "product:sku-1",
            " c-1",
            1,
            2,
            "1",
            1.0,
            [],
            {},
            {"enc": "v1", "kid": "k", "iv": "AAAA", "ct": "AAAA"},
        ]
    ),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(sorted(CATALOGUE)),
    changes=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "event_id",
                    "type",
                    "schema_version",
                    "customer_id",
                    "occurred_at",
                    "source",
                    "correlation_id",
                    "data",
                    "extra",
                    "data.product",
                    "data.what",
                    "data.case_id",
                    "data.fields",
                    "data.description",
                    "data.extra",
                ]
            ),
            _hostile,
        ),
        max_size=3,
    ),
    drop=st.sampled_from([None, "source", "data", "type", "event_id"]),
)
def test_mutated_envelopes_get_the_same_answer_both_ways(
    base: tuple[str, int], changes: list[tuple[str, Any]], drop: str | None
) -> None:
    env: dict[str, Any] = json.loads(json.dumps(example_envelope(*base)))
    for key, value in changes:
        if key.startswith("data.") and isinstance(env.get("data"), dict):
            env["data"][key[5:]] = value
        elif not key.startswith("data."):
            env[key] = value
    if drop is not None:
        env.pop(drop, None)
    _same_both_ways(env, Bounds(now=NOW))
    _same_both_ways(env, None)


# --------------------------------------------------------------------------- the emitter


class _RecordingLog:
    """A log that keeps what it is given (the records themselves are compared here; the
    Kafka adapter's own tests produce to a real broker)."""

    def __init__(self) -> None:
        self.records: list[OutgoingMessage] = []

    def ensure_topics(self, topics: Sequence[str], partitions: int) -> None:
        pass

    def produce(self, topic: str, messages: Sequence[OutgoingMessage]) -> list[Position]:
        start = len(self.records)
        self.records.extend(messages)
        return [Position(topic, 0, start + i) for i in range(len(messages))]


def _emitter(tmp_path: Path) -> tuple[Emitter, _RecordingLog, CustomerKeys]:
    log = _RecordingLog()
    keys = CustomerKeys(tmp_path / "views.db")
    return Emitter(log, topic="t", source="test", keys=keys), log, keys  # type: ignore[arg-type]


def test_emit_text_makes_the_records_it_made_before(tmp_path: Path) -> None:
    tps = _touchpoints()
    text = "\n".join(encode(tp).decode() for tp in tps)
    emitter, log, keys = _emitter(tmp_path)
    emitter.emit_text(text)
    assert len(log.records) == len(tps)
    for tp, record in zip(tps, log.records, strict=True):
        assert record.key == tp.customer_id.encode()
        assert dict(record.headers) == {
            "journey-type": tp.type.encode(),
            "journey-event-id": str(tp.event_id).encode(),
        }
        key = keys.for_writing({tp.customer_id})[tp.customer_id]
        if record.value == encode(tp):
            # nothing to seal: the bytes are the plain envelope, as encode_sealed gives them
            assert encode_sealed(tp, key) == record.value
            continue
        # sealed: the same envelope with each personal value sealed with the customer's key
        wire = json.loads(record.value)
        plain = json.loads(encode(tp))
        assert {k: v for k, v in wire.items() if k != "data"} == {
            k: v for k, v in plain.items() if k != "data"
        }
        opened = decode(record.value, keys=lambda _c, kid, k=key: k.key if kid == k.kid else None)
        assert opened == tp
        assert set(wire["data"]) == set(plain["data"])
    keys.close()


def test_a_bad_line_still_produces_nothing_and_names_the_line(tmp_path: Path) -> None:
    tps = _touchpoints()[:50]
    lines = [encode(tp).decode() for tp in tps]
    lines[30] = lines[30].replace('"schema_version":1', '"schema_version":"1"')
    emitter, log, keys = _emitter(tmp_path)
    with pytest.raises(BatchError) as caught:
        emitter.emit_text("\n".join(lines), "batch.jsonl")
    assert caught.value.line == 31 and caught.value.error.field == "schema_version"
    assert log.records == []
    keys.close()


def test_a_multi_line_document_is_still_one_value_and_deep_ones_are_refused() -> None:
    env = example_envelope("PromiseMade", 1)
    pretty = json.dumps(env, indent=2)
    assert len(parse_batch(pretty, bounds=Bounds(now=NOW))) == 1
    assert len(parse_batch(json.dumps([env, env], indent=1), bounds=Bounds(now=NOW))) == 2
    deep = json.dumps({**env, "data": "@"}, indent=1).replace('"@"', "[" * 40 + "]" * 40)
    with pytest.raises(BatchError) as caught:
        parse_batch(deep, bounds=Bounds(now=NOW))
    assert caught.value.error.reason == "too_deep" and caught.value.line == 1


def test_the_collector_setting_is_restored_after_a_batch(tmp_path: Path) -> None:
    before = gc.get_threshold()
    emitter, _log, keys = _emitter(tmp_path)
    text = "\n".join(encode(tp).decode() for tp in _touchpoints()[:200])
    emitter.emit_text(text)
    assert gc.get_threshold() == before
    with pytest.raises(BatchError):
        parse_batch(text + "\n{", bounds=Bounds(now=NOW))
    assert gc.get_threshold() == before
    # threads emitting at once leave it as they found it, whatever their order
    errors: list[BaseException] = []

    def emit() -> None:
        try:
            for _ in range(3):
                parse_batch(text, bounds=Bounds(now=NOW))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=emit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert gc.get_threshold() == before
    assert gc.isenabled()
    keys.close()


def test_the_collector_is_off_while_a_batch_is_built_and_on_again_after(tmp_path: Path) -> None:
    """Every object made while a batch is validated, sealed and produced lives until the
    broker acknowledged it: each young-generation pass scanned them all again, for nothing
    (~5 µs an envelope at a threshold of 50,000; a sixth of Log.produce). While a batch is
    built and produced the collector is off; it is on again after."""
    text = "\n".join(encode(tp).decode() for tp in _touchpoints())
    emitter, log, keys = _emitter(tmp_path)
    seen: dict[str, bool] = {}
    for_writing, produce = keys.for_writing, log.produce

    def keys_for_writing(customer_ids: Any) -> Any:  # called while the batch is built
        seen["building"] = gc.isenabled()
        return for_writing(customer_ids)

    def produce_seeing(topic: str, messages: Sequence[OutgoingMessage]) -> list[Position]:
        seen["producing"] = gc.isenabled()
        return produce(topic, messages)

    keys.for_writing = keys_for_writing  # type: ignore[method-assign]
    log.produce = produce_seeing  # type: ignore[method-assign]
    assert gc.isenabled()
    emitter.emit_text(text)
    assert seen == {"building": False, "producing": False}
    assert len(log.records) == len(_touchpoints())
    assert gc.isenabled()
    gc.disable()  # a caller that turned it off finds it off
    try:
        emitter.emit_text(text)
        assert not gc.isenabled()
    finally:
        gc.enable()
    keys.close()


def test_an_envelope_that_only_sealing_makes_too_large_is_still_refused(tmp_path: Path) -> None:
    # ~0.9 MiB of personal text: fine as plain JSON, over 1 MiB once sealed (base64)
    env = {
        **example_envelope("SignupRequested", 1),
        "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-05-01T00:00:00Z",
    }
    env["data"]["fields"] = {f"f{i}": "x" * 9_000 for i in range(100)}
    emitter, log, keys = _emitter(tmp_path)
    text = json.dumps(env)
    assert len(text) < 1024 * 1024
    emitter._bounds = lambda: Bounds(now=NOW)  # type: ignore[method-assign]
    with pytest.raises(BatchError) as caught:
        emitter.emit_text(text)
    assert caught.value.error.reason == "too_large" and log.records == []
    keys.close()


def test_seal_data_is_what_encode_sealed_puts_under_data() -> None:
    tp = next(t for t in _touchpoints() if t.type == "IdentityLinked")
    key = new_key(tp.customer_id)
    wire = json.loads(encode_sealed(tp, key))
    plain = tp.data.model_dump(mode="json", exclude_none=True)
    expected = seal_data(plain, type(tp.data), key, str(tp.event_id))
    assert set(wire["data"]) == set(expected)
    assert Envelope.model_validate(wire).data.keys() == expected.keys()


# --------------------------------------------------------------------------- nonces


_NONCE_KEY = new_key("c-1")


def _ivs(count: int) -> list[str]:
    """The iv of ``count`` sealed values (an e-mail identity each)."""
    model = CATALOGUE[("IdentityLinked", 1)]
    data = {"type": "email", "value": "a@example.com"}
    return [seal_data(data, model, _NONCE_KEY, f"e{i}")["value"]["iv"] for i in range(count)]


def test_sealing_never_uses_a_nonce_twice_in_threads_or_after_a_fork() -> None:
    import multiprocessing

    _ivs(1)  # the pool of nonces is now part-used: a fork must not hand out the rest
    seen: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        got = _ivs(3_000)
        with lock:
            seen.extend(got)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        children = pool.map(_ivs, [500, 500])
    everything = seen + _ivs(500) + [iv for child in children for iv in child]
    assert len(everything) == 10_500
    assert len(set(everything)) == len(everything)


def test_each_touchpoint_is_still_logged_with_its_ids_at_debug_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import structlog

    from journey.logs import configure_logging

    saved = structlog.get_config()
    tps = _touchpoints()[:20]
    text = "\n".join(encode(tp).decode() for tp in tps)
    emitter, _log, keys = _emitter(tmp_path)
    try:
        for level, expected in (("debug", len(tps)), ("info", 0)):
            configure_logging("json", level)
            capsys.readouterr()
            emitter.emit_text(text)
            lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
            each = [line for line in lines if line["event"] == "touchpoint emitted"]
            assert [line["event_id"] for line in each] == [str(tp.event_id) for tp in tps][
                :expected
            ]
            (batch,) = [line for line in lines if line["event"] == "touchpoints emitted"]
            assert batch["count"] == len(tps) and batch["first_event_id"] == str(tps[0].event_id)
    finally:
        structlog.configure(**saved)
        keys.close()


class _CountingNonces:
    """Nonces 0, 1, 2, … (a test only: the same nonces for two ways of sealing)."""

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> bytes:
        self.next += 1
        return self.next.to_bytes(12, "big")


def test_sealed_envelopes_are_the_bytes_an_envelope_of_the_sealed_body_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import domain.personal

    tps = _touchpoints()
    keys = {tp.customer_id: new_key(tp.customer_id) for tp in tps}
    sealed = 0
    for tp in tps:
        key = keys[tp.customer_id]
        results = []
        for way in ("spliced", "spliced from encode", "envelope"):
            monkeypatch.setattr(domain.personal, "_NONCES", _CountingNonces())
            if way == "spliced":
                results.append(encode_sealed(tp, key))
            elif way == "spliced from encode":
                results.append(encode_sealed(tp, key, encoded=encode(tp)))
            else:
                model = type(tp.data)
                body = seal_data(
                    tp.data.model_dump(mode="json", exclude_none=True),
                    model,
                    key,
                    str(tp.event_id),
                )
                fields = tp.model_dump(exclude={"data"})
                env = Envelope(**fields, data=body)
                results.append(env.model_dump_json(exclude_none=True).encode())
        assert results[0] == results[1] == results[2]
        sealed += results[0] != encode(tp)
    assert sealed > 100


def test_threads_emitting_back_to_back_cannot_keep_the_collector_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While one thread is still inside, a thread leaving after the allowed time runs a
    young-generation pass (cycles made elsewhere meanwhile are freed); the last one out
    turns the collector on again."""
    from journey import emitter as emitter_module

    monkeypatch.setattr(emitter_module, "_GC_MAX_OFF_S", 0.0)
    fewer = emitter_module._Collections().fewer
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with fewer():
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(10)
    passes: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            passes.append(info["generation"])

    gc.callbacks.append(count)
    try:
        with fewer():
            assert not gc.isenabled()
        assert passes == [0]  # a young pass on leaving, the other thread still inside
        assert not gc.isenabled()
    finally:
        gc.callbacks.remove(count)
        release.set()
        holder.join(10)
    assert gc.isenabled()
