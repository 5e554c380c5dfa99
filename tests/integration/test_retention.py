"""Retention and partitioning (migration 017, pipeline.maintenance): month partitions are
created ahead, rows the DEFAULT partition caught move into their month, partitions wholly
past the retention go with their rows, recent rows stay, and a retried shard still
records one fetch_log row per run and feed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline import database, maintenance, storage
from pipeline.records import FetchOutcome, FetchResult
from pipeline.storage import partitions
from tests.helpers import query, scalar

# Far from the template's months (created for the real today), so every partition here is this test's.
NOW = datetime(2031, 6, 15, 12, tzinfo=UTC)
TABLES = ("fetch_log", "validation_results", "duplicates", "article_versions")


def _days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def _seed(url: str, times: dict[str, datetime]) -> None:
    """One row per named time in each partitioned table (and a suite run per time)."""
    with database.connect(url) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO feeds (url) VALUES ('http://a.example/feed') RETURNING id")
        feed = cur.fetchone()[0]
        cur.execute("""INSERT INTO articles (feed_id, identity_key, canonical_url, published_at, published_source,
                                             content_hash) VALUES (%s, 'k', 'http://a.example/1', %s, 'published', 'h')
                       RETURNING id""", (feed, NOW))
        article = cur.fetchone()[0]
        for n, (name, at) in enumerate(sorted(times.items()), start=1):
            cur.execute("""INSERT INTO fetch_log (run_id, feed_id, url, fetched_at, outcome)
                           VALUES (%s, %s, 'http://a.example/feed', %s, 'ok')""", (name, feed, at))
            cur.execute("""INSERT INTO validation_runs (run_id, suite, success, evaluated_at, statistics)
                           VALUES (%s, 'articles_rows', true, %s, '{}') RETURNING id""", (name, at))
            cur.execute("""INSERT INTO validation_results (validation_id, expectation, column_name, success,
                                                           evaluated_at)
                           VALUES (%s, 'expect_x', 'title', true, %s)""", (cur.fetchone()[0], at))
            cur.execute("""INSERT INTO duplicates (dup_key, feed_id, rule, matched_article_id, first_run_id,
                                                   last_run_id, first_seen_at, last_seen_at)
                           VALUES (%s, %s, 'canonical_url', %s, %s, %s, %s, %s)""",
                        (name, feed, article, name, name, at, at))
            cur.execute("""INSERT INTO article_versions (article_id, version, run_id, changed, title, text, html,
                                                         canonical_url, content_hash, replaced_at)
                           VALUES (%s, %s, %s, '{title}', 't', 'x', 'x', 'http://a.example/1', 'h0', %s)""",
                        (article, n, name, at))


def _names(url: str, table: str) -> set[str]:
    with database.connect(url) as conn, conn.cursor() as cur:
        return {name for name, _, _ in partitions.partitions(cur, table)}


def _runs(url: str, table: str) -> set[str]:
    column = {"fetch_log": "run_id", "validation_results": "(SELECT run_id FROM validation_runs v "
              "WHERE v.id = validation_id)", "duplicates": "dup_key", "article_versions": "run_id"}[table]
    return {name for (name,) in query(url, f"SELECT {column} FROM {table}")}


def test_partitions_are_created_ahead_and_expired_ones_dropped_with_their_rows(db_url, settings):
    # Retention 90 days for every table: the cutoff is 2031-03-17 12:00.
    cfg = settings.replace(fetch_log_retention_days=90, validation_retention_days=90,
                           duplicates_retention_days=90, versions_retention_days=90, partition_months_ahead=2)
    times = {
        "recent": _days_ago(3),                    # June 2031: kept
        "within": _days_ago(80),                   # March 2031 (27th), within the retention: kept
        "straddling": _days_ago(95),               # March 2031 (12th), past the cutoff, but its month
                                                   # holds "within": kept whole
        "expired": _days_ago(120),                 # February 2031: dropped
        "ancient": datetime(2019, 1, 5, tzinfo=UTC),  # January 2019: dropped
    }
    _seed(db_url, times)
    # No partition of these months yet: every row waits in DEFAULT.
    assert scalar(db_url, "SELECT count(*) FROM fetch_log_default") == len(times)

    created = maintenance.create_partitions(db_url, cfg, NOW)
    for table in TABLES:
        # Ahead: this month and the next two; and the months DEFAULT held rows of.
        assert set(created[table]) == {f"{table}_p{m}" for m in ("203106", "203107", "203108", "203103",
                                                                 "203102", "201901")}
        assert scalar(db_url, f"SELECT count(*) FROM {table}_default") == 0
        assert _runs(db_url, table) == set(times)  # moved, nothing lost
    where = "SELECT tableoid::regclass::text FROM fetch_log WHERE run_id = 'recent'"
    assert scalar(db_url, where) == "fetch_log_p203106"
    assert maintenance.create_partitions(db_url, cfg, NOW) == {table: [] for table in TABLES}  # idempotent

    dropped = maintenance.drop_expired_partitions(db_url, cfg, NOW)
    for table in TABLES:
        # Oldest first; the months the migration made for the real today are long past NOW too.
        assert dropped[table][0] == f"{table}_p201901" and dropped[table][-1] == f"{table}_p203102"
        assert _runs(db_url, table) == {"recent", "within", "straddling"}
        names = _names(db_url, table)
        assert {f"{table}_default", f"{table}_p203103", f"{table}_p203108"} <= names
        assert not names & {f"{table}_p201901", f"{table}_p203102"}
    # Suite runs go with their results' months (the straddling month is kept whole).
    assert {r for (r,) in query(db_url, "SELECT run_id FROM validation_runs")} == {"recent", "within", "straddling"}
    assert dropped["validation_runs_deleted"] == 2
    again = maintenance.drop_expired_partitions(db_url, cfg, NOW)
    assert all(again[table] == [] for table in TABLES)

    # A month later the straddling month is wholly past: it goes, with both its rows.
    later = maintenance.drop_expired_partitions(db_url, cfg, datetime(2031, 7, 1, tzinfo=UTC))
    assert later["fetch_log"] == ["fetch_log_p203103"]
    assert _runs(db_url, "fetch_log") == {"recent"}


def test_each_table_has_its_own_retention(db_url, settings):
    cfg = settings.replace(fetch_log_retention_days=10, validation_retention_days=60,
                           duplicates_retention_days=400, versions_retention_days=200)
    _seed(db_url, {"m1": _days_ago(45), "m3": _days_ago(100), "m9": _days_ago(300)})
    maintenance.create_partitions(db_url, cfg, NOW)
    maintenance.drop_expired_partitions(db_url, cfg, NOW)
    assert _runs(db_url, "fetch_log") == set()
    assert _runs(db_url, "validation_results") == {"m1"}
    assert _runs(db_url, "duplicates") == {"m1", "m3", "m9"}
    assert _runs(db_url, "article_versions") == {"m1", "m3"}


def test_the_migration_made_the_tables_partitioned_with_a_default_and_months_ahead(db_url):
    this_month = datetime.now(UTC).strftime("%Y%m")
    for table, key in partitions.PARTITIONED.items():
        assert scalar(db_url, """SELECT a.attname FROM pg_partitioned_table p JOIN pg_attribute a
                                   ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
                                 WHERE p.partrelid = %s::regclass""", (table,)) == key
        assert {f"{table}_default", f"{table}_p{this_month}"} <= _names(db_url, table)
        assert len(_names(db_url, table)) >= 5  # this month, 3 ahead, DEFAULT


def _fetch(feed_id: int, at: datetime, status: int) -> FetchResult:
    return FetchResult(feed_id=feed_id, url="http://a.example/feed", outcome=FetchOutcome.OK, fetched_at=at,
                       duration_ms=5, status=status, etag=f"e{status}")


@pytest.mark.parametrize("retry_at", [_days_ago(0) + timedelta(minutes=5), datetime(2031, 7, 1, 0, 5, tzinfo=UTC)],
                         ids=["same month", "next month"])
def test_a_retried_shard_still_records_one_row_per_run_and_feed(db_url, settings, retry_at):
    """fetch_log has no unique (run_id, feed_id) any more: the retry updates the row, even
    into another month's partition, keeping its id."""
    maintenance.create_partitions(db_url, settings, NOW)
    with database.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO feeds (url) VALUES ('http://a.example/feed') RETURNING id")
        feed = cur.fetchone()[0]
        storage.create_run(cur, "run-1", NOW, [feed], 1)
        storage.record_fetches(cur, "run-1", [_fetch(feed, NOW, 200)])
    first_id = scalar(db_url, "SELECT id FROM fetch_log WHERE run_id = 'run-1'")
    with database.connect(db_url) as conn, conn.cursor() as cur:
        storage.record_fetches(cur, "run-1", [_fetch(feed, retry_at, 304)])
    assert query(db_url, "SELECT id, fetched_at, status, etag FROM fetch_log WHERE run_id = 'run-1'") == \
        [(first_id, retry_at, 304, "e304")]
    expected = f"fetch_log_p{retry_at:%Y%m}"
    assert scalar(db_url, "SELECT tableoid::regclass::text FROM fetch_log WHERE run_id = 'run-1'") == expected
