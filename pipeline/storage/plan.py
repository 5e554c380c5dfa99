"""The load plan: the load task's decisions (identity rules, dedup, validation), in its transaction.

Functions take an open cursor and run parameterized SQL; the caller owns the transaction.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Generator, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import execute_values

from pipeline.containment import exception_reason
from pipeline.dedup import BatchKeys
from pipeline.identity import IdentityRule
from pipeline.records import Article, DedupVerdict, PlannedRow, StoredArticleKey, StoredIdentity
from pipeline.storage.array_literal import array_literal
from pipeline.storage.copy_rows import copy_rows
from pipeline.storage.transactions import PAGE, dict_rows, is_connection_error, savepoint

# Statistics of the columns the load's statements join and filter on; not of the article
# documents and search vectors, which sampling would unpack for nothing.
_ANALYZE_PLAN = """ANALYZE load_plan (run_id, feed_id, seq, fetched_at, decision, rule, matched_article_id,
                                    matched_url, matched_feed_id, matched_seq, identity_key,
                                    content_hash)"""


def _analyze_plan(cur: Cursor) -> None:
    """Statistics of the plan for the load's joins, from a sample of 3,000 rows (statistics
    target 10), not 30,000: enough for its row counts, distinct keys and decisions, and a
    sixth of the time (25 against 140 ms for the 24,800 rows of the 1,000-feed bench)."""
    cur.execute("SET LOCAL default_statistics_target = 10")  # this transaction's: only ANALYZE reads it
    cur.execute(_ANALYZE_PLAN)


def open_plan(cur: Cursor, run_id: str) -> int:
    """Copy the run's staged entries into this transaction's `load_plan`; return their number."""
    cur.execute(
        """CREATE TEMP TABLE load_plan ON COMMIT DROP AS
           SELECT run_id, feed_id, seq, raw, fetched_at, feed_language, feed_link, article,
                  decision, rule, matched_article_id, matched_url, reasons, search,
                  -- a batch duplicate's earlier article of the same batch (dedup.BatchKeys)
                  NULL::bigint AS matched_feed_id, NULL::int AS matched_seq,
                  false AS stale,  -- an update found stale (`relabel_stale_updates`)
                  -- the load's join keys, out of the document (with statistics for its plans)
                  article->>'identity_key' AS identity_key, article->>'content_hash' AS content_hash
           FROM staged_entries WHERE run_id = %s""",
        (run_id,),
    )
    count = cur.rowcount
    cur.execute("ALTER TABLE load_plan ADD PRIMARY KEY (feed_id, seq)")
    # each new article the insert wrote (its RETURNING, pipeline.load), by its plan row's keys
    cur.execute("""CREATE TEMP TABLE plan_new_articles (feed_id bigint NOT NULL, identity_key text NOT NULL,
                                                        article_id bigint NOT NULL) ON COMMIT DROP""")
    cur.execute("SET LOCAL work_mem = '64MB'")  # the load's sorts and hashes stay in memory
    _analyze_plan(cur)  # for the decider's joins (autovacuum skips temporary tables)
    return count


# Updates that must not apply: the article holds content from a newer fetch (this run
# fetched before another run that loaded first: a late load, a replay, a release), or
# holds this content already. Each is a duplicate of the article it matched.
_RELABEL_STALE_UPDATES = """
UPDATE load_plan s SET decision = 'duplicate', stale = true
FROM articles a
WHERE s.run_id = %(run)s AND s.decision = 'update' AND a.id = s.matched_article_id
  AND (a.fetched_at > s.fetched_at OR a.content_hash = s.article->>'content_hash')
"""


def relabel_stale_updates(cur: Cursor, run_id: str) -> int:
    """The plan's updates the stored articles have made stale, duplicates now (counted in
    the load's `stale_updates`); returns their number."""
    cur.execute(_RELABEL_STALE_UPDATES, {"run": run_id})
    return cur.rowcount


# Each article planned new gets its id now, from the articles' sequence, in the order the
# insert writes them (pipeline.load `_INSERT_NEW`): the cluster links are planned by them.
_ASSIGN_ARTICLE_IDS = """
CREATE TEMP TABLE plan_article_ids ON COMMIT DROP AS
SELECT feed_id, seq, nextval(%(sequence)s::regclass) AS article_id
FROM (SELECT feed_id, seq FROM load_plan WHERE run_id = %(run)s AND decision = 'new'
      ORDER BY feed_id, seq) planned  -- taken in this order
"""


