"""The parse stage's bounds: feedparser never opens a path, and entries past the cap are
counted, never built, so a body of a million tiny entries costs what 500 do."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.adversarial import tiny_entries
from pipeline import parse
from pipeline.entry_cap import cap_entries

SECRET_FEED = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>local</title>'
               b"<item><title>secret local file</title><link>https://local.example/1</link></item>"
               b"</channel></rss>")


def test_a_body_that_is_a_path_is_not_opened(tmp_path):
    local = tmp_path / "feed.xml"
    local.write_bytes(SECRET_FEED)
    for body in (str(local).encode(), b"/dev/zero", b"file://" + str(local).encode()):
        started = time.monotonic()
        parsed = parse.parse_feed(body, "https://publisher.example/feed")
        assert time.monotonic() - started < 2
        assert not parsed.is_feed and parsed.entries == ()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_a_body_of_a_million_tiny_entries_is_capped_before_it_is_built():
    """In a process of its own, so its peak resident memory (C allocations included) is
    the parse's: a 10 MB body of tiny entries in at most 300 MB and 10 s."""
    found = tiny_entries()
    assert (found["kept"], found["over_cap"], found["well_formed"]) == (500, 359_500, True)
    assert found["seconds"] < 10 and found["peak_mb"] < 300, found


def test_the_cap_keeps_the_document_well_formed_for_each_format():
    atom = (b'<feed xmlns="http://www.w3.org/2005/Atom"><title>a</title>'
            + b"".join(b"<entry><id>%d</id><title>e%d</title></entry>" % (n, n) for n in range(5)) + b"</feed>")
    rdf = (b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/">'
           b"<channel><title>r</title></channel>"
           + b"".join(b'<item rdf:about="https://r.example/%d"><title>r%d</title></item>' % (n, n) for n in range(5))
           + b"</rdf:RDF>")
    for body in (atom, rdf):
        capped = cap_entries(body, 3)
        assert capped.over_cap == 2
        parsed = parse.parse_feed(body, "https://publisher.example/", "application/xml", max_entries=3)
        assert [e["title"] for e in parsed.entries] == [e["title"] for e in
                                                        parse.parse_feed(body, "https://publisher.example/").entries][:3]
        assert parsed.bozo_reason is None and parsed.entries_over_cap == 2


def test_an_unreadable_document_is_cut_textually():
    body = b"<rss><channel>" + b"".join(b"<item><title>t%d &nbsp;</title></item>" % n for n in range(10))
    capped = cap_entries(body, 4)
    assert capped.over_cap == 6 and capped.body.count(b"<item>") == 4


def test_entries_within_the_cap_are_untouched():
    body = b"<rss><channel>" + b"<item><title>t</title></item>" * 3 + b"</channel></rss>"
    assert cap_entries(body, 3).body is body


def test_a_nul_near_the_start_does_not_lift_the_entry_cap():
    """A NUL after the declaration (expat and lxml refuse the body; feedparser's loose
    parser reads it): the entries past the cap are still cut from the bytes and counted."""
    body = (b'<?xml version="1.0"?>\x00<rss version="2.0"><channel><title>t</title>'
            + b"".join(b"<item><title>n%d</title><link>http://a.example/%d</link></item>" % (i, i)
                       for i in range(5000)) + b"</channel></rss>")
    capped = cap_entries(body, 100)  # before any parser builds an entry
    assert capped.over_cap == 4900 and len(capped.body) < len(body) // 40
    parsed = parse.parse_feed(body, "http://a.example/f", max_entries=100)
    assert len(parsed.entries) == 100 and parsed.entries_over_cap == 4900
