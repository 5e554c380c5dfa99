"""Encodings: declared, undeclared and wrong ones end as correct Unicode (NFC), with no
replacement characters where the bytes could be decoded."""

import unicodedata
from datetime import datetime, timezone

import pytest

from pipeline.normalize import normalize_entry
from pipeline.parse import parse_feed
from pipeline.records import ParsedEntry


def title_of(body: bytes, content_type: str | None = None) -> str:
    parsed = parse_feed(body, "https://news.example/feed.xml", content_type)
    article = normalize_entry(ParsedEntry(1, 0, parsed.entries[0], datetime.now(timezone.utc)))
    assert "\ufffd" not in article.title + article.text
    assert unicodedata.is_normalized("NFC", article.title)
    return article.title


def feed(title: bytes, declaration: bytes = b'<?xml version="1.0" encoding="UTF-8"?>') -> bytes:
    return (declaration + b'<rss version="2.0"><channel><title>t</title><item><title>' + title
            + b"</title><link>https://news.example/1</link><description>x</description></item></channel></rss>")


@pytest.mark.parametrize("body, expected", [
    # windows-1252 bytes in a body labelled UTF-8
    (feed(b"Don\x92t \x93quote\x94 caf\xe9"), "Don\u2019t \u201cquote\u201d caf\u00e9"),
    # ...mixed with real UTF-8, which must not be garbled in passing
    (feed("\u0141\u00f3d\u017a za\u017c\u00f3\u0142\u0107".encode() + b" \x96 don\x92t"),
     "\u0141\u00f3d\u017a za\u017c\u00f3\u0142\u0107 \u2013 don\u2019t"),
    # double-encoded UTF-8 (mojibake) in a correct UTF-8 body
    (feed("don\u2019t \u2013 caf\u00e9".encode().decode("cp1252").encode()), "don\u2019t \u2013 caf\u00e9"),
    # declared and correct: ISO-8859-1, windows-1251, Shift_JIS
    (feed("caf\u00e9".encode("latin-1"), b'<?xml version="1.0" encoding="ISO-8859-1"?>'), "caf\u00e9"),
    (feed("\u041c\u043e\u0441\u043a\u0432\u0430".encode("cp1251"), b'<?xml version="1.0" encoding="windows-1251"?>'),
     "\u041c\u043e\u0441\u043a\u0432\u0430"),
    (feed("\u6771\u4eac".encode("shift_jis"), b'<?xml version="1.0" encoding="Shift_JIS"?>'), "\u6771\u4eac"),
    # decomposed accents end composed (NFC)
    (feed("Cafe\u0301".encode()), "Caf\u00e9"),
])
def test_text_ends_as_correct_unicode(body, expected):
    assert title_of(body) == expected


def test_the_http_charset_wins_over_a_wrong_declaration():
    body = feed("caf\u00e9".encode("latin-1"), b'<?xml version="1.0" encoding="UTF-8"?>')
    assert title_of(body, "application/rss+xml; charset=ISO-8859-1") == "caf\u00e9"


def test_a_repaired_body_is_reported():
    parsed = parse_feed(feed(b"Don\x92t"), "https://news.example/feed.xml")
    assert "windows-1252 bytes in a UTF-8 body, repaired" in (parsed.bozo_reason or "")
