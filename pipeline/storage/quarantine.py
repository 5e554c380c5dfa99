"""Reading the quarantine (held entries), for the CLI.

Functions take an open cursor and run parameterized SQL; the caller owns the transaction.
"""

from __future__ import annotations

from typing import Any

from psycopg2.extensions import cursor as Cursor

from pipeline.storage.transactions import dict_rows


def quarantined_entries(cur: Cursor, include_released: bool) -> list[dict[str, Any]]:
    """Held entries (and released ones with `include_released`): id, feed, expectations, title."""
    cur.execute(
        """SELECT q.id, f.url AS feed, q.first_seen_at, q.times_seen, q.released_at,
                  (SELECT array_agg(DISTINCT r->>'expectation') FROM jsonb_array_elements(q.reasons) r)
                      AS expectations,
                  left(coalesce(q.article->>'title', q.entry->>'title', ''), 80) AS title
           FROM quarantine q JOIN feeds f ON f.id = q.feed_id
           WHERE %s OR q.released_at IS NULL ORDER BY q.id""",
        (include_released,),
    )
    return dict_rows(cur)


def quarantined_entry(cur: Cursor, entry_id: int) -> dict[str, Any] | None:
    """One quarantined entry whole: reasons, original entry, normalized form, history."""
    cur.execute(
        """SELECT q.id, f.url AS feed, q.run_id, q.last_run_id, q.first_seen_at, q.last_seen_at,
                  q.times_seen, q.released_at, q.reasons, q.entry, q.article
           FROM quarantine q JOIN feeds f ON f.id = q.feed_id WHERE q.id = %s""",
        (entry_id,),
    )
    rows = dict_rows(cur)
    return rows[0] if rows else None
