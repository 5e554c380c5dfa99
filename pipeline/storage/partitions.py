"""Month partitions of the history tables (migration 017): created ahead, dropped past retention.

The DDL itself is migration 017's SQL functions (`ensure_month_partitions`,
`drop_partitions_before`); these calls only say which table and which months. Functions
take an open cursor; the caller owns the transaction.
"""

from __future__ import annotations

from datetime import date, datetime

from psycopg2.extensions import cursor as Cursor

# Each partitioned table and its partition key (a timestamptz, partitioned by UTC month).
PARTITIONED = {
    "fetch_log": "fetched_at",
    "validation_results": "evaluated_at",
    "duplicates": "last_seen_at",
    "article_versions": "replaced_at",
}


def create_partitions(cur: Cursor, table: str, first_month: date, last_month: date) -> list[str]:
    """Create `table`'s partitions from `first_month` to `last_month`, and of every month its
    DEFAULT partition holds rows of (the rows move into them). Returns those created."""
    cur.execute("SELECT ensure_month_partitions(%s::regclass, %s, %s)", (table, first_month, last_month))
    return [name for (name,) in cur.fetchall()]


def drop_partitions_before(cur: Cursor, table: str, cutoff: datetime) -> list[str]:
    """Drop `table`'s partitions whose range ends at or before `cutoff` (never DEFAULT).
    Returns those dropped, oldest first."""
    cur.execute("SELECT drop_partitions_before(%s::regclass, %s)", (table, cutoff))
    return [name for (name,) in cur.fetchall()]


def prune_validation_runs(cur: Cursor, before: datetime) -> int:
    """Delete suite runs evaluated before `before` (their results go with them, by cascade)."""
    cur.execute("DELETE FROM validation_runs WHERE evaluated_at < %s", (before,))
    return cur.rowcount


def partitions(cur: Cursor, table: str) -> list[tuple[str, str, int]]:
    """`table`'s partitions: (name, bound as PostgreSQL prints it, estimated rows), by name."""
    cur.execute(
        """SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), greatest(c.reltuples, 0)::bigint
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = %s::regclass ORDER BY c.relname""",
        (table,),
    )
    return [(name, bound, rows) for name, bound, rows in cur.fetchall()]
