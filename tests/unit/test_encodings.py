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


@pytest.mark.parametrize("text, codec", [
    ("\u041c\u043e\u0441\u043a\u0432\u0430 - \u0441\u0442\u043e\u043b\u0438\u0446\u0430 \u0420\u043e\u0441\u0441\u0438\u0438, "
     "\u043a\u0440\u0443\u043f\u043d\u0435\u0439\u0448\u0438\u0439 \u0433\u043e\u0440\u043e\u0434", "koi8-r"),
    ("\u0397 \u0391\u03b8\u03ae\u03bd\u03b1 \u03b5\u03af\u03bd\u03b1\u03b9 \u03b7 \u03c0\u03c1\u03c9\u03c4\u03b5\u03cd"
     "\u03bf\u03c5\u03c3\u03b1 \u03c4\u03b7\u03c2 \u0395\u03bb\u03bb\u03ac\u03b4\u03b1\u03c2", "iso-8859-7"),
    ("\u6771\u4eac\u90fd\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3042\u308b\u3002", "shift_jis"),
    ("Promotoria abre inqu\u00e9rito para apurar suspeita de improbidade, a\u00e7\u00e3o", "cp1252"),
])
def test_an_undeclared_legacy_encoding_is_read_correctly(text, codec):
    assert title_of(feed(text.encode(codec), b'<?xml version="1.0"?>')) == text
