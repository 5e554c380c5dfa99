"""The CLI, as a user runs it: `python -m pipeline ...` in a subprocess."""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench import syndication
from pipeline import database
from pipeline.demo import demo_feed_list, serve_demo
from pipeline.feedserver import CONTENT_TYPES, FeedServer, Route
from tests.helpers import scalar


def cli(db_url: str, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "DATABASE_URL": db_url, "FETCH_ALLOWED_NETWORKS": "127.0.0.0/8",
                "FETCH_PER_HOST": "8", **(env or {})}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def test_ingest_json_summary(db_url, tmp_path):
    server = serve_demo(0)
    try:
        feeds = tmp_path / "feeds.txt"
        feeds.write_text(demo_feed_list(server))
        done = cli(db_url, "ingest", "--feeds", str(feeds), "--json")
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert set(summary["totals"]) >= {"feeds", "fetched", "not_modified", "failed", "entries", "new",
                                      "updated", "duplicates", "quarantined", "seconds"}
    assert summary["totals"]["new"] == scalar(db_url, "SELECT count(*) FROM articles") == 8
    feed = summary["feeds"][0]
    assert {"url", "outcome", "error", "entries"} <= set(feed)
    assert {f["outcome"] for f in summary["feeds"]} == {"ok"}


def test_ingest_table_summary_and_opml_feed_list(db_url, tmp_path):
    server = serve_demo(0)
    try:
        outlines = "".join(f'<outline type="rss" text="f" xmlUrl="{u}"/>' for u in demo_feed_list(server).split())
        opml = tmp_path / "feeds.opml"
        opml.write_text(f'<?xml version="1.0"?><opml version="2.0"><head/><body>{outlines}</body></opml>')
        done = cli(db_url, "ingest", "--feeds", str(opml))
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert "Run summary: ok" in done.stdout and "quarantined" in done.stdout


