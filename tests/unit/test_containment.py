"""What the parse keeps of an entry is safe for PostgreSQL: NULs removed and counted, lone
surrogates replaced, wherever in the document they hide; everything else kept as it was."""

import json

from hypothesis import given, settings, strategies as st

from pipeline.containment import Scrubber, json_text

# Text as a parser may hand it over: NULs, lone surrogates, backslashes, non-ASCII.
_TEXT = st.text(st.one_of(st.characters(), st.sampled_from(["\x00", "\ud800", "\udfff", "\\", "é"])), max_size=12)
_DOCUMENTS = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_TEXT, inner, max_size=4)),
    max_leaves=20)


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


def test_a_clean_entry_is_kept_whole_and_uncopied():
    scrub = Scrubber()
    entry = {"title": "Ünïcödé 😀 \"quoted\" \\ back", "n": 3, "x": None,
             "content": [{"value": "<p>tab\there</p>", "type": "text/html"}]}
    copy = json.loads(json.dumps(entry))
    assert scrub.document(entry) is entry  # neither walked nor copied
    assert entry == copy
    assert scrub.nuls_removed == 0


def test_text_that_looks_like_a_nul_escape_is_kept():
    scrub = Scrubber()
    assert scrub.document({"title": "C:\\u0000 is a path"}) == {"title": "C:\\u0000 is a path"}
    assert scrub.nuls_removed == 0


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(_DOCUMENTS)
def test_the_quick_check_keeps_what_the_walk_keeps(document):
    quick, walk = Scrubber(), Scrubber()
    assert quick.document(document) == walk.value(document)
    assert quick.nuls_removed == walk.nuls_removed


def test_json_text_is_json_that_reads_back_the_same():
    entry = {"title": "Ünïcödé \"quoted\" \\ back\nslash", "n": 10**30, "f": 1.5, "tags": ["a", "b"], "x": None}
    assert json.loads(json_text(entry)) == entry
