"""Containment: a bad feed or a bad entry becomes data, never an exception that escapes.

Every per-feed and per-entry step of a run (parse, normalize, identity, keys,
staging) is called through this module's boundary. What it turns an exception
into:

* for a feed: outcome `error` in `fetch_log`, with a kind (`parse_error`,
  `normalize_error`, `internal_error`) and `<type>: <message>`;
* for one entry: a quarantine reason `exception: <type>: <message>`, held with the
  original entry like any entry that failed an expectation.

It also makes text safe for PostgreSQL: NUL (which `text` and `jsonb` reject) is
removed and counted, and a lone surrogate (which no UTF-8 can carry) becomes U+FFFD.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

MAX_MESSAGE = 300
# An entry the parser could not turn into JSON is staged as {FAILED_ENTRY: why,
# ORIGINAL_ENTRY: what could be read of it}; the normalize stage quarantines it.
FAILED_ENTRY = "_exception"
ORIGINAL_ENTRY = "_original"

# One character class over the text: linear, and a no-op (no copy) on clean text.
_UNSAFE = re.compile("[\x00\ud800-\udfff]")
_SURROGATES = re.compile("[\ud800-\udfff]")


_encode_json = msgspec.json.Encoder().encode


def json_text(value: Any) -> str:
    """A JSON-shaped value (dicts with text keys, lists, text, numbers, booleans, None) as
    JSON text for a `jsonb` column: what json.dumps writes for it, with UTF-8 in place of
    \\u escapes, in a fraction of its time (msgspec). A non-finite number becomes null. It
    raises where no JSON can carry the value (a lone surrogate: UnicodeEncodeError) and on
    some values that are not JSON-shaped (a str subclass, a None or bool key: TypeError)."""
    return _encode_json(value).decode()


def describe(exc: BaseException) -> str:
    """`<type>: <first line of the message>`, bounded: what a log line or a row keeps."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "..."
    return f"{type(exc).__name__}: {safe_text(message)[0]}" if message else type(exc).__name__


def exception_reason(exc: BaseException, stage: str) -> dict[str, Any]:
    """A quarantine reason for an entry whose `stage` raised."""
    return described_reason(describe(exc), stage)


def described_reason(described: str, stage: str) -> dict[str, Any]:
    """A quarantine reason from an exception already described (`<type>: <message>`)."""
    return {"expectation": "exception", "column": stage, "observed": f"exception: {described}"}


def replace_surrogates(text: str) -> str:
    """Lone surrogates (JSON can carry them; UTF-8 cannot) as U+FFFD."""
    return _SURROGATES.sub("\ufffd", text) if _SURROGATES.search(text) else text


def safe_text(text: str) -> tuple[str, int]:
    """(text without NUL and with lone surrogates replaced, NULs removed)."""
    if text.isascii() and "\x00" not in text:  # the common case, in C: no surrogate is ASCII
        return text, 0
    if not _UNSAFE.search(text):
        return text, 0
    nuls = text.count("\x00")
    return _UNSAFE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text), nuls


@dataclass
class Scrubber:
    """Makes JSON-shaped values safe for PostgreSQL, counting the NULs it removed."""

    nuls_removed: int = 0

    def text(self, value: str) -> str:
        clean, nuls = safe_text(value)
        self.nuls_removed += nuls
        return clean

    def document(self, value: Any) -> Any:
        """`value(value)` for a JSON-shaped document (dicts with text keys, lists, text,
        numbers): the document itself, uncopied, when it holds neither a NUL nor a lone
        surrogate (nearly every entry), found in one pass in C. msgspec refuses a lone
        surrogate and writes a NUL as \\u0000; either (or a false alarm, the text "\\u0000")
        sends the document through the walk."""
        try:
            clean = b"\\u0000" not in _encode_json(value)
        except Exception:  # noqa: BLE001 - a lone surrogate, or what msgspec cannot write: the walk
            clean = False
        return value if clean else self.value(value)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value


def failed_entry(exc: BaseException, original: Any, scrub: Scrubber) -> dict[str, Any]:
    """The stand-in for an entry that could not be read: why, and the original."""
    return {FAILED_ENTRY: describe(exc), ORIGINAL_ENTRY: scrub.value(original)}
