"""The shard planner: each host's feeds spread over every shard, shards balanced, the
ranked order kept within each host, and the same plan for the same input."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pipeline import shard_plan, tasks
from pipeline.config import Settings
from pipeline.polling_policy import DueFeed, rank_due


def shares(hosts: list[str], plan: list[int], shards: int) -> dict[str, list[int]]:
    """Per host: how many of its feeds each shard got."""
    counts = Counter(zip(hosts, plan, strict=True))
    return {host: [counts[(host, s)] for s in range(shards)] for host in dict.fromkeys(hosts)}


def test_two_equal_hosts_ranked_in_turns_are_not_one_per_shard():
    hosts = ["a", "b"] * 10  # what rank_due gives: a's first, b's first, a's second, ...
    plan = shard_plan.assign(hosts, 2)
    assert shares(hosts, plan, 2) == {"a": [5, 5], "b": [5, 5]}  # `i % 2` gave a [10, 0]


def test_one_big_host_among_small_ones_is_spread_and_the_shards_stay_even():
    due = [DueFeed(i, "big", 1.0) for i in range(40)] + [DueFeed(100 + i, f"small{i}", 1.0) for i in range(7)]
    taken, _ = rank_due(due, capacity=1000)
    host = {f.id: f.host for f in due}
    hosts = [host[i] for i in taken]
    plan = shard_plan.assign(hosts, 4)
    assert shares(hosts, plan, 4)["big"] == [10, 10, 10, 10]
    sizes = Counter(plan)
    assert max(sizes.values()) - min(sizes.values()) <= 1


def test_each_host_is_dealt_in_its_ranked_order():
    hosts = ["a", "b", "a", "c", "a", "b", "a"]
    plan = shard_plan.assign(hosts, 3)
    a_shards = [s for h, s in zip(hosts, plan, strict=True) if h == "a"]
    assert a_shards == [0, 1, 2, 0]  # a's most urgent feed first, round robin
    assert [s for h, s in zip(hosts, plan, strict=True) if h == "b"] == [1, 2]  # b goes on where a stopped


@pytest.mark.parametrize("seed", range(20))
def test_any_mix_is_spread_within_one_feed_and_balanced(seed):
    rng = random.Random(seed)
    shards = rng.randint(1, 9)
    hosts = [f"h{rng.randint(0, 12)}" for _ in range(rng.randint(0, 200))]
    plan = shard_plan.assign(hosts, shards)
    assert len(plan) == len(hosts) and all(0 <= s < shards for s in plan)
    for per_shard in shares(hosts, plan, shards).values():
        assert max(per_shard) - min(per_shard) <= 1
    sizes = [plan.count(s) for s in range(shards)]
    assert max(sizes, default=0) - min(sizes, default=0) <= 1
    assert shard_plan.assign(hosts, shards) == plan  # a plan is repeatable


def test_a_single_shard_takes_everything_and_no_shards_is_refused():
    assert shard_plan.assign(["a", "b", "a"], 1) == [0, 0, 0]
    assert shard_plan.assign([], 3) == []
    with pytest.raises(ValueError, match="at least 1"):
        shard_plan.assign(["a"], 0)


def test_the_host_of_a_feed_url():
    assert shard_plan.host_of("https://Feeds.Example.com:8443/a.xml") == "feeds.example.com"
    assert shard_plan.host_of("not a url") == "not a url"


@pytest.mark.parametrize(("feeds", "parallel", "shards"), [
    (1000, 1, 4), (300, 1, 2), (1000, 2, 10), (300, 2, 10), (10_000, 2, 40), (10_000, 3, 42),
    (1, 2, 1), (7, 2, 7), (0, 2, 1)])
def test_the_cli_gets_several_shards_per_worker_in_a_multiple_of_its_workers(feeds, parallel, shards):
    settings = Settings.from_env({"FEEDS_PER_SHARD": "250"})
    assert tasks.shard_count(feeds, settings, parallel) == shards


def test_the_shard_count_stays_within_max_shards():
    settings = Settings.from_env({"FEEDS_PER_SHARD": "1", "MAX_FETCH_SHARDS": "16"})
    assert tasks.shard_count(1000, settings, 3) == 15  # the cap's largest multiple of the workers
    assert tasks.shard_count(1000, settings, 1) == 16
    assert tasks.shard_count(1000, settings.replace(max_shards=2), 3) == 2
