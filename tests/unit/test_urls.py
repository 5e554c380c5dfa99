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


@pytest.mark.parametrize("link", [
    "http://example.com:abc/story",  # a port that is not a number
    "http://example.com:99999/story",  # a port out of range
    "http://example.com:-1/story",
    "http://[::1/story",  # a broken IPv6 host
    "http://example.com/\ud800",  # a lone surrogate (JSON can carry one)
    "https://example.com/" + "a" * 40_000,  # longer than MAX_LINK_CHARS
])
def test_a_link_that_is_no_url_has_no_canonical_form_and_never_raises(link):
    assert canonical_url(link) is None


def test_a_relative_link_against_a_broken_base_has_no_canonical_form():
    assert canonical_url("/story", "http://[::1/") is None
    assert canonical_url("/story", "http://example.com:abc/") is None


def test_non_text_links_and_bases_are_no_links():
    assert canonical_url(42) is None  # type: ignore[arg-type]
    base: object = ["https://example.com/"]
    assert canonical_url("/story", base) == "/story"  # type: ignore[arg-type]


def test_an_ipv6_host_keeps_its_brackets():
    assert canonical_url("http://[2001:DB8::1]:8080/a#x") == "http://[2001:db8::1]:8080/a"
    assert canonical_url("https://[::1]:443/") == "https://[::1]/"


def _plain_links(count: int, seed: int = 7) -> list[str]:
    """Links shaped like real ones, most of them in the fast path's plain form, some just off it."""
    import random

    rng = random.Random(seed)
    links = []
    for _ in range(count):
        labels = ["".join(rng.choice("abz09-") for _ in range(rng.randint(1, 8))) for _ in range(rng.randint(1, 3))]
        host = ".".join([*labels, rng.choice(["com", "org", "io", "xn--p1ai", "co"])])
        path = "".join(rng.choice("aZ09-._~/") for _ in range(rng.randint(0, 15)))
        tail = rng.choice(["", "", "#", "#top", "#a/?b=c", "?", "?b=2&a=1", ";p", "/./x", "/..", "%41", " x"])
        scheme = rng.choice(["http", "https", "https", "HTTPS"])
        links.append(f"{scheme}://{host}{'/' if path else ''}{path}{tail}")
    return links


def test_plain_links_canonicalize_as_w3lib_does():
    """The fast path (`_PLAIN`) gives w3lib's canonical form exactly, with and without a base."""
    from urllib.parse import urljoin

    from pipeline import urls

    plain = 0
    for link in _plain_links(20_000):
        fast = urls._plain(link)
        if fast is not None:
            plain += 1
            assert fast == urls._canonical_w3lib(link), link
        for base in (None, "https://feeds.example/news/", "http://other.example", "http://[::1"):
            try:
                expected = urls._canonical_w3lib(urljoin(base, link) if base else link)
            except ValueError:
                expected = None
            assert canonical_url(link, base) == expected, (link, base)
    assert plain > 1_500
