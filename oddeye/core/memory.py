"""Keep a process's memory close to what it uses (glibc's malloc; elsewhere these do nothing and say so).

A long-running watcher: fewer malloc arenas for its many threads. A search that keeps and drops many
feature arrays of about 0.1-1 MB (oddeye.image.auto.FeatureCache): the heap's free pages handed back after each
candidate, instead of staying in RSS as fragments.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_ARENA_MAX = -8  # glibc's mallopt parameter numbers
_done: list[int] = []


def _glibc(call: str, *args: int) -> bool:
    """glibc's `call`(*args) as a bool; False where there is no glibc (or no such call)."""
    try:
        return bool(getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), call)(*args))
    except (OSError, AttributeError):
        return False


def cap_malloc_arenas(n: int = 2) -> bool:
    """Limit glibc to `n` malloc arenas (as MALLOC_ARENA_MAX=n would), once per process; False where not glibc.

    A watcher runs a reader and a scorer thread per source; by default glibc gives threads up to 8 arenas per core,
    each holding freed memory of its own. Measured on 4 rules sources: 315 -> 263 MB after warm-up, and a warm-up
    ramp of 23 instead of 35 MB, at the same throughput (benchmarks/RESULTS.md, docs/live.md).
    """
    if _done:
        return _done[0] == n
    ok = _glibc("mallopt", M_ARENA_MAX, int(n))
    _done.append(n if ok else 0)
    return ok


def trim_malloc() -> bool:
    """Hand the heap's free pages back to the system (glibc's malloc_trim(0)); True if some were.

    By default glibc raises its mmap threshold to the size of each mmapped block freed (up to 32 MB), so after the
    first large array is dropped, arrays of 0.1-32 MB come from the heap and, freed in another order than taken,
    stay there as free fragments that still count in RSS. Measured: a 1 GB least-recently-used cache of 0.6 MB
    feature arrays held 1.6-2.4 GB of RSS, 1.3 GB with a trim after each round of puts. Fixing the threshold
    instead (MALLOC_MMAP_THRESHOLD_) did as well for memory but cost ~20 % more CPU in the backbone.
    """
    return _glibc("malloc_trim", 0)
