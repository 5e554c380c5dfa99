"""Benchmark corpora: real news feeds replicated into distinct feeds, or generated ones."""

from __future__ import annotations

import random
import re
from pathlib import Path

_TITLE = re.compile(rb"<title([^>]*)>")
# Article addresses in <link>, <guid>, <id> and href="...": give each replica its own host.
_ADDRESS = re.compile(rb"(<(?:link|guid|id)\b[^>]*>\s*(?:<!\[CDATA\[)?\s*https?://|href=\"https?://)")

WORDS = ("minister harbour council election storm market river bridge budget court school "
         "hospital strike ferry museum railway festival police energy water housing climate "
         "union talks vote report inquiry mayor farmers port airport").split()


def replicate(body: bytes, replica: int) -> bytes:
    """A distinct copy of a feed: its titles and article addresses carry the replica number."""
    tag = f"r{replica}.".encode()
    body = _ADDRESS.sub(lambda m: m.group(1) + tag, body)
    return _TITLE.sub(lambda m: m.group(0) + f"[{replica}] ".encode(), body)


def shared_feeds(shared: Path) -> list[bytes]:
    corpus = shared / "corpora" / "news-feeds"
    return [p.read_bytes() for p in sorted(corpus.rglob("*.xml"))]


def bench_feeds(shared: Path) -> list[bytes]:
    """The 200 distinct real feeds of ../shared/corpora/bench-feeds (files named by hash)."""
    corpus = shared / "corpora" / "bench-feeds" / "feeds"
    return [p.read_bytes() for p in sorted(corpus.iterdir()) if p.is_file()]


SOURCES = {"news-feeds": shared_feeds, "bench-feeds": bench_feeds}


def generated_feed(n: int, entries: int = 25, seed: int = 0) -> bytes:
    rng = random.Random(seed * 100_003 + n)
    items = []
    for i in range(entries):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(60, 300)))
        title = " ".join(rng.choice(WORDS) for _ in range(8)).capitalize()
        items.append(
            f"<item><title>{title}</title><link>https://feed{n}.example/story/{i}</link>"
            f"<guid>feed{n}-{i}</guid><pubDate>Mon, 16 Nov 2026 {i % 24:02d}:00:00 +0000</pubDate>"
            f"<description>&lt;p&gt;{words}&lt;/p&gt;</description></item>"
        )
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Feed {n}</title>'
            f"<link>https://feed{n}.example/</link>{''.join(items)}</channel></rss>").encode()


def build_corpus(count: int, shared: Path | None, source: str = "news-feeds") -> tuple[list[bytes], str]:
    """`count` distinct feed bodies, and a description of where they came from: real feeds of
    ../shared/corpora/`source` (news-feeds or bench-feeds) replicated, else generated ones."""
    if shared is not None and (shared / "corpora" / source).is_dir():
        base = SOURCES[source](shared)
        return ([replicate(base[i % len(base)], i // len(base)) for i in range(count)],
                f"{len(base)} real feeds (../shared/corpora/{source}) replicated into {count} distinct feeds")
    return [generated_feed(i) for i in range(count)], f"{count} generated feeds (../shared absent)"
