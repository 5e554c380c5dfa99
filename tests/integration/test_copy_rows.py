"""COPY's text format: what the staging and the load write in bulk comes back as it went in."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.database import connect
from pipeline.storage.copy_rows import copy_rows


def test_every_kind_of_value_survives_copy(db_url):
    rows = [
        (1, "tab\there, newline\nthere, return\r, backslash \\ and \\N literally", b"\x00\x01\xff",
         True, datetime(2026, 12, 6, 12, 30, tzinfo=UTC), '{"a": "\\"quoted\\"\\n"}'),
        (2, "", b"", False, None, None),
        (3, None, None, None, datetime(2026, 1, 1, tzinfo=UTC), '["ünïcödé", "日本語", "\\u00e9"]'),
    ]
    with connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("""CREATE TEMP TABLE copied (n int, t text, b bytea, f boolean, at timestamptz, j jsonb)
                       ON COMMIT DROP""")
        copy_rows(cur, "copied", ("n", "t", "b", "f", "at", "j"), rows)
        cur.execute("SELECT n, t, b, f, at, j::text FROM copied ORDER BY n")
        back = [(n, t, bytes(b) if b is not None else None, f, at, j) for n, t, b, f, at, j in cur.fetchall()]
    assert [r[:5] for r in back] == [r[:5] for r in rows]
    assert back[0][5] == '{"a": "\\"quoted\\"\\n"}'
    assert back[1][5] is None
    assert back[2][5] == '["ünïcödé", "日本語", "é"]'
