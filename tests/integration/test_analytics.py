"""The analytics views, search and lineage (migrations 015, 016) on known data.

Most tests write feeds, articles and fetches with known times straight into the tables and
assert the views' exact rows; the lineage and run-history tests ingest known feeds from a
loopback server. Sessions here run in a time zone far from UTC: days must be UTC days.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

from pipeline import database, local_runner, maintenance
from pipeline.feedserver import FeedServer, Route
from pipeline.records import FeedSource
from tests.helpers import item, query, rss, scalar


def at(text: str) -> datetime:
    """'2026-11-01 10:00' (UTC) as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def rows(url: str, statement: str, params: tuple = ()) -> list[tuple]:
    """Query in a session whose time zone is not UTC (views must not depend on it)."""
    conn = psycopg2.connect(url, options="-c TimeZone=America/New_York")
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params or None)
            return cur.fetchall()
    finally:
        conn.close()


def add_feed(url: str, name: str, removed: bool = False) -> int:
    return scalar(url, "INSERT INTO feeds (url, title, removed_at) VALUES (%s, %s, %s) RETURNING id",
                  (f"https://{name}.example/feed", name, datetime.now(UTC) if removed else None))


def add_article(url: str, feed_id: int, published: datetime, first_seen: datetime | None = None,
                title: str = "A story", text: str = "", language: str | None = "en",
                link: str | None = None, undated: bool = False) -> int:
    n = uuid.uuid4().hex
    return scalar(
        url,
        """INSERT INTO articles (feed_id, identity_key, canonical_url, title, text, published_at,
                                 published_source, language, content_hash, first_seen_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (feed_id, "v1:guid:" + n, link or f"https://news.example/{n}", title, text, published,
         "fetched" if undated else "published", language, "v1:" + n, first_seen or published),
    )


def test_stories_per_day_by_published_and_first_seen_zero_filled_in_utc_days(db_url):
    a, b = add_feed(db_url, "alpha"), add_feed(db_url, "beta")
    add_article(db_url, a, at("2026-11-01 10:00"), at("2026-11-02 01:00"))
    add_article(db_url, a, at("2026-11-02 04:30"), at("2026-11-02 05:00"))  # Nov 1 in New York
    add_article(db_url, b, at("2026-11-04 23:59"), at("2026-11-04 23:59"))
    got = rows(db_url, """SELECT feed, day, by_published, by_first_seen FROM stories_per_day
                          WHERE day BETWEEN '2026-11-01' AND '2026-11-04' ORDER BY feed, day""")
    days = [date(2026, 11, d) for d in (1, 2, 3, 4)]
    assert got == [("alpha", d, p, s) for d, p, s in zip(days, (1, 1, 0, 0), (0, 2, 0, 0), strict=True)] + [
        ("beta", d, p, s) for d, p, s in zip(days, (0, 0, 0, 1), (0, 0, 0, 1), strict=True)]
    # The grid runs from the first article's day to today (a silent source's zeros included).
    first, last, cells = rows(db_url, "SELECT min(day), max(day), count(*) FROM stories_per_day")[0]
    assert (first, last) == (date(2026, 11, 1), datetime.now(UTC).date())
    assert cells == 2 * ((last - first).days + 1)


def test_search_attention_is_matching_over_all_articles_per_day(db_url):
    a, b = add_feed(db_url, "alpha"), add_feed(db_url, "beta")
    add_article(db_url, a, at("2026-11-01 09:00"), title="Floods close the harbour road")
    add_article(db_url, a, at("2026-11-01 12:00"), title="Council budget approved")
    add_article(db_url, b, at("2026-11-02 08:00"), title="Market day")
    add_article(db_url, a, at("2026-11-04 08:00"), title="Storm", text="The river was flooding again.")
    add_article(db_url, b, at("2026-11-04 23:00"), title="Flooded fields")
    add_article(db_url, b, at("2026-11-05 01:00"), title="Flood defences")  # past the last day
    got = rows(db_url, """SELECT * FROM search_attention(websearch_to_tsquery('english', 'flood'),
                                                         '2026-11-01', '2026-11-04')""")
    assert got == [(date(2026, 11, 1), 1, 2, 0.5), (date(2026, 11, 2), 0, 1, 0.0),
                   (date(2026, 11, 3), 0, 0, None), (date(2026, 11, 4), 2, 2, 1.0)]
    only_b = rows(db_url, """SELECT day, matching, total FROM search_attention(
                                 websearch_to_tsquery('english', 'flood'), '2026-11-04', '2026-11-05', %s)""",
                  ([b],))
    assert only_b == [(date(2026, 11, 4), 1, 1), (date(2026, 11, 5), 1, 1)]


def test_search_weighs_the_title_above_the_text_in_the_articles_language(db_url):
    f = add_feed(db_url, "alpha")
    in_text = add_article(db_url, f, at("2026-11-02 10:00"), title="Council meets",
                          text="The harbour flooded again after the storm.")
    in_title = add_article(db_url, f, at("2026-11-01 10:00"), title="Harbour floods", text="Storm")
    french = add_article(db_url, f, at("2026-11-01 11:00"), title="Les inondations du port",
                         text="La tempête", language="fr")
    unknown = add_article(db_url, f, at("2026-11-01 12:00"), title="Floods", language="xx")
    assert scalar(db_url, "SELECT search::text FROM articles WHERE id = %s", (in_title,)) == \
        "'flood':2A 'harbour':1A 'storm':3B"
    ranked = query(db_url, """SELECT id FROM articles, websearch_to_tsquery('english', 'flooding harbour') q
                              WHERE search @@ q ORDER BY ts_rank(search, q) DESC""")
    assert ranked == [(in_title,), (in_text,)]
    assert query(db_url, "SELECT id FROM articles WHERE search @@ websearch_to_tsquery('french', 'inondation')") \
        == [(french,)]
    # No configuration for 'xx': `simple`, which neither stems nor drops stop words.
    assert query(db_url, "SELECT id FROM articles WHERE search @@ websearch_to_tsquery('simple', 'floods')") \
        == [(unknown,)]
    assert scalar(db_url, "SELECT search_config('de')::text || ' ' || search_config(NULL)::text") == "german simple"


def test_top_domains_rank_domains_per_published_day(db_url):
    a, b = add_feed(db_url, "alpha"), add_feed(db_url, "beta")
    day = at("2026-11-03 12:00")
    for feed, link in ((a, "https://www.alpha.example/1"), (a, "https://alpha.example/2"),
                       (b, "https://ALPHA.example:8443/3"), (b, "https://wire.example/x"),
                       (a, "https://beta.example/y"), (b, "https://wire.example/z")):
        add_article(db_url, feed, day, link=link)
    add_article(db_url, b, at("2026-11-04 00:30"), link="https://beta.example/late")
    got = rows(db_url, """SELECT day, domain, articles, sources, rank FROM top_domains
                          WHERE day BETWEEN '2026-11-03' AND '2026-11-04' ORDER BY day, rank, domain""")
    assert got == [(date(2026, 11, 3), "alpha.example", 3, 2, 1), (date(2026, 11, 3), "wire.example", 2, 1, 2),
                   (date(2026, 11, 3), "beta.example", 1, 1, 3), (date(2026, 11, 4), "beta.example", 1, 1, 1)]


def test_source_health_flags_a_day_below_half_the_median_of_the_previous_four_weeks(db_url):
    steady, quiet = add_feed(db_url, "steady"), add_feed(db_url, "quiet")
    gone = add_feed(db_url, "gone", removed=True)
    start = at("2026-10-01 08:00")
    for d in range(28):  # Oct 1-28: two a day; the quiet one on 10 days of them
        for _ in range(2):
            add_article(db_url, steady, start + timedelta(days=d))
        if d % 3 == 0:
            add_article(db_url, quiet, start + timedelta(days=d))
    add_article(db_url, gone, start)
    add_article(db_url, steady, at("2026-10-30 23:00"))  # Oct 29: none; Oct 30: one; Oct 31: none
    got = rows(db_url, """SELECT feed, day, articles, baseline, ratio, flagged FROM source_health
                          WHERE day BETWEEN '2026-10-29' AND '2026-10-31' ORDER BY feed, day""")
    assert got == [
        ("quiet", date(2026, 10, 29), 0, 0.0, None, False),  # silent most days: a median of 0
        ("quiet", date(2026, 10, 30), 0, 0.0, None, False),
        ("quiet", date(2026, 10, 31), 0, 0.0, None, False),
        ("steady", date(2026, 10, 29), 0, 2.0, 0, True),
        ("steady", date(2026, 10, 30), 1, 2.0, 0.5, False),  # half is not below half
        ("steady", date(2026, 10, 31), 0, 2.0, 0, True),
    ]
    # The first day has no history: nothing to fall below. 28 twos then a 0 and a 1: median 2.
    assert rows(db_url, "SELECT baseline, flagged FROM source_health WHERE feed_id = %s AND day = '2026-10-01'",
                (steady,)) == [(0.0, False)]
    assert rows(db_url, "SELECT baseline FROM source_health WHERE feed_id = %s AND day = '2026-11-01'",
                (steady,)) == [(2.0,)]


def test_publication_lag_per_source_and_first_seen_day_leaves_undated_articles_out(db_url):
    a, b = add_feed(db_url, "alpha"), add_feed(db_url, "beta")
    seen = at("2026-11-02 12:00")
    for minutes in (10, 20, 60):
        add_article(db_url, a, seen - timedelta(minutes=minutes), seen)
    add_article(db_url, a, seen, seen + timedelta(minutes=5), undated=True)
    add_article(db_url, b, at("2026-11-01 23:00"), at("2026-11-03 01:00"))
    got = rows(db_url, """SELECT feed, day, articles, lag_median, lag_p90, lag_mean, lag_max
                          FROM publication_lag WHERE day BETWEEN '2026-11-01' AND '2026-11-05'
                          ORDER BY feed, day""")
    minutes = lambda m: timedelta(minutes=m)  # noqa: E731
    assert got == [("alpha", date(2026, 11, 2), 3, minutes(20), minutes(52), minutes(30), minutes(60)),
                   ("beta", date(2026, 11, 3), 1, *[minutes(26 * 60)] * 4)]


def test_daily_funnel_counts_fetches_entries_and_decisions_per_source_and_day(db_url):
    a, b = add_feed(db_url, "alpha"), add_feed(db_url, "beta")
    for run, kind in (("r1", "fetch"), ("r2", "fetch"), ("r3", "replay")):
        query(db_url, "INSERT INTO ingest_runs (run_id, started_at, kind) VALUES (%s, now(), %s) RETURNING 1",
              (run, kind))
    for run, feed, fetched, outcome, counts in (
        ("r1", a, "2026-11-01 10:00", "ok", (5, 1, 3, 1, 1, 0)),   # entries, over cap, new, updated, dup, quar.
        ("r2", a, "2026-11-01 23:30", "not_modified", (0, 0, 0, 0, 0, 0)),
        ("r1", b, "2026-11-01 10:00", "error", (0, 0, 0, 0, 0, 0)),
        ("r2", b, "2026-11-02 00:10", "ok", (2, 0, 1, 0, 0, 1)),
        ("r3", a, "2026-11-01 10:00", "ok", (5, 0, 0, 0, 5, 0)),   # a replay: no fetch of its own
    ):
        query(db_url, """INSERT INTO fetch_log (run_id, feed_id, url, fetched_at, outcome, entries,
                                                entries_dropped, new, updated, duplicates, quarantined)
                         VALUES (%s, %s, 'u', %s, %s, %s, %s, %s, %s, %s, %s) RETURNING 1""",
              (run, feed, at(fetched), outcome, *counts))
    got = rows(db_url, """SELECT day, feed, stage, outcome, count FROM daily_funnel
                          WHERE day BETWEEN '2026-11-01' AND '2026-11-02' ORDER BY day, feed, stage, outcome""")
    nov1, nov2 = date(2026, 11, 1), date(2026, 11, 2)
    load = ("duplicate", "new", "quarantined", "updated")
    assert got == [
        (nov1, "alpha", "fetch", "not_modified", 1), (nov1, "alpha", "fetch", "ok", 1),
        *[(nov1, "alpha", "load", o, n) for o, n in zip(load, (6, 3, 0, 1), strict=True)],
        (nov1, "alpha", "parse", "entries", 10), (nov1, "alpha", "parse", "over_cap", 1),
        (nov1, "beta", "fetch", "error", 1),
        *[(nov1, "beta", "load", o, 0) for o in load],
        (nov1, "beta", "parse", "entries", 0), (nov1, "beta", "parse", "over_cap", 0),
        (nov2, "beta", "fetch", "ok", 1),
        *[(nov2, "beta", "load", o, n) for o, n in zip(load, (0, 1, 1, 0), strict=True)],
        (nov2, "beta", "parse", "entries", 2), (nov2, "beta", "parse", "over_cap", 0),
    ]


def ingest(db_url, settings, sources):
    return local_runner.ingest(db_url, settings, sources, f"t-{uuid.uuid4().hex[:8]}", force=True)


def test_run_history_names_the_runs_feed_counts(db_url, settings):
    with FeedServer({"/ok.xml": Route(rss([item(1), item(2)]))}) as srv:
        summary = ingest(db_url, settings, [FeedSource(srv.url("/ok.xml")), FeedSource(srv.url("/missing.xml"))])
    run_id = summary["run_id"]
    assert query(db_url, "SELECT feeds, entries, new FROM run_history WHERE run_id = %s", (run_id,)) == [(2, 2, 2)]
    counts = scalar(db_url, "SELECT counts FROM ingest_runs WHERE run_id = %s", (run_id,))
    assert {k: counts[k] for k in counts if k.startswith("feeds")} == {
        "feeds": 2, "feeds_fetched": 1, "feeds_not_modified": 0, "feeds_failed": 1, "feeds_disabled": 0}
    assert query(db_url, """SELECT feeds_fetched, feeds_not_modified, feeds_failed, feeds_disabled, lane, deferred
                            FROM run_history WHERE run_id = %s""", (run_id,)) == [(1, 0, 1, 0, "all", 0)]


LINEAGE = """SELECT version, current, run_id, fetch_id, fetch_run_id, fetch_url, body_hash, body_archived
             FROM article_lineage WHERE article_id = %s ORDER BY version"""


def fetch_row(db_url, run_id):
    [(fetch_id, url, body_hash)] = query(
        db_url, "SELECT id, url, body_hash FROM fetch_log WHERE run_id = %s AND outcome = 'ok'", (run_id,))
    assert body_hash is not None
    return fetch_id, url, body_hash


def test_lineage_leads_from_each_version_to_its_run_fetch_and_archived_body(db_url, settings):
    with FeedServer({"/f.xml": Route(rss([item(1)]))}) as srv:
        sources = [FeedSource(srv.url("/f.xml"))]
        first = ingest(db_url, settings, sources)["run_id"]
        srv.routes["/f.xml"] = Route(rss([item(1, description="<p>Corrected body.</p>")]))
        second = ingest(db_url, settings, sources)["run_id"]
    (f1, url, body1), (f2, _, body2) = fetch_row(db_url, first), fetch_row(db_url, second)
    article = scalar(db_url, "SELECT id FROM articles")
    assert query(db_url, LINEAGE, (article,)) == [
        (1, False, first, f1, first, url, body1, True),
        (2, True, second, f2, second, url, body2, True),
    ]
    assert query(db_url, "SELECT first_run_id, first_fetch_id FROM articles") == [(first, f1)]
    # Retention prunes the body; the lineage still names it, as no longer archived.
    query(db_url, "DELETE FROM raw_bodies WHERE body_hash = %s RETURNING 1", (body1,))
    assert [row[-1] for row in query(db_url, LINEAGE, (article,))] == [False, True]


def test_an_article_a_replay_restores_names_the_replay_and_the_original_fetch(db_url, settings):
    with FeedServer({"/f.xml": Route(rss([item(1), item(2)]))}) as srv:
        first = ingest(db_url, settings, [FeedSource(srv.url("/f.xml"))])["run_id"]
    fetch_id, url, body = fetch_row(db_url, first)
    gone = "https://news.example/story/2"
    assert query(db_url, "DELETE FROM articles WHERE canonical_url = %s RETURNING 1", (gone,)) == [(1,)]
    replayed = maintenance.replay(db_url, settings, datetime.now(UTC) - timedelta(days=1))
    assert replayed["totals"]["new"] == 1
    [(article, run_id)] = query(db_url, "SELECT id, first_run_id FROM articles WHERE canonical_url = %s", (gone,))
    assert run_id != first
    assert query(db_url, LINEAGE, (article,)) == [(1, True, run_id, fetch_id, first, url, body, True)]
    assert scalar(db_url, "SELECT run_kind FROM article_lineage WHERE article_id = %s", (article,)) == "replay"


@pytest.fixture
def db_at_014(admin_url):
    """A database migrated to 014 only, by hand, then handed to `database.migrate`."""
    name = f"news_analytics_{uuid.uuid4().hex[:8]}"
    database.ensure_database(admin_url, name)
    url = urlunsplit(urlsplit(admin_url)._replace(path="/" + name))
    with database.connect(url) as conn, conn.cursor() as cur:
        cur.execute("""CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL,
                                                    applied_at timestamptz NOT NULL DEFAULT now())""")
        for version, path in database.migration_files():
            if version <= 14:
                cur.execute(path.read_text(encoding="utf-8"))
                cur.execute("INSERT INTO schema_version (version, name) VALUES (%s, %s)", (version, path.name))
    yield url
    database.drop_database(admin_url, name)


def test_the_migration_backfills_search_vectors_lineage_and_feed_counts(db_at_014):
    url = db_at_014
    query(url, """
        WITH f AS (INSERT INTO feeds (url) VALUES ('https://alpha.example/feed') RETURNING id),
             r AS (INSERT INTO ingest_runs (run_id, started_at, summary) VALUES
                       ('r1', now(), '{"totals": {"feeds": 3, "fetched": 1, "not_modified": 1,
                                                  "failed": 1, "disabled": 0}}'),
                       ('r2', now(), NULL) RETURNING 1),
             l AS (INSERT INTO fetch_log (run_id, feed_id, url, fetched_at, outcome, body_hash)
                   SELECT run, id, 'u', fetched::timestamptz, 'ok', 'h-' || run
                   FROM f, (VALUES ('r1', '2026-11-01 10:00+00'), ('r2', '2026-11-01 12:00+00')) AS v(run, fetched)
                   RETURNING id)
        INSERT INTO articles (feed_id, identity_key, canonical_url, title, text, published_at, published_source,
                              language, content_hash, first_run_id, version)
        SELECT id, 'k', 'https://alpha.example/1', 'Harbour floods', 'Storm', now(), 'published', 'en', 'h', 'r1', 2
        FROM f RETURNING 1""")
    query(url, """INSERT INTO article_versions (article_id, version, run_id, changed, title, text, html,
                                                canonical_url, content_hash, replaced_at)
                  SELECT id, 1, 'r2', '{body}', 'Harbour floods', 'Old', '', canonical_url, 'h0', now()
                  FROM articles RETURNING 1""")
    assert database.migrate(url) == list(range(15, len(database.migration_files()) + 1))  # 017 (partitioning) keeps the fetch ids lineage names
    r1, r2 = (scalar(url, "SELECT id FROM fetch_log WHERE run_id = %s", (run,)) for run in ("r1", "r2"))
    assert query(url, "SELECT search::text, first_fetch_id, content_run_id, content_fetch_id FROM articles") == [
        ("'flood':2A 'harbour':1A 'storm':3B", r1, "r2", r2)]
    assert query(url, "SELECT content_run_id, content_fetch_id FROM article_versions") == [("r1", r1)]
    assert query(url, "SELECT run_id, feeds FROM run_history ORDER BY run_id") == [("r1", 3), ("r2", None)]
    # 018: the vector is no longer generated, but a writer that does not give it still gets it
    query(url, "UPDATE articles SET text = 'Tide' RETURNING 1")
    assert query(url, "SELECT search::text FROM articles") == [("'flood':2A 'harbour':1A 'tide':3B",)]
