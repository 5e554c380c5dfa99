"""Deduplicate stage (the decider): new, update or duplicate, for a batch of articles.

Pure: it is given the batch and what storage knows about the keys the batch
mentions, and touches no I/O. Rules, in order, for each article:

1. Same feed, identity key and content as an earlier article of this batch: duplicate
   (`same_identity_key`). The same identity with *other* content in one batch is ambiguous (a
   GUID reused for another story): both go on to validation, whose uniqueness
   expectation holds them in quarantine.
2. Same feed and identity key as a stored article: duplicate when the content
   hash is equal, else an update of that article.
3. Same canonical URL as a stored or earlier article: duplicate
   (`canonical_url`), or an update when it is the same feed and the content
   changed (the feed changed the entry's GUID).
4. Same content hash as a stored or earlier article: duplicate (`content_hash`).
5. Otherwise: new.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pipeline.records import Article, Decision, DedupVerdict, DuplicateRule, StoredArticleKey


@dataclass
class StoredIndex:
    """Stored articles, indexed by each key the rules look up."""

    by_identity: dict[tuple[int, str], StoredArticleKey] = field(default_factory=dict)
    by_url: dict[str, StoredArticleKey] = field(default_factory=dict)
    by_hash: dict[str, StoredArticleKey] = field(default_factory=dict)

    @classmethod
    def of(cls, stored: Iterable[StoredArticleKey]) -> StoredIndex:
        index = cls()
        for key in sorted(stored, key=lambda k: k.id):
            index.by_identity.setdefault((key.feed_id, key.identity_key), key)
            index.by_url.setdefault(key.canonical_url, key)
            index.by_hash.setdefault(key.content_hash, key)
        return index


def _duplicate(rule: DuplicateRule, stored: StoredArticleKey) -> DedupVerdict:
    return DedupVerdict(Decision.DUPLICATE, rule, stored.id, stored.canonical_url)


Row = tuple[int, int]  # an article of the batch: (feed_id, seq)


@dataclass
class BatchKeys:
    """The keys of the batch's articles decided new or updated before the ones being
    decided (in earlier chunks of the batch; `decide` adds those of its own batch to a copy):
    what a later article of the batch is a duplicate of. Each key names the first such
    article (its row, and by content hash also its canonical URL), which a batch duplicate
    names as its match."""

    by_url: dict[str, Row] = field(default_factory=dict)
    by_hash: dict[str, tuple[str | None, Row]] = field(default_factory=dict)

    def add(self, article: Article) -> None:
        """Another article decided new or updated, after those already here."""
        row = (article.feed_id, article.seq)
        if article.canonical_url:
            self.by_url.setdefault(article.canonical_url, row)
        self.by_hash.setdefault(article.content_hash, (article.canonical_url, row))


def _batch_duplicate(rule: DuplicateRule, earlier_url: str | None, earlier: Row) -> DedupVerdict:
    return DedupVerdict(Decision.DUPLICATE, rule, None, earlier_url, earlier)


def decide(batch: Sequence[Article], stored: StoredIndex, earlier: BatchKeys | None = None) -> list[DedupVerdict]:
    """One verdict per article, in the order given. `batch` holds whole feeds; `earlier`,
    the keys of the batch's earlier chunks (none: `batch` is the whole batch)."""
    seen_identity: dict[tuple[int, str], Article] = {}
    seen = BatchKeys(dict(earlier.by_url), dict(earlier.by_hash)) if earlier else BatchKeys()
    verdicts = []
    for article in batch:
        verdict = _decide_one(article, stored, seen_identity, seen)
        verdicts.append(verdict)
        if verdict.decision in (Decision.NEW, Decision.UPDATE):
            seen_identity.setdefault((article.feed_id, article.identity_key), article)
            seen.add(article)
    return verdicts


def _decide_one(
    article: Article,
    stored: StoredIndex,
    seen_identity: dict[tuple[int, str], Article],
    seen: BatchKeys,
) -> DedupVerdict:
    identity = (article.feed_id, article.identity_key)
    earlier = seen_identity.get(identity)
    if earlier is not None and earlier.content_hash == article.content_hash:
        return _batch_duplicate(DuplicateRule.SAME_IDENTITY_KEY, earlier.canonical_url,
                                (earlier.feed_id, earlier.seq))
    match = stored.by_identity.get(identity)
    if match is not None:
        if match.content_hash == article.content_hash:
            return _duplicate(DuplicateRule.SAME_IDENTITY_KEY, match)
        return DedupVerdict(Decision.UPDATE, DuplicateRule.SAME_IDENTITY_KEY, match.id, match.canonical_url)
    url = article.canonical_url
    if url and earlier is None:
        if url in seen.by_url:
            return _batch_duplicate(DuplicateRule.CANONICAL_URL, url, seen.by_url[url])
        match = stored.by_url.get(url)
        if match is not None:
            if match.feed_id == article.feed_id and match.content_hash != article.content_hash:
                return DedupVerdict(
                    Decision.UPDATE, DuplicateRule.CANONICAL_URL, match.id, match.canonical_url
                )
            return _duplicate(DuplicateRule.CANONICAL_URL, match)
    if article.content_hash in seen.by_hash:
        return _batch_duplicate(DuplicateRule.CONTENT_HASH, *seen.by_hash[article.content_hash])
    match = stored.by_hash.get(article.content_hash)
    if match is not None:
        return _duplicate(DuplicateRule.CONTENT_HASH, match)
    return DedupVerdict(Decision.NEW)
