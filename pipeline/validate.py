"""Validate stage: run the Great Expectations suite on a batch of articles.

GX is imported lazily (it costs seconds and hundreds of MB) and its context
is built once per process. The result is, per failing row, every failed
expectation with the observed value; rows are never dropped here, the
caller quarantines them. `threshold_breach` says when too large a share of
a run failed, so the run can fail loudly.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Sequence

from pipeline.expectations import SUITE_NAME, build_expectations
from pipeline.records import Article

ROW_ID = "row_id"


@dataclass(frozen=True)
class Failure:
    expectation: str
    column: str | None
    observed: Any

    def to_json(self) -> dict[str, Any]:
        return {"expectation": self.expectation, "column": self.column, "observed": self.observed}


@dataclass(frozen=True)
class _Validator:
    gx: Any
    batch_definition: Any
    suite: Any


@lru_cache(maxsize=1)
def _validator() -> _Validator:
    """Import GX and build its (ephemeral) context, data source and suite, once per process."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)  # GX sets INFO on import

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("news").add_dataframe_asset("articles")
    batch_definition = asset.add_batch_definition_whole_dataframe("batch")
    suite = gx.ExpectationSuite(name=SUITE_NAME, expectations=build_expectations(gx))
    return _Validator(gx, batch_definition, context.suites.add(suite))


def _frame(articles: Sequence[Article]) -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            ROW_ID: range(len(articles)),
            "identity_key": [a.identity_key for a in articles],
            "canonical_url": [a.canonical_url for a in articles],
            "title": [a.title for a in articles],
            "text": [a.text for a in articles],
            "content_chars": [len(a.title) + len(a.text) for a in articles],
            "published_epoch": [a.published_at.timestamp() for a in articles],
            "language": [a.language for a in articles],
        }
    )


def _plain(value: Any) -> Any:
    """numpy scalars -> Python, NaN -> None, long strings shortened for the record."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, str) and len(value) > 300:
        return value[:300] + f"... ({len(value)} chars)"
    return value


def validate_articles(
    articles: Sequence[Article], now: datetime, future_tolerance: timedelta
) -> dict[int, list[Failure]]:
    """Failed expectations per row index of `articles`; rows that pass are absent."""
    if not articles:
        return {}
    validator = _validator()
    batch = validator.batch_definition.get_batch(batch_parameters={"dataframe": _frame(articles)})
    result = batch.validate(
        validator.suite,
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW_ID]},
        expectation_parameters={"latest_published": (now + future_tolerance).timestamp()},
    )
    failures: dict[int, list[Failure]] = {}
    for outcome in result.results:
        if outcome.success:
            continue
        config = outcome.expectation_config
        column = config.kwargs.get("column")
        if outcome.exception_info and outcome.exception_info.get("raised_exception"):
            raise RuntimeError(f"{config.type} on {column} raised: {outcome.exception_info}")
        for hit in outcome.result.get("unexpected_index_list") or ():
            row = int(_plain(hit[ROW_ID]))
            failures.setdefault(row, []).append(
                Failure(config.type, column, _plain(hit.get(column)))
            )
    return failures


def threshold_breach(
    entries: int,
    quarantined_by_feed: Counter[str],
    reasons: Counter[str],
    fail_ratio: float,
    min_entries: int,
) -> str | None:
    """A message naming feeds and expectations when the quarantined share of a run's
    entries passes `fail_ratio`; None otherwise, or when the run has fewer than
    `min_entries` entries (too few for a share to mean anything)."""
    quarantined = sum(quarantined_by_feed.values())
    if entries < max(min_entries, 1) or quarantined / entries <= fail_ratio:
        return None
    feeds = ", ".join(f"{url} ({n})" for url, n in quarantined_by_feed.most_common(5))
    failed = ", ".join(f"{name} ({n})" for name, n in reasons.most_common(5))
    return (
        f"{quarantined} of {entries} entries failed validation "
        f"({quarantined / entries:.0%} > {fail_ratio:.0%}); feeds: {feeds}; expectations: {failed}"
    )
