"""Bodies meant as UTF-8 that are not: turned into UTF-8 before feedparser sees them.

A body declaring UTF-8 (HTTP charset or XML declaration), or declaring nothing (XML's
default is UTF-8), that does not decode as UTF-8 is one of two things:

* UTF-8 with stray windows-1252 bytes: a CMS pasting from a word processor leaves 0x92
  (') or 0x93/0x94 (" ") in otherwise valid UTF-8. Decoding the whole body as
  windows-1252 (feedparser's fallback) would garble every real UTF-8 character in it;
  replacement characters would lose the quotes. Each invalid byte is read as
  windows-1252 (the five it leaves undefined as Latin-1); everything else stays UTF-8.
* An undeclared legacy encoding (more invalid bytes than valid UTF-8 characters). For a
  non-Latin script (Cyrillic, Greek, CJK, ...) charset-normalizer's detection is used;
  for Latin text it guesses among too many look-alikes on short bodies, so
  windows-1252 (what browsers assume) is used, byte by byte as above.

Bodies declaring another encoding are left to feedparser; double-encoded characters
(`â€™`) are repaired in the decoded text (`pipeline.text`).
"""

from __future__ import annotations

import codecs
import re

_HANDLER = "pipeline-windows-1252-fallback"
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*\bencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._-]+)""", re.IGNORECASE)
_UTF8_NAMES = {"utf-8", "utf8"}
# charset-normalizer reads this much of an undeclared legacy body (its cost grows with the
# text it decodes, ~0.5 s a MB; a quarter of a megabyte names the script).
DETECT_BYTES = 1 << 18


def _windows_1252_fallback(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    byte = error.object[error.start:error.start + 1]
    try:
        return byte.decode("cp1252"), error.start + 1
    except UnicodeDecodeError:
        return byte.decode("latin-1"), error.start + 1


codecs.register_error(_HANDLER, _windows_1252_fallback)
# The same, for UTF-8, at C speed: each byte `surrogateescape` set aside (U+DC80-U+DCFF,
# one per invalid byte), read as windows-1252 (Latin-1 where it is undefined). A body of
# 10 MB of invalid bytes would otherwise cost ten million calls of the handler.
_ESCAPED_BYTES = {0xDC00 + byte: _windows_1252_fallback(
    UnicodeDecodeError("utf-8", bytes([byte]), 0, 1, ""))[0] for byte in range(0x80, 0x100)}


def _utf8_with_fallback(body: bytes) -> str:
    return body.decode("utf-8", errors="surrogateescape").translate(_ESCAPED_BYTES)


def declared_encoding(body: bytes, content_type: str | None) -> str | None:
    """The encoding the HTTP header, else the XML declaration, names (lower case)."""
    if content_type:
        match = _CHARSET.search(content_type)
        if match:
            return match.group(1).lower()
    xml_match = _XML_ENCODING.match(body[:512].lstrip(codecs.BOM_UTF8))
    return xml_match.group(1).decode("ascii").lower() if xml_match else None


def repair_utf8(body: bytes, content_type: str | None = None) -> tuple[bytes, str] | None:
    """(body as UTF-8, how it was read) for a body meant as UTF-8 that is not valid UTF-8;
    None for any other body."""
    declared = declared_encoding(body, content_type)
    if declared is not None and declared not in _UTF8_NAMES:
        return None
    if body[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return None
    try:
        body.decode("utf-8")
        return None
    except UnicodeDecodeError:
        pass
    if declared is None and _mostly_legacy(body):
        detected = _non_latin_encoding(body)
        if detected is not None:
            return body.decode(detected, errors=_HANDLER).encode("utf-8"), f"undeclared {detected}, detected"
    return _utf8_with_fallback(body).encode("utf-8"), "windows-1252 bytes in a UTF-8 body, repaired"


def _mostly_legacy(body: bytes) -> bool:
    """More invalid bytes than valid multi-byte UTF-8 characters."""
    text = body.decode("utf-8", errors="replace")
    invalid = text.count("\ufffd") - body.count("\ufffd".encode())
    valid = len(text) - len(text.encode("ascii", "ignore")) - text.count("\ufffd")  # non-ASCII
    return invalid > valid


def _non_latin_encoding(body: bytes) -> str | None:
    """charset-normalizer's guess, from the first DETECT_BYTES."""
    from charset_normalizer import from_bytes

    best = from_bytes(body[:DETECT_BYTES]).best()
    if best is None or all(_is_latin(alphabet) for alphabet in best.alphabets):
        return None
    return best.encoding


def _is_latin(alphabet: str) -> bool:
    return "Latin" in alphabet or alphabet in _LATIN_COMPANIONS


_LATIN_COMPANIONS = frozenset({"General Punctuation", "Control character", "Currency Symbols",
                               "Letterlike Symbols", "Number Forms", "Spacing Modifier Letters"})
