"""The data contract: crafted bad entries through the real path end in quarantine with the
right expectation; thresholds warn and fail; results land in SQL and Data Docs; held
entries are released after a fix, exactly once."""

import uuid
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest

from pipeline import local_runner, maintenance, tasks
from pipeline.errors import ValidationThresholdExceeded
from pipeline.feedserver import FeedServer, Route
from pipeline.records import FeedSource
from tests.helpers import item, query, rss, scalar
from tests.integration.test_cli import cli

FUTURE = format_datetime(datetime.now(timezone.utc) + timedelta(days=3), usegmt=True)


def run(db_url, settings, server, paths, **kw):
    sources = [FeedSource(server.url(p)) for p in paths]
    return local_runner.ingest(db_url, settings, sources, f"t-{uuid.uuid4().hex[:8]}", force=True, **kw)


def reasons_by_title(db_url):
    rows = query(db_url, "SELECT entry->>'title', reasons FROM quarantine WHERE released_at IS NULL")
    return {(title or "")[:40]: {(r["expectation"], r["column"]) for r in reasons} for title, reasons in rows}


@pytest.fixture
def lenient(settings):
    """Thresholds out of the way: these tests look at rows, not at run failure."""
    return settings.replace(quarantine_fail_ratio=1.0, feed_quarantine_fail_ratio=1.0,
                            max_body_bytes=16 * 1024 * 1024)


def test_crafted_bad_entries_are_quarantined_with_the_right_expectation(db_url, lenient):
    bad = [
        item(1, title="Dated in the future", pubDate=FUTURE),
        item(2, title="Script link", link="javascript:alert(1)"),
        item(3, title="", description=""),
        item(4, title="T" * (5 * 1024 * 1024)),
        item(5, title="Reused guid one", guid="same-guid"),
        item(6, title="Reused guid two", guid="same-guid"),
    ]
    good = [item(n) for n in range(10, 14)]
    routes = {"/bad.xml": Route(rss(bad + good)),
              "/lang.xml": Route(rss([item(20)], language="english"))}
    with FeedServer(routes) as server:
        summary = run(db_url, lenient, server, ["/bad.xml", "/lang.xml"])
    reasons = reasons_by_title(db_url)
    assert ("expect_column_values_to_be_between", "published_epoch") in reasons["Dated in the future"]
    assert ("expect_column_values_to_match_regex", "canonical_url") in reasons["Script link"]
    assert ("expect_column_values_to_be_between", "content_chars") in reasons[""]
    assert ("expect_column_value_lengths_to_be_between", "title") in reasons["T" * 40]
    unique = ("expect_compound_columns_to_be_unique", "feed_id,identity_key")
    assert unique in reasons["Reused guid one"] and unique in reasons["Reused guid two"]
    assert ("expect_column_values_to_be_in_set", "language") in reasons[item(20)["title"]]
    t = summary["totals"]
    assert (t["entries"], t["quarantined"], t["new"]) == (11, 7, 4)
    assert t["entries"] == t["new"] + t["updated"] + t["duplicates"] + t["quarantined"]
    assert scalar(db_url, "SELECT count(*) FROM articles") == 4
    entry, feed, run_id = query(db_url, "SELECT entry, feed_id, run_id FROM quarantine WHERE entry->>'title' = 'Script link'")[0]
    assert entry["link"] == "javascript:alert(1)" and feed and run_id == summary["run_id"]


def test_a_feed_past_the_fail_level_fails_the_run_naming_it(db_url, settings):
    settings = settings.replace(quarantine_min_entries=3)
    routes = {"/broken.xml": Route(rss([item(n, link=f"javascript:void({n})") for n in range(4)])),
              "/fine.xml": Route(rss([item(n) for n in range(10, 40)]))}
    with FeedServer(routes) as server:
        with pytest.raises(ValidationThresholdExceeded) as failure:
            run(db_url, settings, server, ["/broken.xml", "/fine.xml"])
    message = str(failure.value)
    assert "fail level" in message and server.url("/broken.xml") in message
    assert "expect_column_values_to_match_regex" in message
    assert scalar(db_url, "SELECT count(*) FROM articles") == 30  # the good rows still land
    assert scalar(db_url, "SELECT count(*) FROM quarantine") == 4


def test_past_the_warn_level_the_run_succeeds_and_says_so(db_url, settings):
    settings = settings.replace(quarantine_min_entries=3, quarantine_warn_ratio=0.05)
    entries = [item(n) for n in range(10)] + [item(99, link="javascript:x()")]
    with FeedServer({"/f.xml": Route(rss(entries))}) as server:
        summary = run(db_url, settings, server, ["/f.xml"])
    assert summary["status"] == "ok"
    assert "warn level" in summary["validation_warning"]
    assert scalar(db_url, "SELECT validation_warning FROM ingest_runs") == summary["validation_warning"]


