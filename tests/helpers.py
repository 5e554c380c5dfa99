"""Helpers for tests: SQL queries and small hand-written feeds."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape


from pipeline import database
from pipeline.database import drop_database  # noqa: F401 - the tiers import it from here
from pipeline.config import Settings


def query(url: str, statement: str, params: tuple = ()) -> list[tuple]:
    with database.connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement, params or None)
        return cur.fetchall()


def scalar(url: str, statement: str, params: tuple = ()):
    return query(url, statement, params)[0][0]


def database_url(admin_url: str, name: str) -> str:
    """The URL of database `name` on the server `admin_url` names."""
    return urlunsplit(urlsplit(admin_url)._replace(path="/" + name))




def free_port() -> int:
    """A loopback port free now (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss(items: list[dict], title: str = "Test feed", link: str = "https://news.example/",
        language: str | None = "en") -> bytes:
    """An RSS 2.0 document; each item maps element names to text (escaped here)."""
    parts = [f"<item>{''.join(f'<{k}>{escape(str(v))}</{k}>' for k, v in item.items())}</item>"
             for item in items]
    lang = f"<language>{language}</language>" if language else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>{escape(link)}</link>{lang}"
        f"{''.join(parts)}</channel></rss>"
    ).encode()


def item(n: int, **overrides: str) -> dict:
    """A plausible, valid RSS item number `n`."""
    base = {
        "title": f"Story number {n} about the harbour",
        "link": f"https://news.example/story/{n}",
        "guid": f"story-{n}",
        "pubDate": "Mon, 16 Nov 2026 10:00:00 +0000",
        "description": f"<p>Body of story {n}. It has a few words.</p>",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def settings_for_tests(data_dir: Path) -> Settings:
    """Settings for tests: short timeouts, small shards, loopback open, `data_dir` private."""
    return Settings(
        data_dir=data_dir,
        connect_timeout=2.0,
        read_timeout=2.0,
        total_timeout=5.0,
        max_body_bytes=1024 * 1024,
        fetch_concurrency=8,
        per_host_concurrency=8,
        shard_size=2,
        quarantine_min_entries=1,
        workers=1,  # shards parsed in the test's process (the default is the CPU count)
    ).allowing("127.0.0.0/8")


def staging_that_loses_the_connection_for(feed_url: str):
    """A stand-in for `storage.stage_batches` that raises what a lost connection raises
    when its batch holds the feed at `feed_url`, and stages any other batch: a shard that
    fails after recording its fetches, for a test to monkeypatch in."""
    import psycopg2

    from pipeline import storage

    original = storage.stage_batches

    def stage(cur, run_id, batches, *args):
        cur.execute("SELECT id FROM feeds WHERE url = %s", (feed_url,))
        if cur.fetchone()[0] in {b.feed_id for b in batches}:
            raise psycopg2.OperationalError("server closed the connection unexpectedly")
        return original(cur, run_id, batches, *args)

    return stage
