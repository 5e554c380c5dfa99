"""Which shard fetches which feed of a run: a pure planner (no I/O).

The run's feeds come ranked (pipeline.polling_policy.rank_due: the most urgent first,
each host's first feed before any host's second). Each host's feeds are dealt round
robin over the shards, in their ranked order, each host starting where the previous
one stopped: every shard gets an equal share of every host (within one feed) and of the
run (within one feed). So no shard is one publisher's queue, fetched one request after
another at that host's limit while other shards sit idle, and no source crowds the
others out of a shard; every worker shares each host, within the limits that
pipeline.host_slots holds across them. Dealing by turn in the ranked order (`i % shards`)
would not do this: two hosts of ten feeds each, ranked A B A B ..., over two shards put
all of A in one shard and all of B in the other.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from urllib.parse import urlsplit


def host_of(url: str) -> str:
    """The host a feed's URL names (the URL itself when it names none)."""
    return urlsplit(url).hostname or url


def assign(hosts: Sequence[Hashable], shards: int) -> list[int]:
    """The shard of each feed, given each feed's host in ranked order (most urgent first)."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    by_host: dict[Hashable, list[int]] = {}
    for position, host in enumerate(hosts):
        by_host.setdefault(host, []).append(position)
    plan = [0] * len(hosts)
    dealt = 0
    for positions in by_host.values():  # hosts in the order of their first (best) rank
        for position in positions:
            plan[position] = dealt % shards
            dealt += 1
    return plan
