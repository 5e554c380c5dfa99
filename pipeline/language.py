"""Language of an article: declared by the entry or the feed, else detected (py3langid).

Detection runs only on enough text (a title alone is too short to trust) and keeps
a guess only when the model is confident; otherwise the language stays unknown.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

MIN_CHARS = 80
MIN_PROBABILITY = 0.9


def language_code(value: str | None) -> str | None:
    """Primary language subtag, lower-cased: 'en-US' -> 'en'. None when absent."""
    if not value or not value.strip():
        return None
    return value.strip().replace("_", "-").split("-")[0].lower()


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect(text: str) -> str | None:
    if len(text) < MIN_CHARS:
        return None
    code, probability = _identifier().classify(text[:5000])
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
