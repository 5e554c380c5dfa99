"""How much work html5ever (inside nh3) could do on a piece of markup: an upper bound,
in one linear pass, so that markup that would make it super-linear is never handed to it.

html5ever is super-linear on some markup: deep nesting (each tag may walk the stack of
open elements), stray end tags, many attributes on one tag, content foster-parented out
of a table, and `&` or U+0080-U+00BF characters far from the next `<`. `too_costly`
models the tree builder's stack of open elements from above; `strip_tags` is the linear
fallback that keeps the text of markup over budget. Calibrated on nh3 0.3.8 by fuzzing
(tests/unit/test_adversarial_text.py); real articles stay ten times below the budgets.
"""

from __future__ import annotations

import re

# Markup up to this size costs html5ever at most milliseconds, whatever it holds.
SMALL_MARKUP = 1 << 14

# One pass over the markup's tokens, in the spirit of the HTML tokenizer, keeps an upper
# bound of html5ever's stack of open elements: it pops only where the HTML tree builder
# surely pops (an end tag whose element is in scope, a `<p>`, `<li>` or cell that closes
# its predecessor), and counts formatting elements (`<b>`, `<a>`, ...) until their own
# end tag, since the tree builder re-opens them. Its costs, calibrated on nh3 0.3.8:
#   nesting:    the depth at each tag, summed (~10 ns a step), plus the depth at each
#               character token of text (split at `&` and the like) over 16 (~0.5 ns)
#               and, for what is foster parented out of a table, the number fostered
#               before it over 16
#   attributes: attributes on a tag, squared (~0.6 ns a pair)
#   characters: `&` or U+0080-U+00BF times the distance to the next `<` (~0.02 ns)
# Each budget is about 0.1 s of html5ever; real articles stay ten times below them.
NESTING_BUDGET = 10_000_000
ATTRIBUTE_BUDGET = 100_000_000
CHARACTER_BUDGET = 4_000_000_000  # runs under 4096 characters add at most 4096 per char
MAX_TAGS = 100_000  # more `<` than this (real articles: < 20,000) is not parsed as HTML

_WS = "\t\n\f\r "
_NOT_TAG = r"<(?![A-Za-z/!?])"
_TEXT = rf"[^<]*+(?:{_NOT_TAG}[^<]*+)*+"
# A tag's attributes, as the HTML tokenizer reads them: a quoted value may hold `>`, an
# unclosed one runs to the end.
_ATTRS = (rf"(?>[{_WS}/]++|[^{_WS}/>][^{_WS}/=>]*+(?>[{_WS}]*+=[{_WS}]*+"
          rf"(?>\"[^\"]*+(?:\"|\Z)|'[^']*+(?:'|\Z)|[^{_WS}>]*+))?+)*+")
# Elements whose start tag only opens them and whose end tag, right after their text,
# closes them: such a pair (`<span class=k>x</span>`) is read as one token.
_LEAF = "a|abbr|b|bdi|bdo|big|cite|code|data|del|dfn|em|font|i|ins|kbd|label|mark|q|s|samp|" \
        "small|span|strike|strong|sub|sup|time|tt|u|var"
# One construct, after the text before it (group `text`): a leaf pair, a comment (ending no
# later than the HTML tokenizer's), a bogus comment, or a tag. Possessive throughout, and
# every alternative but the leaf pair matches up to its end or the string's: linear.
_TOKEN = re.compile(
    rf"(?P<text>{_TEXT})(?:"
    rf"<(?P<leaf>{_LEAF})(?=[{_WS}/>])(?P<leafattrs>{_ATTRS})>(?P<leaftext>{_TEXT})"
    rf"</(?P=leaf)[{_WS}]*+>"
    r"|<!--(?:-?>|(?:[^-<]++|-(?!-!?>)|<(?!/))*+(?:-->|--!>|(?=</)|\Z))"
    r"|<(?:[!?]|/(?![A-Za-z]))[^>]*+(?:>|\Z)"
    rf"|<(?P<end>/?)(?P<name>[A-Za-z][^{_WS}/>]*+)(?P<attrs>{_ATTRS})(?:>|\Z)"
    r"|\Z)"
)
_ATTRIBUTE = re.compile(rf"(?:^|[{_WS}/\"'])(?=[^{_WS}/>])")
_SLOW_CHAR = re.compile("[&\u0080-\u00bf]")
# What splits a run of text into several character tokens in html5ever.
_TOKEN_SPLIT = re.compile("[&\\0\\r\u0080-\u00bf]")
_SHALLOW = 64  # below this depth, text costs html5ever nothing worth counting
_RAW_TEXT = frozenset("script style xmp iframe noembed noframes noscript textarea title".split())
_SCRIPT_STATE = re.compile(rf"<!--(?:-?>)?|-->|<(/?)script(?=[{_WS}/>])", re.IGNORECASE)

