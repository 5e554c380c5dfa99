import pytest

from pipeline.errors import FeedListError
from pipeline.feedlist import parse_feed_list, read_feed_list
from pipeline.config import DEFAULT_FEEDS_FILE


def test_plain_list_skips_comments_and_repeats():
    sources = parse_feed_list("# mine\nhttps://a.example/rss\n\nhttps://b.example/atom\nhttps://a.example/rss\n")
    assert [s.url for s in sources] == ["https://a.example/rss", "https://b.example/atom"]


def test_plain_list_rejects_non_urls_with_the_line_number():
    with pytest.raises(FeedListError, match="line 2"):
        parse_feed_list("https://a.example/rss\nnot a url\n")


def test_opml_with_nested_outlines_and_titles():
    opml = """<?xml version="1.0"?><opml version="2.0"><head/><body>
      <outline text="News"><outline type="rss" text="A" xmlUrl="https://a.example/rss"/></outline>
      <outline type="rss" text="B" xmlUrl="https://b.example/rss"/></body></opml>"""
    sources = parse_feed_list(opml)
    assert [(s.url, s.title) for s in sources] == [("https://a.example/rss", "A"), ("https://b.example/rss", "B")]


def test_default_feed_list_is_real_feeds():
    sources = read_feed_list(DEFAULT_FEEDS_FILE)
    assert len(sources) >= 10 and all(s.url.startswith("https://") for s in sources)


def test_shared_opml_exports_parse(shared_dir):
    files = sorted((shared_dir / "corpora" / "opml").rglob("*.opml"))
    assert files
    parsed = [parse_feed_list(f.read_text(encoding="utf-8", errors="replace")) for f in files[:40]]
    assert any(parsed)


@pytest.mark.parametrize(("line", "why"), [
    ("http://example.com:99999/rss", "not a valid URL"),
    ("http://example.com:abc/rss", "not a valid URL"),
    ("https://example.com/" + "a" * 3000, "longer than 2048 characters"),
])
def test_a_line_no_feed_could_be_fetched_from_is_refused_naming_it(line, why):
    """A port that is no port would stop the whole shard that fetched it; an address past
    2048 characters cannot be a feed's key."""
    with pytest.raises(FeedListError, match=f"line 2: .*{why}"):
        parse_feed_list(f"https://ok.example/feed\n{line}\n")


def test_an_opml_outline_no_feed_could_be_fetched_from_is_left_out_saying_why(caplog):
    opml = """<opml version="2.0"><body>
      <outline type="rss" xmlUrl="https://ok.example/feed"/>
      <outline type="rss" xmlUrl="http://bad.example:99999/feed"/>
    </body></opml>"""
    assert [s.url for s in parse_feed_list(opml)] == ["https://ok.example/feed"]
    assert "OPML outline left out: 'http://bad.example:99999/feed' is not a valid URL" in caplog.text
