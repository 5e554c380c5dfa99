"""Canonical article URLs: the same article reached by different links gets one URL.

Relative links are resolved against the feed's link; scheme and host are
lower-cased; default ports, fragments and tracking parameters are removed;
the query is sorted and percent-encoding normalized (w3lib). Links that are
not http(s) are returned resolved but otherwise untouched, so validation can
name them. A link that is no URL at all (a port that is not a number or out of
range, a broken IPv6 host, a lone surrogate) or longer than `MAX_LINK_CHARS` has
no canonical form: None, never an exception.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urljoin, urlsplit, urlunsplit

from w3lib.url import canonicalize_url, url_query_cleaner

# Parameters that identify a campaign or a click, never an article.
TRACKING_PARAMETERS = frozenset(
    {
        "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "utm_id",
        "utm_name", "utm_brand", "utm_social", "utm_social-type", "fbclid", "gclid",
        "gclsrc", "dclid", "msclkid", "yclid", "twclid", "igshid", "mc_cid", "mc_eid",
        "_ga", "_gl", "_hsenc", "_hsmi", "mkt_tok", "oly_anon_id", "oly_enc_id",
        "vero_id", "wt_mc", "wt.mc_id", "cmpid", "ocid", "smid", "sr_share",
    }
)
_TRACKING_PREFIXES = ("utm_",)
# Longer links are not canonicalized (w3lib takes ~0.5 s a MB): validation rejects a
# canonical URL over 2,000 bytes anyway; real links are under 500 characters.
MAX_LINK_CHARS = 1 << 15
# A feed's address: `feeds.url` is a unique btree key, which holds at most about 2,700 bytes.
MAX_FEED_URL_CHARS = 2048
MAX_SHOWN_URL = 200  # of a refused address, what a message quotes
# A link already in canonical form but for a fragment: http(s), a lower-case ASCII host
# (no port, no user, no IDNA label), a path of unreserved characters and "/" only, no query.
# Most real links are; for these `_canonical` is the link without its fragment and with
# "/" for an empty path (tests/unit/test_urls.py compares both ways on many links).
_PLAIN = re.compile(
    r"(https?://(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63})(/[A-Za-z0-9._~/-]*)?(?:#[!-~]*)?")


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMETERS or lowered.startswith(_TRACKING_PREFIXES)


def canonical_url(link: str | None, base: str | None = None) -> str | None:
    """The canonical form of `link`, resolved against `base`; None when there is no link
    or it cannot be read as a URL."""
    if not isinstance(link, str) or not link.strip() or len(link) > MAX_LINK_CHARS:
        return None
    try:
        return _canonical(link.strip(), base if isinstance(base, str) else None)
    except (ValueError, UnicodeError):  # urllib: bad port or IPv6 host; w3lib: surrogates
        return None


@lru_cache(maxsize=256)  # one base (the feed's link) serves all of a feed's entries
def _parses(base: str) -> bool:
    try:
        urlsplit(base)
    except ValueError:  # a broken IPv6 host: urljoin raises on it
        return False
    return True


def _plain(url: str) -> str | None:
    """The canonical form of a `_PLAIN` link (itself without its fragment), else None."""
    plain = _PLAIN.fullmatch(url)
    if plain is None or "xn--" in plain[1] or "/." in (plain[2] or ""):
        return None
    return plain[1] + (plain[2] or "/")


def _canonical(link: str, base: str | None) -> str:
    if base is None or _parses(base):
        # urljoin returns an absolute http(s) link without ";", "?" or dot segments as it is
        plain = _plain(link)
        if plain is not None:
            return plain
    resolved = urljoin(base, link) if base else link
    plain = _plain(resolved)
    return plain if plain is not None else _canonical_w3lib(resolved)


def _canonical_w3lib(resolved: str) -> str:
    parts = urlsplit(resolved)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return resolved
    query_names = [pair.split("=", 1)[0] for pair in parts.query.split("&") if pair]
    tracking = [name for name in query_names if _is_tracking(name)]
    if tracking:
        resolved = url_query_cleaner(resolved, tracking, remove=True, keep_fragments=True)
    canonical = canonicalize_url(resolved, keep_fragments=False)
    parts = urlsplit(canonical)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    port = parts.port
    default_port = {"http": 80, "https": 443}[parts.scheme]
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    path = parts.path or "/"
    return urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def feed_url_problem(url: str) -> str | None:
    """Why `url` cannot be a feed's address (None when it can): an http(s) URL with a host,
    a port that is a port, at most `MAX_FEED_URL_CHARS` characters."""
    if len(url) > MAX_FEED_URL_CHARS:
        return f"is longer than {MAX_FEED_URL_CHARS} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http(s) URL with a host"
    return None
