"""No bad feed can stop a run: hostile bodies through the real pipeline.

The tests that generate or replay hostile bodies run once per parser setting
(`FEED_PARSER=auto`: the lxml fast path with feedparser as fallback; `feedparser`).
Each run serves its bodies on loopback and goes through fetch, parse, normalize, dedup,
validate and load on the real database. Whatever the input, the run completes, every
entry the parser yielded is exactly one of new, updated, duplicate or quarantined, a
body that breaks a step is its feed's recorded error, and no NUL reaches PostgreSQL.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from pipeline import local_runner, maintenance, parse, tasks
from pipeline.errors import EveryFeedFailed, ValidationThresholdExceeded
from pipeline.feedserver import FeedServer, Route
from pipeline.records import FeedSource
from tests.helpers import query, scalar
from tests.hostile_feeds import (
    HOSTILE_SAMPLES,
    any_body,
    atom_feed,
    json_feed,
    rdf_feed,
    rss,
    rss_feed,
    rss_item_xml,
)

_paths = itertools.count()
# What the hostile runs covered, printed at the end of the module (pytest -s shows it).
TALLY = {"runs": 0, "bodies": 0, "entries": 0, "failed_feeds": 0}


@pytest.fixture(scope="module", autouse=True)
def report_tally():
    yield
    print(f"\nhostile input: {TALLY['runs']} runs completed, {TALLY['bodies']} bodies, "
          f"{TALLY['entries']} entries accounted for, {TALLY['failed_feeds']} feeds failed with a reason")


@pytest.fixture(scope="module")
def server():
    with FeedServer() as running:
        yield running


def serve(server: FeedServer, bodies: list[tuple[bytes, str]]) -> list[FeedSource]:
    sources = []
    for body, content_type in bodies:
        path = f"/hostile/{next(_paths)}"
        server.routes[path] = Route(body, content_type=content_type)
        sources.append(FeedSource(server.url(path)))
    return sources


def ingest_and_check(db_url, settings, sources) -> str:
    """Run the whole pipeline once and assert the accounting; returns the run id."""
    run_id = f"hostile-{uuid.uuid4().hex[:8]}"
    try:
        local_runner.ingest(db_url, settings, sources, run_id, force=True)
    except (ValidationThresholdExceeded, EveryFeedFailed):
        pass  # a run that quarantined most of its batch, or got no feed, fails loudly after loading
    assert scalar(db_url, "SELECT loaded_at IS NOT NULL AND finished_at IS NOT NULL "
                          "FROM ingest_runs WHERE run_id = %s", (run_id,)), "the run did not complete"
    rows = query(db_url, """SELECT url, outcome, error_kind, error, entries, new, updated, duplicates,
                                   quarantined FROM fetch_log WHERE run_id = %s""", (run_id,))
    assert len(rows) == len(sources)
    for url, outcome, kind, error, entries, new, updated, dups, held in rows:
        assert entries == new + updated + dups + held, (url, entries, new, updated, dups, held)
        if outcome == "error":
            assert kind and error, "a failed feed says why"
            assert entries == 0
    assert scalar(db_url, "SELECT count(*) FROM staged_entries WHERE run_id = %s", (run_id,)) == 0
    new_total = sum(r[5] for r in rows)
    TALLY["runs"] += 1
    TALLY["bodies"] += len(rows)
    TALLY["entries"] += sum(r[4] for r in rows)
    TALLY["failed_feeds"] += sum(r[1] == "error" for r in rows)
    assert scalar(db_url, "SELECT count(*) FROM articles WHERE first_run_id = %s", (run_id,)) == new_total
    return run_id


PARSERS = pytest.mark.parametrize("feed_parser", ["auto", "feedparser"])


def staged_counts_match_parser(db_url, run_id, bodies, feed_parser="auto") -> None:
    """Every entry the parser yields is staged: none dropped between parse and load."""
    by_url = {url: (outcome, entries) for url, outcome, entries in query(
        db_url, "SELECT url, outcome, entries FROM fetch_log WHERE run_id = %s ORDER BY feed_id", (run_id,))}
    for url, (outcome, entries) in by_url.items():
        body, ctype = bodies[url]
        if outcome == "ok":
            expected = parse.parse_feed(body, url, ctype, parser=feed_parser).entries
            assert entries == len(expected), url


HYPOTHESIS = hypothesis_settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "12")), deadline=None, derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)


@PARSERS
@pytest.mark.parametrize("strategy", [rss_feed(), atom_feed(), rdf_feed(), json_feed(), any_body],
                         ids=["rss", "atom", "rdf", "jsonfeed", "any"])
def test_generated_feeds_never_stop_a_run(db_url, settings, server, strategy, feed_parser):
    settings = settings.replace(feed_parser=feed_parser)
    content_types = st.sampled_from(["application/rss+xml", "application/xml", "application/feed+json",
                                     "text/html", "application/octet-stream"])

    @HYPOTHESIS
    @given(st.lists(st.tuples(strategy, content_types), min_size=1, max_size=4))
    def run(bodies):
        sources = serve(server, bodies)
        run_id = ingest_and_check(db_url, settings, sources)
        staged_counts_match_parser(db_url, run_id, {s.url: b for s, b in zip(sources, bodies)}, feed_parser)

    run()


@PARSERS
def test_every_hostile_class_together_with_good_feeds(db_url, settings, server, feed_parser):
    """One run of every sample that broke a run before, beside a good feed: the good feed
    loads, each hostile feed's entries are accounted for, and each failure says why."""
    good = (rss(rss_item_xml(0, link="https://hostile.example/good")), "application/rss+xml")
    names = ["good", *HOSTILE_SAMPLES]
    sources = serve(server, [good, *HOSTILE_SAMPLES.values()])
    by_name = dict(zip(names, (s.url for s in sources)))
    run_id = ingest_and_check(db_url, settings.replace(max_entries_per_feed=500, feed_parser=feed_parser),
                              sources)
    log = {url: (outcome, kind, error, entries, new, held) for url, outcome, kind, error, entries, new, held
           in query(db_url, """SELECT url, outcome, error_kind, error, entries, new, quarantined
                               FROM fetch_log WHERE run_id = %s""", (run_id,))}
    assert log[by_name["good"]][4] == 1 and log[by_name["good"]][0] == "ok"
    # The fast path reads the well-formed RSS, unless it is turned off; fetch_log says which.
    assert scalar(db_url, "SELECT parser FROM fetch_log WHERE url = %s AND run_id = %s",
                  (by_name["good"], run_id)) == ("lxml" if feed_parser == "auto" else "feedparser")
    # A link that urllib cannot parse leaves the entry without a URL: quarantined, not a crash.
    for name in ("link_port_not_a_number", "link_broken_ipv6", "huge_link", "huge_guid"):
        outcome, _, _, entries, new, held = log[by_name[name]]
        assert (outcome, entries, held) == ("ok", 1, 1), (name, log[by_name[name]])
    # A date out of range once in UTC is no date: the entry loads, dated by its fetch.
    assert log[by_name["json_year_one"]][3:5] == (1, 1)
    assert scalar(db_url, "SELECT published_source FROM articles WHERE canonical_url = %s",
                  ("https://hostile.example/y1",)) == "fetched"
    # The entry with a huge number is read (the number kept as text); its sibling too.
    assert log[by_name["json_huge_number"]][3] == 2
    # Surrogate and NUL references are neutralized, and the entry loads with its words.
    titles = [t for (t,) in query(db_url, "SELECT title FROM articles WHERE first_run_id = %s", (run_id,))]
    assert any(t.startswith("Story 3") for t in titles) and any(t.startswith("Story 4") for t in titles)
    assert not any("\x00" in t for t in titles)
    assert scalar(db_url, "SELECT nuls_removed FROM fetch_log WHERE url = %s AND run_id = %s",
                  (by_name["nul_reference_and_byte"], run_id)) >= 1
    # A feed-level date out of range costs the feed nothing.
    assert log[by_name["feed_date_year_zero"]][0::3] == ("ok", 1)
    # A huge <ttl> is a long next check, not an integer overflow.
    assert log[by_name["ttl_overflow"]][0] == "ok"
    # Entries past the cap are counted, not staged.
    assert log[by_name["many_entries"]][3] == 500
    assert scalar(db_url, "SELECT entries_dropped FROM fetch_log WHERE url = %s AND run_id = %s",
                  (by_name["many_entries"], run_id)) == 400
    # Bodies that are no feed, or too deep to read, are their feed's error, with the reason.
    for name in ("json_deep_nesting", "random_bytes", "body_is_a_path"):
        outcome, kind, error, *_ = log[by_name[name]]
        assert outcome == "error" and kind in ("parse_error", "not_a_feed") and error, name
    assert scalar(db_url, "SELECT status FROM ingest_runs WHERE run_id = %s", (run_id,)) in (
        "ok", "validation_failed")


