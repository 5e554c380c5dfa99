"""When to check a feed next: its polling policy (not the DAG's schedule). Pure: each function
takes `now`.

After a successful fetch the interval follows the feed's publication rate (`adapt`):
the rate is estimated from the dates of the entries it serves and from the entries
that were new since the last fetch, raised at once and lowered smoothly, and the
interval is the time in which the feed is expected to publish `fill` of the entries it
serves (its window), so that no story scrolls out of the window between two polls; a
quiet feed is polled rarely. A fetch in which every entry is new, from a feed fetched
before, may have missed entries (a possible gap): the interval is halved at once.

The publisher's hints (`Retry-After`, `Cache-Control: max-age`, `Expires`, the feed's
`<ttl>`) are floors (`next_check`), and everything stays between the configured
minimum and maximum interval. After an error it backs off exponentially with the error
streak instead, still within the bounds (and never earlier than a `Retry-After`).
Which due feeds a run takes when it cannot take them all is `rank_due`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?([0-9]+)", re.IGNORECASE)
_SECONDS = re.compile(r"[0-9]+")  # ASCII digits only (str.isdigit takes "²", which int() refuses)
# A delay a server declares, in seconds, at most: ten years (the polling bounds cap it far
# lower); a longer one would overflow the date it is added to.
MAX_HINT_S = 10 * 366 * 86400


def _seconds(digits: str) -> timedelta:
    return timedelta(seconds=min(int(digits[:12]), MAX_HINT_S))


def _http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def retry_after(value: str | None, now: datetime) -> datetime | None:
    """`Retry-After` in either form: delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return now + _seconds(value)
    return _http_date(value)


def cache_until(headers: Mapping[str, str], now: datetime) -> datetime | None:
    """Freshness the response declares: `Cache-Control: max-age`, else `Expires`."""
    control = headers.get("cache-control") or ""
    match = _MAX_AGE.search(control)
    if match:
        return now + _seconds(match.group(1))
    expires = headers.get("expires")
    return _http_date(expires) if expires else None


@dataclass(frozen=True)
class Bounds:
    min_interval: timedelta
    max_interval: timedelta
    error_backoff: timedelta | None = None  # the first wait after an error (None: min_interval)


def next_check(
    now: datetime,
    bounds: Bounds,
    *,
    hints: tuple[datetime | None, ...] = (),
    ttl_minutes: int | None = None,
    error_streak: int = 0,
) -> datetime:
    """When to fetch next. `error_streak` counts this fetch if it failed."""
    if error_streak > 0:
        backoff = (bounds.error_backoff or bounds.min_interval) * (2 ** min(error_streak - 1, 20))
        wanted = now + min(backoff, bounds.max_interval)
    else:
        wanted = now + bounds.min_interval
    candidates = [h for h in hints if h is not None]
    if ttl_minutes:
        candidates.append(now + timedelta(minutes=ttl_minutes))
    if candidates:
        wanted = max(wanted, max(candidates))
    return min(max(wanted, now + bounds.min_interval), now + bounds.max_interval)


# How a feed's rate is smoothed when it falls: the weight of a new observation is
# 1 - exp(-elapsed / RATE_MEMORY). A rise is taken at once (a missed story is worse than
# an extra fetch).
RATE_MEMORY = timedelta(hours=12)
# Dates that all fall within this tell nothing about a feed's rate (a feed that stamps
# every entry with the time it was generated).
_SAME_DATE = timedelta(minutes=1)
# The interval of a feed whose rate is not known yet (no dates, fetched once).
UNKNOWN_RATE_INTERVAL = timedelta(hours=1)


@dataclass(frozen=True)
class Rules:
    """The policy's settings: interval bounds, the window share a feed may fill between
    two polls, and the interval under which a feed is hot."""

    bounds: Bounds
    fill: float
    hot_interval: timedelta

    def is_hot(self, interval: timedelta) -> bool:
        return interval < self.hot_interval


@dataclass(frozen=True)
class Observation:
    """What one successful fetch of a feed showed, with the feed's state before it."""

    fetched_at: datetime
    previous_fetch: datetime | None  # the feed's last fetch whose entries were loaded
    previous_rate: float | None  # entries per hour, as last estimated
    previous_window: int | None  # entries the feed served then
    entries: int | None  # entries served now (None: 304 or the same body, nothing parsed)
    new: int = 0  # of them, new to the store
    overlap: int = 0  # of them, already stored from this feed (updates and re-seen)
    published: Sequence[datetime] = ()  # the served entries' dates


@dataclass(frozen=True)
class Polling:
    """The policy's verdict on a feed after a fetch."""

    rate: float | None  # entries per hour
    window: int | None
    interval: timedelta
    gap: bool  # every entry new, from a feed fetched before: entries may have been missed


