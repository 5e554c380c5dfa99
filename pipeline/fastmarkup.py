"""feedparser's relative-URI pass over embedded HTML, for the markup it treats plainly.

feedparser (with `resolve_relative_uris`, as the parse stage calls it) runs every HTML
value through an sgmllib re-serializer: tag and attribute names lower-cased, duplicate
attributes collapsed, attributes sorted, `rel`/`type` values lower-cased, URL attributes
made absolute (unsafe schemes left as written), values re-quoted and escaped, void
elements written `<br />` and their end tags dropped, entity and character references
normalized. The normalize stage sees those bytes, so the fast path must give the same.

`resolve(markup, base, ...)` does the same in one regular-expression pass over markup made
of text, comments, start and end tags with well-formed attributes, and entity or
character references. Anything else (a stray `<`, a declaration, a processing
instruction, an attribute feedparser's tokenizer would read differently, an incomplete
reference) returns None, and the caller uses feedparser's own resolver for that value.
"""

from __future__ import annotations

import html.entities
import re
from collections.abc import Callable

_VOID = {"area", "base", "basefont", "br", "col", "command", "embed", "frame", "hr", "img",
         "input", "isindex", "keygen", "link", "meta", "param", "source", "track", "wbr"}
_URL_ATTRIBUTES = {
    ("a", "href"), ("applet", "codebase"), ("area", "href"), ("audio", "src"),
    ("blockquote", "cite"), ("body", "background"), ("del", "cite"), ("form", "action"),
    ("frame", "longdesc"), ("frame", "src"), ("iframe", "longdesc"), ("iframe", "src"),
    ("head", "profile"), ("img", "longdesc"), ("img", "src"), ("img", "usemap"),
    ("input", "src"), ("input", "usemap"), ("ins", "cite"), ("link", "href"),
    ("object", "classid"), ("object", "codebase"), ("object", "data"), ("object", "usemap"),
    ("q", "cite"), ("script", "src"), ("source", "src"), ("video", "poster"), ("video", "src"),
}
_NAME = r"[a-zA-Z][-_.:a-zA-Z0-9]*"
_ATTR = (r"""\s+([a-zA-Z_][-:.a-zA-Z_0-9]*)"""
         r"""(?:(\s*=\s*)('[^'<>]*'|"[^"<>]*"|[-a-zA-Z0-9./,:;+*%?!&$()_#=~@\[\]]+))?""")
_START = re.compile(rf"<({_NAME})((?:{_ATTR})*)\s*(?P<slash>/?)>")
_ONE_ATTR = re.compile(_ATTR)
_END = re.compile(rf"</({_NAME})\s*>")
_COMMENT = re.compile(r"<!--(.*?)-->", re.S)
_CHARREF = re.compile(r"&#([0-9]+|[xX][0-9a-fA-F]+);")
_ENTITYREF = re.compile(r"&([a-zA-Z][-.a-zA-Z0-9]*)(;?)")
# A comment, a tag, a reference, or a lone `<` or `&` (which `_tag`/`_reference` judge).
# Tags and references that come out as they went in are not candidates: `<p>`, `</p>` (a
# lower-case name other than a void element's), `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&nbsp;`.
_VOID_NAMES = "|".join(sorted(_VOID, key=len, reverse=True))
_CANDIDATE = re.compile(
    rf"<(?!/?(?!(?:{_VOID_NAMES})>)[a-z][a-z0-9]*>)(?:!--.*?-->|[^<>]*>)?"
    r"|&(?!(?:amp|lt|gt|quot|nbsp);)(?:#?[a-zA-Z0-9][-.a-zA-Z0-9]*;?)?", re.S)
_RENDERED: dict[tuple[str, str], str] = {}
# Tags kept per process, each of at most _RENDERED_CHARS (tag, base, output): a feed's
# entries repeat their own tags, so a few thousand keep the hits (half the 1,000-feed
# bench's feeds parsed in one process: 99% of the hits with 2,000 as with 50,000, which
# held 15 MB there, up to ~25 MB once full: a shard worker's memory grew with the feeds
# it had parsed).
_RENDERED_MAX = 2_000
_RENDERED_CHARS = 2048  # a longer one (a hostile feed's megabyte tag) is rendered afresh
_ATTR_REF = re.compile(r"&(?:([a-zA-Z][-.a-zA-Z0-9]*)|#([0-9]+))(;?)")
_BARE_AMPERSAND = re.compile(r"&(?!#\d+;|#x[0-9a-fA-F]+;|\w+;)")