def assign_article_ids(cur: Cursor, run_id: str) -> int:
    """Each article planned new, its id (`plan_article_ids`), once the plan's decisions
    are final (after validation); returns their number."""
    cur.execute("SELECT pg_get_serial_sequence('articles', 'id')")
    (sequence,), = cur.fetchall()
    cur.execute(_ASSIGN_ARTICLE_IDS, {"run": run_id, "sequence": sequence})
    count = cur.rowcount
    cur.execute("ALTER TABLE plan_article_ids ADD PRIMARY KEY (feed_id, seq)")
    cur.execute("ANALYZE plan_article_ids")
    return count


def plan_decided(cur: Cursor) -> None:
    """The plan is decided: statistics for the load's joins (a temporary table gets none
    from autovacuum, and the decisions change what the planner must expect)."""
    _analyze_plan(cur)


_SET_ARTICLES = """UPDATE load_plan s SET article = s.article || v.article::jsonb,
                                          identity_key = v.article::jsonb->>'identity_key',
                                          content_hash = v.article::jsonb->>'content_hash'
                   FROM (VALUES %s) AS v(run_id, feed_id, seq, article)
                   WHERE s.run_id = v.run_id AND s.feed_id = v.feed_id AND s.seq = v.seq"""


def set_articles(cur: Cursor, run_id: str, articles: Sequence[Article]
                 ) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """Plan articles re-keyed by their feed's identity rule (decider's articles: their
    text and html are not read, so the keys they hold are merged into the planned ones).
    Should PostgreSQL refuse the batch, each article is planned alone: those it refuses
    are returned, with the reason, to be quarantined."""
    rows = [(run_id, a.feed_id, a.seq, json.dumps(_without_content(a.to_json()))) for a in articles]
    try:
        with savepoint(cur):
            execute_values(cur, _SET_ARTICLES, rows, template="(%s, %s::bigint, %s::int, %s)",
                           page_size=PAGE)
        return {}
    except Exception as exc:  # noqa: BLE001 - find the rows refused, keep the others
        if is_connection_error(exc):
            raise
    refused: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in rows:
        try:
            with savepoint(cur):
                execute_values(cur, _SET_ARTICLES, [row], template="(%s, %s::bigint, %s::int, %s)")
        except Exception as exc:  # noqa: BLE001
            if is_connection_error(exc):
                raise
            refused[(row[1], row[2])] = [exception_reason(exc, "staging")]
    return refused


# What the decider's articles leave out (`staged_article_chunks`), so never write back
# (`set_articles`): their content and their MinHash signature, which only the load's
# clustering reads, from the plan itself (pipeline.clusters).
_NOT_DECIDED = ("text", "html", "signature")
_STREAMED_ROWS = 5_000  # rows a server-side cursor hands over at a time


def _without_content(article: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in article.items() if k not in _NOT_DECIDED}


def staged_article_chunks(cur: Cursor, run_id: str, entries: int) -> Generator[list[Article], None, None]:
    """The run's normalized articles in (feed, position) order, as the decider reads them,
    in chunks of whole feeds of about `entries` articles each (a feed is never split: the
    identity rules and the row contract judge a feed's entries together). Each article is
    everything but its content (no html; of the text, its first character, so that "has a
    text" still holds) and its signature. Streamed through a server-side cursor, which sees
    the plan as it was when the first chunk was read, so the decider holds one chunk at a
    time, whatever the batch's size."""
    query = """SELECT s.feed_id, s.seq, a.identity_key, a.guid, a.canonical_url, a.title, left(a.text, 1),
                      a.published_at, a.published_source, a.content_hash, a.language, a.authors,
                      a.tags, a.language_source, a.word_count, a.link, a.published_raw,
                      a.date_issue, a.feed_link
               FROM load_plan s, jsonb_to_record(s.article) AS a(  -- the fields read in one pass
                   identity_key text, guid text, canonical_url text, title text, text text,
                   published_at text, published_source text, content_hash text, language text,
                   authors text[], tags text[], language_source text, word_count int, link text,
                   published_raw text, date_issue text, feed_link text)
               WHERE s.run_id = %s AND s.article IS NOT NULL
               ORDER BY s.feed_id, s.seq"""
    with cur.connection.cursor(name="staged_articles") as rows:
        rows.itersize = _STREAMED_ROWS
        rows.execute(query, (run_id,))
        articles = (Article(feed_id=feed_id, seq=seq, identity_key=key, guid=guid, canonical_url=url,
                            title=title, text=text, html="", published_at=datetime.fromisoformat(published),
                            published_source=published_source, content_hash=digest, language=language,
                            authors=tuple(authors or ()), tags=tuple(tags or ()),
                            language_source=language_source, word_count=word_count or 0, signature=None,
                            link=link, published_raw=published_raw, date_issue=date_issue,
                            feed_link=feed_link)
                    for (feed_id, seq, key, guid, url, title, text, published, published_source, digest,
                         language, authors, tags, language_source, word_count, link, published_raw,
                         date_issue, feed_link) in rows)
        yield from _whole_feeds(articles, entries)


