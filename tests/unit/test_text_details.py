from datetime import datetime, timezone

from pipeline.language import article_language, detect
from pipeline.normalize import normalize_entry
from pipeline.records import ParsedEntry
from pipeline.text import html_to_text, repair_mojibake, sanitize_html, word_count

GERMAN = ("Die Bundesregierung hat am Donnerstag neue Regeln für den Hafen beschlossen. "
          "Die Fähre fährt im Winter seltener, teilte der Betreiber mit.")


def test_double_encoded_utf8_is_repaired_and_clean_text_is_untouched():
    assert repair_mojibake("The mayorâ€™s statement") == "The mayor\u2019s statement"
    assert html_to_text("<p>CafÃ© Ã  la carte</p>") == "Café à la carte"
    assert repair_mojibake("Café – naïve “quoted”") == "Café – naïve “quoted”"


def test_tracking_pixels_are_removed_and_real_images_kept():
    html = ('<p>Text<img src="https://t.example/p.gif" width="1" height="1">'
            '<img src="https://cdn.example/photo.jpg" width="640"></p>')
    clean = sanitize_html(html)
    assert "p.gif" not in clean and "photo.jpg" in clean


def test_word_count():
    assert word_count("Fish & chips\n\nsecond para") == 5


def test_language_declared_beats_detection_and_detection_needs_enough_text():
    assert article_language("en-GB", "de", GERMAN) == ("en", "entry")
    assert article_language(None, "fr-FR", GERMAN) == ("fr", "feed")
    assert article_language(None, None, GERMAN) == ("de", "detected")
    assert detect("Kurz") is None


def test_normalized_article_carries_language_source_and_word_count():
    raw = {"id": "1", "link": "https://x.example/1", "title": "Hafen", "summary": GERMAN}
    article = normalize_entry(ParsedEntry(1, 0, raw, datetime(2026, 11, 20, tzinfo=timezone.utc)))
    assert (article.language, article.language_source) == ("de", "detected")
    assert article.word_count == len(GERMAN.split())


def test_detection_scores_as_py3langid_does():
    """The vectorized scanner and float32 table give py3langid's own scores, bit for bit."""
    import numpy as np
    from py3langid.langid import MODEL_FILE, LanguageIdentifier, visit_counts

    from pipeline.language import _identifier

    reference = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    ours = _identifier()
    texts = ["The council approved the harbour budget on Thursday after a long debate. " * 3,
             "Le conseil municipal a voté le budget du port jeudi soir après un long débat. " * 2,
             "Der Stadtrat hat am Donnerstag den Haushalt für den Hafen beschlossen. Ärger über Straßen.",
             "東京都は木曜日に港湾予算を承認した。長い議論の後で決まった。", "x", "", "   \n\t", "ab" * 3000,
             "Ελληνικά κείμενα και русский текст вместе, with English too. 123 456 789 !!!"]
    for text in texts:
        assert np.array_equal(ours._decide(text), reference._decide(text)), text
        assert ours.classify(text) == reference.classify(text)
        data = reference._encode(text)
        expected = visit_counts(reference.tk_nextmove, reference._rowbase, reference.tk_output, data)
        got = ours._automaton.visits(data)
        assert (list(got.items()) if got else None) == (list(expected.items()) if expected else None)


def test_collapsing_only_what_changes_equals_collapsing_every_run():
    import random

    from pipeline.text import _SPACES, _collapse_spaces

    rng = random.Random(3)
    for _ in range(20_000):
        value = "".join(rng.choice(" \t\f\v\u00a0\u200bab\n") for _ in range(rng.randint(0, 12)))
        assert _collapse_spaces(value) == _SPACES.sub(" ", value)
