"""Near-duplicate detection: MinHash over word shingles, banded for locality-sensitive hashing.

Pure. An article's *signature* is a MinHash (datasketch) of the 4-word shingles of its
normalized title and text; its *bands* are `BANDS` hashes of `ROWS` signature values
each. Two articles sharing any band are candidates; a candidate whose estimated
Jaccard similarity reaches `THRESHOLD` is a near-duplicate (the same story, edited).
With 16 bands of 4 rows the chance of becoming a candidate is 0.5 at similarity 0.5
and above 0.98 at 0.75. Stored bands (table `article_bands`, indexed) make the lookup
cost per article independent of the archive's size.

Texts shorter than `MIN_WORDS` get no signature: one-line summaries of different
stories share too many phrases to be compared safely. The signature reads the first
`MAX_WORDS` words: MinHash costs ~7 us and 550 bytes a shingle, and the first 20,000
words say whether two stories are the same (of the corpora's 9,394 entries, one is
longer: 38,438 words). Versioned like the content hash.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Sequence
from functools import lru_cache
from importlib.metadata import version
from itertools import islice
from typing import Any

from pipeline import model_cache

SIGNATURE_VERSION = "v1"
NUM_PERM = 64
_SEED = 20_261_128
BANDS, ROWS = 16, 4
SHINGLE_WORDS = 4
MIN_WORDS = 40
THRESHOLD = 0.5
MAX_WORDS = 20_000
_WORD = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=1)
def _template() -> Any:
    from datasketch import MinHash

    return MinHash(num_perm=NUM_PERM, seed=_SEED, hashfunc=zlib.crc32)


@lru_cache(maxsize=1)
def _permutations() -> tuple[Any, Any]:
    """The template's affine permutations (a, b), as uint32 rows."""
    import numpy as np

    def build() -> dict[str, Any]:
        template = _template()
        if template.scheme != "affine32":  # the only scheme `_minhash` computes
            raise RuntimeError(f"unexpected MinHash scheme {template.scheme!r}")
        a, b = template.permutations
        return {"a": np.asarray(a, dtype=np.uint32), "b": np.asarray(b, dtype=np.uint32)}

    saved = model_cache.arrays(f"minhash-{version('datasketch')}-{NUM_PERM}-{_SEED}-v1", build)
    return np.asarray(saved["a"]), np.asarray(saved["b"])


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())[:MAX_WORDS]


def _shingle_strings(words: list[str]) -> Any:
    """The 4-word shingles of `words`, in order, repeats kept."""
    if SHINGLE_WORDS != 4:  # pragma: no cover - the zip below reads four words
        raise RuntimeError("SHINGLE_WORDS changed: update _shingle_strings")
    return map(" ".join, zip(words, words[1:], words[2:], words[3:], strict=False))


def shingles(text: str) -> set[bytes]:
    """The 4-word shingles of the first MAX_WORDS words."""
    return set(map(str.encode, _shingle_strings(_words(text))))


def _minhash(words: list[str]) -> Any:
    """datasketch's `MinHash(num_perm=NUM_PERM, hashfunc=zlib.crc32, scheme="affine32")` with
    the template's permutations, updated with the shingles of `words`: its hash values, the
    same numbers, computed in one vectorized pass (crc32 of each shingle, the MurmurHash3
    32-bit finalizer, then min over shingles of a * h + b mod 2^32). A shingle seen twice
    changes no minimum, so repeats are not removed first."""
    import numpy as np

    a, b = _permutations()
    encoded = [word.encode() for word in words]  # b" ".join of the encoded words is the shingle's encoding
    hashes = list(map(zlib.crc32, map(b" ".join, zip(encoded, encoded[1:], encoded[2:], encoded[3:],
                                                       strict=False))))
    if not hashes:  # datasketch's empty MinHash: every value at the maximum
        return np.full(NUM_PERM, 0xFFFFFFFF, dtype=np.uint32)
    h = np.array(hashes, dtype=np.uint32)
    h ^= h >> np.uint32(16)  # MurmurHash3 fmix32, wrapping in uint32 as datasketch's _fmix
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    permuted = h[:, None] * a
    permuted += b
    return permuted.min(axis=0)


def _has_min_words(text: str) -> bool:
    """`len(_WORD.findall(text)) >= MIN_WORDS`, reading only the first MIN_WORDS words."""
    return next(islice(_WORD.finditer(text), MIN_WORDS - 1, None), None) is not None


def signature(title: str, text: str) -> bytes | None:
    """The MinHash of an article as bytes (NUM_PERM uint32), or None for a too-short text."""
    if not _has_min_words(text):
        return None
    return _minhash(_words(f"{title}\n{text}")).astype("<u4").tobytes()


def values(sig: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{NUM_PERM}I", sig)


def bands(sig: bytes) -> list[tuple[int, int]]:
    """(band number, bucket) pairs; the bucket is a signed 64-bit hash of the band's rows."""
    v = values(sig)
    out = []
    for band in range(BANDS):
        chunk = struct.pack(f"<{ROWS}I", *v[band * ROWS:(band + 1) * ROWS])
        bucket = (zlib.crc32(chunk) << 32) | zlib.adler32(chunk)
        out.append((band, bucket - (1 << 63)))  # fits PostgreSQL bigint
    return out


def similarity(a: bytes, b: bytes) -> float:
    """Estimated Jaccard similarity of two signatures."""
    import numpy as np

    return float(np.count_nonzero(np.frombuffer(a, "<u4") == np.frombuffer(b, "<u4"))) / NUM_PERM


def best_match(sig: bytes, candidates: Sequence[tuple[int, bytes]]) -> tuple[int, float] | None:
    """The most similar candidate (id, score) at or above THRESHOLD; lowest id on ties."""
    import numpy as np

    if not candidates:
        return None
    ordered = sorted(candidates)
    others = np.frombuffer(b"".join(other for _, other in ordered), "<u4").reshape(len(ordered), NUM_PERM)
    scores = np.count_nonzero(others == np.frombuffer(sig, "<u4"), axis=1)
    best = int(np.argmax(scores))  # the first of the highest: the lowest id
    score = float(scores[best]) / NUM_PERM
    return (ordered[best][0], score) if score >= THRESHOLD else None
