"""Per-feed identity rules: detect broken GUIDs and fall back, per feed. Pure.

A feed's GUIDs are broken when, in one fetch,

* more than `EMPTY_SHARE` of the entries have none (`empty`),
* at least half the entries share their GUID with an entry of other content (`repeated`), or
* most entries already stored under the same link come back with another GUID
  (`changing`; needs at least `MIN_EVIDENCE` such entries).

A feed with broken GUIDs uses the first rule its entries support: `link` when (nearly)
every entry has a link of its own, `link_date` when links are shared but link and date
tell entries apart, else `title_hash`. Entries with no title, text or link are left
out of the judgement (the data contract holds them anyway). A feed whose GUIDs look sound keeps its rule,
and goes back to `guid` only on evidence: `MIN_EVIDENCE` stored entries seen again
under the same GUID. One exact duplicate inside a feed (same content twice) is not
evidence of anything.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace

from pipeline.identity import IdentityRule, entry_url, key_for, keyed_link
from pipeline.records import Article, StoredIdentity

MIN_EVIDENCE = 2
LINKED_SHARE = 0.9
EMPTY_SHARE = 0.1  # a rare entry without a GUID falls back alone (see pipeline.identity)


@dataclass(frozen=True)
class RuleChoice:
    rule: IdentityRule
    reason: str | None  # why this rule, when it is not a plain `guid`


def _shared(articles: Sequence[Article], key: Callable[[Article], Hashable]) -> int:
    """How many articles share their key with an article of other content."""
    hashes: dict[Hashable, set[str]] = defaultdict(set)
    counts: dict[Hashable, int] = defaultdict(int)
    for a in articles:
        hashes[key(a)].add(a.content_hash)
        counts[key(a)] += 1
    return sum(counts[k] for k, h in hashes.items() if len(h) > 1)


def guid_problem(articles: Sequence[Article], changed: int, seen: int) -> str | None:
    """What is wrong with the batch's GUIDs, if anything; `changed` of the `seen` entries
    already stored at their link came back with another GUID."""
    n = len(articles)
    empty = sum(not a.guid for a in articles)
    if empty > EMPTY_SHARE * n:
        return f"empty GUIDs: {empty} of {n} entries have none"
    repeated = _shared(articles, lambda a: a.guid)
    if repeated * 2 >= n and repeated:
        return f"repeated GUIDs: {repeated} of {n} entries share one with another story"
    if seen >= MIN_EVIDENCE and changed * 2 > seen:
        return f"changing GUIDs: {changed} of {seen} stored entries came back with a new GUID"
    return None


def _guid_changes(articles: Sequence[Article], stored_guid_by_link: Mapping[str, str | None]) -> tuple[int, int]:
    pairs = [(a.guid, stored_guid_by_link[a.link]) for a in articles
             if a.link and a.guid and stored_guid_by_link.get(a.link)]
    return sum(new != old for new, old in pairs), len(pairs)


def fallback(articles: Sequence[Article]) -> tuple[IdentityRule, str]:
    """The first rule after `guid` that tells this feed's entries apart. Links need not be
    on every entry (`LINKED_SHARE`): one without is held by the data contract as before,
    rather than costing every other entry its real URL."""
    linked = [a for a in articles if a.link]
    if len(linked) >= LINKED_SHARE * len(articles):
        if not _shared(linked, lambda a: a.link):
            return IdentityRule.LINK, "links are unique"
        if all(a.published_raw for a in linked) and not _shared(linked, lambda a: (a.link, a.published_raw)):
            return IdentityRule.LINK_DATE, "links are shared, link and date are unique"
    return IdentityRule.TITLE_HASH, "links and dates do not tell entries apart"


def choose(articles: Sequence[Article], current: IdentityRule,
           stored_guid_by_link: Mapping[str, str | None]) -> RuleChoice:
    """The identity rule for one feed's batch, given its current rule and, for each link of
    the batch already stored for this feed, the GUID it was stored with."""
    articles = [a for a in articles if a.title or a.text or a.link]  # empty entries say nothing
    if not articles:
        return RuleChoice(current, None)
    changed, seen = _guid_changes(articles, stored_guid_by_link)
    problem = guid_problem(articles, changed, seen)
    if problem is not None:
        rule, why = fallback(articles)
        return RuleChoice(rule, f"{problem}; {why}")
    if current is not IdentityRule.GUID and seen >= MIN_EVIDENCE and changed == 0:
        return RuleChoice(IdentityRule.GUID, f"GUIDs stable again on {seen} stored entries")
    return RuleChoice(current, None)


def apply(article: Article, rule: IdentityRule) -> Article:
    """The article under its feed's rule: its identity key and, when links do not tell its
    feed's entries apart, a URL made unique with an `#entry-` fragment."""
    key = key_for(rule, article.guid, article.link, article.published_raw, article.content_hash)
    url = article.link if rule in (IdentityRule.GUID, IdentityRule.LINK) else entry_url(
        article.link, article.feed_link, key)
    if key == article.identity_key and url == article.canonical_url:
        return article  # as staged: no copy (the decider holds a chunk of these)
    return replace(article, identity_key=key, canonical_url=url)


def rekeyed(stored: Sequence[StoredIdentity], rule: IdentityRule,
            claims: Mapping[str, str | None]) -> dict[int, str]:
    """New identity keys for a feed's stored articles under its new `rule`, for those an
    entry of this batch is: `claims` maps each key the batch's entries have under the rule
    to the entry's link. An entry stored under the old rule and served again (edited, say)
    is then the same article under the new one, not a second copy of its story.

    An article is re-keyed only when its key under the new rule is surely its own: read back
    from what it was keyed with (not a `title_hash` key, which does not say the link, when
    the new key needs one), claimed by an entry of the batch, at the same link when the new
    key is a GUID (a GUID the feed recycled is no proof), and neither shared with another of
    the feed's articles nor held by one already. An article left alone can at worst be
    stored again; one given a key that is not its own would take another story's updates."""
    wanted = {}
    for article in stored:
        known, link = keyed_link(article.identity_key, article.canonical_url, article.published_raw)
        needs_link = not (rule is IdentityRule.TITLE_HASH or (rule is IdentityRule.GUID and article.guid))
        if needs_link and not known:
            continue
        key = key_for(rule, article.guid, link, article.published_raw, article.content_hash)
        if key == article.identity_key or key not in claims:
            continue
        if rule is IdentityRule.GUID and (not known or link != claims[key]):
            continue
        wanted[article.id] = key
    held = {article.identity_key for article in stored}
    claimed = Counter(wanted.values())
    return {article_id: key for article_id, key in wanted.items() if claimed[key] == 1 and key not in held}
