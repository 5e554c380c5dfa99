"""The article data contract: the Great Expectations suite, in one place, as code.

Each expectation runs on the batch of articles about to be loaded (new and
updated ones), one row per article. A row failing any expectation is
quarantined with every expectation it failed. Parameters that depend on the
run (`latest_published`, the newest acceptable publication time) are passed
at validation time, never frozen into the suite.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

SUITE_NAME = "articles"
EARLIEST_PUBLISHED = datetime(1995, 1, 1, tzinfo=timezone.utc)
MAX_TITLE_CHARS = 1_000
MAX_TEXT_CHARS = 1_000_000
URL_PATTERN = r"^https?://[^\s/?#@]+(?:[/?][^\s]*)?$"
LANGUAGE_PATTERN = r"^[a-z]{2}$"


def build_expectations(gx: Any) -> list[Any]:
    """The suite's expectations. `gx` is the imported great_expectations module."""
    e = gx.expectations
    return [
        # Every article needs an identity, or dedup cannot recognize it next time.
        e.ExpectColumnValuesToNotBeNull(column="identity_key"),
        # Analysts join and dedup on the canonical URL: it must exist...
        e.ExpectColumnValuesToNotBeNull(column="canonical_url"),
        # ...and be a web address (no javascript:, data:, mailto: or relative leftovers).
        e.ExpectColumnValuesToMatchRegex(column="canonical_url", regex=URL_PATTERN),
        # An article with neither title nor text carries nothing to read.
        e.ExpectColumnValuesToBeBetween(column="content_chars", min_value=1),
        # A title is a line, not a body: longer ones are markup or feed bugs.
        e.ExpectColumnValueLengthsToBeBetween(column="title", max_value=MAX_TITLE_CHARS),
        # Bound the body so one runaway entry cannot bloat the table.
        e.ExpectColumnValueLengthsToBeBetween(column="text", max_value=MAX_TEXT_CHARS),
        # Publication time within [1995-01-01, now + tolerance]: earlier or later is a bad date.
        e.ExpectColumnValuesToBeBetween(
            column="published_epoch",
            min_value=EARLIEST_PUBLISHED.timestamp(),
            max_value={"$PARAMETER": "latest_published"},
        ),
        # Language, when known, is an ISO 639-1 code (nulls are not checked).
        e.ExpectColumnValuesToMatchRegex(column="language", regex=LANGUAGE_PATTERN),
    ]
