"""A labelled near-duplicate evaluation: syndicated variants of real articles, mixed with
distinct stories on the same topic, through the real ingest path.

The *pool* is every article of at least `MIN_WORDS` words in the real feeds of
`../shared/corpora/bench-feeds` (parsed and normalized by the pipeline), less those that
are mostly boilerplate (a third of their shingles shared with another article: show
notes, calendars); they are templates, not stories.

*Distinct stories on the same topic* are pairs of pool articles that name the same
people, places and things (named-entity overlap) but tell different events (few
shared shingles). Both stories of a pair go in: each is a negative for the other.

*Syndicated variants* are copies of each story as other outlets run them, each with
two to four of these edits, drawn with a fixed seed: another headline, a trimmed
ending, a dropped paragraph, a dateline and a footer of boilerplate, typographic
quotes straightened or curled, a light copy edit, tracking links and a tracking query.

Every story is published by one wire feed and each variant by another outlet's feed,
served on loopback and ingested together. A pair is *predicted* when both articles
end in one story cluster (`article_clusters`); it is *true* when both come from one story.
"""

from __future__ import annotations

import html
import random
import re
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from itertools import combinations
from pathlib import Path
from typing import Any, Callable

from pipeline import database, local_runner, neardup
from pipeline.config import Settings
from pipeline.feedserver import FeedServer, Route
from pipeline.normalize import normalize_entry
from pipeline.parse import parse_feed
from pipeline.records import Article, FeedSource, ParsedEntry

MIN_WORDS = 150
SEED = 20_261_128
OUTLETS = ("metro-herald", "daily-courier", "coast-times", "valley-post", "river-gazette")
_ENTITY = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-z]{2,}(?:\s[A-Z][a-z]{2,})*)")
_NOT_ENTITIES = frozenset("The This That These Those There Here When What Where Which While With "
                          "From Into After Before About They Then Also And But For Our Your Their "
                          "You Its His Her Some Many Most More Read Click Share".split())


@dataclass(frozen=True)
class Story:
    key: str  # the story's label: articles of one key are one story
    title: str
    paragraphs: tuple[str, ...]


# --- the pool ------------------------------------------------------------------------


def pool(shared: Path, limit_files: int | None = None) -> list[Article]:
    """Long real articles from the bench corpus, in a stable order."""
    fetched = datetime(2026, 11, 20, tzinfo=timezone.utc)
    files = sorted((shared / "corpora" / "bench-feeds" / "feeds").iterdir())[:limit_files]
    articles = []
    for path in files:
        parsed = parse_feed(path.read_bytes(), f"https://{path.stem}.example/feed")
        for seq, raw in enumerate(parsed.entries):
            article = normalize_entry(ParsedEntry(len(articles), seq, raw, fetched, parsed.language,
                                                  parsed.link))
            if article.word_count >= MIN_WORDS and article.signature and "\n" in article.text:
                articles.append(article)
    return _without_templates(articles)


def _shingles(article: Article) -> set[bytes]:
    return neardup.shingles(f"{article.title}\n{article.text}")


