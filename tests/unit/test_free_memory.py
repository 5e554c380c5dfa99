"""A worker gives back what a shard freed (pipeline.free_memory), as the CLI's runner asks
after each shard: without it the memory stays with the process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline import free_memory

# In a fresh process: what a shard's fetch thread does to glibc's heap. A freed 8 MB block
# raises the mmap threshold, so the 1 MB bodies that follow are carved from the thread's
# arena, between small objects that stay; the bodies are freed, the pages are not.
SHARD_LIKE = """
import threading
from pipeline.free_memory import release_free_memory

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))

pins = []
def shard():
    big = bytearray(8 << 20)
    del big
    bodies = []
    for _ in range(300):
        bodies.append(bytearray(1 << 20))
        pins.append(bytearray(64))
    del bodies

thread = threading.Thread(target=shard)
thread.start()
thread.join()
before = rss_mb()
released = release_free_memory()
print(before, rss_mb(), released)
"""


def test_memory_a_shard_freed_goes_back_to_the_system():
    if not hasattr(free_memory.libc(), "malloc_trim"):
        pytest.skip("no glibc malloc_trim here: nothing to give back with")
    done = subprocess.run([sys.executable, "-c", SHARD_LIKE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    before, after, released = done.stdout.split()
    assert released == "True"
    assert int(before) >= 250, "the freed bodies stayed in the process"  # the premise holds here
    assert int(after) <= int(before) - 200, (before, after)


def test_with_the_heap_bounded_large_bodies_freed_are_gone_without_a_trim():
    """`bounded_heap` (set before the CLI's workers fork): blocks of 256 KB or more are
    mapped on their own, whatever was freed before, so the shard's freed bodies leave the
    process at once, with nothing to trim."""
    if not hasattr(free_memory.libc(), "mallopt"):
        pytest.skip("no glibc mallopt here")
    bounded = "from pipeline.free_memory import bounded_heap\nassert bounded_heap()\n" + SHARD_LIKE
    done = subprocess.run([sys.executable, "-c", bounded], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    before, _, _ = done.stdout.split()
    assert int(before) < 100, f"{before} MB held after the bodies were freed"
