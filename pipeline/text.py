"""HTML to plain text, and HTML sanitizing, for titles and bodies.

Sanitizing uses nh3 (the Rust ammonia allow-list sanitizer): no script, no
event handler, no `javascript:` URL and no tracking pixel survives. Plain text
keeps paragraph breaks, decodes entities, repairs double-encoded UTF-8 (ftfy)
and collapses whitespace.
"""

from __future__ import annotations

import html as html_lib
import re
import unicodedata

import nh3

_BLOCK_TAG = re.compile(
    r"<\s*/?\s*(?:p|div|br|li|ul|ol|h[1-6]|blockquote|tr|table|section|article|header|"
    r"footer|pre|figure|figcaption|hr)\b[^>]*>",
    re.IGNORECASE,
)
_SPACES = re.compile(r"[ \t\f\v\u00a0\u200b]+")
_ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}
# UTF-8 read as windows-1252 / Latin-1 leaves these pairs ("â€™" for "’", "Ã©" for "é").
_MOJIBAKE_HINT = re.compile("[\u00c2\u00c3\u00e2][\u0080-\u00bf\u2018-\u203a\u20ac\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u02c6\u02dc]")
# 1x1 images (and zero-sized ones) are tracking pixels, never content.
_TRACKING_PIXEL = re.compile(
    r"<img\b(?=[^>]*\b(?:width|height)\s*=\s*[\"']?[01](?:px)?[\"'\s/>])[^>]*>", re.IGNORECASE)


def repair_mojibake(value: str) -> str:
    """Undo double-encoded UTF-8 ("â€™" -> "’") with ftfy, only where its signature shows."""
    if not _MOJIBAKE_HINT.search(value):
        return value
    import ftfy

    return ftfy.fix_encoding(value)


def clean_text(value: str) -> str:
    """Mojibake repaired, Unicode NFC, whitespace collapsed within lines, blank lines squeezed."""
    value = repair_mojibake(value)
    value = unicodedata.normalize("NFC", value.replace("\r\n", "\n").replace("\r", "\n"))
    lines = (_SPACES.sub(" ", line).strip() for line in value.split("\n"))
    return "\n\n".join(line for line in lines if line)


def html_to_text(markup: str | None) -> str:
    """Plain text of an HTML fragment (or of plain text with entities)."""
    if not markup:
        return ""
    if "<" not in markup and "&" not in markup:
        return clean_text(markup)
    with_breaks = _BLOCK_TAG.sub("\n", markup)
    stripped = nh3.clean(with_breaks, tags=set())  # drops tags; script/style with their content
    return clean_text(html_lib.unescape(stripped))


def sanitize_html(markup: str | None) -> str:
    """Safe HTML for display: allow-listed tags and attributes, http(s)/mailto links only."""
    if not markup:
        return ""
    markup = _TRACKING_PIXEL.sub("", repair_mojibake(markup))
    return nh3.clean(
        markup, url_schemes=_ALLOWED_URL_SCHEMES, link_rel="noopener noreferrer nofollow"
    ).strip()


def word_count(text: str) -> int:
    return len(text.split())
