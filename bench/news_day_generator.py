"""A simulated news day's publishers: seeded, heavy-tailed, Poisson (pure: no I/O but `save`/`load`).

`generate(feeds, seed, start, hours)` gives every feed a publication rate and the times of
its stories. The rates copy Media Cloud's shape at 1/36 of its volume for every 5,000 feeds
(Media Cloud: about 180,000 feeds and 500,000 stories a day):

* per 5,000 feeds, one feed publishing 206 stories an hour and one publishing 31 (the two
  busiest at 1/36 scale), at random positions;
* every other feed a lognormal rate (median about one story a day), scaled so that the
  whole averages 13,900 stories a day per 5,000 feeds, clipped to [0.1 a day, half of the
  second-busiest rate].

Each feed's stories are one Poisson process at its rate: forward from `start` over the
simulated hours (uniform times, a Poisson count), and backward from `start` as exponential
gaps, at least `MIN_HISTORY` stories and three days' worth, so every feed serves a full
window at `start`. Times are whole seconds (pubDate's resolution), ascending per feed, in one
array with per-feed offsets: story `k` of feed `f` is `times[offsets[f] + k]`, and its guid
and link name `f` and `k`, so they never change between runs with the same seed.

`render(day, f, now)` is the feed as its server shows it at `now`: RSS 2.0 of its latest
`WINDOW` stories published at or before `now`, with the ETag (a hash of their guids) and the
Last-Modified (the newest one's date).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from email.utils import formatdate
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

WINDOW = 20  # items a feed serves
PER_BLOCK = 5_000  # feeds in one 1/36 slice of Media Cloud
STORIES_PER_BLOCK_DAY = 13_900  # stories a day per block: 500,000 / 36
TOP_PER_HOUR = (206.0, 31.0)  # the busiest feeds of a block, stories an hour
SIGMA = 1.0  # lognormal spread of the other feeds' rates
FLOOR_PER_DAY = 0.1  # the slowest feed: a story every ten days
MIN_HISTORY = 25  # stories before `start`, at least, per feed
HISTORY_S = 3 * 86_400  # and at least three days of them
LINK_HOSTS = 400  # article links spread over this many host names


@dataclass(frozen=True)
class NewsDay:
    """Rates (stories an hour) and story times (epoch seconds) of `len(rates)` feeds."""

    seed: int
    start: int  # T0, epoch seconds
    end: int  # the last simulated second
    rates: np.ndarray  # float64 [feeds], stories an hour
    offsets: np.ndarray  # int64 [feeds + 1]
    times: np.ndarray  # int64 [stories], ascending within each feed

    @property
    def feeds(self) -> int:
        return len(self.rates)

    def published_before(self, f: int, now: float) -> int:
        """How many of feed `f`'s stories are published at or before `now`."""
        lo, hi = int(self.offsets[f]), int(self.offsets[f + 1])
        return int(np.searchsorted(self.times[lo:hi], now, side="right"))

    def counts_at(self, now: float) -> np.ndarray:
        """`published_before(f, now)` for every feed at once."""
        # times are ascending within a feed and feeds are contiguous: count per feed of
        # times <= now by a global comparison and a segmented sum
        upto = np.add.reduceat((self.times <= now).astype(np.int64), self.offsets[:-1])
        upto[self.offsets[:-1] == self.offsets[1:]] = 0  # reduceat of an empty segment
        return upto


def block_rates(feeds: int, rng: np.random.Generator) -> np.ndarray:
    """Stories an hour of `feeds` feeds (see the module)."""
    blocks = max(1, round(feeds / PER_BLOCK))
    top = np.array(TOP_PER_HOUR * blocks)[:feeds]
    others = feeds - len(top)
    body_day = (STORIES_PER_BLOCK_DAY - sum(TOP_PER_HOUR) * 24) / (PER_BLOCK - len(TOP_PER_HOUR))
    cap = min(TOP_PER_HOUR) * 24 / 2
    body = rng.lognormal(0.0, SIGMA, others)
    target = body_day * others
    for _ in range(20):  # scale to the target, clip, and scale the unclipped part again
        body = np.clip(body, FLOOR_PER_DAY, cap)
        free = (body > FLOOR_PER_DAY) & (body < cap)
        fixed = body[~free].sum()
        if not free.any() or abs(body.sum() - target) < 1e-6 * target:
            break
        body[free] *= (target - fixed) / body[free].sum()
    rates = np.concatenate([top, body / 24])
    return rates[rng.permutation(feeds)]