def test_an_entry_whose_normalization_raises_is_quarantined_with_the_exception(db_url, settings, server,
                                                                                 monkeypatch):
    """The boundary itself: whatever normalize raises for one entry becomes that entry's
    quarantine row with `exception: <type>: <message>`; its siblings load."""
    from pipeline import normalize

    real = normalize.normalize_entry

    def explode_on_poison(entry, *args, **kwargs):
        if "poison" in str(entry.raw.get("title")):
            raise ZeroDivisionError("a bug no one has written yet")
        return real(entry, *args, **kwargs)

    monkeypatch.setattr(normalize, "normalize_entry", explode_on_poison)
    body = rss(rss_item_xml(1) + rss_item_xml(2, title="poison") + rss_item_xml(3))
    sources = serve(server, [(body, "application/rss+xml")])
    run_id = ingest_and_check(db_url, settings, sources)
    [(reasons, entry)] = query(db_url, "SELECT reasons, entry FROM quarantine WHERE run_id = %s", (run_id,))
    assert reasons == [{"expectation": "exception", "column": "normalize",
                        "observed": "exception: ZeroDivisionError: a bug no one has written yet"}]
    assert "poison" in entry["title"]
    assert scalar(db_url, "SELECT count(*) FROM articles WHERE first_run_id = %s", (run_id,)) == 2


