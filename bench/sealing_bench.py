"""What sealing personal fields costs per touchpoint: encode vs encode_sealed (the doors),
decode of a plain envelope vs decode of a sealed one with its keys (the fold), and the
bytes on the log, over the same synthetic touchpoints in the same run (the baseline).

    python -m bench.sealing_bench [--events 20000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.envelope import decode, encode, encode_sealed
from domain.personal import new_key
from journey.synthetic import generate_touchpoints


def _rates(n: int, plain: Callable[[], Any], sealed: Callable[[], Any]) -> tuple[float, float]:
    """Per second, plain and sealed, each the best of five rounds taken in turn (the machine
    is shared: interleaving gives both the same weather)."""
    best = [float("inf"), float("inf")]
    for _ in range(5):
        for i, work in enumerate((plain, sealed)):
            started = time.perf_counter()
            work()
            best[i] = min(best[i], time.perf_counter() - started)
    return n / best[0], n / best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    start = datetime.now(UTC) - timedelta(days=30)
    tps = generate_touchpoints(args.events, max(1, args.events // 20), seed=5, start=start)
    keys = {tp.customer_id: new_key(tp.customer_id) for tp in tps}
    by_kid = {k.kid: k.key for k in keys.values()}
    plain = [encode(tp) for tp in tps]
    sealed = [encode_sealed(tp, keys[tp.customer_id]) for tp in tps]
    n = len(tps)
    enc, enc_s = _rates(
        n,
        lambda: [encode(tp) for tp in tps],
        lambda: [encode_sealed(tp, keys[tp.customer_id]) for tp in tps],
    )
    dec, dec_s = _rates(
        n,
        lambda: [decode(raw) for raw in plain],
        lambda: [decode(raw, keys=lambda c, k: by_kid.get(k)) for raw in sealed],
    )
    share = sum(1 for a, b in zip(plain, sealed, strict=True) if a != b) / n
    print(f"{n:,} synthetic touchpoints, {share:.0%} with personal values")
    print(f"  encode        {enc:>10,.0f}/s   sealed {enc_s:>10,.0f}/s   ({enc_s / enc:.2f}×)")
    print(f"  decode        {dec:>10,.0f}/s   sealed {dec_s:>10,.0f}/s   ({dec_s / dec:.2f}×)")
    size, size_s = sum(map(len, plain)), sum(map(len, sealed))
    ratio = size_s / size
    print(f"  bytes on log  {size / n:>10,.0f}/tp  sealed {size_s / n:>10,.0f}/tp  ({ratio:.2f}×)")


if __name__ == "__main__":
    main()
