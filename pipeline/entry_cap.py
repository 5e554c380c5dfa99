"""The entry cap, applied to the bytes before any parser builds an entry.

`FETCH_MAX_ENTRIES` bounds what a feed costs. feedparser builds every entry of a
body before anyone can drop one (a 10 MB body of tiny entries is about 1.4
million dicts), so the cap is applied here, on the bytes: the document is cut
just before its first entry past the cap and closed again, and the entries past
it are counted, never built.

One streaming pass of expat (C, linear, no tree, no entity expansion) finds the
cut and the elements open there. A document expat cannot read (malformed, an
encoding it does not know) is cut at the textual start of the entry past the cap
and left unclosed: feedparser's loose parser, which reads such documents anyway,
takes what is before the cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.parsers import expat

_ENTRY_NAMES = (b"item", b"entry")
# A textual entry start: `<item`, `<entry`, `<rss:item`, `<atom:entry`, followed by a delimiter.
_ENTRY_START = re.compile(rb"<(?:[A-Za-z_][\w.-]{0,40}:)?(?:item|entry)(?=[\s/>])")
_WIDE_BOMS = (b"\xfe\xff", b"\xff\xfe", b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")


@dataclass(frozen=True)
class CappedBody:
    body: bytes
    over_cap: int  # entries past the cap, counted, not built


class _Abort(Exception):
    pass


def quick_count(body: bytes) -> int:
    """An upper bound of the entries in `body` (C-speed substring counts)."""
    return sum(body.count(b"<" + n) + body.count(b":" + n) for n in _ENTRY_NAMES)


def cap_entries(body: bytes, cap: int) -> CappedBody:
    """`body` with at most `cap` entries, and how many were past the cap."""
    # UTF-16/32 bodies (by their mark) are rare and small: left whole. One without a mark
    # shows no `<item` to count; a stray NUL (expat refuses it) is cut textually below.
    if quick_count(body) <= cap or body[:4].startswith(_WIDE_BOMS):
        return CappedBody(body, 0)
    try:
        return _cap_with_expat(body, cap)
    except (expat.ExpatError, _Abort, ValueError, LookupError):
        return _cap_textually(body, cap)


def _local(name: str) -> bytes:
    return name.rsplit(":", 1)[-1].encode()


def _cap_with_expat(body: bytes, cap: int) -> CappedBody:
    """Cut before the entry past the cap, closing the elements open there; the entries
    from the cut on are counted textually (no parser builds or even reads them)."""
    parser = expat.ParserCreate()  # no namespace processing: raw qualified names to close
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[str] = []
    seen = 0  # entries started (not nested in another entry)
    depth_in_entry = 0

    def refuse_entities(*_args: object) -> None:
        raise _Abort("entity declarations are not expanded here")

    def start(name: str, _attrs: object) -> None:
        nonlocal seen, depth_in_entry
        if depth_in_entry:
            depth_in_entry += 1
        elif _local(name) in _ENTRY_NAMES:
            seen += 1
            depth_in_entry = 1
            if seen == cap + 1:
                raise _Cut(parser.CurrentByteIndex)
        stack.append(name)

    def end(_name: str) -> None:
        nonlocal depth_in_entry
        depth_in_entry = max(0, depth_in_entry - 1)
        stack.pop()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.EntityDeclHandler = refuse_entities
    try:
        parser.Parse(body, True)
    except _Cut as cut:
        index = cut.index
        closing = "".join(f"</{name}>" for name in reversed(stack)).encode()
        over = sum(1 for _ in _ENTRY_START.finditer(body, index))
        return CappedBody(body[:index] + closing, max(over, 1))
    return CappedBody(body, 0)


class _Cut(Exception):
    def __init__(self, index: int):
        super().__init__(index)
        self.index = index


def _cap_textually(body: bytes, cap: int) -> CappedBody:
    starts = _ENTRY_START.finditer(body)
    for n, match in enumerate(starts, start=1):
        if n == cap + 1:
            rest = 1 + sum(1 for _ in starts)
            return CappedBody(body[: match.start()], rest)
    return CappedBody(body, 0)
