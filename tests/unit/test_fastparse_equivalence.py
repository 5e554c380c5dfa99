"""The proof that the fast parse path gives the articles feedparser gives.

For every file of `../shared/corpora/news-feeds`, `bench-feeds` and
`feedparser-tests/wellformed`, the body is parsed with `FEED_PARSER=auto` and with
`FEED_PARSER=feedparser`, each entry is normalized, and the `Article` records are compared
field by field (with the feed's title, link, language and ttl). A body the fast path
refuses is feedparser's under both settings; the test counts how many each path took and
prints it (`pytest -s`). Skipped when ../shared is absent. `make test-fast` (the edit-test
loop) sets EQUIVALENCE_EVERY=3: every third body of each corpus; `make test` compares them all.
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timezone

import pytest

from pipeline.normalize import normalize_entry
from pipeline.parse import parse_feed
from pipeline.records import ParsedEntry

FETCHED = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
URL = "http://example.com/feed.xml"
ARTICLE_FIELDS = ("title", "text", "html", "canonical_url", "guid", "identity_key", "published_at",
                  "published_source", "published_raw", "date_issue", "authors", "tags", "language",
                  "language_source", "content_hash", "word_count", "link", "feed_link")
FEED_FIELDS = ("is_feed", "version", "title", "link", "language", "ttl_minutes", "entries_over_cap",
               "nuls_removed")
_HEADER = re.compile(rb"^Header:\s*Content-type:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
CORPORA = ("news-feeds", "bench-feeds", "feedparser-tests/wellformed")
EVERY = int(os.environ.get("EQUIVALENCE_EVERY", "1"))


def bodies(shared_dir, corpus: str):
    """(name, body, HTTP content type) of each file of a corpus (feedparser's test files name
    theirs in a `Header:` line)."""
    root = shared_dir / "corpora" / corpus
    for path in sorted(p for p in root.rglob("*") if p.is_file())[::EVERY]:
        if path.suffix in (".md", ".tsv") or path.name == "LICENSE":
            continue
        body = path.read_bytes()
        header = _HEADER.search(body[:2000]) if corpus.startswith("feedparser-tests") else None
        yield str(path.relative_to(root)), body, header.group(1).decode("latin-1") if header else None


def articles(parsed):
    return [normalize_entry(ParsedEntry(1, seq, raw, FETCHED, parsed.language, parsed.link or URL))
            for seq, raw in enumerate(parsed.entries)]


def differences(name: str, body: bytes, content_type: str | None) -> tuple[str, list[str]]:
    """(the parser `auto` chose, every difference from feedparser's reading)."""
    fast = parse_feed(body, URL, content_type, parser="auto")
    if fast.parser != "lxml":
        return fast.parser, []
    reference = parse_feed(body, URL, content_type, parser="feedparser")
    found = [f"{name}: feed {field}: {getattr(fast, field)!r} != {getattr(reference, field)!r}"
             for field in FEED_FIELDS if getattr(fast, field) != getattr(reference, field)]
    ours, theirs = articles(fast), articles(reference)
    if len(ours) != len(theirs):
        found.append(f"{name}: {len(ours)} entries != {len(theirs)}")
    for a, b in zip(ours, theirs):
        found += [f"{name}: entry {a.seq} {field}: {str(getattr(a, field))[:200]!r} != "
                  f"{str(getattr(b, field))[:200]!r}"
                  for field in ARTICLE_FIELDS if getattr(a, field) != getattr(b, field)]
    return fast.parser, found


@pytest.mark.shared
def test_both_parse_paths_give_the_same_articles(shared_dir):
    started = time.perf_counter()
    taken: dict[str, dict[str, int]] = {}
    found: list[str] = []
    for corpus in CORPORA:
        counts = taken.setdefault(corpus, {"lxml": 0, "feedparser": 0, "jsonfeed": 0})
        for name, body, content_type in bodies(shared_dir, corpus):
            parser, diffs = differences(f"{corpus}/{name}", body, content_type)
            counts[parser] += 1
            found += diffs
    for corpus, counts in taken.items():
        print(f"{corpus}: {counts}")
    print(f"equivalence over {sum(sum(c.values()) for c in taken.values())} bodies "
          f"in {time.perf_counter() - started:.1f} s")
    assert not found, "\n".join(found[:30])
    # The fast path takes the bulk of real feeds: of the XML bodies of news-feeds and
    # bench-feeds together at least 95% (news-feeds alone: all but a truncated body, an
    # illegally nested one and one whose encoding had to be repaired).
    real = [taken[c] for c in ("news-feeds", "bench-feeds")]
    fast, xml = sum(c["lxml"] for c in real), sum(c["lxml"] + c["feedparser"] for c in real)
    assert xml >= 240 // EVERY and fast / xml >= 0.95, (fast, xml)
    assert taken["news-feeds"]["lxml"] / sum(taken["news-feeds"].values()) >= 0.94
    assert taken["feedparser-tests/wellformed"]["lxml"] >= 700 // EVERY  # 740: the rest is Atom 0.3, XHTML, ...
