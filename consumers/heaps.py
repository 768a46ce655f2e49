"""How many malloc heaps this process keeps (glibc on Linux).

glibc gives a thread that allocates while another holds the heap an arena of its own (up to
8 per core), and each arena keeps the memory freed into it. A writer with threads beside
the fold (kafka-python's network threads, a writer thread) had a 1M rebuild's peak RSS ~30
MiB higher than with MALLOC_ARENA_MAX=2 (docs/BENCHMARKS.md, "A lighter folded journey").
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["bound_heaps"]

# glibc's mallopt parameter for the most heaps ("arenas") it keeps.
_M_ARENA_MAX = -8
_ARENAS = 2


def bound_heaps() -> bool:
    """At most two malloc heaps in this process (glibc on Linux; elsewhere nothing), before
    its threads start. MALLOC_ARENA_MAX, when set, is left as it says. True when the bound
    was set."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(_M_ARENA_MAX, _ARENAS))
    except (OSError, AttributeError):  # not glibc: no mallopt, or not this parameter
        return False