def _segment_cumsum(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cumulative sums restarting at each segment (`counts` long, in order)."""
    total = np.cumsum(values)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    before = np.where(starts > 0, total[np.maximum(starts - 1, 0)], 0.0)
    return total - np.repeat(before, counts)


def generate(feeds: int, seed: int, start: int, hours: float) -> NewsDay:
    """`feeds` publishers from `seed`; stories from well before `start` to `start + hours`."""
    rng = np.random.default_rng(seed)
    rates = block_rates(feeds, rng)
    per_s = rates / 3600.0
    span = hours * 3600.0
    ids = np.arange(feeds)
    back_n = np.maximum(MIN_HISTORY, np.ceil(per_s * HISTORY_S)).astype(np.int64)
    gaps = rng.exponential(1.0, int(back_n.sum())) / np.repeat(per_s, back_n)
    back = start - _segment_cumsum(gaps, back_n)
    ahead_n = rng.poisson(per_s * span).astype(np.int64)
    ahead = start + (1.0 - rng.random(int(ahead_n.sum()))) * span  # in (start, start + span]
    owner = np.concatenate([np.repeat(ids, back_n), np.repeat(ids, ahead_n)])
    at = np.floor(np.concatenate([back, ahead])).astype(np.int64)
    order = np.lexsort((at, owner))
    counts = back_n + ahead_n
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return NewsDay(seed, int(start), int(start + span), rates, offsets, at[order])


def save(day: NewsDay, path: Path) -> None:
    np.savez(path, seed=day.seed, start=day.start, end=day.end, rates=day.rates,
             offsets=day.offsets, times=day.times)


def load(path: Path) -> NewsDay:
    with np.load(path) as z:
        return NewsDay(int(z["seed"]), int(z["start"]), int(z["end"]), z["rates"], z["offsets"], z["times"])


# --- what a story and a feed look like -------------------------------------------------

_SYLLABLES = ("ka", "ro", "mi", "ten", "sul", "va", "dor", "pe", "lin", "gra", "tho", "nes",
              "bri", "cal", "mun", "fe", "zo", "qui", "har", "bel", "os", "tra", "vin", "dal")
_VOCAB = tuple(sorted({"".join(random.Random(i).choices(_SYLLABLES, k=2 + i % 3)) for i in range(6000)}))


def guid(f: int, k: int) -> str:
    return f"newsday-{f}-{k}"


def link(f: int, k: int) -> str:
    """The story's URL: already canonical (lower-case host, no query, no fragment)."""
    return f"https://n{f % LINK_HOSTS}.newsday.example/{f}/story-{k}"


def parse_link(url: str) -> tuple[int, int] | None:
    """(feed, story) of a `link`, else None."""
    try:
        _, f, story = url.rsplit("/", 2)
        return int(f), int(story.removeprefix("story-"))
    except ValueError:
        return None


@lru_cache(maxsize=200_000)
def item_xml(seed: int, f: int, k: int, at: int) -> str:
    words = random.Random(f"{seed}:{f}:{k}").choices(_VOCAB, k=34)
    title = f"{' '.join(words[:6]).capitalize()} ({f}-{k})"
    text = f"<p>{' '.join(words[6:]).capitalize()}. Story {k} of feed {f}.</p>"
    return (f"<item><title>{escape(title)}</title><link>{link(f, k)}</link>"
            f'<guid isPermaLink="false">{guid(f, k)}</guid>'
            f"<pubDate>{formatdate(at, usegmt=True)}</pubDate>"
            f"<description>{escape(text)}</description></item>")


@dataclass(frozen=True)
class Rendered:
    body: bytes
    etag: str
    last_modified: str
    items: int


def window(day: NewsDay, f: int, now: float) -> tuple[int, int]:
    """The story numbers [first, last) feed `f` serves at `now` (newest `WINDOW`)."""
    upto = day.published_before(f, now)
    return max(0, upto - WINDOW), upto


def etag_of(f: int, first: int, last: int) -> str:
    digest = hashlib.sha1(",".join(guid(f, k) for k in range(first, last)).encode())
    return '"' + digest.hexdigest()[:20] + '"'


def render(day: NewsDay, f: int, now: float) -> Rendered:
    first, last = window(day, f, now)
    base = int(day.offsets[f])
    newest = int(day.times[base + last - 1]) if last else day.start
    items = "".join(item_xml(day.seed, f, k, int(day.times[base + k])) for k in range(last - 1, first - 1, -1))
    body = ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            f"<title>News day feed {f}</title><link>https://n{f % LINK_HOSTS}.newsday.example/{f}/</link>"
            f"<description>Simulated publisher {f}</description><language>en</language>"
            f"{items}</channel></rss>").encode()
    return Rendered(body, etag_of(f, first, last), formatdate(newest, usegmt=True), last - first)
