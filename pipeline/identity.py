"""The identity key and the content hash: defined once, documented, versioned.

Identity (v1) says which stored article an entry *is*: within one feed, the
entry's GUID; without one, its canonical URL; without either, its content
hash. Two entries of one feed with the same identity are the same article.

The content hash (v1) says whether an article's *content* changed: SHA-256
over the normalized title and plain text. Volatile fields (dates, links,
authors, tags) are left out so a re-served entry hashes the same. An entry
with no text also hashes its canonical URL, so title-only entries of
different stories ("Live updates") do not collide.

Changing either rule means a new version prefix, never a silent change.
"""

from __future__ import annotations

import hashlib

IDENTITY_VERSION = "v1"
CONTENT_HASH_VERSION = "v1"


def content_hash(title: str, text: str, canonical_url: str | None) -> str:
    parts = [title.strip(), text.strip()]
    if not parts[1]:
        parts.append(canonical_url or "")
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return f"{CONTENT_HASH_VERSION}:{digest}"


def identity_key(guid: str | None, canonical_url: str | None, content_hash_value: str) -> str:
    if guid:
        return f"{IDENTITY_VERSION}:guid:{guid}"
    if canonical_url:
        return f"{IDENTITY_VERSION}:url:{canonical_url}"
    return f"{IDENTITY_VERSION}:hash:{content_hash_value}"
