"""Broken GUIDs: a feed whose GUIDs are empty, repeated or changing on every fetch is
detected, falls back to another identity rule (recorded on the feed row, logged), and
loses or duplicates nothing."""

import logging

from pipeline.feedserver import FeedServer, Route
from pipeline.records import FeedSource
from tests.helpers import item, query, rss, scalar
from tests.integration.test_cli import cli
from tests.integration.test_ingest import assert_counts_add_up, run


def feed_rule(db_url):
    return query(db_url, "SELECT identity_rule, identity_rule_reason FROM feeds")[0]


def serve_runs(db_url, settings, bodies):
    """One run per body, each served at the same feed URL (with a new build comment, so
    the body is parsed again even when the entries are the same); the run summaries."""
    with FeedServer({}) as srv:
        sources = [FeedSource(srv.url("/f.xml"))]
        summaries = []
        for n, body in enumerate(bodies):
            srv.routes["/f.xml"] = Route(body + f"<!-- build {n} -->".encode(), validators=False)
            summaries.append(run(db_url, settings, sources))
    for summary in summaries:
        assert_counts_add_up(summary)
    return summaries


def test_guids_changing_on_every_fetch_fall_back_to_the_link(db_url, settings, caplog):
    def fetch(n):  # the CMS stamps a fresh GUID on every render
        return rss([item(i, guid=f"render-{n}-{i}") for i in range(4)])

    edited = rss([item(0, guid="render-9-0", description="<p>Fixed.</p>")]
                 + [item(i, guid=f"render-9-{i}") for i in range(1, 4)])
    with caplog.at_level(logging.WARNING, logger="pipeline.tasks"):
        summaries = serve_runs(db_url, settings, [fetch(1), fetch(2), fetch(3), edited])
    assert [s["totals"]["new"] for s in summaries] == [4, 0, 0, 0]
    assert scalar(db_url, "SELECT count(*) FROM articles") == 4
    rule, reason = feed_rule(db_url)
    assert rule == "link" and reason.startswith("changing GUIDs: 4 of 4")
    assert "identity rule guid -> link" in caplog.text
    # The change is recorded once, not on every fetch that confirms it.
    assert query(db_url, "SELECT old_rule, new_rule FROM feed_identity_changes") == [("guid", "link")]
    # Under the link rule, an edited entry is still an update of its article.
    assert summaries[3]["totals"]["updated"] == 1
    assert query(db_url, "SELECT text, identity_key FROM articles WHERE version = 2") == [
        ("Fixed.", "v1:url:https://news.example/story/0")]


def test_one_guid_for_every_entry_keeps_every_story(db_url, settings):
    summaries = serve_runs(db_url, settings, [rss([item(i, guid="https://news.example/") for i in range(5)])] * 2)
    assert summaries[0]["totals"]["new"] == 5 and summaries[0]["totals"]["quarantined"] == 0
    [change] = summaries[0]["identity_rule_changes"]  # the run summary names the change once
    assert (change["old_rule"], change["new_rule"]) == ("guid", "link") and not summaries[1]["identity_rule_changes"]
    assert summaries[1]["totals"]["duplicates"] == 5 and summaries[1]["totals"]["new"] == 0
    rule, reason = feed_rule(db_url)
    assert rule == "link" and reason.startswith("repeated GUIDs: 5 of 5")
    assert "identity by link: repeated GUIDs: 5 of 5" in cli(db_url, "feeds", "list").stdout


def test_no_guids_and_one_link_fall_back_to_link_and_date(db_url, settings):
    entries = [item(i, guid=None, link="https://news.example/live",
                    pubDate=f"Mon, 16 Nov 2026 {10 + i}:00:00 +0000") for i in range(3)]
    summaries = serve_runs(db_url, settings, [rss(entries), rss(entries[1:] + [
        item(7, guid=None, link="https://news.example/live", pubDate="Mon, 16 Nov 2026 18:00:00 +0000")])])
    assert summaries[0]["totals"]["new"] == 3
    assert (summaries[1]["totals"]["new"], summaries[1]["totals"]["duplicates"]) == (1, 2)
    rule, reason = feed_rule(db_url)
    assert rule == "link_date" and "empty GUIDs: 3 of 3" in reason
    urls = [u for (u,) in query(db_url, "SELECT canonical_url FROM articles")]
    assert len(set(urls)) == 4 and all(u.startswith("https://news.example/live#entry-") for u in urls)


def test_nothing_but_titles_and_text_falls_back_to_the_content_hash(db_url, settings):
    entries = [item(i, guid=None, link=None, pubDate=None) for i in range(3)]
    summaries = serve_runs(db_url, settings, [rss(entries), rss(entries)])
    assert summaries[0]["totals"]["new"] == 3 and summaries[1]["totals"]["duplicates"] == 3
    assert feed_rule(db_url)[0] == "title_hash"
    # No link of their own: each article opens its feed's home page, under a unique URL.
    assert all(u.startswith("https://news.example/#entry-")
               for (u,) in query(db_url, "SELECT canonical_url FROM articles"))


def test_sound_guids_keep_the_guid_rule(db_url, settings):
    serve_runs(db_url, settings, [rss([item(i) for i in range(3)]), rss([item(i) for i in range(1, 5)])])
    assert feed_rule(db_url) == ("guid", None)
    assert scalar(db_url, "SELECT count(*) FROM feed_identity_changes") == 0


def test_an_entry_edited_as_its_feed_changes_rule_updates_its_article(db_url, settings):
    """Stories stored under the `guid` rule are re-keyed when the feed falls back to
    `link_date`: an edited one served again is an update of its article, not a second copy."""
    def dated(n, **fields):
        return item(n, pubDate=f"Mon, 16 Nov 2026 1{n}:00:00 +0000", **fields)

    first = rss([dated(0), dated(1)])
    # the CMS drops its GUIDs, story 0 is corrected, and a live story shares story 1's link
    second = rss([dated(0, guid=None, description="<p>Corrected.</p>"), dated(1, guid=None),
                  dated(2, guid=None, link="https://news.example/story/1")])
    summaries = serve_runs(db_url, settings, [first, second])
    assert feed_rule(db_url)[0] == "link_date"
    totals = summaries[1]["totals"]
    assert (totals["new"], totals["updated"], totals["duplicates"]) == (1, 1, 1)
    assert scalar(db_url, "SELECT count(*) FROM articles") == 3
    assert query(db_url, "SELECT text, version FROM articles WHERE title LIKE %s", ("Story number 0%",)) == [
        ("Corrected.", 2)]