def test_a_link_past_any_index_row_in_an_early_chunk_is_quarantined_not_a_failed_load(db_url, settings, server,
                                                                                       monkeypatch):
    """A link of 3,000 random characters (no compression brings it under PostgreSQL's
    btree row limit), in a feed the decider takes before the last chunk: the entry is
    quarantined by the contract (the key is too long), the load goes on and lands the rest."""
    from pipeline import plan_decider

    monkeypatch.setattr(plan_decider, "CHUNK_ENTRIES", 1)  # a chunk per feed: the long key is an earlier one's
    long_link = "https://hostile.example/" + "".join(uuid.uuid4().hex for _ in range(100))[:3000]
    bodies = [(rss(rss_item_xml(1, link=long_link) + rss_item_xml(2)), "application/rss+xml"),
              (rss(rss_item_xml(3) + rss_item_xml(4)), "application/rss+xml")]
    run_id = ingest_and_check(db_url, settings.replace(quarantine_fail_ratio=1.0, feed_quarantine_fail_ratio=1.0),
                              serve(server, bodies))
    assert scalar(db_url, "SELECT count(*) FROM articles WHERE first_run_id = %s", (run_id,)) == 3
    [(reasons,)] = query(db_url, "SELECT reasons FROM quarantine WHERE run_id = %s", (run_id,))
    assert {r["column"] for r in reasons} >= {"canonical_url_bytes"}


def test_a_served_body_naming_a_local_feed_file_is_not_read(db_url, settings, server, tmp_path):
    """feedparser would open a body that names a readable file: the pipeline never lets it."""
    local = tmp_path / "local-feed.xml"
    local.write_bytes(b'<?xml version="1.0"?><rss version="2.0"><channel><title>local</title><item>'
                      b"<title>secret local file</title><link>https://local.example/1</link>"
                      b"</item></channel></rss>")
    sources = serve(server, [(str(local).encode(), "application/rss+xml"),
                             (b"/dev/zero", "application/rss+xml")])
    run_id = ingest_and_check(db_url, settings, sources)
    assert scalar(db_url, "SELECT count(*) FROM articles WHERE title LIKE '%%secret%%'") == 0
    outcomes = query(db_url, "SELECT outcome, error_kind FROM fetch_log WHERE run_id = %s", (run_id,))
    assert outcomes == [("error", "not_a_feed")] * 2


# `make test-fast` (the edit-test loop) sets FEEDPARSER_CORPUS_EVERY=5: every fifth file of
# feedparser's corpus in one run; `make test` serves them all.
CORPUS_EVERY = int(os.environ.get("FEEDPARSER_CORPUS_EVERY", "1"))


@PARSERS
@pytest.mark.shared
def test_feedparser_corpus_and_every_hostile_class_in_one_run(db_url, settings, server, shared_dir,
                                                              feed_parser):
    """feedparser's whole test corpus (every file, served with the content type its header
    names) and a sample of every hostile class, in one run: it completes, and every entry
    is accounted for."""
    root = shared_dir / "corpora" / "feedparser-tests"
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "LICENSE")[::CORPUS_EVERY]
    bodies = []
    for path in files:
        body = path.read_bytes()
        header = re.search(rb"^Header:\s*Content-type:\s*(.+?)\s*$", body[:2000], re.I | re.M)
        bodies.append((body, header.group(1).decode("latin-1") if header else "application/xml"))
    bodies += list(HOSTILE_SAMPLES.values())
    sources = serve(server, bodies)
    run_id = ingest_and_check(db_url, settings.replace(shard_size=100, feed_parser=feed_parser), sources)
    entries, failed = query(db_url, """SELECT sum(entries), count(*) FILTER (WHERE outcome = 'error')
                                       FROM fetch_log WHERE run_id = %s""", (run_id,))[0]
    print(f"{len(bodies)} bodies, {entries} entries accounted for, {failed} feeds failed with a reason")
    assert entries > 1500 // CORPUS_EVERY
