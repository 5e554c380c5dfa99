"""The simulated news day's publishers (bench.news_day_generator): seeded, at Media Cloud's
volume per 5,000 feeds, heavy-tailed, and served as a 20-item window with a stable ETag."""

import numpy as np
import pytest

from bench import news_day_generator as gen

START = 1_790_000_000  # any whole second


@pytest.fixture(scope="module")
def day() -> gen.NewsDay:
    return gen.generate(5_000, seed=11, start=START, hours=24)


def test_the_same_seed_gives_the_same_day_and_another_seed_another():
    a, b = gen.generate(400, 5, START, 6), gen.generate(400, 5, START, 6)
    other = gen.generate(400, 6, START, 6)
    for name in ("rates", "offsets", "times"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.rates, other.rates)
    assert gen.render(a, 3, START + 3600).body == gen.render(b, 3, START + 3600).body


def test_total_rate_is_media_cloud_at_one_36th(day):
    assert day.rates.sum() * 24 == pytest.approx(gen.STORIES_PER_BLOCK_DAY, rel=1e-3)
    published = int((day.counts_at(day.end) - day.counts_at(day.start)).sum())
    assert published == pytest.approx(13_900, rel=0.03)  # Poisson: sd about 118


def test_full_scale_keeps_the_volume_per_feed():
    rates = gen.block_rates(180_000, np.random.default_rng(1))
    assert rates.sum() * 24 == pytest.approx(500_400, rel=1e-3)


def test_rates_are_heavy_tailed(day):
    per_day = np.sort(day.rates)[::-1] * 24
    assert per_day[:2] / 24 == pytest.approx([206, 31])
    assert per_day[2] < 31 * 24  # the forced two are the two busiest
    assert 0.5 < np.median(per_day) < 2  # most feeds: a story or a few a day
    assert per_day[:50].sum() / per_day.sum() > 0.4  # the busiest 1 % publish over 40 %
    assert per_day.min() >= gen.FLOOR_PER_DAY - 1e-9


def test_story_times_are_ascending_and_every_feed_has_a_full_window_at_the_start(day):
    owner = np.repeat(np.arange(day.feeds), np.diff(day.offsets))
    steps = np.diff(day.times)
    assert (steps[owner[1:] == owner[:-1]] >= 0).all()
    assert (day.counts_at(day.start) >= gen.WINDOW).all()
    assert day.times.max() <= day.end


def test_the_busiest_feed_publishes_about_its_rate(day):
    busiest = int(np.argmax(day.rates))
    published = day.published_before(busiest, day.end) - day.published_before(busiest, day.start)
    assert published == pytest.approx(206 * 24, rel=0.05)


def test_a_feed_serves_its_latest_20_and_its_etag_changes_only_with_a_new_story(day):
    f = int(np.argmax(day.rates))
    now = day.start + 1800
    first, last = gen.window(day, f, now)
    served = gen.render(day, f, now)
    assert (last - first, served.items) == (gen.WINDOW, gen.WINDOW)
    assert served.body.count(b"<item>") == gen.WINDOW
    assert f"{gen.guid(f, last - 1)}</guid>".encode() in served.body
    assert f"{gen.guid(f, first - 1)}</guid>".encode() not in served.body
    next_story = int(day.times[day.offsets[f] + last])
    assert gen.render(day, f, next_story - 1).etag == served.etag
    assert gen.render(day, f, next_story).etag != served.etag


def test_links_name_their_feed_and_story():
    assert gen.parse_link(gen.link(1234, 56)) == (1234, 56)
    assert gen.parse_link("https://elsewhere.example/a") is None
