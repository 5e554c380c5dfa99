"""feedparser's two quadratic paths, made linear with the same results: installed on its
parser class before the parse stage first uses it (`install`).

feedparser (6.0.14, pinned) reads most bodies only when the fast path refuses them (a
malformed document, say), but a refused body can hold anything:

* Tags. `_add_tag` keeps an entry's tags without duplicates by testing each new tag
  against every kept one (`value not in tags`): 10,000 tags took 4 s, the 450,000 of a
  10 MB body hours. Here the tags kept so far are remembered as keys in a set, so a test
  costs one look-up. The last tag kept is compared as feedparser compares it, since
  `_end_category` may still fill in its term; the ones before it never change.
* The author's e-mail address. `_sync_author_detail` searches the author line with a
  pattern that backtracks over every start of a long run of letters: quadratic in a
  line without an address. Here the pattern is tried only where a match can start
  (`fastparse.name_and_email`, which the fast path uses for the same field): the same match.

Either is a method of feedparser's `_FeedParserMixin`, replaced by one that does the
same work this way (`ORIGINALS` keeps feedparser's, for the tests that compare them).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any

from pipeline.fastparse import name_and_email

ORIGINALS: dict[str, Any] = {}


_INSTALLING = threading.Lock()


def install() -> None:
    """Replace the two methods on feedparser's parser class (once per process)."""
    from feedparser.mixin import _FeedParserMixin

    with _INSTALLING:
        if ORIGINALS:
            return
        ORIGINALS.update(_add_tag=_FeedParserMixin._add_tag,
                         _sync_author_detail=_FeedParserMixin._sync_author_detail)
        _FeedParserMixin._add_tag = _add_tag
        _FeedParserMixin._sync_author_detail = _sync_author_detail


_TAG_FIELDS = {"term", "scheme", "label"}


def _key(tag: Any) -> Hashable | None:
    """What a kept tag equals a new one by (dict equality), or None when it cannot be a key:
    a tag as `_add_tag` makes it by its three values (small), any other by its items."""
    try:
        if tag.keys() == _TAG_FIELDS:
            key: Hashable = (dict.get(tag, "term"), dict.get(tag, "scheme"), dict.get(tag, "label"))
        else:
            key = frozenset(tag.items())
        hash(key)
    except (AttributeError, TypeError, KeyError):
        return None
    return key


class _KeptTags:
    """The keys of an entry's tags kept before its last one, brought up to date on use."""

    __slots__ = ("tags", "keys", "known", "unkeyed")

    def __init__(self, tags: list[Any]):
        self.tags = tags  # held, so the list's id is not reused while this is kept
        self.keys: set[Hashable] = set()
        self.known = 0  # tags[:known] are in `keys` (or `unkeyed`)
        self.unkeyed: list[Any] = []  # kept tags no key stands for: compared one by one

    def holds(self, value: Any) -> bool:
        tags = self.tags
        for tag in tags[self.known:len(tags) - 1]:
            key = _key(tag)
            if key is None:
                self.unkeyed.append(tag)
            else:
                self.keys.add(key)
        self.known = max(self.known, len(tags) - 1)
        if tags and tags[-1] == value:
            return True
        key = _key(value)
        return (key in self.keys if key is not None else False) or value in self.unkeyed


def _add_tag(self: Any, term: Any, scheme: Any, label: Any) -> None:
    """feedparser's `_add_tag`, its duplicate test a set look-up."""
    from feedparser.util import FeedParserDict

    context = self._get_context()
    tags = context.setdefault("tags", [])
    if (not term) and (not scheme) and (not label):
        return
    value = FeedParserDict(term=term, scheme=scheme, label=label)
    kept_by_list = self.__dict__.setdefault("_pipeline_kept_tags", {})
    kept = kept_by_list.get(id(tags))
    if kept is None or kept.tags is not tags:
        kept = kept_by_list[id(tags)] = _KeptTags(tags)
    if not kept.holds(value):
        tags.append(value)


def _sync_author_detail(self: Any, key: str = "author") -> None:
    """feedparser's `_sync_author_detail`, the address searched in linear time."""
    from feedparser.util import FeedParserDict

    context = self._get_context()
    detail = context.get(f"{key}s", [FeedParserDict()])[-1]
    if detail:
        name = detail.get("name")
        email = detail.get("email")
        if name and email:
            context[key] = f"{name} ({email})"
        elif name:
            context[key] = name
        elif email:
            context[key] = email
        return
    author = context.get(key)
    if not author:
        return
    author, email = name_and_email(author)
    if author or email:
        context.setdefault(f"{key}_detail", detail)
    if author:
        detail["name"] = author
    if email:
        detail["email"] = email
