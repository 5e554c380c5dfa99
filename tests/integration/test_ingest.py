"""The whole ingest path (the CLI's and the DAG's stages) on a real PostgreSQL and loopback HTTP."""

import threading
import time
import uuid

import pytest

from pipeline import clusters, database, load, local_runner, maintenance, neardup, plan_decider, tasks, validate
from pipeline.demo import demo_feed_list, serve_demo
from pipeline.errors import SystemicFetchFailure, ValidationThresholdExceeded
from pipeline.expectations import ROWS_SUITE
from pipeline.feedlist import parse_feed_list
from pipeline.feedserver import FeedServer, Route
from pipeline.records import FeedSource
from tests.helpers import item, query, rss, scalar


def run(db_url, settings, sources, run_id=None, force=True):
    return local_runner.ingest(db_url, settings, sources, run_id or f"test-{uuid.uuid4().hex[:8]}", force=force)


def assert_counts_add_up(summary):
    t = summary["totals"]
    assert t["entries"] == t["new"] + t["updated"] + t["duplicates"] + t["quarantined"]
    for feed in summary["feeds"]:
        assert feed["entries"] == feed["new"] + feed["updated"] + feed["duplicates"] + feed["quarantined"]


@pytest.fixture
def demo():
    server = serve_demo(0)
    yield parse_feed_list(demo_feed_list(server))
    server.stop()


@pytest.mark.parametrize(("group_bytes", "group_entries", "chunk"),
                         [(tasks.STAGE_GROUP_BYTES, tasks.STAGE_GROUP_ENTRIES, plan_decider.CHUNK_ENTRIES),
                          (1, tasks.STAGE_GROUP_ENTRIES, 1), (tasks.STAGE_GROUP_BYTES, 1, 1)],
                         ids=["one group, one chunk", "a body a group, a feed a chunk",
                              "a body's entries a group, a feed a chunk"])
def test_demo_feeds_load_with_duplicates_and_quarantine_recorded(db_url, settings, demo, group_bytes, group_entries,
                                                                 chunk, monkeypatch):
    # a shard stages its entries in groups of bodies (cut by bytes, or by entries), and the
    # load decides and validates in chunks of whole feeds: a body a group and a feed a chunk
    # give the same run (the content duplicate is of another feed's entry, so of an earlier
    # chunk's)
    monkeypatch.setattr(tasks, "STAGE_GROUP_BYTES", group_bytes)
    monkeypatch.setattr(tasks, "STAGE_GROUP_ENTRIES", group_entries)
    monkeypatch.setattr(plan_decider, "CHUNK_ENTRIES", chunk)
    summary = run(db_url, settings, demo)
    assert_counts_add_up(summary)
    t = summary["totals"]
    assert (t["feeds"], t["fetched"], t["entries"]) == (3, 3, 11)
    assert (t["new"], t["duplicates"], t["quarantined"]) == (8, 2, 1)
    assert scalar(db_url, "SELECT count(*) FROM articles") == 8
    rules = dict(query(db_url, "SELECT rule, count(*) FROM duplicates GROUP BY rule"))
    assert rules == {"same_identity_key": 1, "content_hash": 1}
    assert scalar(db_url, "SELECT count(*) FROM duplicates WHERE matched_article_id IS NULL") == 0
    [(reasons, entry)] = query(db_url, "SELECT reasons, entry FROM quarantine")
    assert entry["link"] == "javascript:void(0)"
    assert {"expectation": "expect_column_values_to_match_regex", "column": "canonical_url",
            "observed": "javascript:void(0)"} in reasons


