"""Choosing a feed's identity rule: broken GUIDs are detected, isolated oddities are not."""

from dataclasses import replace
from datetime import datetime, timezone

from pipeline.feed_identity import apply, choose, rekeyed
from pipeline.identity import IdentityRule, content_hash, entry_url, identity_key, key_for, keyed_link
from pipeline.records import Article, StoredIdentity

GUID = IdentityRule.GUID


def article(n, guid="auto", link="auto", published_raw="Mon, 16 Nov 2026 10:00:00 +0000", text=None):
    guid = f"guid-{n}" if guid == "auto" else guid
    link = f"https://news.example/{n}" if link == "auto" else link
    text = text or f"Story {n} text"
    digest = content_hash(f"Story {n}", text, link)
    return Article(feed_id=1, seq=n, identity_key=identity_key(guid, link, digest), guid=guid,
                   canonical_url=link, title=f"Story {n}", text=text, html="",
                   published_at=datetime(2026, 11, 16, tzinfo=timezone.utc), published_source="published",
                   content_hash=digest, link=link, published_raw=published_raw,
                   feed_link="https://news.example/")


def test_sound_guids_keep_the_guid_rule():
    assert choose([article(n) for n in range(10)], GUID, {}).rule is GUID


def test_one_missing_or_one_reused_guid_is_not_a_broken_feed():
    batch = [article(n) for n in range(19)] + [article(19, guid=None)]
    assert choose(batch, GUID, {}).rule is GUID
    batch = [article(n) for n in range(8)] + [article(8, guid="guid-0")]
    assert choose(batch, GUID, {}).rule is GUID
    # The same entry listed twice is a duplicate, not a reused GUID.
    assert choose([article(0), article(0), article(1)], GUID, {}).rule is GUID


def test_guids_changing_need_evidence_from_stored_entries():
    batch = [article(n, guid=f"new-{n}") for n in range(4)]
    assert choose(batch, GUID, {"https://news.example/0": "old-0"}).rule is GUID  # one is not enough
    stored = {f"https://news.example/{n}": f"old-{n}" for n in range(4)}
    choice = choose(batch, GUID, stored)
    assert choice.rule is IdentityRule.LINK and choice.reason.startswith("changing GUIDs: 4 of 4")


def test_a_fallback_rule_returns_to_guid_only_on_evidence():
    batch = [article(n) for n in range(4)]
    assert choose(batch, IdentityRule.LINK, {}).rule is IdentityRule.LINK
    stored = {f"https://news.example/{n}": f"guid-{n}" for n in range(4)}
    assert choose(batch, IdentityRule.LINK, stored).rule is GUID


def test_the_fallback_chain_and_the_urls_it_gives():
    shared_link = [article(n, guid=None, link="https://news.example/live",
                           published_raw=f"2026-11-16T{n:02d}:00") for n in range(3)]
    assert choose(shared_link, GUID, {}).rule is IdentityRule.LINK_DATE
    undated = [article(n, guid=None, link="https://news.example/live", published_raw=None) for n in range(3)]
    assert choose(undated, GUID, {}).rule is IdentityRule.TITLE_HASH
    keyed = [apply(a, IdentityRule.LINK_DATE) for a in shared_link]
    assert len({a.identity_key for a in keyed}) == len({a.canonical_url for a in keyed}) == 3
    assert all(a.canonical_url.startswith("https://news.example/live#entry-") for a in keyed)
    # Entries with nothing in them (no title, text or link) do not decide the rule.
    empty = replace(article(9, guid=None, link=None), title="", text="")
    assert choose([article(n, guid=None) for n in range(5)] + [empty] * 5, GUID, {}).rule is IdentityRule.LINK


def stored(article_id, rule, guid, link, raw="Mon, 16 Nov 2026 10:00:00 +0000", text="t"):
    """A stored article as it was keyed under `rule`, its URL as `apply` made it."""
    digest = content_hash("Title", f"{text} {article_id}", link)
    key = key_for(rule, guid, link, raw, digest)
    url = link if rule in (IdentityRule.GUID, IdentityRule.LINK) else entry_url(link, "https://n.example/", key)
    return StoredIdentity(article_id, key, url, guid, raw, digest)


def claimed(keys, link=None):
    """Every key claimed by an entry of the batch (at `link`, when one is given)."""
    return {key: link for key in keys}


