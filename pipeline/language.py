"""Language of an article: declared by the entry or the feed, else detected (py3langid).

Detection runs only on enough text (a title alone is too short to trust), reads the
first `DETECT_CHARS` of it (the model's cost grows with the text; a few paragraphs
decide), and keeps a guess only when the model is confident; otherwise the language
stays unknown.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

MIN_CHARS = 80
MIN_PROBABILITY = 0.9
DETECT_CHARS = 5000
MAX_TAG_CHARS = 64  # a language tag longer than this is no tag (BCP 47 ones are < 40)


def language_code(value: str | None) -> str | None:
    """Primary language subtag, lower-cased: 'en-US' -> 'en'. None when absent (or not text)."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TAG_CHARS:
        return None
    return value.strip().replace("_", "-").split("-")[0].lower()


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect(text: str) -> str | None:
    if len(text) < MIN_CHARS:
        return None
    code, probability = _identifier().classify(text[:DETECT_CHARS])
    return str(code) if probability >= MIN_PROBABILITY else None


def article_language(entry_language: str | None, feed_language: str | None,
                     text: str) -> tuple[str | None, str | None]:
    """(language, where it came from: 'entry' | 'feed' | 'detected' | None)."""
    if language_code(entry_language):
        return language_code(entry_language), "entry"
    if language_code(feed_language):
        return language_code(feed_language), "feed"
    detected = detect(text)
    return (detected, "detected") if detected else (None, None)
