"""Validation results of every suite run (`validation_runs`, `validation_results`).

Functions take an open cursor and run parameterized SQL; the caller owns the transaction.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import Json, execute_values


def mark_validated(cur: Cursor, run_id: str, now: datetime, error: str | None,
                   warning: str | None = None, data_docs: str | None = None) -> None:
    cur.execute(
        """UPDATE ingest_runs SET validated_at = %s, validation_error = %s,
               validation_warning = %s, data_docs = %s WHERE run_id = %s""",
        (now, error, warning, data_docs, run_id),
    )


def record_validation(cur: Cursor, run_id: str, outcome: Any, now: datetime) -> None:
    """Store one suite run and its per-expectation results (replacing a retried one)."""
    cur.execute(
        """INSERT INTO validation_runs (run_id, suite, success, evaluated_at, element_count,
                                        statistics, data_docs)
           VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (run_id, suite) DO UPDATE SET success = EXCLUDED.success,
               evaluated_at = EXCLUDED.evaluated_at, element_count = EXCLUDED.element_count,
               statistics = EXCLUDED.statistics, data_docs = EXCLUDED.data_docs
           RETURNING id""",
        (run_id, outcome.suite, outcome.success, now, outcome.element_count,
         Json(outcome.statistics), outcome.data_docs),
    )
    validation_id = cur.fetchone()[0]
    cur.execute("DELETE FROM validation_results WHERE validation_id = %s", (validation_id,))
    # evaluated_at, the suite run's time, is the partition key of validation_results
    # (migration 017): a run's results sit in its month's partition and are dropped with it.
    execute_values(
        cur,
        """INSERT INTO validation_results (validation_id, expectation, column_name, success,
               element_count, unexpected_count, unexpected_percent, observed, evaluated_at) VALUES %s
           ON CONFLICT DO NOTHING""",
        [(validation_id, e.expectation, e.column or "", e.success, e.element_count,
          e.unexpected_count, e.unexpected_percent, Json(e.observed, dumps=_dumps), now)
         for e in outcome.expectations],
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)
