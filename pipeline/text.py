"""HTML to plain text, and HTML sanitizing, for titles and bodies.

Sanitizing uses nh3 (the Rust ammonia allow-list sanitizer): no script, no
event handler, no `javascript:` URL survives. Plain text keeps paragraph
breaks, decodes entities and collapses whitespace.
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


def clean_text(value: str) -> str:
    """Unicode NFC, whitespace collapsed within lines, blank lines squeezed."""
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
    return nh3.clean(
        markup, url_schemes=_ALLOWED_URL_SCHEMES, link_rel="noopener noreferrer nofollow"
    ).strip()