_VOID = frozenset("area base basefont bgsound br col embed frame hr image img input keygen link "
                  "meta param source track wbr".split())
_FORMATTING = frozenset("a b big code em font i nobr s small strike strong tt u".split())
_HEADINGS = frozenset("h1 h2 h3 h4 h5 h6".split())
_INTEGRATION = frozenset("foreignobject desc title mi mo mn ms mtext annotation-xml".split())
_SCOPE = _INTEGRATION | {"applet", "caption", "html", "table", "td", "th", "marquee", "object",
                         "template"}
_SPECIAL = _SCOPE | frozenset(
    "address area article aside base basefont bgsound blockquote body br button center col "
    "colgroup dd details dir div dl dt embed fieldset figcaption figure footer form frame "
    "frameset h1 h2 h3 h4 h5 h6 head header hgroup hr iframe img input keygen li link listing "
    "main menu meta nav noembed noframes noscript ol p param plaintext pre script search "
    "section select source style summary tbody textarea tfoot thead tr track ul wbr xmp".split())
_CLOSES_P = frozenset(
    "address article aside blockquote center details dialog dir div dl fieldset figcaption "
    "figure footer header hgroup main menu nav ol p search section summary ul h1 h2 h3 h4 h5 "
    "h6 pre listing plaintext hr xmp li dd dt".split())
_BREAKOUT = frozenset(
    "b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr i img "
    "li listing menu meta nobr ol p pre ruby s small span strong strike sub sup table tt u ul "
    "var font".split())
# A start tag that closes an earlier element: (the elements it closes, the kind of element
# that shields them). Table parts close their like only inside a table (`_in_table`).
_CLOSES = {"li": (("li",), "li_stop"), "dd": (("dd", "dt"), "li_stop"),
           "dt": (("dd", "dt"), "li_stop"), "td": (("td", "th"), "table"),
           "th": (("td", "th"), "table"), "tr": (("tr",), "table"),
           **{name: (("tbody", "thead", "tfoot"), "table") for name in ("tbody", "thead", "tfoot")}}
_TABLE_PARTS = frozenset("caption tbody thead tfoot tr td th".split())
# The scope an end tag's element must be in to be closed (HTML's "has an element in scope").
_END_SCOPE = {**{name: "scope" for name in _SPECIAL - {"form", "br", "body", "html"}},
              "p": "button", "li": "list",
              **{name: "table" for name in ("table", "caption", "tbody", "thead", "tfoot", "tr",
                                            "td", "th")}}
# Inside one of these (and not in a cell), what is not table structure may be "foster
# parented": inserted before the table, among a growing list of siblings (~0.5 ns each).
_TABLE_CONTEXT = frozenset("table tbody thead tfoot tr".split())
_TABLE_CONTENT = frozenset("caption colgroup col tbody tfoot thead td th tr table style script "
                           "template input form".split())
# Start tags that may do more than open an element (outside SVG and MathML).
_START_EFFECTS = _VOID | _CLOSES.keys() | _CLOSES_P | {"option", "optgroup"}
_KIND_MEMBERS = {
    "special": _SPECIAL, "scope": _SCOPE, "button": _SCOPE | {"button"},
    "list": _SCOPE | {"ol", "ul"}, "table": {"html", "table", "template"},
    "li_stop": _SPECIAL - {"address", "div", "p"}, "foreign": {"svg", "math"},
    "heading": _HEADINGS,
    "table_part": _TABLE_CONTEXT | {"td", "th", "caption"},
}
_KINDS = {name: tuple(k for k, members in _KIND_MEMBERS.items() if name in members)
          for name in set().union(*_KIND_MEMBERS.values())}