MARKUP_FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>[bold]x[/bold]</title>
<link>http://127.0.0.1/</link><item><title>[/]</title><link>http://127.0.0.1/a</link>
<guid>a</guid><description>[red]not red[/red]</description></item></channel></rss>"""


class MarkupHandler(BaseHTTPRequestHandler):
    """Answers /oops with `HTTP/1.1 500 [/oops]`, anything else with a feed full of rich markup."""

    def do_GET(self) -> None:
        if self.path == "/oops":
            self.send_response(500, "[/oops]")
            body = b"oops"
        else:
            self.send_response(200)
            body = MARKUP_FEED
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve_markup(paths: list[str]) -> tuple[ThreadingHTTPServer, list[str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), MarkupHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, [f"http://127.0.0.1:{server.server_address[1]}{path}" for path in paths]


def test_table_summary_prints_server_and_feed_text_literally(db_url, tmp_path):
    """Reason phrases, URLs and errors are text, not rich markup: `[/oops]` once crashed the
    table after the load had landed."""
    server, urls = serve_markup(["/oops", "/[bold]x[/bold].xml"])
    try:
        feeds = tmp_path / "feeds.txt"
        feeds.write_text("\n".join(urls) + "\n")
        done = cli(db_url, "ingest", "--feeds", str(feeds), env={"COLUMNS": "300"})
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr
    assert "Run summary: ok" in done.stdout
    # In the feeds table's error column and in the attention list.
    assert done.stdout.count("HTTP 500 [/oops]") == 2
    assert urls[1] in done.stdout and "/[bold]x[/bold].xml" in done.stdout
    assert scalar(db_url, "SELECT title FROM articles") == "[/]"


def test_systemic_failure_message_prints_server_text_literally(db_url, tmp_path):
    server, urls = serve_markup(["/oops"])
    try:
        feeds = tmp_path / "feeds.txt"
        feeds.write_text(urls[0] + "\n")
        done = cli(db_url, "ingest", "--feeds", str(feeds), env={"COLUMNS": "300"})
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 4, done.stderr
    assert "systemic failure: all 1 feeds failed" in done.stdout
    assert "first error: HTTP 500 [/oops]" in done.stdout
    assert "Run summary: systemic_failure" in done.stdout


def test_no_network_is_reported_as_a_systemic_fault(db_url, tmp_path):
    feeds = tmp_path / "feeds.txt"
    feeds.write_text("http://127.0.0.1:9/a.xml\nhttp://127.0.0.1:9/b.xml\n")
    done = cli(db_url, "ingest", "--feeds", str(feeds), "--json")
    assert done.returncode == 4
    assert "systemic" in done.stderr
    assert json.loads(done.stdout)["totals"]["failed"] == 2


def test_bad_feed_list_is_a_clear_error(db_url, tmp_path):
    feeds = tmp_path / "feeds.txt"
    feeds.write_text("not a url\n")
    done = cli(db_url, "ingest", "--feeds", str(feeds))
    assert done.returncode == 2 and "line 1" in done.stderr


def test_db_url_and_migrate(db_url):
    assert cli(db_url, "db-url").stdout.strip() == db_url
    assert "up to date" in cli(db_url, "migrate").stdout


def test_psql_runs_sql_on_the_news_database(db_url):
    done = cli(db_url, "psql", "-tAc", "SELECT max(version) FROM schema_version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(database.migration_files()))


def test_real_news_feeds_go_through_without_a_crash_and_counts_add_up(db_url, shared_dir, tmp_path):
    corpus = shared_dir / "corpora" / "news-feeds"
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix == ".xml")
    assert len(files) == 50
    routes = {f"/{p.relative_to(corpus)}": Route(p.read_bytes(), CONTENT_TYPES[".xml"]) for p in files}
    with FeedServer(routes) as server:
        feeds = tmp_path / "feeds.txt"
        feeds.write_text("".join(server.url(path) + "\n" for path in routes))
        done = cli(db_url, "ingest", "--feeds", str(feeds), "--json", env={"QUARANTINE_FAIL_RATIO": "1"})
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    totals = summary["totals"]
    # One fixture is a deliberately broken feed that yields nothing: a parse error, recorded.
    assert totals["fetched"] == 49 and totals["failed"] == 1
    [broken] = [f for f in summary["feeds"] if f["outcome"] == "error"]
    assert broken["url"].endswith("reuters-mostread-invalid.rss.xml") and broken["error_kind"] == "parse_error"
    expected_entries = sum(int(row.split("\t")[8]) for row in
                           (corpus / "MANIFEST.tsv").read_text().splitlines()[1:] if row.strip())
    assert totals["entries"] == expected_entries
    assert totals["entries"] == totals["new"] + totals["updated"] + totals["duplicates"] + totals["quarantined"]
    assert scalar(db_url, "SELECT count(*) FROM articles") == totals["new"] + 0
    # every quarantined entry is held (a feed's byte-for-byte repeats of one are one row),
    # and no duplicate names an article that was never loaded
    assert 1 <= scalar(db_url, "SELECT count(*) FROM quarantine") <= totals["quarantined"]
    assert scalar(db_url, "SELECT count(*) FROM duplicates WHERE matched_article_id IS NULL") == 0
    # Several encodings, one undeclared windows-1252: none leaves a replacement character.
    assert scalar(db_url, "SELECT count(*) FROM articles WHERE strpos(title || text, chr(65533)) > 0") == 0
    assert_no_different_stories_merged(db_url)


def assert_no_different_stories_merged(db_url):
    """Each story-cluster member is the same story as the article it was linked to, judged
    apart from the text similarity that linked them (bench.syndication.cluster_links)."""
    links, wrong = syndication.cluster_links(db_url)
    assert links, "the Google News editions share stories: some clusters must form"
    assert not wrong, wrong


def test_json_feeds_go_through_without_a_crash_and_counts_add_up(db_url, shared_dir, tmp_path):
    corpus = shared_dir / "corpora" / "jsonfeed"
    files = sorted(p for p in corpus.rglob("*.json") if ".expected." not in p.name)
    routes = {f"/{p.relative_to(corpus)}": Route(p.read_bytes(), "application/feed+json") for p in files}
    with FeedServer(routes) as server:
        feeds = tmp_path / "feeds.txt"
        feeds.write_text("".join(server.url(path) + "\n" for path in routes))
        done = cli(db_url, "ingest", "--feeds", str(feeds), "--json",
                   env={"QUARANTINE_FAIL_RATIO": "1", "FEED_QUARANTINE_FAIL_RATIO": "1"})
    assert done.returncode == 0, done.stderr
    totals = json.loads(done.stdout)["totals"]
    assert totals["fetched"] + totals["failed"] == len(files)
    assert totals["failed"] == 2  # truncated JSON; RSS-in-JSON without a version or items
    assert totals["entries"] > 300
    assert totals["entries"] == totals["new"] + totals["updated"] + totals["duplicates"] + totals["quarantined"]
