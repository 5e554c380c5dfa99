"""One feed's body through parse and normalize, in memory: what its shard task stages.

Pure: a fetched (or archived) body goes in, a `FeedBatch` comes out, and nothing
escapes. A body that breaks the parser is the feed's error; an entry that breaks
normalize is that entry's quarantine reason; the other entries and feeds go on.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipeline import normalize, parse
from pipeline.containment import FAILED_ENTRY, describe, described_reason, exception_reason
from pipeline.records import Article, ParsedEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedEntry:
    """One entry as staged: its raw form, and either its article or why it has none."""

    entry: ParsedEntry
    article: Article | None = None
    reasons: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class FeedBatch:
    """What one feed's body gave: its entries, or the error that stands for all of them."""

    feed_id: int
    entries: tuple[StagedEntry, ...] = ()
    error_kind: str | None = None  # parse_error / not_a_feed: the fetch becomes an error
    error: str | None = None
    title: str | None = None
    ttl_minutes: int | None = None
    entries_over_cap: int = 0
    nuls_removed: int = 0
    parser: str | None = None
    malformed: bool = False  # a broken body the parser still read entries from

    @property
    def articles(self) -> list[Article]:
        return [s.article for s in self.entries if s.article is not None]

    @property
    def failed_entries(self) -> int:
        return sum(s.article is None for s in self.entries)


@dataclass
class PassCounts:
    """What a shard's pass did, for its task's summary."""

    entries: int = 0
    articles: int = 0
    failed_entries: int = 0
    failed_feeds: int = 0
    not_feeds: int = 0
    malformed_feeds_kept: int = 0
    entries_over_cap: int = 0
    nuls_removed: int = 0
    parsers: Counter[str] = field(default_factory=Counter)

    def add(self, batch: FeedBatch) -> None:
        if batch.error_kind == "not_a_feed":
            self.not_feeds += 1
        elif batch.error_kind:
            self.failed_feeds += 1
        self.entries += len(batch.entries)
        self.failed_entries += batch.failed_entries
        self.articles += len(batch.entries) - batch.failed_entries
        self.malformed_feeds_kept += batch.malformed
        self.entries_over_cap += batch.entries_over_cap
        self.nuls_removed += batch.nuls_removed
        if batch.parser:
            self.parsers[batch.parser] += 1


def parse_and_normalize(feed_id: int, url: str, body: bytes, content_type: str | None,
                        fetched_at: datetime, max_entries: int, parser: str,
                        tolerance: timedelta) -> FeedBatch:
    """Parse one body (resolving links against `url`) and normalize its entries."""
    try:
        parsed = parse.parse_feed(body, url, content_type, max_entries, parser)
    except Exception as exc:  # noqa: BLE001 - the boundary: a body that breaks the parser is data
        return FeedBatch(feed_id, error_kind="parse_error", error=f"parser raised {describe(exc)}")
    if not parsed.is_feed:
        kind = parsed.failure or "not_a_feed"
        return FeedBatch(feed_id, error_kind=kind,
                         error=f"{kind.replace('_', ' ')}: {parsed.bozo_reason or 'no entries'}")
    if parsed.entries_over_cap:
        log.warning("feed_url=%s: %d entries over the cap of %d counted, not staged",
                    url, parsed.entries_over_cap, max_entries)
    entries = tuple(
        normalize_staged(ParsedEntry(feed_id, seq, raw, fetched_at, parsed.language, parsed.link or url),
                         tolerance)
        for seq, raw in enumerate(parsed.entries)
    )
    return FeedBatch(feed_id, entries, title=parsed.title, ttl_minutes=parsed.ttl_minutes,
                     entries_over_cap=parsed.entries_over_cap, nuls_removed=parsed.nuls_removed,
                     parser=parsed.parser, malformed=parsed.bozo_reason is not None)


def normalize_staged(entry: ParsedEntry, tolerance: timedelta) -> StagedEntry:
    """The entry with its article, or with the quarantine reason why there is none."""
    if FAILED_ENTRY in entry.raw:
        return StagedEntry(entry, reasons=[described_reason(str(entry.raw[FAILED_ENTRY]), "parse")])
    try:
        return StagedEntry(entry, article=normalize.normalize_entry(entry, tolerance))
    except Exception as exc:  # noqa: BLE001 - the boundary: one bad entry is that entry's data
        return StagedEntry(entry, reasons=[exception_reason(exc, "normalize")])
