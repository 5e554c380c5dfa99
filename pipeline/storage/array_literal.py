"""Lists sent to PostgreSQL as one array literal ('{1,2,3}'), not as ARRAY[...].

psycopg2 renders a Python list as `ARRAY[1, 2, 3]`: the server parses one expression per
element, which for the load's look-ups of thousands of keys costs several times the
look-up itself. A literal is one string, parsed by the array type's input function; the
statement casts it (`= ANY(%s::text[])`, `unnest(%s::bigint[])`).
"""

from __future__ import annotations

from collections.abc import Iterable


def array_literal(values: Iterable[object]) -> str:
    """`values` as a PostgreSQL array literal: None is NULL, every other value its str(),
    double-quoted and escaped (so any text round-trips)."""
    return "{" + ",".join("NULL" if v is None else _quoted(str(v)) for v in values) + "}"


def _quoted(text: str) -> str:
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if '"' in text:
        text = text.replace('"', '\\"')
    return f'"{text}"'
