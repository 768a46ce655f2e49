"""A touchpoint fact's packing, per call: zstd against the prepared dictionary (schema 12,
projections/facts.py) beside the deflate against the words and the customer's id that schema
11 did, timed in the same run on the same facts, interleaved rounds, the fastest of each.

    PYTHONPATH=. python -m bench.fact_pack --workload W   # W: a workload .ndjson (bench/.cache)

Prints microseconds a fact to pack and to unpack, and stored bytes a fact, both ways.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path

from projections import facts

__all__ = ["main"]


def _deflate(raw: bytes, customer_id: str) -> bytes:
    c = zlib.compressobj(
        6, zlib.DEFLATED, -15, 5, zlib.Z_DEFAULT_STRATEGY, facts._FACT_WORDS + customer_id.encode()
    )
    return c.compress(facts._body(raw)) + c.flush()


def _inflate(stored: bytes, customer_id: str, event_id: bytes) -> bytes:
    """Schema 11's unpack: the body inflated, the head put back from the columns."""
    d = zlib.decompressobj(-15, facts._FACT_WORDS + customer_id.encode())
    body = d.decompress(bytes(stored)) + d.flush()
    if not body[:1].isdigit():
        return body
    digits = len(body) - len(body.lstrip(b"0123456789"))
    return (
        facts._head_before(str(uuid.UUID(bytes=event_id)), "OrderPlaced")
        + body[:digits]
        + facts._head_after(customer_id, 0)
        + body[digits:]
    )


def _best(rounds: list[float], n: int) -> float:
    return min(rounds) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", type=Path, required=True, help="a workload .ndjson")
    parser.add_argument("--facts", type=int, default=20_000, help="a sample of this many")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)

    lines = args.workload.read_bytes().splitlines()
    rng = random.Random(2)  # noqa: S311 -- a sample, not a secret
    picked = rng.sample(lines, min(args.facts, len(lines)))
    pairs = [(raw, str(json.loads(raw)["customer_id"])) for raw in picked]
    n = len(pairs)
    old = [(_deflate(r, c), c) for r, c in pairs]
    new = [(facts.pack(r, customer_id=c), c) for r, c in pairs]
    event_id = uuid.uuid4().bytes

    def run(fn: Callable[[bytes, str], object], items: list[tuple[bytes, str]]) -> float:
        started = time.process_time()
        for a, b in items:
            fn(a, b)
        return time.process_time() - started

    def unpack(stored: bytes, cid: str) -> bytes:
        return facts.unpack(stored, event_id=event_id, type="OrderPlaced", customer_id=cid, at=0)

    timed: dict[str, list[float]] = {k: [] for k in ("deflate", "zstd", "inflate", "unzstd")}
    for _ in range(args.rounds):  # interleaved: a busy moment costs both alike
        timed["deflate"].append(run(_deflate, pairs))
        timed["zstd"].append(run(lambda r, c: facts.pack(r, customer_id=c), pairs))
        timed["inflate"].append(run(lambda s, c: _inflate(s, c, event_id), old))
        timed["unzstd"].append(run(unpack, new))
    figures = {
        "facts": n,
        "pack_us_deflate": round(_best(timed["deflate"], n), 2),
        "pack_us_zstd": round(_best(timed["zstd"], n), 2),
        "unpack_us_inflate": round(_best(timed["inflate"], n), 2),
        "unpack_us_zstd": round(_best(timed["unzstd"], n), 2),
        "bytes_deflate": round(sum(len(s) for s, _ in old) / n, 2),
        "bytes_zstd": round(sum(len(s) for s, _ in new) / n, 2),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
