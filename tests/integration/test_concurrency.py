"""Runs that overlap: a CLI ingest and a DAG run on the same feeds, a replay, quarantine
releases. Whatever order they fetch and load in, no article is duplicated, none goes back
to an older fetch's content, no feed's validators move backwards, and every staged entry
is exactly one of new, update, duplicate or quarantined.

Overlapping runs are separate processes (forked, each with its own Great Expectations
project, as two workers or a CLI next to the scheduler would be), every wait bounded.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import queue
import time
import traceback
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any, Callable

import pytest

from pipeline import local_runner, maintenance, tasks
from pipeline.errors import RunIdTaken
from pipeline.feedserver import FeedServer, Route
from pipeline.records import FeedSource
from tests.helpers import item, query, rss, scalar

CHILD_TIMEOUT = 180.0
FUTURE = format_datetime(datetime.now(timezone.utc) + timedelta(days=3), usegmt=True)
YESTERDAY = datetime.now(timezone.utc) - timedelta(days=1)


@pytest.fixture
def lenient(settings):
    """Thresholds out of the way: these tests look at rows, not at run failure."""
    return settings.replace(quarantine_fail_ratio=1.0, feed_quarantine_fail_ratio=1.0)


class Child:
    """A callable run in a forked process; `result()` waits for it, bounded."""

    def __init__(self, name: str, target: Callable[..., Any], *args: Any, **kwargs: Any):
        context = multiprocessing.get_context("fork")
        self.name = name
        self.results = context.Queue()
        self.process = context.Process(target=_child_main, name=name,
                                       args=(self.results, target, args, kwargs))

    def start(self) -> "Child":
        self.process.start()
        return self

    def result(self, timeout: float = CHILD_TIMEOUT) -> Any:
        try:
            status, value = self.results.get(timeout=timeout)
        except queue.Empty:
            self.process.kill()
            self.process.join(5)
            raise AssertionError(f"{self.name} did not finish within {timeout:g} s") from None
        self.process.join(10)
        assert status == "ok", f"{self.name} failed:\n{value}"
        return value


def _child_main(results: Any, target: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    try:
        results.put(("ok", target(*args, **kwargs)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test
        results.put(("error", traceback.format_exc()))


def all_at_once(children: list[Child]) -> list[Any]:
    for child in children:
        child.start()
    try:
        return [child.result() for child in children]
    finally:
        for child in children:
            if child.process.is_alive():
                child.process.kill()
                child.process.join(5)


def _after(barrier: Any, target: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    barrier.wait(timeout=60)
    return target(*args, **kwargs)


class HoldAfterFetching:
    """An `on_fetched` hook: once every feed is fetched, it tells the parent (which then
    changes the content) and holds the run, before it records its fetches, until another
    run has loaded. The older fetch is thus recorded and loaded after the newer one."""

    def __init__(self, feeds: int, fetched: Any, db_url: str, other_run: str):
        self.feeds, self.fetched, self.db_url, self.other_run = feeds, fetched, db_url, other_run
        self.seen = 0

    def __call__(self, result: Any) -> None:
        self.seen += 1
        if self.seen < self.feeds:
            return
        self.fetched.set()
        deadline = time.monotonic() + CHILD_TIMEOUT
        while query(self.db_url, "SELECT 1 FROM ingest_runs WHERE run_id = %s AND loaded_at IS NOT NULL",
                    (self.other_run,)) == []:
            assert time.monotonic() < deadline, f"{self.other_run} did not load in time"
            time.sleep(0.05)


def run_until_loaded(db_url, settings, run_id, sources, force=True):
    """A run's stages as the DAG's tasks call them, up to (not including) the load."""
    for shard in tasks.prepare_run(db_url, settings, run_id, sources, tasks.utcnow(), force):
        tasks.ingest_shard(db_url, settings, run_id, shard, tasks.utcnow())


def held_run(db_url, settings, sources, run_id, hold):
    """A run whose fetches call `hold` for each feed fetched, before they are recorded."""
    for shard in tasks.prepare_run(db_url, settings, run_id, sources, tasks.utcnow(), True):
        tasks.ingest_shard(db_url, settings, run_id, shard, tasks.utcnow(), on_result=hold)
    return local_runner.finish(db_url, settings, run_id, tasks.utcnow)


def dag_run(db_url, settings, run_id, sources):
    run_until_loaded(db_url, settings, run_id, sources)
    tasks.load_batch(db_url, settings, run_id)
    return tasks.report_run(db_url, run_id, tasks.utcnow())


def texts(db_url):
    """guid (as the feed wrote it) -> text of each stored article."""
    return {guid.rsplit("/", 1)[-1]: text for guid, text in query(db_url, "SELECT guid, text FROM articles")}


def assert_no_duplicate_articles(db_url):
    assert scalar(db_url, "SELECT count(*) FROM articles") == scalar(
        db_url, "SELECT count(DISTINCT (feed_id, guid)) FROM articles")


def assert_every_entry_accounted_for(db_url):
    """Every loaded run: each entry exactly one of new / update / duplicate / quarantined."""
    runs = query(db_url, "SELECT run_id, counts FROM ingest_runs WHERE loaded_at IS NOT NULL")
    assert runs
    for run_id, c in runs:
        assert c["entries"] == c["new"] + c["updated"] + c["duplicates"] + c["quarantined"], run_id
    uneven = query(db_url, """SELECT l.run_id, l.feed_id FROM fetch_log l
                              JOIN ingest_runs r ON r.run_id = l.run_id AND r.loaded_at IS NOT NULL
                              WHERE l.entries <> l.new + l.updated + l.duplicates + l.quarantined""")
    assert uneven == []


def feed_state(db_url, url):
    return query(db_url, "SELECT etag, body_hash FROM feeds WHERE url = %s", (url,))[0]


def edition(version: int, base: int = 0) -> bytes:
    """A feed as its publisher serves it: two stories (0); the first edited and a third
    drafted (1); the first edited again, the third final, a fourth (2)."""
    if version == 0:
        return rss([item(base + 1), item(base + 2)])
    if version == 1:
        return rss([item(base + 1, description="<p>First edit.</p>"), item(base + 2),
                    item(base + 3, description="<p>Three, first draft.</p>")])
    return rss([item(base + 1, description="<p>Second edit.</p>"), item(base + 2),
                item(base + 3, description="<p>Three, final.</p>"), item(base + 4)])


def final_texts(base: int = 0) -> dict[str, str]:
    return {f"story-{base + 1}": "Second edit.",
            f"story-{base + 2}": f"Body of story {base + 2}. It has a few words.",
            f"story-{base + 3}": "Three, final.",
            f"story-{base + 4}": f"Body of story {base + 4}. It has a few words."}


def test_an_older_fetch_loaded_after_a_newer_run_puts_nothing_back(db_url, settings):
    with FeedServer({"/f.xml": Route(edition(0))}) as server:
        sources = [FeedSource(server.url("/f.xml"))]
        local_runner.ingest(db_url, settings, sources, "seed", force=True)
        server.routes["/f.xml"] = Route(edition(1))
        run_until_loaded(db_url, settings, "older", sources)  # fetched edition 1, staged
        server.routes["/f.xml"] = Route(edition(2))
        local_runner.ingest(db_url, settings, sources, "newer", force=True)  # fetched 2, loaded
        late = tasks.load_batch(db_url, settings, "older").load
        tasks.report_run(db_url, "older", tasks.utcnow())
        assert texts(db_url) == final_texts()
        assert_no_duplicate_articles(db_url)
        # An update of story 1 and story 3 (planned as new, inserted meanwhile by the newer
        # run) come from an older fetch: both are duplicates now, counted as stale.
        assert (late.new, late.updated, late.duplicates, late.stale_updates) == (0, 0, 3, 2)
        assert scalar(db_url, "SELECT count(*) FROM article_versions WHERE text LIKE '%%draft%%' "
                              "OR text LIKE 'First edit%%'") == 0
        assert feed_state(db_url, server.url("/f.xml")) == (
            server.routes["/f.xml"].etag, hashlib.sha256(edition(2)).hexdigest())
        assert_every_entry_accounted_for(db_url)
        again = local_runner.ingest(db_url, settings, sources, "after", force=True)
    assert again["feeds"][0]["outcome"] == "not_modified"  # the validators describe V2


HARBOUR = ("The harbour council voted on Tuesday to rebuild the old ferry terminal after a winter of storms "
           "damaged the pier, the ticket hall and the waiting rooms used by commuters from the islands. The "
           "mayor said work would begin in the spring and that temporary shelters would open next month.")
VALLEY = ("Farmers in the upper valley began the grape harvest a fortnight early this year after a dry and "
          "unusually warm summer, and cooperative growers expect a smaller crop of sweeter fruit. Wineries "
          "along the river road have hired extra pickers and opened their cellars to visitors for the season.")
MARKET = ("The city market reopened on Saturday after a six month renovation that replaced the glass roof, "
          "added forty stalls for local bakers and cheesemakers and moved the flower sellers indoors. Traders "
          "said the first weekend drew larger crowds than any since the hall first opened a century ago.")


def test_an_older_fetch_loaded_late_clusters_against_what_the_article_holds(db_url, settings):
    # Outlet A's story is loaded; an older run fetches A's rewrite of it (the harbour text)
    # and outlet B's copy of that rewrite; a newer run fetches A's next rewrite (the market
    # text; B has taken its copy down) and loads first. When the older run loads, A's rewrite is stale (a duplicate):
    # B's copy is judged against what A's article holds now, the market text, and joins no
    # story with it (it did, planned against the stale rewrite, before the decider settled
    # stale updates ahead of the cluster links).
    def story(text):
        return rss([item(1, title="Council business", description=f"<p>{text}</p>")])

    copy = rss([item(7, link="https://b.example/ferry", guid="b-7", title="Council business",
                     description=f"<p>{HARBOUR} Reporting by our staff.</p>")])
    with FeedServer({"/a.xml": Route(story(VALLEY)), "/b.xml": Route(rss([]))}) as server:
        sources = [FeedSource(server.url("/a.xml")), FeedSource(server.url("/b.xml"))]
        local_runner.ingest(db_url, settings, sources, "seed", force=True)
        server.routes["/a.xml"], server.routes["/b.xml"] = Route(story(HARBOUR)), Route(copy)
        run_until_loaded(db_url, settings, "older", sources)
        server.routes["/a.xml"], server.routes["/b.xml"] = Route(story(MARKET)), Route(rss([]))
        local_runner.ingest(db_url, settings, sources, "newer", force=True)
        late = tasks.load_batch(db_url, settings, "older").load
    assert (late.new, late.updated, late.stale_updates) == (1, 0, 1)
    assert scalar(db_url, "SELECT count(*) FROM article_clusters") == 0
    assert scalar(db_url, "SELECT text FROM articles WHERE guid NOT LIKE 'b-%%'").startswith("The city market")


def test_two_ingests_at_once_the_older_fetch_recorded_and_loaded_last(db_url, lenient, tmp_path):
    """A CLI ingest fetches; the publisher edits; a DAG run fetches the edits and loads while
    the CLI ingest is still running; the CLI ingest then records its (older) fetches and
    loads. Nothing goes back to the older content or validators."""
    bases = {"/a.xml": 100, "/b.xml": 200, "/c.xml": 300}
    paths = tuple(bases)
    with FeedServer({p: Route(edition(0, base)) for p, base in bases.items()}) as server:
        sources = [FeedSource(server.url(p)) for p in paths]
        local_runner.ingest(db_url, lenient, sources, "seed", force=True)
        for p, base in bases.items():
            server.routes[p] = Route(edition(1, base))
        fetched = multiprocessing.get_context("fork").Event()
        hold = HoldAfterFetching(len(paths), fetched, db_url, "dag")
        cli = Child("cli ingest", held_run, db_url, lenient.replace(data_dir=tmp_path / "cli"),
                    sources, "cli", hold).start()
        assert fetched.wait(60), "the CLI ingest did not fetch within 60 s"
        for p, base in bases.items():  # the publisher edits between the two runs' fetches
            server.routes[p] = Route(edition(2, base))
        dag = Child("dag run", dag_run, db_url, lenient.replace(data_dir=tmp_path / "dag"),
                    "dag", sources).start()
        assert dag.result()["status"] == "ok"
        late = cli.result()
        assert late["status"] == "ok" and late["totals"]["new"] == late["totals"]["updated"] == 0
        assert texts(db_url) == {guid: text for base in bases.values()
                                 for guid, text in final_texts(base).items()}
        assert_no_duplicate_articles(db_url)
        for p in paths:
            assert feed_state(db_url, server.url(p)) == (
                server.routes[p].etag, hashlib.sha256(server.routes[p].body).hexdigest())
        assert_every_entry_accounted_for(db_url)


def held_feed(n: int) -> bytes:
    return rss([item(n), item(n + 1, title=f"Early {n + 1}", pubDate=FUTURE),
                item(n + 2, title=f"Early {n + 2}", pubDate=FUTURE)])


def test_two_releases_at_once_release_each_held_entry_once(db_url, lenient, tmp_path):
    routes = {"/a.xml": Route(held_feed(10)), "/b.xml": Route(held_feed(20))}
    with FeedServer(routes) as server:
        sources = [FeedSource(server.url(p)) for p in routes]
        local_runner.ingest(db_url, lenient, sources, "seed", force=True)
    held = scalar(db_url, "SELECT count(*) FROM quarantine WHERE released_at IS NULL")
    assert held == 4
    relaxed = lenient.replace(future_tolerance_hours=24 * 5)  # the fix: the suite's tolerance
    barrier = multiprocessing.get_context("fork").Barrier(2)
    first, second = all_at_once([
        Child(f"release {n}", _after, barrier, maintenance.release_quarantined, db_url,
              relaxed.replace(data_dir=tmp_path / f"release{n}"))
        for n in (1, 2)])
    staged = [r["totals"].get("entries", 0) for r in (first, second)]
    assert sum(staged) == held  # no entry staged by both
    assert first["released"] + second["released"] == held
    rows = query(db_url, "SELECT released_run_id, claimed_run_id FROM quarantine")
    assert {run for run, _ in rows} <= {first["run_id"], second["run_id"]}
    assert all(claim is None for _, claim in rows)
    assert query(db_url, "SELECT title, count(*) FROM articles WHERE title LIKE 'Early%%' "
                         "GROUP BY title ORDER BY title") == [
        ("Early 11", 1), ("Early 12", 1), ("Early 21", 1), ("Early 22", 1)]
    assert_every_entry_accounted_for(db_url)


def test_ingest_dag_run_replay_and_release_at_once_keep_every_count(db_url, lenient, tmp_path):
    """The CLI ingests feeds a and b, the DAG feed b (each run alone would see the wire copy
    of the other feed as a content duplicate), a replay and a release run at the same time."""
    wire = {"title": "Storm closes the coast road", "description": "<p>The same wire copy.</p>"}
    first = {"/a.xml": held_feed(10), "/b.xml": held_feed(20)}
    edited = {
        "/a.xml": rss([item(10, description="<p>Ten, edited.</p>"), item(11, title="Early 11", pubDate=FUTURE),
                       item(12, title="Early 12", pubDate=FUTURE), item(13),
                       item(90, guid="wire-a", link="https://a.example/wire", **wire)]),
        "/b.xml": rss([item(20), item(21, title="Early 21", pubDate=FUTURE),
                       item(22, title="Early 22", pubDate=FUTURE), item(23, description="<p>New.</p>"),
                       item(91, guid="wire-b", link="https://b.example/wire", **wire)]),
    }
    with FeedServer({p: Route(body) for p, body in first.items()}) as server:
        sources = [FeedSource(server.url(p)) for p in first]
        local_runner.ingest(db_url, lenient, sources, "seed", force=True)
        assert scalar(db_url, "SELECT count(*) FROM quarantine WHERE released_at IS NULL") == 4
        for p, body in edited.items():
            server.routes[p] = Route(body)
        barrier = multiprocessing.get_context("fork").Barrier(4)
        def own(name):  # each process its own Great Expectations project
            return lenient.replace(data_dir=tmp_path / name)

        relaxed = own("release").replace(future_tolerance_hours=24 * 5)
        cli, dag, replayed, released = all_at_once([
            Child("cli ingest", _after, barrier, local_runner.ingest, db_url, own("cli"), sources, "cli",
                  force=True),
            Child("dag run", _after, barrier, dag_run, db_url, own("dag"), "dag", sources[1:]),
            Child("replay", _after, barrier, maintenance.replay, db_url, own("replay"), YESTERDAY),
            Child("release", _after, barrier, maintenance.release_quarantined, db_url, relaxed),
        ])
    assert cli["status"] == dag["status"] == "ok" and replayed["runs"] >= 1
    assert (released["held"], released["released"]) == (4, 4)
    # Stories: a 10-13 and b 20-23 (the four held ones released), one copy of the wire story.
    assert scalar(db_url, "SELECT count(*) FROM articles") == 9
    assert_no_duplicate_articles(db_url)
    assert scalar(db_url, "SELECT count(*) FROM articles WHERE text = 'The same wire copy.'") == 1
    assert texts(db_url)["story-10"] == "Ten, edited."  # the newest fetch's content
    assert query(db_url, "SELECT count(*) FROM quarantine WHERE released_at IS NULL") == [(0,)]
    assert scalar(db_url, "SELECT count(*) FROM quarantine WHERE claimed_run_id IS NOT NULL") == 0
    for p, body in edited.items():
        assert feed_state(db_url, server.url(p)) == (Route(body).etag, hashlib.sha256(body).hexdigest())
    assert_every_entry_accounted_for(db_url)


def test_a_run_id_naming_another_lanes_run_is_refused_not_shared(db_url, settings):
    """A retried prepare keeps its run's plan; a run of another lane under the same id is an
    error (it would otherwise do the first run's work: pipeline.run_ids)."""
    sources = [FeedSource("http://127.0.0.1:9/a.xml")]
    now = tasks.utcnow()
    assert tasks.prepare_run(db_url, settings, "same-id", sources, now, lane="hot") == [0]
    assert tasks.prepare_run(db_url, settings, "same-id", sources, now, lane="hot") == [0]  # a retry
    with pytest.raises(RunIdTaken, match="'hot' lane"):
        tasks.prepare_run(db_url, settings, "same-id", sources, now, lane="all")
    assert query(db_url, "SELECT lane, feed_count FROM ingest_runs") == [("hot", 0)]
