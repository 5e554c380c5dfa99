"""Bodies that say UTF-8 but carry windows-1252 bytes: repaired before feedparser sees them.

A CMS that pastes text from a word processor into a UTF-8 page produces bytes such as
0x92 (') or 0x93/0x94 (" ") inside otherwise valid UTF-8. Decoding the whole body as
windows-1252 (feedparser's fallback) would garble every real UTF-8 character in it, and
decoding it as UTF-8 with replacement would lose the quotes. Here each byte that is not
valid UTF-8 is read as windows-1252 (the five bytes it leaves undefined as Latin-1), and
everything else stays UTF-8. Bodies declaring another encoding are left alone, as are
double-encoded characters (`â€™`), which `pipeline.text` repairs in the decoded text.
"""

from __future__ import annotations

import codecs
import re

_HANDLER = "pipeline-windows-1252-fallback"
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*\bencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._-]+)""", re.IGNORECASE)
_UTF8_NAMES = {"utf-8", "utf8"}


def _windows_1252_fallback(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    byte = error.object[error.start:error.start + 1]
    try:
        return byte.decode("cp1252"), error.start + 1
    except UnicodeDecodeError:
        return byte.decode("latin-1"), error.start + 1


codecs.register_error(_HANDLER, _windows_1252_fallback)


def declared_encoding(body: bytes, content_type: str | None) -> str | None:
    """The encoding the HTTP header, else the XML declaration, names (lower case)."""
    if content_type:
        match = _CHARSET.search(content_type)
        if match:
            return match.group(1).lower()
    match = _XML_ENCODING.match(body[:512].lstrip(codecs.BOM_UTF8))
    return match.group(1).decode("ascii").lower() if match else None


def repair_utf8(body: bytes, content_type: str | None = None) -> bytes | None:
    """The body with its stray windows-1252 bytes re-encoded as UTF-8, when it is meant as
    UTF-8 (declared so, or undeclared) and is not valid UTF-8; else None."""
    declared = declared_encoding(body, content_type)
    if declared is not None and declared not in _UTF8_NAMES:
        return None
    if body[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return None
    try:
        body.decode("utf-8")
        return None
    except UnicodeDecodeError:
        return body.decode("utf-8", errors=_HANDLER).encode("utf-8")
