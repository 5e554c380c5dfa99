"""Choosing a feed's identity rule: broken GUIDs are detected, isolated oddities are not."""

from dataclasses import replace
from datetime import datetime, timezone

from pipeline.feed_identity import apply, choose
from pipeline.identity import IdentityRule, content_hash, identity_key
from pipeline.records import Article

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
