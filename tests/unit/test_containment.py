"""What the parse keeps of an entry is safe for PostgreSQL: NULs removed and counted, lone
surrogates replaced, wherever in the document they hide; everything else kept as it was."""

import json

from pipeline.containment import Scrubber, json_text


def test_a_nul_deep_in_an_entry_is_removed_and_counted():
    scrub = Scrubber()
    entry = {"title": "ok", "links": [{"href": "https://a.example/1", "title": "a\x00b"}], "tags\x00": ["x"]}
    assert scrub.document(entry) == {"title": "ok", "links": [{"href": "https://a.example/1", "title": "ab"}],
                                     "tags": ["x"]}
    assert scrub.nuls_removed == 2


def test_a_lone_surrogate_in_a_key_or_a_value_becomes_a_replacement_character():
    scrub = Scrubber()
    assert scrub.document({"t\ud800": ["\udfff x"]}) == {"t\ufffd": ["\ufffd x"]}
    assert scrub.nuls_removed == 0


def test_a_clean_entry_is_kept_whole_including_text_that_looks_like_an_escape():
    scrub = Scrubber()
    entry = {"title": "C:\\u0000 is a path, not a NUL", "summary": "Ünïcödé 😀", "n": 3, "x": None,
             "content": [{"value": "<p>tab\there</p>", "type": "text/html"}]}
    copy = json.loads(json.dumps(entry))
    assert scrub.document(entry) == copy
    assert scrub.nuls_removed == 0


def test_json_text_is_json_that_reads_back_the_same():
    entry = {"title": "Ünïcödé \"quoted\" \\ back\nslash", "n": 10**30, "f": 1.5, "tags": ["a", "b"], "x": None}
    assert json.loads(json_text(entry)) == entry
