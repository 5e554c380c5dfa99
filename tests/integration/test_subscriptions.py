"""`python -m pipeline feeds ...`: the feed list in the database."""

import json
import uuid

from pipeline import local_runner, maintenance, tasks
from pipeline.feedlist import parse_feed_list
from pipeline.feedserver import FeedServer, Route
from tests.helpers import item, query, rss
from tests.integration.test_cli import cli

PAGE = b"""<!doctype html><html><head><title>Harbour news</title>
<link rel="stylesheet" href="/style.css">
<link rel="alternate" type="application/rss+xml" title="RSS" href="/feeds/main.xml">
</head><body>Hello</body></html>"""


def test_import_export_list_and_remove(db_url, tmp_path):
    opml = tmp_path / "in.opml"
    opml.write_text('<?xml version="1.0"?><opml version="2.0"><head/><body>'
                    '<outline type="rss" text="A" xmlUrl="https://a.example/rss"/>'
                    '<outline type="rss" text="B" xmlUrl="https://b.example/atom"/></body></opml>')
    assert "subscribed to 2 feeds" in cli(db_url, "feeds", "import", str(opml)).stdout
    exported = cli(db_url, "feeds", "export").stdout
    assert [s.url for s in parse_feed_list(exported)] == ["https://a.example/rss", "https://b.example/atom"]
    listed = json.loads(cli(db_url, "feeds", "list", "--json").stdout)
    assert {f["url"]: f["status"] for f in listed} == {"https://a.example/rss": "never_fetched",
                                                       "https://b.example/atom": "never_fetched"}
    assert cli(db_url, "feeds", "remove", "https://a.example/rss").returncode == 0
    assert [s.url for s in parse_feed_list(cli(db_url, "feeds", "export").stdout)] == ["https://b.example/atom"]
    assert cli(db_url, "feeds", "remove", "https://a.example/rss").returncode == 1


def test_add_a_feed_url_and_a_page_that_announces_one(db_url):
    with FeedServer({"/feeds/main.xml": Route(rss([item(1)])), "/": Route(PAGE, "text/html"),
                     "/plain": Route(b"<html><body>no feeds here</body></html>", "text/html")}) as srv:
        direct = cli(db_url, "feeds", "add", srv.url("/feeds/main.xml"))
        assert direct.returncode == 0 and "the URL is a feed" in direct.stdout
        found = cli(db_url, "feeds", "add", srv.url("/"))
        assert found.returncode == 0, found.stderr
        assert srv.url("/feeds/main.xml") in found.stdout and "rel=\"alternate\"" in found.stdout
        nothing = cli(db_url, "feeds", "add", srv.url("/plain"))
        assert nothing.returncode != 0 and "announces no working feed" in nothing.stderr
    assert query(db_url, "SELECT url, source FROM feeds") == [(srv.url("/feeds/main.xml"), "cli")]


def test_added_feeds_are_fetched_by_runs_and_removed_ones_are_not(db_url, settings):
    with FeedServer({"/a.xml": Route(rss([item(1)])), "/b.xml": Route(rss([item(2)]))}) as srv:
        assert cli(db_url, "feeds", "add", srv.url("/a.xml")).returncode == 0
        assert cli(db_url, "feeds", "add", srv.url("/b.xml")).returncode == 0
        first = local_runner.ingest(db_url, settings, [], f"t-{uuid.uuid4().hex[:6]}", force=True)
        assert first["totals"]["feeds"] == 2 and first["totals"]["new"] == 2
        cli(db_url, "feeds", "remove", srv.url("/b.xml"))
        second = local_runner.ingest(db_url, settings, [], f"t-{uuid.uuid4().hex[:6]}", force=True)
    assert [f["url"] for f in second["feeds"]] == [srv.url("/a.xml")]
