"""Keep a long-running watcher's memory small: fewer glibc malloc arenas for its many threads."""

from __future__ import annotations

import ctypes
import ctypes.util

M_ARENA_MAX = -8  # glibc's mallopt parameter number
_done: list[int] = []


def cap_malloc_arenas(n: int = 2) -> bool:
    """Limit glibc to `n` malloc arenas (as MALLOC_ARENA_MAX=n would), once per process; False where not glibc.

    A watcher runs a reader and a scorer thread per source; by default glibc gives threads up to 8 arenas per core,
    each holding freed memory of its own. Measured on 4 rules sources: 315 -> 263 MB after warm-up, and a warm-up
    ramp of 23 instead of 35 MB, at the same throughput (benchmarks/RESULTS.md, docs/live.md).
    """
    if _done:
        return _done[0] == n
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        ok = bool(libc.mallopt(M_ARENA_MAX, int(n)))
    except (OSError, AttributeError):
        ok = False
    _done.append(n if ok else 0)
    return ok
