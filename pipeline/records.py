"""Typed records handed from stage to stage. All frozen; named by what they are."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from enum import Enum
from typing import Any, NamedTuple


class FetchOutcome(str, Enum):
    OK = "ok"
    NOT_MODIFIED = "not_modified"
    ERROR = "error"
    DISABLED = "disabled"


class Decision(str, Enum):
    """What becomes of one parsed entry. Every entry gets exactly one."""

    NEW = "new"
    UPDATE = "update"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"


class DuplicateRule(str, Enum):
    """Why an entry is an exact duplicate (or, with changed content, an update)."""

    SAME_IDENTITY_KEY = "same_identity_key"  # same feed, same identity key (by its identity rule)
    CANONICAL_URL = "canonical_url"  # same canonical URL as a stored or earlier entry
    CONTENT_HASH = "content_hash"  # same title and text as a stored or earlier entry


@dataclass(frozen=True)
class FeedSource:
    """One line of a feed list."""

    url: str
    title: str | None = None


@dataclass(frozen=True)
class FeedState:
    """A feed row as the fetcher needs it."""

    id: int
    url: str
    etag: str | None = None
    last_modified: str | None = None
    enabled: bool = True
    disabled_reason: str | None = None
    body_hash: str | None = None  # of the last body parsed: an identical body is not parsed again
    consecutive_errors: int = 0


@dataclass(frozen=True)
class FetchResult:
    """What one HTTP fetch of one feed produced."""

    feed_id: int
    url: str
    outcome: FetchOutcome
    fetched_at: datetime
    duration_ms: int
    status: int | None = None
    error_kind: str | None = None
    error: str | None = None
    body: bytes | None = None
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    final_url: str | None = None
    body_hash: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    next_check_at: datetime | None = None
    permanent_redirect: str | None = None  # target when every hop was a 301/308
    unchanged: bool = False  # a 200 whose body is byte-identical to the last one parsed
    # a timeout before the feed's own host sent any answer (no redirect followed): what
    # cuts a host off for the rest of a pass (pipeline.fetch)
    unanswered: bool = False


@dataclass(frozen=True)
class ParsedEntry:
    """One entry as the parser yielded it, JSON-safe, with the feed context it needs."""

    feed_id: int
    seq: int
    raw: dict[str, Any]
    fetched_at: datetime
    feed_language: str | None = None
    feed_link: str | None = None


@dataclass(frozen=True)
class ParsedFeed:
    """The parser's verdict on one body."""

    entries: tuple[dict[str, Any], ...]
    is_feed: bool
    bozo_reason: str | None = None
    version: str | None = None
    language: str | None = None
    link: str | None = None
    title: str | None = None
    ttl_minutes: int | None = None  # RSS <ttl>: how long the publisher says to cache
    failure: str | None = None  # when not a feed: "parse_error" (a broken feed) or "not_a_feed"
    entries_over_cap: int = 0  # entries past FETCH_MAX_ENTRIES: counted, never built
    nuls_removed: int = 0  # NUL characters dropped from the entries' text (PostgreSQL rejects them)
    parser: str = "feedparser"  # which parser read the body: lxml (fast path), feedparser, jsonfeed


@dataclass(frozen=True, slots=True)
class Article:
    """A normalized article, ready to be deduplicated, validated and loaded."""

    feed_id: int
    seq: int
    identity_key: str
    guid: str | None
    canonical_url: str | None
    title: str
    text: str
    html: str
    published_at: datetime
    published_source: str  # "published" | "updated" | "created" | "fetched"
    content_hash: str
    language: str | None = None
    authors: tuple[str, ...] = field(default_factory=tuple)
    tags: tuple[str, ...] = field(default_factory=tuple)
    language_source: str | None = None  # "entry" | "feed" | "detected"
    word_count: int = 0
    signature: str | None = None  # MinHash for near-duplicate detection, hex (pipeline.neardup)
    link: str | None = None  # the entry's own link, canonical; `canonical_url` may add a fragment
    published_raw: str | None = None  # the date as the feed wrote it (of `published_source`)
    date_issue: str | None = None  # why a date field was not used (pipeline.dates)
    feed_link: str | None = None  # the feed's home page

    def to_json(self) -> dict[str, Any]:
        # A shallow copy: every field is flat (asdict's deep copy cost 0.2 ms an article).
        data = {name: getattr(self, name) for name in _ARTICLE_FIELDS}
        data["published_at"] = self.published_at.isoformat()
        data["authors"] = list(self.authors)
        data["tags"] = list(self.tags)
        return data


_ARTICLE_FIELDS = tuple(f.name for f in fields(Article))


@dataclass(frozen=True)
class DedupVerdict:
    """The deduplicator's decision for one article."""

    decision: Decision
    rule: DuplicateRule | None = None
    matched_article_id: int | None = None
    matched_url: str | None = None
    # a duplicate of an earlier article of the same batch: that article's (feed_id, seq)
    matched_row: tuple[int, int] | None = None


@dataclass(frozen=True)
class StoredArticleKey:
    """What dedup needs to know about an article already in the database."""

    id: int
    feed_id: int
    identity_key: str
    canonical_url: str
    content_hash: str


@dataclass(frozen=True)
class StoredIdentity:
    """What re-keying a feed's stored articles under its new identity rule reads of each."""

    id: int
    identity_key: str
    canonical_url: str
    guid: str | None
    published_raw: str | None
    content_hash: str


class PlannedRow(NamedTuple):
    """What the row contract checks of an article planned new or updated (its text by length)."""

    feed_id: int
    seq: int
    identity_key: str | None
    canonical_url: str | None
    title: str
    published_at: datetime
    language: str | None
    text_chars: int


@dataclass(frozen=True)
class DedupSummary:
    """What the load's decider decided (`plan_decider.decide`): per decision, the rules of
    the duplicates, the feeds whose identity rule changed, the entries that failed."""

    articles: int = 0
    new: int = 0
    update: int = 0
    duplicate: int = 0
    duplicate_rules: dict[str, int] = field(default_factory=dict)
    identity_rule_changes: int = 0
    failed_entries: int = 0


@dataclass(frozen=True)
class ValidationSummary:
    """What validation judged (`plan_decider.validate_plan`)."""

    entries: int = 0
    validated: int = 0
    passed: int = 0
    quarantined: int = 0
    failed_expectations: dict[str, int] = field(default_factory=dict)
    data_docs: str | None = None


@dataclass(frozen=True)
class LoadCounts:
    """What a run's load wrote (`load.apply_plan`), as `ingest_runs.counts` keeps it."""

    entries: int = 0
    new: int = 0
    updated: int = 0
    duplicates: int = 0
    quarantined: int = 0
    stale_updates: int = 0  # updates from an older fetch than the stored article's: duplicates
    versions_kept: int = 0
    clustered: int = 0
    possible_gaps: int = 0
    already_loaded: bool = False  # a retried load of a loaded run: the counts of its load

    @classmethod
    def of(cls, counts: Mapping[str, Any], already_loaded: bool = False) -> LoadCounts:
        """From `ingest_runs.counts` (which also holds the report's feed counts)."""
        names = {f.name for f in fields(cls)} - {"already_loaded"}
        return cls(**{k: int(v) for k, v in counts.items() if k in names and v is not None},
                   already_loaded=already_loaded)

    def stored(self) -> dict[str, int]:
        """The counts as `ingest_runs.counts` keeps them."""
        return {k: v for k, v in asdict(self).items() if k != "already_loaded"}