def test_results_are_stored_in_sql_with_data_docs_and_feed_quality(db_url, lenient):
    with FeedServer({"/f.xml": Route(rss([item(1), item(2, link="javascript:x()")]))}) as server:
        summary = run(db_url, lenient, server, ["/f.xml"])
    suites = dict(query(db_url, "SELECT suite, success FROM validation_runs WHERE run_id = %s", (summary["run_id"],)))
    assert suites == {"articles_rows": False, "articles_feeds": True}
    failed = query(db_url, """SELECT r.expectation, r.column_name, r.unexpected_count FROM validation_results r
                              JOIN validation_runs v ON v.id = r.validation_id
                              WHERE v.suite = 'articles_rows' AND NOT r.success""")
    assert failed == [("expect_column_values_to_match_regex", "canonical_url", 1)]
    assert summary["data_docs"] and Path(summary["data_docs"]).is_file()  # a failed expectation: a page
    assert Path(summary["data_docs"]).read_text().count("canonical_url") >= 1
    quality = query(db_url, "SELECT quarantine_share, score FROM feed_quality WHERE url = %s", (server.url("/f.xml"),))
    assert quality == [(pytest.approx(0.5), pytest.approx(50.0))]
    history = query(db_url, "SELECT suite, failed FROM validation_history WHERE suite = 'articles_rows'")
    assert history == [("articles_rows", ["expect_column_values_to_match_regex:canonical_url"])]
    with FeedServer({"/g.xml": Route(rss([item(3)]))}) as other:
        clean = run(db_url, lenient, other, ["/g.xml"])
    assert clean["data_docs"] is None  # all passed: results in SQL only (DATA_DOCS=failures)
    assert scalar(db_url, "SELECT count(*) FROM validation_runs WHERE run_id = %s", (clean["run_id"],)) == 2


def test_old_data_docs_are_pruned(db_url, lenient):
    keep = lenient.replace(data_docs_keep=2, data_docs="always")
    with FeedServer({}) as server:
        for n in range(4):
            server.routes["/f.xml"] = Route(rss([item(n)]))
            run(db_url, keep, server, ["/f.xml"])
    pages = keep.data_dir / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site" / "validations" / "articles_rows"
    assert len([p for p in pages.iterdir() if p.is_dir()]) == 2


def test_release_after_a_suite_change_loads_held_entries_exactly_once(db_url, lenient):
    with FeedServer({"/f.xml": Route(rss([item(1), item(2, title="Early", pubDate=FUTURE)]))}) as server:
        run(db_url, lenient, server, ["/f.xml"])
        assert scalar(db_url, "SELECT count(*) FROM quarantine WHERE released_at IS NULL") == 1
        unchanged = maintenance.release_quarantined(db_url, lenient)
        assert (unchanged["released"], unchanged["still_held"]) == (0, 1)  # same suite: still fails
        relaxed = lenient.replace(future_tolerance_hours=24 * 5)  # the suite's tolerance changed
        released = maintenance.release_quarantined(db_url, relaxed)
        assert (released["released"], released["still_held"]) == (1, 0)
        assert scalar(db_url, "SELECT count(*) FROM articles WHERE title = 'Early'") == 1
        again = maintenance.release_quarantined(db_url, relaxed)
        assert again["held"] == 0
        server.routes["/f.xml"] = Route(rss([item(1), item(2, title="Early", pubDate=FUTURE)]) + b"<!-- again -->")
        rerun = run(db_url, relaxed, server, ["/f.xml"])
    assert rerun["totals"]["new"] == 0 and rerun["totals"]["duplicates"] == 2
    assert scalar(db_url, "SELECT count(*) FROM articles WHERE title = 'Early'") == 1


def test_quarantine_cli_list_show_release(db_url, tmp_path):
    with FeedServer({"/f.xml": Route(rss([item(1), item(2, link="javascript:x()")]))}) as server:
        feeds = tmp_path / "feeds.txt"
        feeds.write_text(server.url("/f.xml") + "\n")
        assert cli(db_url, "ingest", "--feeds", str(feeds), env={"QUARANTINE_MIN_ENTRIES": "100"}).returncode == 0
    listed = cli(db_url, "quarantine", "list")
    assert "1 held" in listed.stdout and "expect_column_values_to_match_regex" in listed.stdout
    qid = scalar(db_url, "SELECT id FROM quarantine")
    shown = cli(db_url, "quarantine", "show", str(qid))
    assert '"javascript:x()"' in shown.stdout and "reasons" in shown.stdout
    released = cli(db_url, "quarantine", "release")
    assert released.returncode == 0 and "0 released" in released.stdout and "1 still held" in released.stdout


def test_a_two_letter_code_that_is_not_a_language_is_quarantined(db_url, lenient):
    routes = {"/zz.xml": Route(rss([item(1)], language="zz")), "/he.xml": Route(rss([item(2)], language="he-IL"))}
    with FeedServer(routes) as server:
        run(db_url, lenient, server, ["/zz.xml", "/he.xml"])
    assert reasons_by_title(db_url) == {item(1)["title"][:40]: {("expect_column_values_to_be_in_set", "language")}}
    assert query(db_url, "SELECT language FROM articles") == [("he",)]
