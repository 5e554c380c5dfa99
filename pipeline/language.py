"""Language of an article: declared by the entry or the feed, else detected (py3langid).

Detection runs only on enough text (a title alone is too short to trust), reads the
first `DETECT_CHARS` of it (the model's cost grows with the text; a few paragraphs
decide), and keeps a guess only when the model is confident; otherwise the language
stays unknown.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pipeline import model_cache

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
    import numpy as np
    from py3langid.langid import MODEL_DIR, MODEL_FILE, RAW_FLOOR, LanguageIdentifier

    class Identifier(LanguageIdentifier):
        """py3langid's identifier, scoring the same numbers faster: the byte-DFA walk is
        vectorized (`_Automaton.visits`), and the float16 feature table is read as float32
        (exact), converted once, so the product is the float32 one numpy computes anyway
        after converting the gathered rows at each call."""

        __slots__ = ("_automaton", "_ptc32")

        def _raw_score(self, text: bytes) -> Any:  # py3langid 0.4's, but for the walk and table
            visits = self._automaton.visits(text)
            if visits:
                idx = np.fromiter(visits.keys(), dtype=np.intp, count=len(visits))
                counts = np.fromiter(visits.values(), dtype=np.float32, count=len(visits))
                return np.log1p(counts) @ self._ptc32[idx] + self.nb_pc
            fill = 0.0 if self._norm_probs else RAW_FLOOR
            return np.full(len(self.nb_classes), fill, dtype=np.float32)

    def build() -> dict[str, Any]:
        model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        automaton = _Automaton(model.tk_nextmove, model._rowbase, model.tk_output)
        return {"ptc32": np.asarray(model.nb_ptc, dtype=np.float32), "pc": model.nb_pc,
                "classes": np.asarray(model.nb_classes, dtype=str), "nextmove": automaton.nextmove,
                "row": np.asarray(model.tk_row, dtype=np.int64), "output": automaton.output,
                "depth": np.asarray(automaton.depth)}

    model = Path(MODEL_FILE) if Path(MODEL_FILE).is_absolute() else MODEL_DIR / MODEL_FILE
    stat = model.stat()
    saved = model_cache.arrays(f"py3langid-{version('py3langid')}-{stat.st_size}-{int(stat.st_mtime)}-v1", build)
    identifier = Identifier(saved["ptc32"], np.asarray(saved["pc"]), [str(c) for c in saved["classes"]],
                            saved["nextmove"], saved["output"], norm_probs=True,
                            tk_row=[int(r) for r in saved["row"]])
    identifier._automaton = _Automaton.checked_before(saved["nextmove"], identifier._rowbase, saved["output"],
                                                      int(saved["depth"]))
    identifier._ptc32 = np.asarray(saved["ptc32"])  # a plain view: see `_Automaton.checked_before`
    return identifier


class _Automaton:
    """py3langid's feature scanner (an Aho-Corasick automaton over byte n-grams), walked
    for all positions of a text at once.

    Its `visit_counts` walks the text byte by byte from state 0 and counts the feature of
    every state it passes. In an Aho-Corasick automaton the state after a byte is the
    longest suffix of the text read so far that is a prefix of some n-gram (its depth, at
    most `depth`), so it depends only on the last `depth` bytes: walking from state 0 over
    the `depth` bytes ending at a position reaches the state the full walk is in there.
    `visits` does those `depth` steps for every position in one numpy pass and returns the
    same counts, in the same (first seen) order: the order fixes the float sum of the
    score. The automaton is checked once: every transition goes at most one level deeper
    than its state, levels counted from state 0 (breadth first)."""

    def __init__(self, nextmove: Any, rowbase: list[int], output: list[int]) -> None:
        import numpy as np

        self.nextmove = np.asarray(nextmove)
        self.rowbase = np.asarray(rowbase, dtype=np.int64)
        self.output = np.asarray(output, dtype=np.int64)
        moves = self.nextmove[self.rowbase[:, None] + np.arange(256)]
        depth = np.full(len(self.rowbase), -1, dtype=np.int64)
        depth[0], level, frontier = 0, 0, np.zeros(1, dtype=np.int64)
        while frontier.size:
            reached = np.unique(moves[frontier])
            frontier = reached[depth[reached] < 0]
            level += 1
            depth[frontier] = level
        if (depth < 0).any() or not (depth[moves] <= depth[:, None] + 1).all():
            raise RuntimeError("py3langid's scanner is not an Aho-Corasick automaton")
        self.depth = int(depth.max())

    @classmethod
    def checked_before(cls, nextmove: Any, rowbase: list[int], output: Any, depth: int) -> _Automaton:
        """The automaton whose check passed when its arrays were cached (pipeline.model_cache)."""
        import numpy as np

        automaton = cls.__new__(cls)
        # plain views of the cached (memory-mapped) arrays: a memmap's own indexing goes
        # through Python on each of the scan's calls
        automaton.nextmove, automaton.output = np.asarray(nextmove), np.asarray(output)
        automaton.depth = depth
        automaton.rowbase = np.asarray(rowbase, dtype=np.int64)
        return automaton

    def visits(self, text: bytes) -> Counter[int] | None:
        """py3langid's `visit_counts(nextmove, rowbase, output, text)`."""
        import numpy as np

        letters = np.frombuffer(text, dtype=np.uint8).astype(np.int64)
        n = len(letters)
        states = np.zeros(n, dtype=np.int64)
        for back in range(min(self.depth, n) - 1, -1, -1):  # the byte `back` before each position
            states[back:] = self.nextmove[self.rowbase[states[back:]] + letters[:n - back]]
        features = self.output[states]
        features = features[features >= 0]
        return Counter(features.tolist()) if features.size else None


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
