"""How the facts' zstd dictionary (projections/fact_dictionary.py) was made, and what it
does on the bench workload and the seed stories against the deflate it replaced.

The dictionary is part of the store's format: rows packed with one cannot be read with
another, so it is made once and kept as bytes; a new one needs a new schema version
(projections/integrity.py). Its content is the hand-written words of projections/facts.py
(every field name of the catalogue, the envelope's words) followed by what zstd's trainer
found frequent in facts of the synthetic journeys (journey/synthetic.py, another seed,
prefix and source than the bench workload's, so the bench is not measured on what the
dictionary learnt of it) and of the seed stories; its entropy tables are fitted to both.

    PYTHONPATH=. python -m bench.fact_dictionary            # compare only
    PYTHONPATH=. python -m bench.fact_dictionary --write    # make the module again (then compare)

Needs ``backports.zstd`` (the dev extra; ``compression.zstd`` from Python 3.14), whose
trainer can finalize a dictionary from given content.
"""

from __future__ import annotations

import argparse
import base64
import random
import sys
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["main"]

_SIZE = 4096  # content bytes: 8 KiB gained under 1 byte a fact on the bench
_LEVEL = 19
_MODULE = Path(__file__).resolve().parent.parent / "projections" / "fact_dictionary.py"


def _zstd() -> Any:
    if sys.version_info >= (3, 14):
        from compression import zstd  # type: ignore[import-not-found]
    else:
        from backports import zstd  # type: ignore[import-not-found,unused-ignore]
    return zstd


def _samples() -> tuple[list[bytes], list[tuple[bytes, str]]]:
    """Marked bodies to train on (synthetic journeys and stories), and the stories' facts."""
    from bench.workload import Shape, iter_touchpoints
    from domain.envelope import encode
    from journey.stories import all_touchpoints
    from projections import facts

    synthetic = [
        (encode(t), t.customer_id)
        for t in iter_touchpoints(Shape.for_events(20_000), 11, prefix="cust", source="shop")
    ]
    stories = [
        (encode(t), t.customer_id) for t in all_touchpoints(datetime(2026, 1, 1, tzinfo=UTC))
    ]
    marked = [facts._marked(facts._body(r), c.encode()) for r, c in synthetic + stories * 20]
    return [m for m in marked if m is not None], stories


def build() -> bytes:
    zstd = _zstd()
    from projections import facts

    samples, _ = _samples()
    trained = zstd.train_dict(samples, _SIZE).dict_content
    words = facts._FACT_WORDS
    content = words + trained[-(_SIZE - len(words)) :]
    done = zstd.finalize_dict(zstd.ZstdDict(content, is_raw=True), samples, _SIZE + 1024, _LEVEL)
    return bytes(done.dict_content)


def _deflated(raw: bytes, customer_id: str) -> int:
    from projections import facts

    c = zlib.compressobj(
        6, zlib.DEFLATED, -15, 5, zlib.Z_DEFAULT_STRATEGY, facts._FACT_WORDS + customer_id.encode()
    )
    return len(c.compress(facts._body(raw)) + c.flush())


def compare(workload: Path | None) -> None:
    from projections import facts

    _, stories = _samples()
    sets = {"stories": stories}
    if workload is not None and workload.is_file():
        lines = workload.read_bytes().splitlines()
        rng = random.Random(2)  # noqa: S311 -- a sample, not a secret
        import json

        picked = rng.sample(lines, min(20_000, len(lines)))
        sets["bench"] = [(r, json.loads(r)["customer_id"]) for r in picked]
    for name, pairs in sets.items():
        before = sum(_deflated(r, c) for r, c in pairs) / len(pairs)
        after = sum(len(facts.pack(r, customer_id=c)) for r, c in pairs) / len(pairs)
        print(f"{name}: {len(pairs)} facts, deflate {before:.2f} -> zstd {after:.2f} bytes a fact")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write projections/fact_dictionary.py")
    parser.add_argument(
        "--workload",
        type=Path,
        default=Path("bench/.cache/workload-v1-100000-2026-bench.ndjson"),
    )
    args = parser.parse_args(argv)
    if args.write:
        data = build()
        text = base64.b85encode(data).decode()
        lines = [f'    "{text[i : i + 84]}"' for i in range(0, len(text), 84)]
        _MODULE.write_text(
            '"""The facts\' zstd dictionary (made by bench/fact_dictionary.py): part of the\n'
            'store\'s format, never to be changed without a new schema version."""\n\n'
            "import base64\n\n"
            f"# {len(data)} bytes, base85\n"
            "FACT_DICTIONARY = base64.b85decode(\n" + "\n".join(lines) + "\n)\n"
        )
        print(f"wrote {_MODULE} ({len(data)} bytes): run again to compare with it")
        return 0
    compare(args.workload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