class _OpenElements:
    """An upper bound of html5ever's stack of open elements (see above)."""

    __slots__ = ("names", "where", "top", "kinds", "formatting_open", "formatting_here")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.where: dict[str, list[int]] = {}
        self.top = {kind: [-1] for kind in _KIND_MEMBERS}  # index of the topmost of each kind
        self.kinds = {name: tuple(self.top[k] for k in kinds) for name, kinds in _KINDS.items()}
        self.formatting_open = 0  # formatting start tags not closed by their own end tag
        self.formatting_here = 0  # formatting elements in `names`

    def depth(self) -> int:
        return len(self.names) - self.formatting_here + self.formatting_open

    def foreign(self) -> bool:
        """Whether SVG or MathML may be open. There the tree builder pops less (no implied
        end tags) but also opens `<x/>` and void names: read every start tag as an
        element that opens, and no start tag as closing anything."""
        return self.top["foreign"][-1] >= 0

    def last(self, name: str) -> int:
        at = self.where.get(name)
        return at[-1] if at else -1

    def push(self, name: str) -> None:
        index = len(self.names)
        self.names.append(name)
        at = self.where.get(name)
        if at is None:
            self.where[name] = [index]
        else:
            at.append(index)
        for top in self.kinds.get(name, ()):
            top.append(index)
        if name in _FORMATTING:
            self.formatting_here += 1
            self.formatting_open += 1

    def pop_to(self, index: int) -> None:
        """Pop the element at `index` and every element above it."""
        names, where, kinds = self.names, self.where, self.kinds
        while len(names) > index:
            name = names.pop()
            where[name].pop()
            for top in kinds.get(name, ()):
                top.pop()
            if name in _FORMATTING:
                self.formatting_here -= 1

    def start(self, name: str, self_closing: bool) -> None:
        if self.foreign() and (name not in _BREAKOUT or name in _VOID):
            if not (self_closing and name in _VOID) and name not in _BREAKOUT:
                self.push(name)
            return
        if name in _VOID:
            return
        closes = _CLOSES.get(name)
        if closes is not None:
            at = max(self.last(n) for n in closes[0])
            if at >= 0 and at >= self.top[closes[1]][-1] and (  # (it may shield itself)
                    name not in _TABLE_PARTS or self._in_table(at)):
                self.pop_to(at)
        elif name in ("option", "optgroup") and self.names and self.names[-1] == "option":
            self.pop_to(len(self.names) - 1)
        if name in _CLOSES_P:
            at = self.last("p")
            if at >= 0 and at >= self.top["button"][-1]:
                self.pop_to(at)
            if name in _HEADINGS and self.names and self.names[-1] in _HEADINGS:
                self.pop_to(len(self.names) - 1)
        self.push(name)

    def _in_table(self, at: int) -> bool:
        """Whether the element at `at` is inside a table (outside one, the tree builder
        ignores table parts: they close nothing)."""
        return 0 <= self.top["table"][-1] < at

    def end(self, name: str) -> None:
        if name in _TABLE_PARTS and not self._in_table(self.last(name)):
            return
        scope = _END_SCOPE.get(name)
        if name in _HEADINGS:  # closes whichever heading is open
            at = self.top["heading"][-1]
        elif scope is not None or name in ("form", "br", "body", "html"):
            at = self.last(name) if scope else -1
        else:  # any other end tag: no special element may stand above its element
            at = self.last(name)
            if at > self.top["special"][-1]:
                self.pop_to(at)
                if name in _FORMATTING and self.formatting_open:
                    self.formatting_open -= 1
            return
        if at >= 0 and at >= self.top[scope or "scope"][-1]:
            self.pop_to(at)


def _raw_text_end(markup: str, name: str, start: int) -> int:
    """Where the raw text that follows `<name ...>` at `start` ends (its end tag's start),
    or len(markup). Script data follows the HTML tokenizer's escape states."""
    if name != "script":
        end = re.compile(rf"</{name}(?=[{_WS}/>])", re.IGNORECASE).search(markup, start)
        return end.start() if end else len(markup)
    state = "data"
    for match in _SCRIPT_STATE.finditer(markup, start):
        token = match.group()
        if token == "<!--":
            state = "escaped" if state == "data" else state
        elif token.endswith(">"):  # -->, and <!--> or <!---> (opened and closed at once)
            state = "data"
        elif match.group(1):  # </script
            if state != "double":
                return match.start()
            state = "escaped"
        elif state == "escaped":  # <script
            state = "double"
    return len(markup)


