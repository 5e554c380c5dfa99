"""The identity key and the content hash: defined once, documented, versioned.

Identity (v1) says which stored article an entry *is*. Each feed has an identity
*rule* (`IdentityRule`), chosen by `pipeline.feed_identity` from how its GUIDs behave:

* `guid` (the default): the entry's GUID; an entry without one falls back to its
  canonical URL, then to its content hash.
* `link`: the canonical URL, for feeds whose GUIDs are empty, repeated or unstable.
* `link_date`: the canonical URL plus the published date as the feed wrote it, for
  feeds that also give several entries one link.
* `title_hash`: the content hash (title and text), when nothing else tells entries apart.
  An edited entry is then a new article: such a feed cannot say what was edited.

The content hash (v1) says whether an article's *content* changed: SHA-256
over the normalized title and plain text. Volatile fields (dates, links,
authors, tags) are left out so a re-served entry hashes the same. An entry
with no text also hashes its canonical URL, so title-only entries of
different stories ("Live updates") do not collide.

Changing either rule means a new version prefix, never a silent change.
"""

from __future__ import annotations

import hashlib
import re
from enum import Enum

IDENTITY_VERSION = "v1"
CONTENT_HASH_VERSION = "v1"


class IdentityRule(str, Enum):
    GUID = "guid"
    LINK = "link"
    LINK_DATE = "link_date"
    TITLE_HASH = "title_hash"


def content_hash(title: str, text: str, canonical_url: str | None) -> str:
    parts = [title.strip(), text.strip()]
    if not parts[1]:
        parts.append(canonical_url or "")
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return f"{CONTENT_HASH_VERSION}:{digest}"


def identity_key(guid: str | None, canonical_url: str | None, content_hash_value: str) -> str:
    """The key under the `guid` rule (with its per-entry fallbacks)."""
    if guid:
        return f"{IDENTITY_VERSION}:guid:{guid}"
    if canonical_url:
        return f"{IDENTITY_VERSION}:url:{canonical_url}"
    return f"{IDENTITY_VERSION}:hash:{content_hash_value}"


def key_for(rule: IdentityRule, guid: str | None, link: str | None, published_raw: str | None,
            content_hash_value: str) -> str:
    """The identity key of an entry under a feed's rule."""
    if rule is IdentityRule.GUID:
        return identity_key(guid, link, content_hash_value)
    if rule is IdentityRule.LINK and link:
        return f"{IDENTITY_VERSION}:url:{link}"
    if rule is IdentityRule.LINK_DATE and link and published_raw:
        return f"{IDENTITY_VERSION}:url_date:{link}|{published_raw}"
    return f"{IDENTITY_VERSION}:hash:{content_hash_value}"


def keyed_link(key: str, canonical_url: str, published_raw: str | None) -> tuple[bool, str | None]:
    """The link a stored article was keyed with, read back from its key: (known, link).
    A `guid` key was made under the `guid` rule, whose article URL is the link; `url` and
    `url_date` keys hold it. A `hash` key does not say: under `title_hash` the article URL
    is the link or the feed's home page, with an `#entry-` fragment."""
    version = f"{IDENTITY_VERSION}:"
    if key.startswith(version + "guid:"):
        # its URL, unless it was made by `entry_url` under another rule and kept when the
        # article was re-keyed to its GUID: then it does not say the link
        return (False, None) if _ENTRY_FRAGMENT.search(canonical_url) else (True, canonical_url)
    if key.startswith(version + "url:"):
        return True, key[len(version + "url:"):]
    date_key = version + "url_date:"
    if key.startswith(date_key) and published_raw and key.endswith("|" + published_raw):
        return True, key[len(date_key):-len(published_raw) - 1]
    return False, None


_ENTRY_MARK, _ENTRY_DIGITS = "#entry-", 12  # `entry_url`'s fragment: the mark, then hex digits of the key's hash
_ENTRY_FRAGMENT = re.compile(rf"{_ENTRY_MARK}[0-9a-f]{{{_ENTRY_DIGITS}}}\Z")


def entry_url(link: str | None, home: str | None, key: str) -> str | None:
    """An article URL for an entry whose link is shared with other entries (or missing):
    the link (else the feed's home page) with an `#entry-` fragment drawn from the
    identity key, so every article keeps a unique URL that still opens the page."""
    base = link or home
    if not base:
        return None
    return f"{base.split('#', 1)[0]}{_ENTRY_MARK}{hashlib.sha256(key.encode()).hexdigest()[:_ENTRY_DIGITS]}"