def test_stored_articles_an_entry_claims_are_rekeyed_under_the_new_rule():
    old = [stored(1, IdentityRule.GUID, "g1", "https://n.example/1"),
           stored(2, IdentityRule.GUID, "g2", "https://n.example/2", raw="Tue, 17 Nov 2026 10:00:00 +0000")]
    under_link_date = {1: "v1:url_date:https://n.example/1|Mon, 16 Nov 2026 10:00:00 +0000",
                       2: "v1:url_date:https://n.example/2|Tue, 17 Nov 2026 10:00:00 +0000"}
    assert rekeyed(old, IdentityRule.LINK_DATE, claimed(under_link_date.values())) == under_link_date
    # only the articles an entry of the batch is: the feed's history is not rewritten
    assert rekeyed(old, IdentityRule.LINK_DATE, claimed([under_link_date[2]])) == {2: under_link_date[2]}
    assert rekeyed(old, IdentityRule.LINK_DATE, {}) == {}
    # ...and back: a link_date key gives its link back, the GUID stored beside it the key
    back = [replace(a, identity_key=under_link_date[a.id]) for a in old]
    assert rekeyed(back, IdentityRule.LINK, claimed(["v1:url:https://n.example/1"])) == {
        1: "v1:url:https://n.example/1"}
    assert rekeyed(back, IdentityRule.GUID, {"v1:guid:g1": "https://n.example/1"}) == {1: "v1:guid:g1"}
    assert rekeyed(old, IdentityRule.GUID, claimed(["v1:guid:g1"], "https://n.example/1")) == {}  # no change


def test_keys_that_are_not_surely_one_articles_own_are_left_alone():
    # two stored stories behind one link: under `link` both would be that link's
    shared = [stored(1, IdentityRule.GUID, "g1", "https://n.example/live"),
              stored(2, IdentityRule.LINK_DATE, None, "https://n.example/live", raw="Tue")]
    assert rekeyed(shared, IdentityRule.LINK, claimed(["v1:url:https://n.example/live"])) == {}
    # a key another stored article holds already
    holder = [stored(1, IdentityRule.GUID, "g1", "https://n.example/1"),
              stored(2, IdentityRule.LINK, None, "https://n.example/1", text="other")]
    assert rekeyed(holder, IdentityRule.LINK, claimed(["v1:url:https://n.example/1"])) == {}
    # a title_hash key does not say the link: only rules without one re-key it
    hashed = [stored(1, IdentityRule.TITLE_HASH, None, "https://n.example/1"),
              stored(2, IdentityRule.TITLE_HASH, "g2", "https://n.example/2")]
    assert rekeyed(hashed, IdentityRule.LINK, claimed(["v1:url:https://n.example/1"])) == {}
    # back to GUIDs: the GUID alone is no proof (a feed whose GUIDs broke may have recycled
    # them): the entry must be at the stored article's link, which its key must say
    by_link = [stored(1, IdentityRule.LINK, "g1", "https://n.example/1")]
    assert rekeyed(by_link, IdentityRule.GUID, {"v1:guid:g1": "https://n.example/other"}) == {}
    assert rekeyed(by_link, IdentityRule.GUID, {"v1:guid:g1": "https://n.example/1"}) == {1: "v1:guid:g1"}
    assert rekeyed(hashed, IdentityRule.GUID, {"v1:guid:g2": "https://n.example/2"}) == {}
    hashed_key = key_for(IdentityRule.TITLE_HASH, None, None, None, content_hash("Title", "t 1", "https://n.example/1"))
    assert rekeyed([stored(1, IdentityRule.GUID, "g1", "https://n.example/1")], IdentityRule.TITLE_HASH,
                   claimed([hashed_key])) == {1: hashed_key}


def test_a_link_read_back_after_a_second_rule_change_is_the_entrys():
    """An article re-keyed to its GUID keeps its `#entry-` URL: that URL is no link, so a
    later change to `link` does not give it a key no entry has."""
    once = stored(1, IdentityRule.LINK_DATE, "g1", "https://n.example/a")
    twice = replace(once, identity_key="v1:guid:g1")  # re-keyed to GUID, URL kept
    assert keyed_link(twice.identity_key, twice.canonical_url, twice.published_raw) == (False, None)
    assert rekeyed([twice], IdentityRule.LINK, claimed([f"v1:url:{once.canonical_url}"])) == {}
    assert keyed_link("v1:guid:g1", "https://n.example/a", None) == (True, "https://n.example/a")
