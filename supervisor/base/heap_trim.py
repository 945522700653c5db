"""Freed memory handed back to the kernel now and then, so the supervisor's RSS is what it uses.

glibc keeps what a process frees inside its heap, resident, to reuse it. The supervisor's work per
verdict is the same every time, but not the order of its allocations, so the heap's free holes
shift and the touched part of it crept up by about 0.8 KB per verdict in bench/soak.py with the
memory in use flat. `malloc_trim(0)` returns the free pages, at the top of the heap and between
blocks in use, to the kernel; with it every RELEASE_EVERY verdicts the heap stayed flat. A libc
without it (musl) has nothing to do.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

RELEASE_EVERY = 20  # verdicts; a trim costs well under a millisecond for the supervisor's heap


def _malloc_trim() -> Callable[[], None]:
    try:
        function = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int

    def release() -> None:
        function(0)

    return release


release_free_memory = _malloc_trim()
