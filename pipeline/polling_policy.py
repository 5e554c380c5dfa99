"""When to check a feed next: its polling policy (not the DAG's schedule). Pure: each function
takes `now`.

The next check is the longest of what the publisher asked for (`Retry-After`,
`Cache-Control: max-age`, `Expires`, the feed's `<ttl>`), clamped between the
configured minimum and maximum interval. After an error it backs off
exponentially with the error streak instead, still within the bounds (and
never earlier than a `Retry-After`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


def _http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def retry_after(value: str | None, now: datetime) -> datetime | None:
    """`Retry-After` in either form: delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return now + timedelta(seconds=int(value))
    return _http_date(value)


def cache_until(headers: Mapping[str, str], now: datetime) -> datetime | None:
    """Freshness the response declares: `Cache-Control: max-age`, else `Expires`."""
    control = headers.get("cache-control") or ""
    match = _MAX_AGE.search(control)
    if match:
        return now + timedelta(seconds=int(match.group(1)))
    expires = headers.get("expires")
    return _http_date(expires) if expires else None


@dataclass(frozen=True)
class Bounds:
    min_interval: timedelta
    max_interval: timedelta


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
        backoff = bounds.min_interval * (2 ** min(error_streak - 1, 20))
        wanted = now + min(backoff, bounds.max_interval)
    else:
        wanted = now + bounds.min_interval
    candidates = [h for h in hints if h is not None]
    if ttl_minutes:
        candidates.append(now + timedelta(minutes=ttl_minutes))
    if candidates:
        wanted = max(wanted, max(candidates))
    return min(max(wanted, now + bounds.min_interval), now + bounds.max_interval)
