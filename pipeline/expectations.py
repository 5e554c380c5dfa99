"""The article data contract: the Great Expectations suites, in one place, as code.

Three suites:

* `articles_rows` runs on each run's batch of articles about to be loaded (new and
  updated ones), one row per article. A row failing any expectation is quarantined
  with every expectation it failed.
* `articles_feeds` runs on the same batch aggregated per feed (batch level).
  Failures are recorded and reported; the warn and fail levels
  (`QUARANTINE_*_RATIO`) decide whether the run fails.
* `articles_table`, `duplicates_table` and `clusters_table` run on the stored tables
  (the table-check DAG).

Parameters that depend on the run or the settings (`$PARAMETER`) are passed at
validation time, never frozen into the suites.
"""

from __future__ import annotations

from typing import Any

from pipeline import dates

ROWS_SUITE = "articles_rows"
FEEDS_SUITE = "articles_feeds"
TABLE_SUITE = "articles_table"
EARLIEST_PUBLISHED = dates.EARLIEST
MAX_TITLE_CHARS = 1_000
MAX_TEXT_CHARS = 1_000_000
# In UTF-8 bytes (the row frame measures them): under B-tree's limit of about 2,700.
MAX_KEY_BYTES = 2000
URL_PATTERN = r"^https?://[^\s/?#@]+(?:[/?][^\s]*)?$"
ROW_ID = "row_id"

# The table check reads the stored articles with what the expectations need.
TABLE_QUERY = """
SELECT a.id, a.canonical_url, extract(epoch FROM a.published_at)::float8 AS published_epoch,
       (f.id IS NOT NULL) AS feed_exists
FROM articles a LEFT JOIN feeds f ON f.id = a.feed_id
"""
# Every recorded duplicate points at an article that exists (or at none, if it was deleted).
DUPLICATES_QUERY = """
SELECT d.id, (d.matched_article_id IS NULL OR a.id IS NOT NULL) AS match_exists
FROM duplicates d LEFT JOIN articles a ON a.id = d.matched_article_id
"""


def iso_639_1_codes() -> list[str]:
    """The two-letter ISO 639-1 language codes, from the Unicode CLDR data Babel ships."""
    from babel import Locale

    return sorted(code for code in Locale("en").languages
                  if isinstance(code, str) and len(code) == 2 and code.isalpha())


def row_expectations(gx: Any) -> list[Any]:
    e = gx.expectations
    return [
        # Every article needs an identity, or dedup cannot recognize it next time.
        e.ExpectColumnValuesToNotBeNull(column="identity_key"),
        # Two different entries of one feed with one identity (a GUID reused for another
        # story) are ambiguous: both are held for review. Identical repeats are duplicates.
        e.ExpectCompoundColumnsToBeUnique(column_list=["feed_id", "identity_key"]),
        # Analysts join and dedup on the canonical URL: it must exist...
        e.ExpectColumnValuesToNotBeNull(column="canonical_url"),
        # ...and be a web address (no javascript:, data:, mailto: or relative leftovers).
        e.ExpectColumnValuesToMatchRegex(column="canonical_url", regex=URL_PATTERN),
        # URLs and identities are unique-indexed: a B-tree entry holds at most about 2,700
        # bytes, so a longer one would make the whole load fail, not just this row.
        e.ExpectColumnValuesToBeBetween(column="canonical_url_bytes", max_value=MAX_KEY_BYTES),
        e.ExpectColumnValuesToBeBetween(column="identity_key_bytes", max_value=MAX_KEY_BYTES),
        # An article with neither title nor text carries nothing to read.
        e.ExpectColumnValuesToBeBetween(column="content_chars", min_value=1),
        # A title is a line, not a body: longer ones are markup or feed bugs.
        e.ExpectColumnValueLengthsToBeBetween(column="title", max_value={"$PARAMETER": "max_title_chars"}),
        # Bound the body so one runaway entry cannot bloat the table.
        e.ExpectColumnValuesToBeBetween(column="text_chars", min_value=0, max_value=MAX_TEXT_CHARS),
        # Publication time within [1995-01-01, now + tolerance]: earlier or later is a bad date.
        e.ExpectColumnValuesToBeBetween(
            column="published_epoch",
            min_value=EARLIEST_PUBLISHED.timestamp(),
            max_value={"$PARAMETER": "latest_published"},
        ),
        # Language, when known, is an ISO 639-1 code (nulls are not checked).
        e.ExpectColumnValuesToBeInSet(column="language", value_set=iso_639_1_codes()),
    ]


def feed_expectations(gx: Any) -> list[Any]:
    """One row per feed of the run: `entries`, `undated_share`, `quarantined_share`."""
    e = gx.expectations
    return [
        # A healthy feed yields some entries, and no more than the per-feed cap.
        e.ExpectColumnValuesToBeBetween(column="entries", min_value=1,
                                        max_value={"$PARAMETER": "max_entries"}),
        # Mostly undated entries mean the feed's dates are broken: published_at is fetch time.
        e.ExpectColumnValuesToBeBetween(column="undated_share", max_value={"$PARAMETER": "max_undated_share"}),
        # A feed whose entries mostly fail the row contract is broken, not unlucky.
        e.ExpectColumnValuesToBeBetween(column="quarantined_share",
                                        max_value={"$PARAMETER": "feed_fail_ratio"}),
    ]


def table_expectations(gx: Any) -> list[Any]:
    e = gx.expectations
    return [
        # One row per article: no canonical URL twice (the unique index says so; this proves it).
        e.ExpectColumnValuesToBeUnique(column="canonical_url"),
        # No stored article dated in the future (beyond the tolerance).
        e.ExpectColumnValuesToBeBetween(column="published_epoch", max_value={"$PARAMETER": "latest_published"}),
        # Every article's feed exists.
        e.ExpectColumnValuesToBeInSet(column="feed_exists", value_set=[True]),
    ]


# Every story-cluster member, and the article that names its cluster, exists.
CLUSTERS_QUERY = """
SELECT c.article_id AS id, (a.id IS NOT NULL) AS member_exists, (s.id IS NOT NULL) AS cluster_exists
FROM article_clusters c
LEFT JOIN articles a ON a.id = c.article_id
LEFT JOIN articles s ON s.id = c.cluster_id
"""


def cluster_expectations(gx: Any) -> list[Any]:
    e = gx.expectations
    return [
        # A cluster member that no longer exists would make story counts lie.
        e.ExpectColumnValuesToBeInSet(column="member_exists", value_set=[True]),
        # The cluster is named by its first article: it must exist too.
        e.ExpectColumnValuesToBeInSet(column="cluster_exists", value_set=[True]),
    ]


def duplicate_expectations(gx: Any) -> list[Any]:
    # Every duplicate record's matched article exists.
    return [gx.expectations.ExpectColumnValuesToBeInSet(column="match_exists", value_set=[True])]