def window_rate(published: Sequence[datetime], now: datetime) -> float | None:
    """Entries per hour from the dates of the entries a feed serves: their number over the
    time from the oldest to `now`. None with fewer than two dates, or when they all fall
    within a minute (undated entries stamped alike say nothing about the rate)."""
    dates = [d for d in published if d <= now + _SAME_DATE]
    if len(dates) < 2 or max(dates) - min(dates) < _SAME_DATE:
        return None
    span = max(now - min(dates), _SAME_DATE)
    return len(dates) / (span.total_seconds() / 3600)


# How much of its interval a feed's next check may be brought forward: widely after its
# first fetch (a cold start fetches every feed at once; their next checks must not all fall
# in the same hours again), a little after the others (phases keep drifting apart).
FIRST_SPREAD, SPREAD = 0.75, 0.2


def spread(interval: timedelta, key: int, first: bool = False) -> timedelta:
    """`interval` shortened by up to FIRST_SPREAD (a feed's first fetch) or SPREAD of it, by
    a fixed fraction per `key` (a feed id), so feeds fetched together do not all come due
    together again."""
    return interval * (1 - (FIRST_SPREAD if first else SPREAD) * ((key * 0.6180339887498949) % 1.0))


def interval_for(rate: float | None, window: int | None, bounds: Bounds, fill: float) -> timedelta:
    """The interval in which a feed publishing `rate` entries an hour fills `fill` of its
    `window`, within the bounds."""
    if rate is None:
        wanted = UNKNOWN_RATE_INTERVAL
    elif rate <= 0:
        wanted = bounds.max_interval
    else:
        wanted = timedelta(hours=fill * max(window or 1, 1) / rate)
    return min(max(wanted, bounds.min_interval), bounds.max_interval)


def adapt(obs: Observation, bounds: Bounds, fill: float) -> Polling:
    """The feed's rate, window and interval after a successful fetch (see the module)."""
    elapsed = (obs.fetched_at - obs.previous_fetch if obs.previous_fetch is not None
               and obs.fetched_at > obs.previous_fetch else None)
    gap = bool(obs.previous_fetch is not None and obs.entries and obs.new > 0 and obs.overlap == 0)
    hours = elapsed.total_seconds() / 3600 if elapsed is not None else None
    # New entries over the time since the last fetch; none new counts as half of one (a
    # feed that published nothing in a short while is not known to publish nothing).
    seen = [r for r in (window_rate(obs.published, obs.fetched_at) if obs.entries else None,
                        max(obs.new, 0.5) / hours if hours else None) if r is not None]
    observed = max(seen) if seen else None
    rate = obs.previous_rate
    if observed is not None:
        if rate is None or observed >= rate or elapsed is None:
            rate = observed
        else:
            weight = 1 - math.exp(-elapsed.total_seconds() / RATE_MEMORY.total_seconds())
            rate = rate + weight * (observed - rate)
    window = obs.entries if obs.entries else obs.previous_window
    interval = interval_for(rate, window, bounds, fill)
    if gap and elapsed is not None:  # the window overflowed, or nearly: poll sooner at once
        interval = max(min(interval, elapsed / 2), bounds.min_interval)
    return Polling(rate, window, interval, gap)


@dataclass(frozen=True)
class DueFeed:
    """A feed due for a fetch, as the ranking needs it."""

    id: int
    host: Hashable
    urgency: float  # time since its last fetch over its interval (inf: never fetched)


def urgency(now: datetime, last_fetched: datetime | None, interval: timedelta | None) -> float:
    """How overdue a feed is: intervals elapsed since its last fetch. A fast publisher
    (short interval) grows urgent sooner; a feed never fetched comes first."""
    if last_fetched is None:
        return math.inf
    return max((now - last_fetched).total_seconds() / (interval or UNKNOWN_RATE_INTERVAL).total_seconds(), 0.0)


def rank_due(due: Sequence[DueFeed], capacity: int) -> tuple[list[int], list[int]]:
    """(taken, deferred) feed ids when at most `capacity` feeds fit in a run: the most
    urgent first, fairly across hosts (each host's most urgent feed before any host's
    second), so one source with many feeds cannot crowd out the others."""
    by_host: dict[Hashable, list[DueFeed]] = {}
    for feed in due:
        by_host.setdefault(feed.host, []).append(feed)
    ranked: list[tuple[int, float, int]] = []
    for feeds in by_host.values():
        feeds.sort(key=lambda f: (-f.urgency, f.id))
        ranked.extend((turn, -f.urgency, f.id) for turn, f in enumerate(feeds))
    ranked.sort()
    order = [feed_id for _, _, feed_id in ranked]
    return order[:capacity], order[capacity:]
