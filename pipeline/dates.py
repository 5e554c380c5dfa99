"""The date policy: which time an article is published at, and where it came from. Pure.

The entry's date fields are tried in order: `published`, then `updated`, then `created`
(feedparser parses them, converted to UTC; JSON Feed's `date_published` and
`date_modified` map to the first two). A field is *usable* when it is present, parses,
and lies in [`EARLIEST`, fetch time + tolerance]. Then:

* the first usable field wins (`published_source` names it);
* when no field is usable but one parsed out of range (before 1995, or in the future
  beyond the tolerance), that value is kept, so the data contract quarantines the entry
  with the observed date, instead of the pipeline inventing one;
* when no field is present or parseable, the article is dated at the time it was first
  fetched, with `published_source = 'fetched'` (the per-feed undated share is checked).

Every article keeps the date as the feed wrote it (`published_raw`) and, in `date_issue`,
why earlier fields were passed over ("published: unparseable", "published: future", ...).
Stored articles never change their published time when a feed re-serves them
(`pipeline.load` updates content only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

EARLIEST = datetime(1995, 1, 1, tzinfo=UTC)  # before web feeds: a broken date
MAX_RAW_CHARS = 256  # a date as written is kept up to this (real ones: under 40 characters)
FIELDS = ("published", "updated", "created")
FETCHED = "fetched"
DEFAULT_FUTURE_TOLERANCE = timedelta(hours=24)  # clocks and time zones drift; beyond: a bad date


@dataclass(frozen=True)
class PublishedDate:
    at: datetime
    source: str  # a field of FIELDS, or FETCHED
    raw: str | None  # the value as written in the feed
    issue: str | None  # why fields were passed over, "; "-joined


def _parsed(value: Any) -> datetime | None:
    """An ISO 8601 string (what the parsers write) or a datetime, in UTC; else None."""
    if not isinstance(value, (str, datetime)) or not value or len(str(value)) > MAX_RAW_CHARS:
        return None
    try:
        parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # not ISO 8601, or out of range once in UTC (year 1)
        return None


def published_date(entry: dict[str, Any], fetched_at: datetime,
                   future_tolerance: timedelta = DEFAULT_FUTURE_TOLERANCE) -> PublishedDate:
    latest = fetched_at + future_tolerance
    issues: list[str] = []
    out_of_range: PublishedDate | None = None
    first_raw: str | None = None
    for field in FIELDS:
        raw = entry.get(field)
        raw = str(raw).strip()[:MAX_RAW_CHARS] if raw not in (None, "") else None
        parsed = _parsed(entry.get(f"{field}_parsed"))
        first_raw = first_raw or raw
        if parsed is None:
            if raw is not None:
                issues.append(f"{field}: unparseable")
            continue
        if EARLIEST <= parsed <= latest:
            return PublishedDate(parsed, field, raw, "; ".join(issues) or None)
        issues.append(f"{field}: {'before 1995' if parsed < EARLIEST else 'future'}")
        out_of_range = out_of_range or PublishedDate(parsed, field, raw, None)
    issue = "; ".join(issues) or "missing"
    if out_of_range is not None:
        return PublishedDate(out_of_range.at, out_of_range.source, out_of_range.raw, issue)
    return PublishedDate(fetched_at.astimezone(UTC), FETCHED, first_raw, issue)
