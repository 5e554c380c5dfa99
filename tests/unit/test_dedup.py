from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.dedup import BatchKeys, StoredIndex, decide
from pipeline.identity import content_hash, identity_key
from pipeline.records import Article, Decision, DuplicateRule, StoredArticleKey

NOW = datetime(2026, 11, 20, tzinfo=timezone.utc)


def art(feed: int, seq: int, guid: str | None, url: str | None, title: str, text: str = "body") -> Article:
    digest = content_hash(title, text, url)
    return Article(feed, seq, identity_key(guid, url, digest), guid, url, title, text, "", NOW,
                   "published", digest)


def stored(a: Article, id_: int) -> StoredArticleKey:
    return StoredArticleKey(id_, a.feed_id, a.identity_key, a.canonical_url, a.content_hash)


def test_new_articles_are_new():
    batch = [art(1, 0, "a", "https://x/1", "One"), art(1, 1, "b", "https://x/2", "Two")]
    assert [v.decision for v in decide(batch, StoredIndex())] == [Decision.NEW, Decision.NEW]


def test_same_guid_twice_in_a_batch_keeps_the_first():
    a = art(1, 0, "a", "https://x/1", "One")
    again = art(1, 1, "a", "https://x/1", "One")
    verdicts = decide([a, again], StoredIndex())
    assert verdicts[0].decision is Decision.NEW
    assert verdicts[1].decision is Decision.DUPLICATE and verdicts[1].rule is DuplicateRule.SAME_IDENTITY_KEY
    assert verdicts[1].matched_url == "https://x/1" and verdicts[1].matched_row == (1, 0)


def test_stored_same_identity_same_content_is_duplicate_changed_content_is_update():
    old = art(1, 0, "a", "https://x/1", "One")
    index = StoredIndex.of([stored(old, 10)])
    same = decide([art(1, 5, "a", "https://x/1", "One")], index)[0]
    changed = decide([art(1, 5, "a", "https://x/1", "One, corrected")], index)[0]
    assert (same.decision, same.rule, same.matched_article_id) == (Decision.DUPLICATE, DuplicateRule.SAME_IDENTITY_KEY, 10)
    assert (changed.decision, changed.matched_article_id) == (Decision.UPDATE, 10)


def test_same_url_from_another_feed_is_a_duplicate():
    old = art(1, 0, "a", "https://x/1", "One")
    verdict = decide([art(2, 0, "other-guid", "https://x/1", "One (syndicated)")], StoredIndex.of([stored(old, 7)]))[0]
    assert (verdict.decision, verdict.rule, verdict.matched_article_id) == (Decision.DUPLICATE, DuplicateRule.CANONICAL_URL, 7)


def test_same_feed_new_guid_same_url_changed_content_is_an_update():
    old = art(1, 0, "a", "https://x/1", "One")
    verdict = decide([art(1, 0, "a-v2", "https://x/1", "One, updated")], StoredIndex.of([stored(old, 7)]))[0]
    assert (verdict.decision, verdict.rule) == (Decision.UPDATE, DuplicateRule.CANONICAL_URL)


def test_same_content_under_another_url_is_a_content_hash_duplicate():
    a = art(1, 0, "a", "https://one.example/s", "Wire story", "Same words")
    b = art(2, 0, "b", "https://two.example/s", "Wire story", "Same words")
    verdicts = decide([a, b], StoredIndex())
    assert verdicts[1].decision is Decision.DUPLICATE and verdicts[1].rule is DuplicateRule.CONTENT_HASH
    assert verdicts[1].matched_url == "https://one.example/s" and verdicts[1].matched_row == (1, 0)


def test_a_content_copy_of_an_article_without_a_url_names_its_row():
    a = art(1, 3, "a", None, "Notice", "Same words")
    b = art(2, 0, "b", None, "Notice", "Same words")
    verdicts = decide([a, b], StoredIndex())
    assert (verdicts[1].decision, verdicts[1].rule) == (Decision.DUPLICATE, DuplicateRule.CONTENT_HASH)
    assert (verdicts[1].matched_url, verdicts[1].matched_row) == (None, (1, 3))


def test_title_only_entries_of_different_stories_do_not_collide():
    a = art(1, 0, "a", "https://x/live-1", "Live updates", "")
    b = art(1, 1, "b", "https://x/live-2", "Live updates", "")
    assert [v.decision for v in decide([a, b], StoredIndex())] == [Decision.NEW, Decision.NEW]


def test_same_guid_with_other_content_in_one_batch_is_left_to_validation():
    a = art(1, 0, "g", "https://x/1", "First story")
    b = art(1, 1, "g", "https://x/1", "A different story")
    assert [v.decision for v in decide([a, b], StoredIndex())] == [Decision.NEW, Decision.NEW]


_FEEDS = st.integers(1, 4)
_GUIDS = st.sampled_from(["a", "b", "c", None])
_URLS = st.sampled_from(["https://x/1", "https://x/2", "https://y/1"])
_TITLES = st.sampled_from(["One", "Two", "Three"])


@settings(max_examples=200, deadline=None, derandomize=True)
@given(entries=st.lists(st.tuples(_FEEDS, _GUIDS, _URLS, _TITLES), max_size=14),
       stored_picks=st.lists(st.integers(0, 13), max_size=4), cut=st.integers(1, 4))
def test_a_batch_decided_in_chunks_of_whole_feeds_gets_the_verdicts_of_the_whole(entries, stored_picks, cut):
    """The load decides a large batch in chunks of whole feeds, each given the keys of the
    articles the earlier chunks planned new or updated (first of each content hash, in batch
    order): every article gets the verdict it gets when the batch is decided at once."""
    batch = sorted((art(feed, seq, guid, url, title) for seq, (feed, guid, url, title) in enumerate(entries)),
                   key=lambda a: (a.feed_id, a.seq))
    index = StoredIndex.of(stored(batch[i], 100 + i) for i in stored_picks if i < len(batch))
    whole = decide(batch, index)
    chunked, earlier = [], BatchKeys()
    chunks = [[a for a in batch if a.feed_id < cut], [a for a in batch if a.feed_id >= cut]]
    for chunk in chunks:
        verdicts = decide(chunk, index, earlier)
        chunked += verdicts
        for a, v in zip(chunk, verdicts, strict=True):
            if v.decision in (Decision.NEW, Decision.UPDATE):
                earlier.add(a)
    assert chunked == whole