def resolve(markup: str, base: str, safe_absolute: Callable[..., str],
            cp1252: dict[int, str]) -> str | None:
    """`markup` as feedparser's resolver writes it, or None when it is not plain enough."""
    markup = markup.replace("&#39;", "'").replace("&#34;", '"')  # as feedparser does first

    def render(candidate: re.Match[str]) -> str:
        text = candidate.group()
        if text[0] == "&":
            token = _reference(markup, candidate.start(), cp1252)
            if token is None or token[1] != candidate.end():
                raise _NotPlain
            return token[0]
        rendered = _RENDERED.get((text, base)) or _tag(text, base, safe_absolute)
        if rendered is None:
            raise _NotPlain
        return rendered

    try:
        return _CANDIDATE.sub(render, markup)
    except _NotPlain:
        return None


class _NotPlain(Exception):
    pass


def _tag(text: str, base: str, safe_absolute: Callable[..., str]) -> str | None:
    """One tag or comment as feedparser writes it (cached: feeds repeat their tags)."""
    key = (text, base)
    rendered = _RENDERED.get(key)
    if rendered is None:
        for pattern, render in ((_START, _start_tag), (_END, _end_tag), (_COMMENT, _comment)):
            match = pattern.fullmatch(text)
            if match:
                rendered = render(match, base, safe_absolute)
                break
        else:
            return None
        if len(text) + len(base) + len(rendered) <= _RENDERED_CHARS:
            if len(_RENDERED) > _RENDERED_MAX:
                _RENDERED.clear()
            _RENDERED[key] = rendered
    return rendered


def _reference(markup: str, at: int, cp1252: dict[int, str]) -> tuple[str, int] | None:
    match = _CHARREF.match(markup, at)
    if match:
        ref = match.group(1).lower()
        value = int(ref[1:], 16) if ref.startswith("x") else int(ref)
        if value in cp1252:
            return f"&#{hex(ord(cp1252[value]))[1:]};", match.end()
        return f"&#{ref};", match.end()
    match = _ENTITYREF.match(markup, at)
    if match:
        if not match.group(2) and match.end() >= len(markup):
            return None  # a reference cut by the end of the value: sgmllib reads it otherwise
        name = match.group(1)
        if name in html.entities.name2codepoint or name == "apos":
            return f"&{name};", match.end()
        return f"&amp;{name}", match.end()
    if markup.startswith("&#", at):
        return None
    return "&", at + 1


def _start_tag(match: re.Match[str], base: str, safe_absolute: Callable[..., str]) -> str:
    tag = match.group(1).lower()
    raw_attrs, slash = match.group(2), match.group("slash")
    if not raw_attrs:
        if slash:
            return f"<{tag} />" if tag in _VOID else f"<{tag}></{tag}>"
        return f"<{tag} />" if tag in _VOID else f"<{tag}>"
    attrs: dict[str, str] = {}
    for attr in _ONE_ATTR.finditer(raw_attrs):
        name, equals, value = attr.groups()
        if not equals:
            value = name
        else:
            if value[:1] in "'\"" and value[:1] == value[-1:] and len(value) > 1:
                value = value[1:-1]
            value = _ATTR_REF.sub(_attr_ref, value)
        attrs[name.lower()] = value
    rendered = []
    for name, value in sorted((k, v.lower() if k in ("rel", "type") else v) for k, v in attrs.items()):
        if (tag, name) in _URL_ATTRIBUTES:
            value = safe_absolute(base, value.strip()) or value
        value = value.replace(">", "&gt;").replace("<", "&lt;").replace('"', "&quot;")
        rendered.append(f' {name}="{_BARE_AMPERSAND.sub("&amp;", value)}"')
    end = " />" if tag in _VOID else ">"
    return f"<{tag}{''.join(rendered)}{end}"


def _attr_ref(match: re.Match[str]) -> str:
    name, number, semicolon = match.groups()
    if number:
        return f"&#{number};"
    return f"&{name};" if semicolon else f"&{name}"


def _end_tag(match: re.Match[str], _base: str, _safe: Callable[..., str]) -> str:
    tag = match.group(1).lower()
    return "" if tag in _VOID else f"</{tag}>"


def _comment(match: re.Match[str], _base: str, _safe: Callable[..., str]) -> str:
    return match.group(0)
