"""Bulk writes through COPY: rows streamed in PostgreSQL's text format.

COPY takes rows at a fraction of the cost of INSERT ... VALUES (no statement text to build
and parse per page); what stays per row is the server's work (indexes, constraints).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor


def text_field(value: Any) -> str:
    """One value in COPY's text format: None is NULL; bytes are bytea hex; the rest is str()."""
    if value is None:
        return "\\N"
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\\\x" + bytes(value).hex()
    if isinstance(value, bool):
        return "t" if value else "f"
    text = str(value)
    # plain replaces, each a C scan that copies nothing when its character is absent: several
    # times faster than str.translate, which builds the string a character at a time
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    return text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_rows(cur: Cursor, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """COPY `rows` into `table`'s `columns` (a temporary table's name works too), streamed:
    the rows are rendered as the server reads them, not all at once."""
    copy_lines(cur, table, columns, ("\t".join(map(text_field, row)) + "\n" for row in rows))


def copy_lines(cur: Cursor, table: str, columns: Sequence[str], lines: Iterable[str]) -> None:
    """COPY rows already in the text format (tab-separated, escaped, each ending in a newline).

    An exception raised while the rows are produced (a value that cannot be rendered) ends
    the COPY with the rows before it and is then raised here as it was, for the caller's
    transaction or savepoint to undo them. Raised inside the COPY, psycopg2 would abort it
    as QueryCanceled, which reads as a lost connection, not as the row's failure."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
    reader = _LineReader(iter(lines))
    cur.copy_expert(statement.as_string(cur.connection), reader, size=_CHUNK)
    if reader.failure is not None:
        raise reader.failure


_CHUNK = 1 << 18


class _LineReader(io.TextIOBase):
    """A file whose `read(size)` takes lines from an iterator as they are asked for."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._rest = ""
        self.failure: Exception | None = None  # what producing a line raised: the lines end there

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        limit = -1 if size is None else size
        chunks, have = [self._rest], len(self._rest)
        while (limit < 0 or have < limit) and self.failure is None:
            try:
                line = next(self._lines, None)
            except Exception as exc:  # noqa: BLE001 - raised by copy_lines once the COPY has ended
                self.failure = exc
                break
            if line is None:
                break
            chunks.append(line)
            have += len(line)
        text = "".join(chunks)
        if 0 <= limit < len(text):
            text, self._rest = text[:limit], text[limit:]
        else:
            self._rest = ""
        return text
