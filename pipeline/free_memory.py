"""Giving freed heap memory back to the operating system between shards.

A CLI worker process runs shard after shard. Each shard's fetch threads read bodies of up
to megabytes in glibc's per-thread arenas, and glibc's dynamic mmap threshold moves such
blocks from mmap into the arenas once one has been freed: what a shard frees stays in the
process, scattered, and the next shard's threads allocate around it. A worker's resident
memory so grew with the number of shards it had run (about 3x from 1,000 to 10,000 feeds
in bench.scale), not with the size of one shard. `malloc_trim(0)` returns the free pages
of every arena; called after each shard, a worker's peak is that of its largest shard.
`bounded_heap` also keeps what stays from spreading: two arenas, not eight per core (a
shard fetches on up to 32 threads), and blocks of 256 KB or more (bodies) always mapped
on their own, so freeing one gives its pages back at once.

Elsewhere (not glibc: musl, macOS) there is nothing to call, and this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any


@functools.cache
def libc() -> Any:
    """The C library, loaded once per process (also for `prctl`, pipeline.validate); None
    where it cannot be loaded."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def release_free_memory() -> bool:
    """Return freed heap pages to the operating system; True when glibc did."""
    c = libc()
    return bool(c.malloc_trim(0)) if c is not None and hasattr(c, "malloc_trim") else False


_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # glibc's malloc.h
_MMAP_THRESHOLD_BYTES = 256 << 10
_ARENAS = 2


@functools.cache
def bounded_heap() -> bool:
    """Set this process's allocator as the module docstring says (inherited by the
    processes it forks); True when glibc took both settings. Once per process."""
    c = libc()
    if c is None or not hasattr(c, "mallopt"):
        return False
    return bool(c.mallopt(_M_ARENA_MAX, _ARENAS)) & bool(c.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))
