"""Feed discovery: the feeds a web page announces with <link rel="alternate">. Pure."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin

FEED_TYPES = {
    "application/rss+xml", "application/atom+xml", "application/rdf+xml",
    "application/feed+json", "application/json", "application/xml", "text/xml",
}


class _AlternateLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): (v or "") for k, v in attrs}
        if tag == "base" and values.get("href") and self.base is None:
            self.base = values["href"]
        rels = values.get("rel", "").lower().split()
        kind = values.get("type", "").lower().split(";")[0].strip()
        if tag == "link" and "alternate" in rels and kind in FEED_TYPES and values.get("href"):
            self.found.append(values["href"])


def alternate_feeds(html: str, page_url: str) -> list[str]:
    """Absolute URLs of the feeds a page links to, in page order, without repeats."""
    parser = _AlternateLinks()
    parser.feed(html)
    base = urljoin(page_url, parser.base) if parser.base else page_url
    urls: list[str] = []
    for href in parser.found:
        url = urljoin(base, href.strip())
        if url.startswith(("http://", "https://")) and url not in urls:
            urls.append(url)
    return urls