def test_chunks_validated_in_the_child_while_the_next_is_decided_land_the_same(db_url, settings, demo,
                                                                              tmp_path, monkeypatch):
    """As the CLI and the DAG's load run it: a feed a chunk, each chunk handed to the
    validation child as soon as it is decided, the child's verdicts applied once all are in."""
    monkeypatch.setattr(plan_decider, "CHUNK_ENTRIES", 1)
    handed = []
    original = validate.ValidatorProcess.run_soon

    def counted(self, *args, **kwargs):
        handed.append(args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(validate.ValidatorProcess, "run_soon", counted)
    summary = local_runner.ingest(db_url, settings.replace(data_dir=tmp_path), demo, "t-child-chunks",
                                  force=True, validation_child=True)
    assert handed == [ROWS_SUITE] * 3  # a chunk per feed, each to the child
    t = summary["totals"]
    assert (t["new"], t["duplicates"], t["quarantined"]) == (8, 2, 1)
    [(entry,)] = query(db_url, "SELECT entry FROM quarantine")
    assert entry["link"] == "javascript:void(0)"
    assert tmp_path / "gx" not in validate._validators  # ended with the run


@pytest.mark.parametrize("chunk", [plan_decider.CHUNK_ENTRIES, 5], ids=["one chunk", "chunks of two feeds"])
def test_shards_on_worker_processes_store_what_one_process_stores(db_url, settings, chunk, monkeypatch):
    """The CLI's default: shards on a process pool, each a fetch-parse-normalize pass. Same rows,
    same accounting as in one process; every shard's feeds are fetched once. Decided in
    chunks of two feeds, the entry all feeds share is new once and a duplicate six times."""
    monkeypatch.setattr(plan_decider, "CHUNK_ENTRIES", chunk)
    routes = {f"/f{n}.xml": Route(rss([item(10 * n + k) for k in range(3)] + [item(1000)])) for n in range(7)}
    with FeedServer(routes) as srv:
        sources = [FeedSource(srv.url(p)) for p in routes]
        pooled = run(db_url, settings.replace(workers=2, shard_size=2), sources)
        assert sorted(path for path, _ in srv.requests) == sorted(routes)
    assert_counts_add_up(pooled)
    t = pooled["totals"]
    assert (t["feeds"], t["entries"], t["new"], t["duplicates"]) == (7, 28, 22, 6)  # item 1000 in each feed
    assert scalar(db_url, "SELECT count(DISTINCT shard) FROM run_feeds") == 7  # fewer feeds than 5 per worker
    assert scalar(db_url, "SELECT count(*) FROM articles") == 22
    assert scalar(db_url, "SELECT count(*) FROM fetch_log WHERE NOT staged") == 0


def test_a_shard_records_and_stages_each_group_of_bodies_while_the_rest_are_fetched(db_url, settings,
                                                                                    monkeypatch):
    """A shard does not wait for all its feeds before parsing: each group of bodies (here a
    body a group) is recorded and staged before the next result is taken, so the shard holds
    one group's bodies, not all of them; what it records in all is the same."""
    monkeypatch.setattr(tasks, "STAGE_GROUP_BYTES", 1)
    routes = {f"/f{n}.xml": Route(rss([item(10 * n + k) for k in range(2)])) for n in range(6)}
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    settings = settings.replace(shard_size=len(routes))  # one shard
    seen = []  # feeds recorded, and staged, as each result arrives

    def count_progress(_result):
        seen.append(query(db_url, """SELECT count(*), count(*) FILTER (WHERE staged) FROM fetch_log
                                     WHERE run_id = %s""", (run_id,))[0])

    with FeedServer(routes) as srv:
        sources = [FeedSource(srv.url(p)) for p in routes]
        [shard] = tasks.prepare_run(db_url, settings, run_id, sources, tasks.utcnow(), force=True)
        summary = tasks.ingest_shard(db_url, settings, run_id, shard, tasks.utcnow(), on_result=count_progress)
    assert seen == [(n, n) for n in range(6)]
    assert (summary.feeds, summary.entries, summary.fetched) == (6, 12, {"ok": 6})
    assert scalar(db_url, "SELECT count(*) FROM staged_entries WHERE run_id = %s", (run_id,)) == 12
    assert local_runner.finish(db_url, settings, run_id, tasks.utcnow)["totals"]["new"] == 12


class Interrupted(Exception):
    pass


def interrupt_at(n):
    """An `on_result` that fails the shard's pass when the n-th result arrives."""
    seen = []

    def hook(result):
        seen.append(result)
        if len(seen) == n:
            raise Interrupted(f"interrupted at result {n}")
    return hook


def test_a_shard_that_fails_midway_stops_fetching(db_url, settings, monkeypatch):
    """A pass that fails (here on its first result) leaves no fetching thread behind: nothing
    goes on fetching what no one will record."""
    routes = {f"/f{n}.xml": Route(rss([item(n)]), delay=0.05) for n in range(40)}
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    with FeedServer(routes) as srv:
        [shard] = tasks.prepare_run(db_url, settings.replace(shard_size=40), run_id,
                                    [FeedSource(srv.url(p)) for p in routes], tasks.utcnow(), force=True)
        with pytest.raises(Interrupted) as failed:  # the traceback, kept, holds the pass's frames
            tasks.ingest_shard(db_url, settings.replace(fetch_concurrency=4), run_id, shard, tasks.utcnow(),
                               on_result=interrupt_at(1))
        assert not [t.name for t in threading.enumerate() if t.name.startswith("fetch-")]
        fetched = len(srv.requests)
        time.sleep(0.3)
        assert len(srv.requests) == fetched < 40
    assert failed.value is not None


def test_a_retried_shard_drops_what_its_failed_attempt_staged_for_a_feed_that_now_fails(
        db_url, settings, monkeypatch):
    """A shard stages group by group, so a failed attempt leaves its first groups staged. Its
    retry replaces each feed's outcome, and a feed that now fails to fetch keeps none of
    what the failed attempt staged: no article loads for a fetch recorded as an error."""
    monkeypatch.setattr(tasks, "STAGE_GROUP_BYTES", 1)  # a body a group
    routes = {f"/f{n}.xml": Route(rss([item(10 * n + k) for k in range(2)])) for n in range(3)}
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    settings = settings.replace(shard_size=3, fetch_concurrency=1, per_host_concurrency=1)
    with FeedServer(routes) as srv:
        [shard] = tasks.prepare_run(db_url, settings, run_id, [FeedSource(srv.url(p)) for p in routes],
                                    tasks.utcnow(), force=True)
        with pytest.raises(Interrupted):
            tasks.ingest_shard(db_url, settings, run_id, shard, tasks.utcnow(), on_result=interrupt_at(3))
        assert scalar(db_url, "SELECT count(DISTINCT feed_id) FROM staged_entries WHERE run_id = %s",
                      (run_id,)) == 2  # the first two groups were staged before the failure
        srv.routes["/f0.xml"] = Route(b"down", status=503)
        tasks.ingest_shard(db_url, settings, run_id, shard, tasks.utcnow())
    summary = local_runner.finish(db_url, settings, run_id, tasks.utcnow)
    assert_counts_add_up(summary)
    assert (summary["totals"]["new"], summary["totals"]["failed"]) == (4, 1)
    assert sorted(url for (url,) in query(db_url, "SELECT canonical_url FROM articles")) == [
        f"https://news.example/story/{n}" for n in (10, 11, 20, 21)]


@pytest.mark.parametrize("chunk", [plan_decider.CHUNK_ENTRIES, 1], ids=["one chunk", "a feed a chunk"])
def test_a_later_feeds_copy_of_a_quarantined_entry_is_held_with_it(db_url, settings, chunk, monkeypatch):
    """An entry that fails the row contract (a title of 2,000 characters) is quarantined; a
    copy of it at the same URL in another feed is held too, as its duplicate, also when the
    load decides the two feeds in chunks of their own."""
    monkeypatch.setattr(plan_decider, "CHUNK_ENTRIES", chunk)
    long_title = "Harbour " * 250
    first = rss([item(1, title=long_title), item(2)])
    second = rss([item(1, title=long_title), item(3)])
    with FeedServer({"/a.xml": Route(first), "/b.xml": Route(second)}) as srv:
        summary = run(db_url, settings, [FeedSource(srv.url("/a.xml")), FeedSource(srv.url("/b.xml"))])
    assert_counts_add_up(summary)
    t = summary["totals"]
    assert (t["new"], t["duplicates"], t["quarantined"]) == (2, 0, 2)
    held = query(db_url, """SELECT q.reasons->0->>'expectation', f.url FROM quarantine q
                            JOIN feeds f ON f.id = q.feed_id ORDER BY f.url""")
    assert [reason for reason, _ in held] == ["expect_column_value_lengths_to_be_between",
                                              "duplicate_of_quarantined_entry"]
    assert sorted(url for (url,) in query(db_url, "SELECT canonical_url FROM articles")) == [
        "https://news.example/story/2", "https://news.example/story/3"]


@pytest.mark.parametrize("chunk", [plan_decider.CHUNK_ENTRIES, 1], ids=["one chunk", "a feed a chunk"])
def test_a_copy_of_a_quarantined_entry_without_a_url_is_held_with_it(db_url, settings, chunk, monkeypatch):
    """An entry with no link has no canonical URL and fails the row contract; another
    feed's copy of it (the same content, matched by content hash) is held with it, not
    recorded as a duplicate of an article that was never loaded."""
    monkeypatch.setattr(plan_decider, "CHUNK_ENTRIES", chunk)
    def feed(guid: str, other: int) -> bytes:  # a GUID that is no permalink, and no link
        unlinked = (f'<item><guid isPermaLink="false">{guid}</guid><title>Harbour notice</title>'
                    "<description>The quay closes at noon.</description>"
                    "<pubDate>Mon, 16 Nov 2026 10:00:00 +0000</pubDate></item>")
        return rss([item(other)]).replace(b"<item>", unlinked.encode() + b"<item>", 1)

    with FeedServer({"/a.xml": Route(feed("a-1", 2)), "/b.xml": Route(feed("b-1", 3))}) as srv:
        summary = run(db_url, settings, [FeedSource(srv.url("/a.xml")), FeedSource(srv.url("/b.xml"))])
    assert_counts_add_up(summary)
    t = summary["totals"]
    assert (t["new"], t["duplicates"], t["quarantined"]) == (2, 0, 2)
    held = query(db_url, """SELECT q.reasons->0->>'expectation', q.reasons->0->>'observed', f.url
                            FROM quarantine q JOIN feeds f ON f.id = q.feed_id ORDER BY f.url""")
    assert [reason for reason, _, _ in held] == ["expect_column_values_to_not_be_null",
                                                 "duplicate_of_quarantined_entry"]
    assert held[1][1] == "entry 0 of feed %d" % scalar(db_url, "SELECT id FROM feeds WHERE url LIKE '%%/a.xml'")
    assert scalar(db_url, "SELECT count(*) FROM duplicates") == 0


def test_a_feeds_repeat_of_a_quarantined_entry_is_held_as_that_entry(db_url, settings):
    """A feed that serves the same failing entry twice: both are counted quarantined, the
    quarantine holds the entry once with the reason it failed, and no duplicate is recorded
    of an article that was never loaded."""
    bad = item(1, title="Harbour " * 250)
    with FeedServer({"/f.xml": Route(rss([bad, bad, *(item(n) for n in range(2, 10))]))}) as srv:
        summary = run(db_url, settings, [FeedSource(srv.url("/f.xml"))])
    assert_counts_add_up(summary)
    t = summary["totals"]
    assert (t["new"], t["duplicates"], t["quarantined"]) == (8, 0, 2)
    assert query(db_url, "SELECT reasons->0->>'expectation' FROM quarantine") == [
        ("expect_column_value_lengths_to_be_between",)]
    assert scalar(db_url, "SELECT count(*) FROM duplicates") == 0


def test_a_batch_duplicate_names_the_id_its_original_was_inserted_with(db_url, settings):
    """A copy of an entry new in the same run is recorded against the id the original's
    insert returned, for every rule, also a content-hash copy of an article with a URL."""
    story = {"title": "Ferry notice", "description": "<p>Sailings resume on Friday.</p>"}
    with FeedServer({"/a.xml": Route(rss([item(1, **story)])),
                     "/b.xml": Route(rss([item(1, guid="b-1", link="https://other.example/ferry", **story)]))}) as srv:
        run(db_url, settings, [FeedSource(srv.url("/a.xml")), FeedSource(srv.url("/b.xml"))])
    rows = query(db_url, """SELECT d.rule, d.matched_article_id = a.id FROM duplicates d, articles a""")
    assert rows == [("content_hash", True)]


def test_a_chunked_load_whose_first_chunks_hold_nothing_new_goes_on(db_url, settings, monkeypatch):
    """Decided a feed a chunk, a second run whose first feeds are all stored already (no
    key to hand to later chunks) still decides the rest: the new entry of the last feed is
    new, and the rest are duplicates, one of them of an entry new in the same run."""
    monkeypatch.setattr(plan_decider, "CHUNK_ENTRIES", 1)
    routes = {f"/f{n}.xml": Route(rss([item(10 * n + k) for k in range(2)])) for n in range(3)}
    with FeedServer(routes) as srv:
        sources = [FeedSource(srv.url(p)) for p in sorted(routes)]
        run(db_url, settings, sources)
        for n in range(2):  # the same entries in other bytes: parsed again, not a 304 or an unchanged body
            srv.routes[f"/f{n}.xml"] = Route(rss([item(10 * n + k) for k in range(2)], title="Renamed"))
        srv.routes["/f2.xml"] = Route(rss([item(20), item(21), item(99)]))
        srv.routes["/f3.xml"] = Route(rss([item(99)]))
        again = run(db_url, settings, [*sources, FeedSource(srv.url("/f3.xml"))])
    assert_counts_add_up(again)
    t = again["totals"]
    assert (t["entries"], t["new"], t["duplicates"], t["quarantined"]) == (8, 1, 7, 0)
    assert scalar(db_url, "SELECT count(*) FROM articles") == 7


def test_articles_are_normalized_in_the_table(db_url, settings, demo):
    run(db_url, settings, demo)
    rows = dict(query(db_url, "SELECT canonical_url, published_source FROM articles"))
    assert "https://harbordaily.example/2026/11/17/lighthouse-museum?page=1" in rows  # fbclid gone
    assert "https://northernledger.example/news/2026/11/20/six-cities-sea-walls" in rows  # resolved, utm gone
    assert rows["https://harbordaily.example/2026/11/18/market-reopens"] == "fetched"  # undated
    html, text = query(db_url, "SELECT html, text FROM articles WHERE title LIKE 'Council budget%'")[0]
    assert "script" not in html and "track()" not in text


def test_second_run_adds_nothing_and_uses_conditional_get(db_url, settings, demo):
    run(db_url, settings, demo)
    before = query(db_url, "SELECT id, content_hash FROM articles ORDER BY id")
    again = run(db_url, settings, demo)
    assert again["totals"]["not_modified"] == 3 and again["totals"]["entries"] == 0
    assert query(db_url, "SELECT id, content_hash FROM articles ORDER BY id") == before


def test_reserved_entries_are_duplicates_recorded_once_per_run(db_url, settings):
    """A feed re-serving its entries in new bytes (a changed build date, say)."""
    with FeedServer({}) as srv:
        sources = [FeedSource(srv.url("/f.xml"))]
        summaries = []
        for n in range(3):
            srv.routes["/f.xml"] = Route(rss([item(1), item(2)]) + f"<!-- build {n} -->".encode(),
                                         validators=False)
            summaries.append(run(db_url, settings, sources))
        second = summaries[1]
    assert second["totals"]["duplicates"] == 2 and second["totals"]["new"] == 0
    assert scalar(db_url, "SELECT count(*) FROM articles") == 2
    assert query(db_url, "SELECT rule, times_seen FROM duplicates ORDER BY id") == [("same_identity_key", 2)] * 2


def test_changed_content_under_the_same_guid_is_an_update(db_url, settings):
    with FeedServer({"/f.xml": Route(rss([item(1)]))}) as srv:
        sources = [FeedSource(srv.url("/f.xml"))]
        run(db_url, settings, sources)
        published = scalar(db_url, "SELECT published_at FROM articles")
        srv.routes["/f.xml"] = Route(rss([item(1, description="<p>Corrected body.</p>",
                                                pubDate="Wed, 18 Nov 2026 10:00:00 +0000")]))
        summary = run(db_url, settings, sources)
    assert summary["totals"]["updated"] == 1
    assert query(db_url, "SELECT text, version, published_at FROM articles") == [
        ("Corrected body.", 2, published)
    ]
    hits = query(db_url, "SELECT count(*) FROM articles WHERE search @@ websearch_to_tsquery('english', 'corrected')")
    assert hits == [(1,)]  # the search vector follows the update


def test_two_updates_that_move_to_one_new_url_both_apply_and_the_url_goes_to_one(db_url, settings):
    """A CMS bug points two stored stories (their own GUIDs) at the same new link, with
    their text edited: both are updates; the first takes the new URL, the second keeps its
    own (the URL is unique), and the load goes on instead of failing on the unique key."""
    with FeedServer({"/f.xml": Route(rss([item(1), item(2)]))}) as srv:
        sources = [FeedSource(srv.url("/f.xml"))]
        run(db_url, settings, sources)
        srv.routes["/f.xml"] = Route(rss([item(n, link="https://news.example/front", description=f"<p>Edit {n}.</p>")
                                          for n in (1, 2)]))
        summary = run(db_url, settings, sources)
    assert summary["totals"]["updated"] == 2 and summary["status"] == "ok"
    assert query(db_url, "SELECT canonical_url, text, version FROM articles ORDER BY guid") == [
        ("https://news.example/front", "Edit 1.", 2), ("https://news.example/story/2", "Edit 2.", 2)]


def test_an_update_without_a_language_keeps_the_articles_language_in_its_search(db_url, settings):
    """The stored language is kept when the new content comes with none, and the search
    vector follows the row's language, not the (absent) one the entry was staged with."""
    with FeedServer({"/f.xml": Route(rss([item(1)], language="en"))}) as srv:
        sources = [FeedSource(srv.url("/f.xml"))]
        run(db_url, settings, sources)
        srv.routes["/f.xml"] = Route(rss([item(1, description="<p>Flooding shut it.</p>")], language=None))
        assert run(db_url, settings, sources)["totals"]["updated"] == 1
    assert query(db_url, "SELECT language, text FROM articles") == [("en", "Flooding shut it.")]
    hits = query(db_url, "SELECT count(*) FROM articles WHERE search @@ websearch_to_tsquery('english', 'floods')")
    assert hits == [(1,)]
    assert scalar(db_url, "SELECT count(*) FROM articles WHERE search IS DISTINCT FROM "
                          "article_search(language, title, text)") == 0


def test_the_staged_search_vector_is_the_articles_own(db_url, settings, demo):
    """The shard stages each article's search vector (migration 018) and the load writes it:
    it is the one the article's language, title and text give, for every article."""
    run(db_url, settings, demo)
    assert scalar(db_url, "SELECT count(*) FROM articles") > 0
    assert scalar(db_url, """SELECT count(*) FROM articles
                               WHERE search IS DISTINCT FROM article_search(language, title, text)""") == 0


def test_staged_rows_get_their_search_vector_in_a_session_without_a_search_path(db_url):
    """The staged vector is a generated column (migration 021), computed again when rows are
    restored from a dump or replicated, in sessions whose search_path is empty: its
    function must find what it calls without one."""
    [(vector,)] = query(db_url, """
        SET search_path = '';
        WITH f AS (INSERT INTO public.feeds (url) VALUES ('https://restore.example/feed') RETURNING id)
        INSERT INTO public.staged_entries (run_id, feed_id, seq, raw, fetched_at, article)
        SELECT 'restored', id, 0, '{}', now(), '{"language": "en", "title": "Harbour floods", "text": "Storms."}'
        FROM f RETURNING search::text""")
    assert vector == "'flood':2A 'harbour':1A 'storm':3B"


def test_a_writer_that_gives_no_search_vector_gets_the_rows_own(db_url, settings, demo):
    """Migration 020 moved the trigger's condition into its WHEN clause: a manual insert
    or fix that gives no vector, or changes the text and leaves the vector as it was, still
    gets the one the row's language, title and text give."""
    run(db_url, settings, demo)
    query(db_url, """INSERT INTO articles (feed_id, identity_key, canonical_url, title, text, content_hash,
                                           first_seen_at, updated_at, published_at, published_source, language)
                     SELECT feed_id, 'manual', 'https://example.org/manual', 'Zeppelin mechanics',
                            'Mechanics returned.', 'manual', first_seen_at, updated_at, published_at,
                            published_source, 'en'
                     FROM articles ORDER BY id LIMIT 1 RETURNING 1""")
    query(db_url, "UPDATE articles SET text = 'Quokka census counted.' WHERE id = "
                  "(SELECT min(id) FROM articles WHERE identity_key <> 'manual') RETURNING 1")
    for words in ("zeppelin mechanic", "quokka census"):
        assert scalar(db_url, "SELECT count(*) FROM articles WHERE search @@ websearch_to_tsquery('english', %s)",
                      (words,)) == 1
    assert scalar(db_url, "SELECT count(*) FROM articles WHERE search IS DISTINCT FROM "
                          "article_search(language, title, text)") == 0


def test_an_articles_bands_go_with_it(db_url, settings, demo):
    """Migration 020: the band index has no foreign key (the load writes it from its own
    insert's ids); a deleted (or truncated) article's bands go by trigger, so no later
    article is offered a candidate that no longer exists."""
    run(db_url, settings, demo)
    banded = [i for (i,) in query(db_url, "SELECT DISTINCT article_id FROM article_bands ORDER BY 1")]
    assert len(banded) >= 2
    query(db_url, "DELETE FROM articles WHERE id = %s RETURNING 1", (banded[0],))
    assert scalar(db_url, "SELECT count(*) FROM article_bands WHERE article_id = %s", (banded[0],)) == 0
    assert scalar(db_url, "SELECT count(*) FROM article_bands WHERE article_id = %s", (banded[1],)) > 0
    query(db_url, "TRUNCATE articles CASCADE; SELECT 1")
    assert scalar(db_url, "SELECT count(*) FROM article_bands") == 0


def test_one_failing_feed_does_not_fail_the_run(db_url, settings):
    with FeedServer({"/ok.xml": Route(rss([item(1)])), "/html": Route(b"<html><body>hi</body></html>", "text/html")}) as srv:
        sources = [FeedSource(srv.url("/ok.xml")), FeedSource(srv.url("/gone.xml")), FeedSource(srv.url("/html"))]
        summary = run(db_url, settings, sources)
    outcomes = {f["url"].rsplit("/", 1)[1]: (f["outcome"], f["error"]) for f in summary["feeds"]}
    assert outcomes["ok.xml"] == ("ok", None)
    assert outcomes["gone.xml"][0] == "error" and "404" in outcomes["gone.xml"][1]
    assert outcomes["html"][0] == "error" and "not a feed" in outcomes["html"][1]
    assert summary["status"] == "ok" and summary["totals"]["failed"] == 2
    state = dict(query(db_url, "SELECT url, consecutive_errors FROM feeds"))
    assert state[srv.url("/gone.xml")] == 1 and state[srv.url("/ok.xml")] == 0


def test_every_feed_failing_is_a_systemic_failure(db_url, settings):
    sources = [FeedSource(f"http://127.0.0.1:9/feed{i}.xml") for i in range(3)]
    with pytest.raises(SystemicFetchFailure, match="all 3 feeds failed"):
        run(db_url, settings, sources)
    assert scalar(db_url, "SELECT status FROM ingest_runs") == "systemic_failure"
    assert scalar(db_url, "SELECT count(*) FROM fetch_log WHERE outcome = 'error'") == 3


def test_failed_share_past_the_threshold_fails_loudly_but_loses_nothing(db_url, settings):
    bad = [item(n, link=f"javascript:void({n})") for n in range(3)]
    with FeedServer({"/bad.xml": Route(rss(bad + [item(9)]))}) as srv:
        url = srv.url("/bad.xml")
        with pytest.raises(ValidationThresholdExceeded, match="bad.xml") as failure:
            run(db_url, settings, [FeedSource(url)])
    assert "expect_column_values_to_match_regex" in str(failure.value)
    assert scalar(db_url, "SELECT count(*) FROM quarantine") == 3
    assert scalar(db_url, "SELECT count(*) FROM articles") == 1
    assert scalar(db_url, "SELECT status FROM ingest_runs") == "validation_failed"


def test_retried_load_and_rerun_of_a_run_create_no_duplicates(db_url, settings, demo):
    summary = run(db_url, settings, demo, run_id="same-run")
    again = tasks.load_batch(db_url, settings, "same-run").load
    assert again.already_loaded is True and again.new == summary["totals"]["new"]
    assert scalar(db_url, "SELECT count(*) FROM articles") == summary["totals"]["new"]


def test_an_entry_another_run_loaded_after_this_one_fetched_is_a_recorded_duplicate(db_url, settings):
    """A run whose shards are staged while another run fetches and loads the same entry:
    its load decides against what is stored then, so the entry is one recorded duplicate."""
    with FeedServer({"/f.xml": Route(rss([item(1)]))}) as srv:
        sources = [FeedSource(srv.url("/f.xml"))]
        now = tasks.utcnow()
        shards = tasks.prepare_run(db_url, settings, "r1", sources, now)
        for shard in shards:
            tasks.ingest_shard(db_url, settings, "r1", shard, now)
        run(db_url, settings, sources, run_id="r2")  # the other writer loads the same entry
        counts = tasks.load_batch(db_url, settings, "r1").load
    assert (counts.new, counts.duplicates) == (0, 1)
    assert scalar(db_url, "SELECT count(*) FROM articles") == 1


def test_migrations_are_tracked_and_idempotent(db_url):
    assert database.migrate(db_url) == []
    versions = [v for (v,) in query(db_url, "SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, len(database.migration_files()) + 1))
    indexes = {name for (name,) in query(db_url, "SELECT indexname FROM pg_indexes WHERE tablename = 'articles'")}
    assert {"articles_published_at", "articles_canonical_url_key", "articles_search"} <= indexes


def test_the_large_values_a_run_writes_use_lz4_where_the_server_has_it(db_url):
    """Migration 019: the staged entries' and articles' large columns compress with lz4; on a
    server built without it (the embedded one) the migration still applies, keeping pglz."""
    (has_lz4,), = query(db_url, "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                                "WHERE name = 'default_toast_compression'")
    methods = dict(query(db_url, """
        SELECT attrelid::regclass::text || '.' || attname, attcompression::text FROM pg_attribute
        WHERE (attrelid = 'staged_entries'::regclass AND attname IN ('raw', 'article', 'search'))
           OR (attrelid = 'articles'::regclass AND attname IN ('text', 'html', 'search'))
           OR (attrelid = 'quarantine'::regclass AND attname IN ('entry', 'article'))"""))
    assert len(methods) == 8
    assert set(methods.values()) == ({"l"} if has_lz4 else {""}), methods


def test_full_text_search_finds_articles(db_url, settings, demo):
    run(db_url, settings, demo)
    hits = query(db_url, "SELECT title FROM articles WHERE search @@ websearch_to_tsquery('english', 'ferry crossings')")
    assert hits == [("Ferry timetable changes for the winter season",)]


@pytest.mark.parametrize(("chunk", "match_slice"), [(clusters.CHUNK, clusters.MATCH_SLICE), (1, 1),
                                                    (clusters.CHUNK, 1)],
                         ids=["one chunk", "an article a chunk", "an article a match slice"])
def test_the_syndicated_story_forms_one_cluster_and_distinct_stories_stay_apart(db_url, settings, demo, chunk,
                                                                               match_slice, monkeypatch):
    # the load clusters in chunks of articles, and matches a chunk's new articles in slices:
    # chunks (or slices) of one put seed and member apart
    monkeypatch.setattr(clusters, "CHUNK", chunk)
    monkeypatch.setattr(clusters, "MATCH_SLICE", match_slice)
    run(db_url, settings, demo)
    stories = query(db_url, "SELECT size, outlets, title FROM story_clusters")
    assert len(stories) == 1
    size, outlets, title = stories[0]
    assert size == 2 and sorted(outlets) == ["Civic Wire", "The Northern Ledger"]
    assert "flood" in title.lower()
    members = query(db_url, "SELECT rule, score FROM article_clusters ORDER BY article_id")
    assert members[0] == ("seed", 1.0) and members[1][0].startswith("minhash_lsh") and members[1][1] >= 0.5
    # The exact copy (Harbor Daily) is a recorded duplicate, not a cluster member.
    assert scalar(db_url, "SELECT count(*) FROM duplicates WHERE rule = 'content_hash'") == 1


STORY = ("The harbour council voted on Tuesday to rebuild the old ferry terminal after a winter of storms "
         "damaged the pier, the ticket hall and the waiting rooms used by commuters from the islands. The "
         "mayor said work would begin in the spring and that temporary shelters would open next month for "
         "passengers, while engineers check the sea wall along the northern quay for further damage.")


@pytest.mark.parametrize(("chunk", "match_slice"), [(clusters.CHUNK, clusters.MATCH_SLICE), (1, 1)],
                         ids=["one chunk", "an article a chunk"])
def test_a_copy_syndicated_in_a_later_run_joins_the_stored_story_and_an_edit_keeps_it(
        db_url, settings, chunk, match_slice, monkeypatch):
    # The story's first outlet is loaded in one run; in the next, a second outlet carries an
    # edited copy while the first outlet edits its own: the copy is matched against the
    # stored article, and the edited original stays its cluster's seed.
    monkeypatch.setattr(clusters, "CHUNK", chunk)
    monkeypatch.setattr(clusters, "MATCH_SLICE", match_slice)
    original = item(1, title="Ferry terminal to be rebuilt", description=f"<p>{STORY}</p>")
    with FeedServer({"/a.xml": Route(rss([original])), "/b.xml": Route(rss([]))}) as srv:
        sources = [FeedSource(srv.url("/a.xml")), FeedSource(srv.url("/b.xml"))]
        run(db_url, settings, sources)
        srv.routes["/a.xml"] = Route(rss([item(1, title="Ferry terminal to be rebuilt",
                                               description=f"<p>{STORY} Updated at noon.</p>")]))
        srv.routes["/b.xml"] = Route(rss([item(7, link="https://other.example/ferry", guid="b-7",
                                               title="Council to rebuild ferry terminal",
                                               description=f"<p>{STORY} Reporting by our staff.</p>")]))
        totals = run(db_url, settings, sources)["totals"]
    assert (totals["new"], totals["updated"]) == (1, 1)
    members = query(db_url, """SELECT a.canonical_url, c.rule, c.cluster_id = first.id
                               FROM article_clusters c JOIN articles a ON a.id = c.article_id,
                                    (SELECT min(id) AS id FROM articles) first ORDER BY a.id""")
    assert members[0] == ("https://news.example/story/1", "seed", True)
    assert members[1][0] == "https://other.example/ferry" and members[1][1].startswith("minhash_lsh")
    assert members[1][2] is True
    assert len(members) == 2


def _ferry_copy(n: int, outlet: str) -> dict:
    """An edited copy of STORY as `outlet` carries it (its own link and GUID)."""
    return item(n, link=f"https://{outlet}.example/ferry-{n}", guid=f"{outlet}-{n}",
                title="Council to rebuild ferry terminal", description=f"<p>{STORY} Update {n}.</p>")


@pytest.mark.parametrize("chunk", [clusters.CHUNK, 1], ids=["one chunk", "an article a chunk"])
def test_a_story_many_feeds_carry_forms_one_cluster_each_copy_compared_with_a_bounded_few(
        db_url, settings, chunk, monkeypatch):
    # Eight outlets carry the story, each with its own sign-off: every copy joins one
    # cluster, while each is compared with at most the latest earlier copy per band (in its
    # chunk, or stored), not with all the copies before it.
    monkeypatch.setattr(clusters, "CHUNK", chunk)
    monkeypatch.setattr(clusters, "CANDIDATES_PER_BAND", 1)
    compared: list[int] = []
    best_match = neardup.best_match
    monkeypatch.setattr(neardup, "best_match", lambda sig, candidates: (
        compared.append(len(candidates)), best_match(sig, candidates))[1])
    routes = {f"/{n}.xml": Route(rss([item(n, link=f"https://outlet{n}.example/ferry", guid=f"o{n}",
                                           title="Council to rebuild ferry terminal",
                                           description=f"<p>{STORY} Reporting by outlet {n}.</p>")]))
              for n in range(8)}
    with FeedServer(routes) as srv:
        totals = run(db_url, settings, [FeedSource(srv.url(path)) for path in routes])["totals"]
    assert totals["new"] == 8
    assert query(db_url, "SELECT size FROM story_clusters") == [(8,)]
    assert len(compared) == 8 and max(compared) < 7, compared  # unbounded: the last copy met all 7


def test_a_feed_reposting_a_story_past_the_bound_neither_leaves_nor_splits_its_cluster(
        db_url, settings, monkeypatch):
    # Outlet B carries the story; feed A re-posts edited copies in later runs, until the
    # latest candidates of its next copy are all A's own (never linked); then outlet C
    # carries it. A's copy looks further back and finds B's, and C joins the same story.
    monkeypatch.setattr(clusters, "CANDIDATES_PER_BAND", 2)

    routes = {"/b.xml": Route(rss([_ferry_copy(0, "b")])), "/a.xml": Route(rss([])), "/c.xml": Route(rss([]))}
    with FeedServer(routes) as srv:
        sources = [FeedSource(srv.url(path)) for path in routes]
        run(db_url, settings, sources)
        for n in range(1, 7):
            srv.routes["/a.xml"] = Route(rss([_ferry_copy(n, "a")]))
            assert run(db_url, settings, sources)["totals"]["new"] == 1
        srv.routes["/c.xml"] = Route(rss([_ferry_copy(9, "c")]))
        assert run(db_url, settings, sources)["totals"]["new"] == 1
    assert query(db_url, "SELECT size FROM story_clusters") == [(8,)]


def test_a_feed_reposting_a_story_within_one_run_joins_the_outlet_it_reposts(db_url, settings, monkeypatch):
    # In one run, outlet B carries the story and feed A six edited copies of it: past the
    # bound, A's later copies meet only A's own among their latest candidates, and look
    # further back in the chunk for B's.
    monkeypatch.setattr(clusters, "CANDIDATES_PER_BAND", 2)

    routes = {"/b.xml": Route(rss([_ferry_copy(0, "b")])),
              "/a.xml": Route(rss([_ferry_copy(n, "a") for n in range(1, 7)]))}
    with FeedServer(routes) as srv:
        assert run(db_url, settings, [FeedSource(srv.url(path)) for path in routes])["totals"]["new"] == 7
    assert query(db_url, "SELECT size FROM story_clusters") == [(7,)]


def _before_the_plan_is_applied(monkeypatch, look):
    """Call `look(cursor)` in the load's transaction once its plan is decided, just before
    the load applies it."""
    apply_plan = load.apply_plan

    def applying(cur, *args, **kwargs):
        look(cur)
        return apply_plan(cur, *args, **kwargs)

    monkeypatch.setattr(load, "apply_plan", applying)


def test_the_load_plan_holds_each_cluster_link_with_its_score_and_the_load_writes_it(
        db_url, settings, demo, monkeypatch):
    # One decider: the syndicated story's link and its seed are in the plan, with the score
    # and the ids the insert then writes, before any cluster, band or signature is stored;
    # the load writes what the plan says.
    seen = {}

    def look(cur):
        cur.execute("SELECT article_id, cluster_id, score, rule FROM plan_links ORDER BY article_id")
        seen["links"] = cur.fetchall()
        cur.execute("""SELECT (SELECT count(*) FROM article_clusters), (SELECT count(*) FROM article_bands),
                              (SELECT count(*) FROM article_signatures), (SELECT count(*) FROM articles),
                              (SELECT count(*) FROM plan_signatures)""")
        seen["stored"] = cur.fetchone()

    _before_the_plan_is_applied(monkeypatch, look)
    run(db_url, settings, demo)
    clustered, bands, signatures, articles, planned_signatures = seen["stored"]
    assert (clustered, bands, signatures, articles) == (0, 0, 0, 0) and planned_signatures > 0
    (seed, _, one, seed_rule), (member, cluster, score, rule) = seen["links"]
    assert (seed_rule, one, cluster) == ("seed", 1.0, seed) and rule == clusters.RULE and score >= 0.5
    assert query(db_url, "SELECT article_id, cluster_id, score, rule FROM article_clusters ORDER BY article_id") \
        == seen["links"]
    (outlets,), = query(db_url, "SELECT outlets FROM story_clusters")
    assert sorted(outlets) == ["Civic Wire", "The Northern Ledger"]
    assert scalar(db_url, "SELECT count(*) FROM article_signatures") == planned_signatures
    assert scalar(db_url, "SELECT count(*) FROM articles WHERE id IN (%s, %s)", (seed, member)) == 2


def test_an_article_stored_meanwhile_leaves_none_of_its_planned_links_or_bands_behind(db_url, settings, monkeypatch):
    # Outlet A's story and outlet B's copy are planned: A's as a seed, B's linked to it. Between
    # the plan and its application another writer stores A's entry (as a load not under the load
    # lock would): the insert skips A's (a duplicate of the stored one now), and nothing
    # planned for it is written, so no band, signature or cluster names an article that does
    # not exist. B's article still lands.
    routes = {"/a.xml": Route(rss([_ferry_copy(1, "a")])), "/b.xml": Route(rss([_ferry_copy(2, "b")]))}

    def another_writer(cur):
        cur.execute("""SELECT s.feed_id, s.article FROM load_plan s JOIN feeds f ON f.id = s.feed_id
                       WHERE f.url LIKE '%%/a.xml'""")
        (feed_id, article), = cur.fetchall()
        with database.connect(db_url) as other, other.cursor() as write:
            write.execute("""INSERT INTO articles (feed_id, identity_key, canonical_url, title, text, published_at,
                                                   published_source, content_hash)
                             VALUES (%s, %s, %s, %s, %s, now(), 'fetched', %s)""",
                          (feed_id, article["identity_key"], article["canonical_url"], article["title"],
                           article["text"], article["content_hash"]))

    _before_the_plan_is_applied(monkeypatch, another_writer)
    with FeedServer(routes) as srv:
        totals = run(db_url, settings, [FeedSource(srv.url(path)) for path in routes])["totals"]
    assert (totals["new"], totals["duplicates"]) == (1, 1)
    assert query(db_url, "SELECT a.canonical_url FROM articles a JOIN article_signatures s ON s.article_id = a.id") \
        == [("https://b.example/ferry-2",)]
    assert scalar(db_url, """SELECT count(*) FROM article_bands b
                             WHERE NOT EXISTS (SELECT 1 FROM articles a WHERE a.id = b.article_id)""") == 0
    assert scalar(db_url, """SELECT count(*) FROM article_clusters c
                             WHERE NOT EXISTS (SELECT 1 FROM articles a WHERE a.id = c.article_id)
                                OR NOT EXISTS (SELECT 1 FROM articles a WHERE a.id = c.cluster_id)""") == 0
    assert scalar(db_url, "SELECT count(*) FROM article_bands") == neardup.BANDS


@pytest.mark.parametrize("racer", ["newer", "older"])
def test_the_same_entry_stored_meanwhile_with_other_content_is_updated_only_from_a_newer_fetch(
        db_url, settings, monkeypatch, racer):
    # Between the plan and its application another writer stores outlet A's entry (same feed,
    # same identity) with other content: the planned insert becomes an update of that
    # article. Its content from a newer fetch than the run's stays (the run's entry is a
    # stale duplicate, no version kept); from an older fetch, the run's entry updates it and
    # re-signs it (its signature and bands are the run's content's).
    routes = {"/a.xml": Route(rss([_ferry_copy(1, "a")]))}

    def another_writer(cur):
        cur.execute("SELECT s.feed_id, s.article FROM load_plan s")
        (feed_id, article), = cur.fetchall()
        with database.connect(db_url) as other, other.cursor() as write:
            write.execute("""INSERT INTO articles (feed_id, identity_key, canonical_url, title, text, published_at,
                                                   published_source, content_hash, fetched_at)
                             VALUES (%s, %s, %s, 'Racer', 'Racer text.', now(), 'fetched', 'v1:racer',
                                     now() + %s * interval '1 day')""",
                          (feed_id, article["identity_key"], article["canonical_url"], 1 if racer == "newer" else -1))

    _before_the_plan_is_applied(monkeypatch, another_writer)
    with FeedServer(routes) as srv:
        summary = run(db_url, settings, [FeedSource(srv.url(path)) for path in routes])
    counts = scalar(db_url, "SELECT counts FROM ingest_runs WHERE loaded_at IS NOT NULL")
    signed = query(db_url, """SELECT count(DISTINCT s.article_id), count(b.*) FROM article_signatures s
                              JOIN article_bands b ON b.article_id = s.article_id""")
    if racer == "newer":
        assert (counts["updated"], counts["duplicates"], counts["stale_updates"], counts["versions_kept"]) \
            == (0, 1, 1, 0)
        assert scalar(db_url, "SELECT text FROM articles") == "Racer text."
        assert signed == [(0, 0)]  # the other writer stored none; the run's content is not the article's
    else:
        assert (counts["updated"], counts["duplicates"], counts["stale_updates"], counts["versions_kept"]) \
            == (1, 0, 0, 1)
        assert scalar(db_url, "SELECT text FROM articles").startswith("The harbour council")
        assert signed == [(1, neardup.BANDS)]
    assert summary["totals"]["entries"] == 1


def test_each_update_keeps_the_previous_version_with_what_changed(db_url, settings):
    with FeedServer({"/f.xml": Route(rss([item(1)]))}) as srv:
        sources = [FeedSource(srv.url("/f.xml"))]
        run(db_url, settings, sources)
        srv.routes["/f.xml"] = Route(rss([item(1, description="<p>Corrected body.</p>")]))
        run(db_url, settings, sources)
        srv.routes["/f.xml"] = Route(rss([item(1, title="New headline", description="<p>Corrected body.</p>")]))
        run(db_url, settings, sources)
    versions = query(db_url, "SELECT version, changed, title, text FROM article_versions ORDER BY version")
    assert versions == [(1, ["body"], item(1)["title"], "Body of story 1. It has a few words."),
                        (2, ["title"], item(1)["title"], "Corrected body.")]
    assert query(db_url, "SELECT version, title FROM articles") == [(3, "New headline")]


def test_versions_are_capped_per_feed_per_run(db_url, settings):
    capped = settings.replace(versions_per_feed_per_run=1)
    with FeedServer({"/f.xml": Route(rss([item(n) for n in range(3)]))}) as srv:
        sources = [FeedSource(srv.url("/f.xml"))]
        run(db_url, capped, sources)
        srv.routes["/f.xml"] = Route(rss([item(n, description=f"<p>Rewritten {n}</p>") for n in range(3)]))
        summary = run(db_url, capped, sources)
    assert summary["totals"]["updated"] == 3
    assert scalar(db_url, "SELECT count(*) FROM article_versions") == 1
    assert scalar(db_url, "SELECT count(*) FROM articles WHERE text LIKE 'Rewritten%%'") == 3


def dates_by_url(db_url):
    rows = query(db_url, "SELECT canonical_url, published_at, published_source, published_raw, date_issue "
                         "FROM articles")
    return {url.rsplit("/", 1)[-1]: rest for url, *rest in rows}


def test_a_stored_published_date_does_not_move_when_the_entry_is_re_served(db_url, settings):
    undated = item(1, pubDate=None)
    with FeedServer({"/f.xml": Route(rss([undated, item(2)]))}) as srv:
        sources = [FeedSource(srv.url("/f.xml"))]
        run(db_url, settings, sources)
        first = dates_by_url(db_url)
        # Re-served later: a date appears on the undated one, the other's date shifts, both edited.
        srv.routes["/f.xml"] = Route(rss([
            item(1, pubDate="Fri, 20 Nov 2026 10:00:00 +0000", description="<p>Edited one.</p>"),
            item(2, pubDate="Sat, 21 Nov 2026 10:00:00 +0000", description="<p>Edited two.</p>")]))
        assert run(db_url, settings, sources)["totals"]["updated"] == 2
    assert dates_by_url(db_url) == first
    assert first["1"][1:] == ["fetched", None, "missing"]
    assert first["2"][1:] == ["published", "Mon, 16 Nov 2026 10:00:00 +0000", None]


_LOAD_PROCESS_MODULES = """
import os, sys, pathlib
from pipeline import local_runner
from pipeline.config import Settings
from pipeline.feedlist import parse_feed_list
settings = Settings.from_env(data_dir=pathlib.Path(sys.argv[2])).allowing("127.0.0.1/32")
summary = local_runner.ingest(sys.argv[1], settings, parse_feed_list(sys.argv[3]), "t-modules", force=True,
                              validation_child=True)
print(summary["totals"]["new"], "pandas" in sys.modules, "great_expectations" in sys.modules)
"""


def test_the_cli_validates_without_loading_pandas_or_gx_in_its_own_process(db_url, demo, tmp_path):
    """The validation child builds every frame and runs every suite: the CLI's process (the
    DAG's load task's alike) never pays pandas' or Great Expectations' memory."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _LOAD_PROCESS_MODULES, db_url, str(tmp_path),
                           "".join(f"{s.url}\n" for s in demo)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["8", "False", "False"]