_T = TypeVar("_T", bound="_OfFeed")


class _OfFeed(Protocol):
    @property
    def feed_id(self) -> int: ...


def _whole_feeds(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    """`items` (in feed order) in lists of whole feeds, each closed once it holds `size` or more."""
    chunk: list[_T] = []
    for _, feed in itertools.groupby(items, key=lambda item: item.feed_id):
        if len(chunk) >= size:
            yield chunk
            chunk = []
        chunk.extend(feed)
    if chunk:
        yield chunk


def planned_rows(cur: Cursor, run_id: str, feed_ids: Sequence[int]) -> list[PlannedRow]:
    """These feeds' articles planned new or updated, as the row contract checks them, in
    (feed, position) order: a chunk the decider has just decided (whole feeds: the
    contract's uniqueness is within a feed)."""
    with cur.connection.cursor(name="planned_rows") as rows:  # streamed: not all rows twice
        rows.itersize = _STREAMED_ROWS
        rows.execute(
            """SELECT s.feed_id, s.seq, s.identity_key, a.canonical_url, a.title, a.published_at,
                      a.language, coalesce(char_length(a.text), 0)
               FROM load_plan s, jsonb_to_record(s.article) AS a(  -- the fields read in one pass
                   canonical_url text, title text, published_at text, language text, text text)
               WHERE s.run_id = %s AND s.feed_id = ANY(%s::bigint[]) AND s.decision IN ('new', 'update')
               ORDER BY s.feed_id, s.seq""",
            (run_id, array_literal(feed_ids)))
        return [PlannedRow(feed_id, seq, key, url, title or "", datetime.fromisoformat(published), language,
                           chars)
                for feed_id, seq, key, url, title, published, language, chars in rows]


def open_decided_keys(cur: Cursor) -> None:
    """The (empty) table of the keys of articles decided so far (`add_decided_keys`)."""
    cur.execute("""CREATE TEMP TABLE IF NOT EXISTS plan_keys (
                       feed_id bigint, seq int, canonical_url text, content_hash text) ON COMMIT DROP""")
    cur.execute("TRUNCATE plan_keys")
    # hashed: a URL past btree's row limit (quarantined later by the contract) must not fail the load
    cur.execute("CREATE INDEX IF NOT EXISTS plan_keys_url ON plan_keys USING hash (canonical_url)")
    cur.execute("CREATE INDEX IF NOT EXISTS plan_keys_hash ON plan_keys (content_hash)")


def add_decided_keys(cur: Cursor, keys: Sequence[tuple[int, int, str | None, str]]) -> None:
    """Remember (feed_id, seq, canonical URL, content hash) of articles of a decided chunk
    planned new or updated, for the chunks after it (`decided_keys`)."""
    copy_rows(cur, "plan_keys", ("feed_id", "seq", "canonical_url", "content_hash"), keys)


def decided_keys(cur: Cursor, articles: Sequence[Article]) -> BatchKeys:
    """Of the earlier chunks' articles planned new or updated (`add_decided_keys`), those
    sharing a canonical URL or a content hash with `articles`: the first of each, in batch
    order."""
    cur.execute("""SELECT DISTINCT ON (canonical_url) canonical_url, feed_id, seq FROM plan_keys
                   WHERE canonical_url = ANY(%s::text[]) ORDER BY canonical_url, feed_id, seq""",
                (array_literal({a.canonical_url for a in articles if a.canonical_url}),))
    by_url = {url: (feed_id, seq) for url, feed_id, seq in cur.fetchall()}
    cur.execute("""SELECT DISTINCT ON (content_hash) content_hash, canonical_url, feed_id, seq FROM plan_keys
                   WHERE content_hash = ANY(%s::text[]) ORDER BY content_hash, feed_id, seq""",
                (array_literal({a.content_hash for a in articles}),))
    return BatchKeys(by_url, {digest: (url, (feed_id, seq)) for digest, url, feed_id, seq in cur.fetchall()})


def stored_keys(cur: Cursor, articles: Sequence[Article]) -> list[StoredArticleKey]:
    """Stored articles sharing an identity (within its feed), canonical URL or content hash
    with the batch. Three index lookups, so the cost follows the batch, not the archive."""
    cur.execute(
        """SELECT id, feed_id, identity_key, canonical_url, content_hash FROM articles
           WHERE (feed_id, identity_key) IN (SELECT * FROM unnest(%s::bigint[], %s::text[]))
           UNION
           SELECT id, feed_id, identity_key, canonical_url, content_hash FROM articles
           WHERE canonical_url = ANY(%s::text[])
           UNION
           SELECT id, feed_id, identity_key, canonical_url, content_hash FROM articles
           WHERE content_hash = ANY(%s::text[])""",
        (
            array_literal(a.feed_id for a in articles),
            array_literal(a.identity_key for a in articles),
            array_literal({a.canonical_url for a in articles if a.canonical_url}),
            array_literal({a.content_hash for a in articles}),
        ),
    )
    return [StoredArticleKey(*row) for row in cur.fetchall()]


def identity_rules(cur: Cursor, feed_ids: Sequence[int]) -> dict[int, IdentityRule]:
    cur.execute("SELECT id, identity_rule FROM feeds WHERE id = ANY(%s)", (list(feed_ids),))
    return {feed_id: IdentityRule(rule) for feed_id, rule in cur.fetchall()}


def stored_guids_by_link(cur: Cursor, articles: Sequence[Article]) -> dict[int, dict[str, str | None]]:
    """feed -> {link: the GUID the feed's article at that link was stored with}."""
    cur.execute(
        "SELECT feed_id, canonical_url, guid FROM articles WHERE canonical_url = ANY(%s::text[])",
        (array_literal({a.link for a in articles if a.link}),),
    )
    by_feed: dict[int, dict[str, str | None]] = {}
    for feed_id, url, guid in cur.fetchall():
        by_feed.setdefault(feed_id, {})[url] = guid
    return by_feed


def change_identity_rules(cur: Cursor, run_id: str, changes: dict[int, tuple[IdentityRule, IdentityRule, str]],
                          now: datetime) -> None:
    """Record each feed's new identity rule on its row and in `feed_identity_changes`, in
    one statement each for all the changed feeds."""
    if not changes:
        return
    rows = [(feed_id, run_id, old.value, new.value, reason, now)
            for feed_id, (old, new, reason) in changes.items()]
    execute_values(
        cur,
        """UPDATE feeds f SET identity_rule = v.new_rule, identity_rule_reason = v.reason,
               identity_rule_changed_at = v.changed_at
           FROM (VALUES %s) AS v(feed_id, run_id, old_rule, new_rule, reason, changed_at)
           WHERE f.id = v.feed_id""",
        rows, template="(%s::bigint, %s, %s, %s, %s, %s::timestamptz)", page_size=PAGE,
    )
    execute_values(
        cur,
        """INSERT INTO feed_identity_changes (feed_id, run_id, old_rule, new_rule, reason, changed_at)
           VALUES %s""",
        rows, page_size=PAGE,
    )


def stored_identities(cur: Cursor, feed_ids: Sequence[int],
                      entries: Sequence[Article]) -> dict[int, list[StoredIdentity]]:
    """feed -> what re-keying reads of each of its stored articles that may be one of
    `entries`: at one of their links (an `#entry-` fragment aside), with one of their GUIDs
    or with one of their content hashes (every key any rule gives is made of these)."""
    cur.execute("""SELECT feed_id, id, identity_key, canonical_url, guid, published_raw, content_hash
                   FROM articles
                   WHERE feed_id = ANY(%s::bigint[])
                     AND (split_part(canonical_url, '#', 1) = ANY(%s::text[]) OR guid = ANY(%s::text[])
                          OR content_hash = ANY(%s::text[]))""",
                (array_literal(feed_ids), array_literal({e.link.split("#", 1)[0] for e in entries if e.link}),
                 array_literal({e.guid for e in entries if e.guid}),
                 array_literal({e.content_hash for e in entries})))
    by_feed: dict[int, list[StoredIdentity]] = {}
    for feed_id, *row in cur.fetchall():
        by_feed.setdefault(feed_id, []).append(StoredIdentity(*row))
    return by_feed


def set_identity_keys(cur: Cursor, keys: dict[int, str]) -> None:
    """New identity keys for stored articles (article id -> key), in one statement."""
    if keys:
        execute_values(cur, """UPDATE articles a SET identity_key = v.key FROM (VALUES %s) AS v(id, key)
                               WHERE a.id = v.id""", list(keys.items()), template="(%s::bigint, %s)",
                       page_size=PAGE)


def identity_rule_changes(cur: Cursor, run_id: str) -> list[dict[str, Any]]:
    """The feeds whose identity rule this run changed, with why."""
    cur.execute("""SELECT f.url, c.old_rule, c.new_rule, c.reason FROM feed_identity_changes c
                   JOIN feeds f ON f.id = c.feed_id WHERE c.run_id = %s ORDER BY f.url""", (run_id,))
    return dict_rows(cur)


def set_decisions(
    cur: Cursor, run_id: str, articles: Sequence[Article], verdicts: Sequence[DedupVerdict]
) -> None:
    """The decider's verdicts into the plan: copied (COPY) beside it, then one join."""
    cur.execute("""CREATE TEMP TABLE IF NOT EXISTS plan_verdicts (
                       feed_id bigint, seq int, decision text, rule text, matched_id bigint,
                       matched_url text, matched_feed_id bigint, matched_seq int) ON COMMIT DROP""")
    cur.execute("TRUNCATE plan_verdicts")
    copy_rows(cur, "plan_verdicts", ("feed_id", "seq", "decision", "rule", "matched_id", "matched_url",
                                     "matched_feed_id", "matched_seq"),
              ((a.feed_id, a.seq, v.decision.value, v.rule.value if v.rule else None,
                v.matched_article_id, v.matched_url, *(v.matched_row or (None, None)))
               for a, v in zip(articles, verdicts, strict=True)))
    cur.execute(
        """UPDATE load_plan s SET decision = v.decision, rule = v.rule,
               matched_article_id = v.matched_id, matched_url = v.matched_url,
               matched_feed_id = v.matched_feed_id, matched_seq = v.matched_seq, reasons = NULL
           FROM plan_verdicts v
           WHERE s.run_id = %s AND s.feed_id = v.feed_id AND s.seq = v.seq""",
        (run_id,),
    )


def set_quarantined(cur: Cursor, run_id: str, reasons: dict[tuple[int, int], list[dict[str, Any]]]) -> None:
    """Mark rows as quarantined with their failed expectations."""
    execute_values(
        cur,
        """UPDATE load_plan s SET decision = 'quarantined', reasons = v.reasons::jsonb
           FROM (VALUES %s) AS v(run_id, feed_id, seq, reasons)
           WHERE s.run_id = v.run_id AND s.feed_id = v.feed_id AND s.seq = v.seq""",
        [(run_id, fid, seq, json.dumps(r)) for (fid, seq), r in reasons.items()],
        template="(%s, %s::bigint, %s::int, %s)",
        page_size=PAGE,
    )


def batch_duplicates_of(cur: Cursor, run_id: str, rows: Sequence[tuple[int, int]]) -> list[tuple[int, int, str]]:
    """Rows of this run marked duplicate of one of these earlier rows (feed_id, seq) of the
    batch, each with what names its original: the original's canonical URL, or, for one
    without, its place in its feed."""
    if not rows:
        return []
    feed_ids, seqs = zip(*rows, strict=True)
    cur.execute(
        """SELECT s.feed_id, s.seq,
                  coalesce(s.matched_url, format('entry %%s of feed %%s', s.matched_seq, s.matched_feed_id))
           FROM load_plan s
           WHERE s.run_id = %s AND s.decision = 'duplicate' AND s.matched_article_id IS NULL
             AND (s.matched_feed_id, s.matched_seq) IN (SELECT * FROM unnest(%s::bigint[], %s::int[]))""",
        (run_id, array_literal(feed_ids), array_literal(seqs)),
    )
    return list(cur.fetchall())


def feed_entry_counts(cur: Cursor, run_id: str) -> list[tuple[int, str, int, int, int]]:
    """(feed_id, url, entries, undated, quarantined) per feed of the run's batch."""
    cur.execute(
        """SELECT s.feed_id, f.url, count(*),
                  count(*) FILTER (WHERE s.article->>'published_source' = 'fetched'),
                  count(*) FILTER (WHERE s.decision = 'quarantined')
           FROM load_plan s JOIN feeds f ON f.id = s.feed_id
           WHERE s.run_id = %s GROUP BY s.feed_id, f.url ORDER BY s.feed_id""",
        (run_id,),
    )
    return list(cur.fetchall())
