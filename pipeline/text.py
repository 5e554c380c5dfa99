"""HTML to plain text, and HTML sanitizing, for titles and bodies.

Sanitizing uses nh3 (the Rust ammonia allow-list sanitizer): no script, no
event handler, no `javascript:` URL and no tracking pixel survives. Plain text
keeps paragraph breaks, decodes entities, repairs double-encoded UTF-8 (ftfy)
and collapses whitespace.

Every step is linear in its input, or its input is bounded first, so no feed can
stall a run (issue 9):

* markup is cut at `MAX_MARKUP_CHARS`;
* the regexes here only search where a match can end (up to the last `>`);
* html5ever (inside nh3) is super-linear on some markup: nesting (each tag may walk
  the stack of open elements), many distinct attributes on one tag, and `&` or
  U+0080-U+00BF characters far from the next `<`. `markup_budget.too_costly` bounds that work from
  above in one pass; markup over budget is not parsed as HTML: its tags are dropped
  and its text kept (escaped, in `sanitize_html`);
* mojibake repair (ftfy, about 1.5 us a character) runs on values up to
  `MAX_REPAIR_CHARS`.

None of the bounds is reached by real articles (the corpora's longest body is 777 KB,
its deepest nesting 43, its longest mojibake body 18 KB).
"""

from __future__ import annotations

import html as html_lib
import re
import unicodedata
from functools import lru_cache

import nh3

from pipeline.containment import replace_surrogates
from pipeline.markup_budget import strip_tags, too_costly

# Bodies longer than this are cut (validation rejects a text over 1,000,000 characters).
MAX_MARKUP_CHARS = 1 << 20
# ftfy costs about 1.5 us a character; mojibake comes from CMS pastes (real cases: < 20 KB).
MAX_REPAIR_CHARS = 1 << 16

_BLOCK_TAG = re.compile(
    r"<\s*/?\s*(?:p|div|br|li|ul|ol|h[1-6]|blockquote|tr|table|section|article|header|"
    r"footer|pre|figure|figcaption|hr)\b[^>]*>",
    re.IGNORECASE,
)
_SPACES = re.compile(r"[ \t\f\v\u00a0\u200b]+")
# `_collapse_spaces` does `_SPACES.sub(" ", ...)` faster: each of these characters turns into
# " " (str.replace), then each run of two or more " " into one.
_OTHER_SPACES = "\t\f\v\u00a0\u200b"
_SPACE_RUN = re.compile(" {2,}")


def _collapse_spaces(value: str) -> str:
    """`_SPACES.sub(" ", value)`: every run of spaces, tabs, form feeds, vertical tabs, no-break
    and zero-width spaces as one " "."""
    for char in _OTHER_SPACES:
        if char in value:
            value = value.replace(char, " ")
    return _SPACE_RUN.sub(" ", value) if "  " in value else value
_ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}
# UTF-8 read as windows-1252 / Latin-1 leaves these pairs ("â€™" for "’", "Ã©" for "é").
_MOJIBAKE_HINT = re.compile("[\u00c2\u00c3\u00e2][\u0080-\u00bf\u2018-\u203a\u20ac\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u02c6\u02dc]")  # noqa: E501
# 1x1 images (and zero-sized ones) are tracking pixels, never content.
# Built once (nh3.clean builds its sanitizer at every call): the same options, the same output.
_TEXT_CLEANER = nh3.Cleaner(tags=set())  # drops tags; script/style with their content
_HTML_CLEANER = nh3.Cleaner(url_schemes=_ALLOWED_URL_SCHEMES, link_rel="noopener noreferrer nofollow")
_IMG_TAG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_PIXEL_SIZE = re.compile(r"\b(?:width|height)\s*=\s*[\"']?[01](?:px)?[\"'\s/>]", re.IGNORECASE)


def _up_to_last_tag_end(pattern: re.Pattern[str], markup: str, repl) -> str:
    """`pattern.sub(repl, markup)` for a pattern that ends with `[^>]*>`: searching only up
    to the last `>` keeps it linear (an unclosed `<img ` repeated would make every start
    scan to the end of the string) and changes nothing, since no match ends after it."""
    end = markup.rfind(">") + 1
    return pattern.sub(repl, markup[:end]) + markup[end:] if end else markup


def _drop_pixel(match: re.Match[str]) -> str:
    return "" if _PIXEL_SIZE.search(match.group()) else match.group()


def repair_mojibake(value: str) -> str:
    """Undo double-encoded UTF-8 ("â€™" -> "’") with ftfy, only where its signature shows
    (and only in values up to MAX_REPAIR_CHARS)."""
    if len(value) > MAX_REPAIR_CHARS or not _MOJIBAKE_HINT.search(value):
        return value
    import ftfy

    return ftfy.fix_encoding(value)



def _unescape_serialized(value: str) -> str:
    """Decode what html5ever's serializer escapes in text (`&amp; &nbsp; &lt; &gt;`), all
    of it: the same as `html.unescape` on its output, without a Python call per entity."""
    if "&" not in value:
        return value
    return (value.replace("&lt;", "<").replace("&gt;", ">").replace("&nbsp;", "\u00a0")
            .replace("&amp;", "&"))


def clean_text(value: str) -> str:
    """Mojibake repaired, Unicode NFC, whitespace collapsed within lines, blank lines squeezed."""
    value = repair_mojibake(replace_surrogates(value))
    value = unicodedata.normalize("NFC", value.replace("\r\n", "\n").replace("\r", "\n"))
    if "\n" not in value:  # one line (most titles, names, GUIDs)
        return _collapse_spaces(value).strip()
    # _SPACES never matches a line break: one pass over the whole value, then the lines
    lines = [line.strip() for line in _collapse_spaces(value).split("\n")]
    return "\n\n".join(filter(None, lines))


def html_to_text(markup: str | None) -> str:
    """Plain text of an HTML fragment (or of plain text with entities)."""
    if not markup:
        return ""
    markup = replace_surrogates(markup[:MAX_MARKUP_CHARS])
    if "<" not in markup and "&" not in markup:
        return clean_text(markup)
    with_breaks = _up_to_last_tag_end(_BLOCK_TAG, markup, "\n")
    if too_costly(with_breaks):
        return _fallback_text(markup)
    stripped = _TEXT_CLEANER.clean(with_breaks)
    return clean_text(_unescape_serialized(stripped))


def sanitize_html(markup: str | None) -> str:
    """Safe HTML for display: allow-listed tags and attributes, http(s)/mailto links only."""
    if not markup:
        return ""
    original = replace_surrogates(markup[:MAX_MARKUP_CHARS])
    markup = _up_to_last_tag_end(_IMG_TAG, repair_mojibake(original), _drop_pixel)
    if too_costly(markup):
        text = _fallback_text(original)
        return "".join(f"<p>{html_lib.escape(p, quote=False)}</p>" for p in text.split("\n\n") if p)
    return _HTML_CLEANER.clean(markup).strip()


def word_count(text: str) -> int:
    return len(text.split())


@lru_cache(maxsize=2)  # html_to_text and sanitize_html of one body ask for the same
def _fallback_text(markup: str) -> str:
    """The text of markup too costly to parse as HTML, paragraphs kept."""
    return clean_text(html_lib.unescape(strip_tags(_up_to_last_tag_end(_BLOCK_TAG, markup, "\n"))))