def _self_closing(attrs: str) -> bool:
    """`<x/>` or `<x ... />`. (`<x a=b/>` is not: the `/` belongs to the value; `<x a="b"/>`
    is, but counting it open is the safe side.)"""
    body = attrs.rstrip("/")
    return body != attrs and (not body or body[-1] in _WS)


def _character_cost(markup: str) -> int:
    """Runs between two `<` of at least 4096 characters: slow characters times length."""
    return sum(len(run) * len(_SLOW_CHAR.findall(run))
               for run in markup.split("<") if len(run) >= 4096)


def too_costly(markup: str) -> bool:
    """Whether html5ever's work on `markup` could exceed the budgets (an upper bound)."""
    if len(markup) <= SMALL_MARKUP:
        return False
    if markup.count("<") > MAX_TAGS or _character_cost(markup) > CHARACTER_BUDGET:
        return True
    stack = _OpenElements()
    names, foreign, table_part = stack.names, stack.top["foreign"], stack.top["table_part"]
    nesting = attributes = foster = 0
    position, size = 0, len(markup)
    while position < size:
        match = _TOKEN.match(markup, position)
        assert match is not None  # every position starts a token
        position = match.end()
        if nesting > NESTING_BUDGET or attributes > ATTRIBUTE_BUDGET:
            return True
        text, end, name, attrs, leaf = match.group("text", "end", "name", "attrs", "leaf")
        depth = len(names) - stack.formatting_here + stack.formatting_open
        if table_part[-1] >= 0 and names[table_part[-1]] in _TABLE_CONTEXT:  # not in a cell
            fostered = (text.strip() != "") + (leaf is not None or (
                name is not None and not end and name.lower() not in _TABLE_CONTENT))
            foster += fostered
            nesting += fostered * foster // 16
        if leaf is not None:  # opens and closes: the stack is as it was
            text += match.group("leaftext")
            attrs = match.group("leafattrs")
            if len(attrs) > 256:
                attributes += len(_ATTRIBUTE.findall(attrs)) ** 2
            nesting += 2 * depth + 1
        if depth > _SHALLOW:
            nesting += depth * (1 + len(_TOKEN_SPLIT.findall(text))) // 16
        if name is None:
            continue
        name = name.lower()
        if len(attrs) > 256:
            attributes += len(_ATTRIBUTE.findall(attrs)) ** 2
        if end:
            if names and names[-1] == name and name != "form":  # closes the current node
                stack.pop_to(len(names) - 1)
                if name in _FORMATTING and stack.formatting_open:
                    stack.formatting_open -= 1
            else:
                stack.end(name)
        else:
            if name in _START_EFFECTS or foreign[-1] >= 0:
                stack.start(name, _self_closing(attrs))
            else:
                stack.push(name)
            if name in _RAW_TEXT:
                content, position = position, _raw_text_end(markup, name, position)
                if foreign[-1] >= 0:  # raw text in HTML, elements in SVG: count what opens
                    for inner in _TOKEN.finditer(markup, content, position):
                        opened, closing, inner_attrs = inner.group("name", "end", "attrs")
                        if opened and not closing and not _self_closing(inner_attrs):
                            stack.push(opened.lower())
                            nesting += len(names)
                if stack.depth() > _SHALLOW:
                    split = len(_TOKEN_SPLIT.findall(markup, content, position))
                    nesting += stack.depth() * (1 + split) // 16
        nesting += len(names) - stack.formatting_here + stack.formatting_open
    return nesting > NESTING_BUDGET or attributes > ATTRIBUTE_BUDGET


def strip_tags(markup: str) -> str:
    """The text of markup too costly to parse as HTML: tags and comments dropped, script
    and style dropped with their content, entities left for the caller to decode."""
    parts: list[str] = []
    position, size = 0, len(markup)
    while position < size:
        match = _TOKEN.match(markup, position)
        assert match is not None
        position = match.end()
        parts.append(match.group("text"))
        if match.group("leaf"):
            parts.append(match.group("leaftext"))
        name = (match.group("name") or "").lower()
        if name in _RAW_TEXT and not match.group("end"):
            end = _raw_text_end(markup, name, position)
            if name not in ("script", "style"):
                parts.append(markup[position:end])
            position = end
    return "".join(parts)
