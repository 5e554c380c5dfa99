"""The polling policy's adaptive part: rates, intervals, gaps and fair ranking (pure)."""

from datetime import datetime, timedelta, timezone

import pytest

from pipeline.polling_policy import (
    Bounds,
    DueFeed,
    Observation,
    adapt,
    interval_for,
    next_check,
    rank_due,
    spread,
    urgency,
    window_rate,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
BOUNDS = Bounds(timedelta(minutes=2), timedelta(hours=24), timedelta(minutes=10))
FILL = 0.33


def every(minutes: float, count: int = 20, end: datetime = NOW) -> list[datetime]:
    return [end - timedelta(minutes=minutes * k) for k in range(count)]


def test_the_rate_comes_from_the_dates_of_the_entries_served():
    assert window_rate(every(3), NOW) == pytest.approx(20 / (57 / 60))
    assert window_rate(every(60 * 24 * 7), NOW) == pytest.approx(20 / (19 * 7 * 24))
    # a feed that stopped publishing a month ago is quiet, however dense its window was
    assert window_rate(every(3, end=NOW - timedelta(days=30)), NOW) < 0.03


def test_entries_stamped_alike_or_undated_tell_no_rate():
    assert window_rate([NOW] * 20, NOW) is None
    assert window_rate([NOW - timedelta(seconds=s) for s in range(20)], NOW) is None
    assert window_rate([], NOW) is None
    # dates in the future (a broken clock) are left out
    assert window_rate([NOW + timedelta(days=1)] * 5 + every(60, 2), NOW) == pytest.approx(2.0)


def test_a_feed_publishing_every_few_seconds_is_counted_story_by_story():
    burst = [NOW - timedelta(seconds=17 * k) for k in range(20)]  # 206 an hour
    assert window_rate(burst, NOW) == pytest.approx(20 / (19 * 17 / 3600))
    assert interval_for(window_rate(burst, NOW), 20, BOUNDS, FILL) == BOUNDS.min_interval


def test_intervals_are_spread_so_feeds_fetched_together_do_not_come_due_together():
    day = timedelta(hours=24)
    spread_out = {spread(day, feed_id) for feed_id in range(1, 101)}
    assert len(spread_out) == 100 and all(0.8 * day < s <= day for s in spread_out)
    assert max(spread_out) - min(spread_out) > timedelta(hours=4)
    assert spread(day, 7) == spread(day, 7)  # the same feed, the same share
    first = [spread(day, feed_id, first=True) for feed_id in range(1, 101)]  # after a cold start
    assert min(first) < timedelta(hours=7) and all(0.25 * day < s <= day for s in first)


def test_the_interval_keeps_a_third_of_the_window_between_polls_within_the_bounds():
    for per_hour in (0.1, 1, 5, 20, 60, 200):
        interval = interval_for(per_hour, 20, BOUNDS, FILL)
        assert BOUNDS.min_interval <= interval <= BOUNDS.max_interval
        if BOUNDS.min_interval < interval < BOUNDS.max_interval:
            assert per_hour * interval / timedelta(hours=1) == pytest.approx(FILL * 20)
    assert interval_for(2 / 24, 20, BOUNDS, FILL) == BOUNDS.max_interval  # twice a day: daily
    assert interval_for(1000, 20, BOUNDS, FILL) == BOUNDS.min_interval
    assert interval_for(20, 5, BOUNDS, FILL) < interval_for(20, 50, BOUNDS, FILL)  # a small window: sooner


def test_a_fast_feed_is_polled_often_and_a_quiet_one_rarely():
    fast = adapt(Observation(NOW, NOW - timedelta(minutes=30), None, None, 20, 10, 10, every(3)), BOUNDS, FILL)
    quiet = adapt(Observation(NOW, NOW - timedelta(hours=24), None, None, 20, 1, 19, every(60 * 12)), BOUNDS, FILL)
    assert fast.interval < timedelta(minutes=20) and not fast.gap
    assert quiet.interval == BOUNDS.max_interval


def test_a_rise_is_taken_at_once_and_a_fall_is_smoothed():
    dated = adapt(Observation(NOW, NOW - timedelta(minutes=10), 1.0, 20, 20, 3, 17, every(1)), BOUNDS, FILL)
    assert dated.rate == pytest.approx(window_rate(every(1), NOW))  # 33/h at once, from 1/h
    counted = adapt(Observation(NOW, NOW - timedelta(minutes=10), 1.0, 20, 20, 15, 5, every(3)), BOUNDS, FILL)
    assert counted.rate == pytest.approx(90)  # 15 new in 10 minutes says more than the dates (21/h)
    falling = adapt(Observation(NOW, NOW - timedelta(hours=1), 60.0, 20, None), BOUNDS, FILL)  # a 304
    assert 30 < falling.rate < 60  # one quiet hour does not make a busy feed quiet
    much_later = adapt(Observation(NOW, NOW - timedelta(days=3), 60.0, 20, None), BOUNDS, FILL)
    assert much_later.rate < 1


def test_a_fetch_sharing_nothing_with_what_was_stored_is_a_gap_and_shortens_the_interval():
    elapsed = timedelta(hours=2)
    gap = adapt(Observation(NOW, NOW - elapsed, 0.5, 20, 20, 20, 0), BOUNDS, FILL)
    assert gap.gap and gap.interval <= elapsed / 2
    # However full a window the policy allows, a gap halves the time since the last fetch
    # (the rate alone, 20 new in 2 h, would allow 0.9 x 2 h).
    roomy = adapt(Observation(NOW, NOW - elapsed, 0.5, 20, 20, 20, 0), BOUNDS, 0.9)
    assert roomy.gap and roomy.interval == elapsed / 2
    overlap = adapt(Observation(NOW, NOW - elapsed, 0.5, 20, 20, 19, 1), BOUNDS, FILL)
    assert not overlap.gap
    first = adapt(Observation(NOW, None, None, None, 20, 20, 0), BOUNDS, FILL)  # never fetched before
    assert not first.gap
    not_modified = adapt(Observation(NOW, NOW - elapsed, 0.5, 20, None), BOUNDS, FILL)
    assert not not_modified.gap and not_modified.window == 20


def test_an_unknown_rate_is_polled_hourly_until_known():
    assert adapt(Observation(NOW, None, None, None, 20, 20, 0, [NOW] * 20), BOUNDS, FILL).interval == timedelta(hours=1)


def test_the_error_backoff_has_its_own_start():
    assert next_check(NOW, BOUNDS, error_streak=1) - NOW == timedelta(minutes=10)
    assert next_check(NOW, BOUNDS, error_streak=3) - NOW == timedelta(minutes=40)
    assert next_check(NOW, BOUNDS) - NOW == BOUNDS.min_interval


def test_urgency_grows_with_time_over_the_interval_and_new_feeds_come_first():
    assert urgency(NOW, None, None) == float("inf")
    assert urgency(NOW, NOW - timedelta(hours=2), timedelta(hours=1)) == pytest.approx(2.0)
    assert urgency(NOW, NOW - timedelta(minutes=10), timedelta(minutes=2)) == pytest.approx(5.0)


def test_ranking_takes_the_most_urgent_first_and_one_host_cannot_crowd_out_the_others():
    big = [DueFeed(i, "big.example", 10.0 + i) for i in range(1, 11)]
    small = [DueFeed(100, "small.example", 1.5), DueFeed(101, "small.example", 1.2)]
    other = [DueFeed(200, "other.example", 1.1)]
    taken, deferred = rank_due(big + small + other, 5)
    assert taken[:3] == [10, 100, 200]  # each host's most urgent, by urgency
    assert taken[3:] == [9, 101]  # then each host's second
    assert len(deferred) == 8 and set(taken) | set(deferred) == {f.id for f in big + small + other}
    assert rank_due(big, 20) == ([f.id for f in reversed(big)], [])
