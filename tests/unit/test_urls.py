import pytest

from pipeline.urls import canonical_url


@pytest.mark.parametrize(
    ("link", "base", "expected"),
    [
        ("HTTP://Example.COM/a/b", None, "http://example.com/a/b"),
        ("https://example.com:443/x", None, "https://example.com/x"),
        ("http://example.com:8080/x", None, "http://example.com:8080/x"),
        ("https://example.com/a#section-2", None, "https://example.com/a"),
        ("https://example.com/a?utm_source=rss&utm_medium=feed&id=7", None, "https://example.com/a?id=7"),
        ("https://example.com/a?fbclid=XYZ&gclid=1&b=2&a=1", None, "https://example.com/a?a=1&b=2"),
        ("../story/1?x=1", "https://example.com/news/feed.xml", "https://example.com/story/1?x=1"),
        ("/story/2", "https://example.com/news/", "https://example.com/story/2"),
        ("https://example.com", None, "https://example.com/"),
    ],
)
def test_canonical_form(link, base, expected):
    assert canonical_url(link, base) == expected


def test_same_article_through_different_links_gets_one_url():
    a = canonical_url("https://Example.com/story?utm_campaign=x&id=1#top")
    b = canonical_url("https://example.com/story?id=1&fbclid=abc")
    assert a == b


def test_missing_link_is_none_and_non_web_links_are_kept_for_validation():
    assert canonical_url(None) is None
    assert canonical_url("   ") is None
    assert canonical_url("javascript:alert(1)") == "javascript:alert(1)"