def _jaccard(a: set[bytes], b: set[bytes]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def _without_templates(articles: list[Article]) -> list[Article]:
    """Drop articles sharing a third of their shingles with another (and exact repeats)."""
    sets = [_shingles(a) for a in articles]
    owners: dict[bytes, set[int]] = defaultdict(set)
    for i, shingles in enumerate(sets):
        for shingle in shingles:
            owners[shingle].add(i)
    keep = []
    for i, shingles in enumerate(sets):
        shared = Counter(j for s in shingles for j in owners[s] if j != i)
        if not shared or max(shared.values()) < len(shingles) / 3:
            keep.append(articles[i])
    return keep


def entities(article: Article) -> set[str]:
    found = set(_ENTITY.findall(f"{article.title}. {article.text}"))
    return {e for e in found if e.split()[0] not in _NOT_ENTITIES}


def same_topic_pairs(articles: list[Article], count: int) -> list[tuple[Article, Article]]:
    """Up to `count` disjoint pairs naming the most of the same entities, with different events."""
    names = [entities(a) for a in articles]
    index: dict[str, list[int]] = defaultdict(list)
    for i, found in enumerate(names):
        for name in found:
            index[name].append(i)
    common = max(10, len(articles) // 50)  # names found everywhere do not make a topic
    shared: Counter[tuple[int, int]] = Counter()
    for holders in index.values():
        if len(holders) <= common:
            shared.update(combinations(holders, 2))
    sets: dict[int, set[bytes]] = {}
    scored = []
    for (i, j), n in shared.items():
        if n >= 4:
            a, b = sets.setdefault(i, _shingles(articles[i])), sets.setdefault(j, _shingles(articles[j]))
            if _jaccard(a, b) < 0.1:
                scored.append((n / len(names[i] | names[j]), n, i, j))
    pairs, used = [], set()
    for _, _, i, j in sorted(scored, reverse=True):
        if i not in used and j not in used:
            pairs.append((articles[i], articles[j]))
            used |= {i, j}
        if len(pairs) == count:
            break
    return pairs


# --- the edits -----------------------------------------------------------------------

Edit = Callable[[Story, random.Random], Story]


def retitle(story: Story, rng: random.Random) -> Story:
    words = story.paragraphs[0].split()
    headline = rng.choice([f"UPDATE: {story.title}", f"{story.title} | {rng.choice(OUTLETS).title()}",
                           " ".join(words[:rng.randint(7, 12)]).rstrip(",.;:")])
    return Story(story.key, headline, story.paragraphs)


def trim_ending(story: Story, rng: random.Random) -> Story:
    keep = max(2, len(story.paragraphs) - rng.randint(1, max(1, len(story.paragraphs) // 6)))
    return Story(story.key, story.title, story.paragraphs[:keep])


def drop_paragraph(story: Story, rng: random.Random) -> Story:
    if len(story.paragraphs) < 4:
        return story
    gone = rng.randrange(1, len(story.paragraphs) - 1)
    return Story(story.key, story.title, story.paragraphs[:gone] + story.paragraphs[gone + 1:])


def boilerplate(story: Story, rng: random.Random) -> Story:
    outlet = rng.choice(OUTLETS).replace("-", " ").title()
    city = rng.choice(["LONDON", "NEW YORK", "BRUSSELS", "SYDNEY", "TORONTO"])
    first = f"{city} ({outlet}) \u2014 {story.paragraphs[0]}"
    footer = rng.choice([
        f"This story was originally published by {outlet}. Sign up for our morning newsletter to "
        "get the day's most important stories delivered to your inbox.",
        f"Copyright {outlet}. All rights reserved. This material may not be published, broadcast, "
        "rewritten or redistributed without permission.",
        f"Additional reporting by the {outlet} staff. Have a news tip? Contact our newsroom.",
    ])
    return Story(story.key, story.title, (first,) + story.paragraphs[1:] + (footer,))


def typography(story: Story, rng: random.Random) -> Story:
    if rng.random() < 0.5:
        table = {"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'", "\u2014": "-", "\u2013": "-"}
        convert = lambda p: "".join(table.get(c, c) for c in p)  # noqa: E731
    else:
        convert = lambda p: re.sub(r"'", "\u2019", re.sub(r'"([^"]*)"', "\u201c\\1\u201d", p))  # noqa: E731
    return Story(story.key, convert(story.title), tuple(convert(p) for p in story.paragraphs))


_COPY_EDITS = [(" said ", " told reporters "), (" says ", " said "), (" percent", "%"),
               (" but ", " however, "), (" also ", " "), (" very ", " "), (" about ", " around "),
               (" because ", " as "), (" However,", " But"), (" will ", " would ")]


def copy_edit(story: Story, rng: random.Random) -> Story:
    paragraphs = list(story.paragraphs)
    for old, new in rng.sample(_COPY_EDITS, 4):
        paragraphs = [p.replace(old, new, 1) for p in paragraphs]
    return Story(story.key, story.title, tuple(paragraphs))


def tracking_links(story: Story, rng: random.Random) -> Story:
    link = f"https://t.co/{rng.getrandbits(40):010x}"
    return Story(story.key, story.title, story.paragraphs + (f"Read more: {link}",))


EDITS: tuple[Edit, ...] = (retitle, trim_ending, drop_paragraph, boilerplate, typography, copy_edit,
                           tracking_links)


def variant(story: Story, rng: random.Random) -> Story:
    for edit in rng.sample(EDITS, rng.randint(2, 4)):
        story = edit(story, rng)
    return story


# --- the feeds -----------------------------------------------------------------------


def _story(article: Article, key: str) -> Story:
    return Story(key, article.title, tuple(p for p in article.text.split("\n") if p.strip()))


def _item(outlet: str, story: Story, n: int, when: datetime) -> str:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in story.paragraphs)
    url = f"https://{outlet}.example/{story.key}?utm_source=rss&utm_campaign={outlet}"
    return (f"<item><title>{html.escape(story.title)}</title><link>{html.escape(url)}</link>"
            f"<guid isPermaLink=\"false\">{outlet}-{story.key}-{n}</guid>"
            f"<pubDate>{format_datetime(when)}</pubDate>"
            f"<description>{html.escape(body)}</description></item>")


def _feed(outlet: str, items: list[str]) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{outlet}</title>'
            f"<link>https://{outlet}.example/</link>{''.join(items)}</channel></rss>").encode()


def build(pairs: list[tuple[Article, Article]], variants_per_story: int = 3,
          seed: int = SEED) -> tuple[dict[str, bytes], dict[str, str]]:
    """Feeds by path, and each article URL's story label."""
    rng = random.Random(seed)
    when = datetime(2026, 11, 20, 8, tzinfo=timezone.utc)
    items: dict[str, list[str]] = defaultdict(list)
    labels: dict[str, str] = {}
    for n, pair in enumerate(pairs):
        for side, article in zip("ab", pair):
            story = _story(article, f"story-{n}{side}")
            copies = [(f"wire-{side}", story)] + [
                (outlet, variant(story, rng)) for outlet in rng.sample(OUTLETS, variants_per_story)]
            for outlet, copy in copies:
                items[outlet].append(_item(outlet, copy, n, when + timedelta(minutes=n)))
                labels[f"https://{outlet}.example/{story.key}"] = story.key
    return {f"/{outlet}.xml": _feed(outlet, entries) for outlet, entries in items.items()}, labels


# --- the measurement -----------------------------------------------------------------


def pair_scores(clusters: dict[str, int], labels: dict[str, str]) -> dict[str, Any]:
    """Pair precision and recall of predicted clusters against the story labels."""
    truth = {frozenset(p) for p in combinations(labels, 2) if labels[p[0]] == labels[p[1]]}
    members: dict[int, list[str]] = defaultdict(list)
    for url, cluster in clusters.items():
        members[cluster].append(url)
    predicted = {frozenset(p) for urls in members.values() for p in combinations(sorted(urls), 2)}
    hits = len(predicted & truth)
    wrong = predicted - truth
    return {
        "articles": len(labels), "stories": len(set(labels.values())),
        "true_pairs": len(truth), "predicted_pairs": len(predicted),
        "precision": round(hits / len(predicted), 4) if predicted else 1.0,
        "recall": round(hits / len(truth), 4) if truth else 1.0,
        "wrong_merges": len(wrong),
        # wrong pairs whose two stories are a same-topic pair ("story-7a" and "story-7b")
        "same_topic_pairs_merged": sum(1 for p in wrong if len({labels[u][:-1] for u in p}) == 1),
    }


def clusters_by_url(db_url: str) -> dict[str, int]:
    with database.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("""SELECT split_part(a.canonical_url, '?', 1), c.cluster_id
                       FROM article_clusters c JOIN articles a ON a.id = c.article_id""")
        return dict(cur.fetchall())


def evaluate(db_url: str, settings: Settings, pairs: list[tuple[Article, Article]],
             variants_per_story: int = 3) -> dict[str, Any]:
    """Build the labelled feeds, ingest them together on loopback, and score the clusters."""
    feeds, labels = build(pairs, variants_per_story)
    with FeedServer({path: Route(body) for path, body in feeds.items()}) as server:
        sources = [FeedSource(server.url(path)) for path in sorted(feeds)]
        summary = local_runner.ingest(db_url, settings, sources, f"eval-{uuid.uuid4().hex[:8]}", force=True)
    scores = pair_scores(clusters_by_url(db_url), labels)
    totals = summary["totals"]
    scores.update(loaded=totals["new"], exact_duplicates=totals["duplicates"], quarantined=totals["quarantined"])
    scores["same_topic_pairs"] = len(pairs)
    # The margin: how similar the closest two distinct stories of one topic look to MinHash.
    scores["max_same_topic_similarity"] = max(
        (neardup.similarity(bytes.fromhex(a.signature), bytes.fromhex(b.signature))
         for a, b in pairs if a.signature and b.signature), default=0.0)
    return scores


# --- real feeds ingested together ------------------------------------------------------

_HREF = re.compile(r'href="([^"]+)"')


def cluster_links(db_url: str) -> tuple[int, list[tuple[str, str]]]:
    """(links, wrong merges) of the stored story clusters, judged apart from the text
    similarity that linked them: a member is the same story as its cluster's first article
    when it has the same headline (before an outlet suffix " - ..."), or links to one of the
    same source articles (Google News' RSS and Atom editions cover one story with
    different lead headlines)."""
    with database.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("""SELECT c.cluster_id, a.title, a.html FROM article_clusters c
                       JOIN articles a ON a.id = c.article_id ORDER BY c.cluster_id, a.id""")
        rows = cur.fetchall()
    clusters: dict[int, list[tuple[str, set[str]]]] = defaultdict(list)
    for cluster_id, title, markup in rows:
        clusters[cluster_id].append((title, set(_HREF.findall(markup))))
    links, wrong = 0, []
    for (title, sources), *others in clusters.values():
        for other_title, other_sources in others:
            links += 1
            if other_title.split(" - ")[0] != title.split(" - ")[0] and not sources & other_sources:
                wrong.append((title, other_title))
    return links, wrong


def news_feeds_together(db_url: str, settings: Settings, shared: Path) -> dict[str, Any]:
    """The real news feeds of ../shared ingested together in one run: their cluster links."""
    corpus = shared / "corpora" / "news-feeds"
    routes = {f"/{p.relative_to(corpus)}": Route(p.read_bytes()) for p in sorted(corpus.rglob("*.xml"))}
    with FeedServer(routes) as server:
        local_runner.ingest(db_url, settings, [FeedSource(server.url(path)) for path in routes],
                      f"news-{uuid.uuid4().hex[:8]}", force=True)
    links, wrong = cluster_links(db_url)
    return {"feeds": len(routes), "cluster_links": links, "wrong_merges": len(wrong)}

