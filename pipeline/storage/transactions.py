"""Transaction helpers shared by the storage modules: savepoints, connection errors, row dicts.

Functions take an open cursor and run parameterized SQL; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
from psycopg2.extensions import cursor as Cursor

PAGE = 1000


@contextmanager
def savepoint(cur: Cursor) -> Iterator[None]:
    """A sub-transaction: on an exception, what ran inside is undone and the rest kept."""
    cur.execute("SAVEPOINT contained")
    try:
        yield
    except BaseException:
        if not cur.connection.closed:
            cur.execute("ROLLBACK TO SAVEPOINT contained")
        raise
    cur.execute("RELEASE SAVEPOINT contained")


def is_connection_error(exc: BaseException) -> bool:
    """A lost or shut-down server (transient: the stage fails and is retried), as opposed to
    a row the server refuses (data: that row or feed fails)."""
    return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError))


def dict_rows(cur: Cursor) -> list[dict[str, Any]]:
    names = [d.name for d in cur.description]
    return [dict(zip(names, row, strict=False)) for row in cur.fetchall()]
