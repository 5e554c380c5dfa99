"""The News view (plugins/news_ui) on a real PostgreSQL with known rows: the numbers it
shows, that every value from a feed is escaped, that it reads read-only, and (with
Airflow's own app and auth manager) that only a logged-in, allowed user gets a page."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import lxml.html
import psycopg2
import pytest
from psycopg2.extras import Json

from pipeline.config import PROJECT_ROOT

PLUGINS = PROJECT_ROOT / "plugins"
sys.path.insert(0, str(PLUGINS))

from news_ui import queries  # noqa: E402
from news_ui.app import DOCS_SITE, create_app, news_reader  # noqa: E402

NOW = datetime.now(UTC).replace(microsecond=0)
RUN = f"manual__{(NOW - timedelta(hours=1)).isoformat()}"
OLD_RUN = f"scheduled__{(NOW - timedelta(days=1)).isoformat()}"
HOSTILE_TITLE = '<script>alert("pwn")</script> Harbor & Co'
HOSTILE_ERROR = "HTTP 500 <b>boom</b>"
HOSTILE_ENTRY_TITLE = "<img src=x onerror=alert(1)>"
WARNING = "quarantined 1 of 5 entries <warn level>"
EXPECTATION = "expect_column_values_to_match_regex"
POLLING_WARNING = "1 feeds may have missed entries <gap & more>: http://a.example/feed"
DOCS_HTML = "<html><body><h1>articles_rows</h1><script src='https://cdn.example/x.js'></script></body></html>"


def seed(url: str, docs: str | None = None) -> dict[str, int]:
    """Two feeds (one failing), two runs (the first with its Data Docs page at `docs`),
    fetches, two articles told as one story, a held entry and a validation run with one
    failed expectation."""
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO feeds (url, title, last_success_at, last_fetched_at, identity_rule)
                       VALUES ('http://a.example/feed', %s, %s, %s, 'guid') RETURNING id""",
                    (HOSTILE_TITLE, NOW - timedelta(hours=1), NOW - timedelta(hours=1)))
        harbor = cur.fetchone()[0]
        cur.execute("""INSERT INTO feeds (url, title, consecutive_errors, last_error, last_error_kind,
                                          last_fetched_at, identity_rule)
                       VALUES ('http://b.example/feed', 'Northern Ledger', 3, %s, 'http', %s, 'link')
                       RETURNING id""", (HOSTILE_ERROR, NOW - timedelta(hours=1)))
        ledger = cur.fetchone()[0]
        summary = {"attention": [{"status": "failing", "error_streak": 3, "url": "http://b.example/feed",
                                  "reason": HOSTILE_ERROR}], "identity_rule_changes": [],
                   "polling_warning": POLLING_WARNING, "possible_gaps": ["http://a.example/feed"],
                   "totals": {"deferred": 4, "possible_gaps": 1, "lost_to_tasks": 0},
                   "failed_tasks": ["ingest_shard_2", "ingest_shard_10"]}
        cur.execute("""INSERT INTO ingest_runs (run_id, started_at, finished_at, loaded_at, status, feed_count,
                                                validation_warning, data_docs, summary)
                       VALUES (%s, %s, %s, %s, 'tasks_failed', 2, %s, %s, %s),
                              (%s, %s, %s, %s, 'ok', 1, NULL, NULL, NULL)""",
                    (RUN, NOW - timedelta(hours=1), NOW - timedelta(minutes=55), NOW - timedelta(minutes=56),
                     WARNING, docs, Json(summary),
                     OLD_RUN, NOW - timedelta(days=1), NOW - timedelta(days=1), NOW - timedelta(days=1)))
        cur.execute("INSERT INTO run_feeds VALUES (%s, %s, 0), (%s, %s, 0), (%s, %s, 0)",
                    (RUN, harbor, RUN, ledger, OLD_RUN, harbor))
        cur.execute("""INSERT INTO fetch_log (run_id, feed_id, url, fetched_at, outcome, status, error_kind, error,
                                              entries, new, updated, duplicates, quarantined)
                       VALUES (%s, %s, 'http://a.example/feed', %s, 'ok', 200, NULL, NULL, 5, 3, 1, 0, 1),
                              (%s, %s, 'http://b.example/feed', %s, 'error', 500, 'http', %s, 0, 0, 0, 0, 0),
                              (%s, %s, 'http://a.example/feed', %s, 'not_modified', 304, NULL, NULL, 0, 0, 0, 0, 0)""",
                    (RUN, harbor, NOW - timedelta(hours=1), RUN, ledger, NOW - timedelta(hours=1), HOSTILE_ERROR,
                     OLD_RUN, harbor, NOW - timedelta(days=1)))
        ids = []
        for feed_id, title in ((harbor, "Storm <em>hits</em> coast"), (ledger, "Storm hits the coast")):
            cur.execute("""INSERT INTO articles (feed_id, identity_key, canonical_url, title, published_at,
                                                 published_source, content_hash, first_seen_at, first_run_id)
                           VALUES (%s, %s, %s, %s, %s, 'published', 'h', %s, %s) RETURNING id""",
                        (feed_id, f"k{feed_id}", f"http://news.example/{feed_id}", title, NOW - timedelta(hours=2),
                         NOW - timedelta(hours=1), RUN))
            ids.append(cur.fetchone()[0])
        cur.execute("""INSERT INTO article_clusters (article_id, cluster_id, score, rule, linked_at)
                       VALUES (%s, %s, 1, 'seed', %s), (%s, %s, 0.9, 'minhash', %s)""",
                    (ids[0], ids[0], NOW, ids[1], ids[0], NOW))
        reasons = [{"expectation": EXPECTATION, "column": "canonical_url", "observed": "javascript:alert(1)"}]
        cur.execute("""INSERT INTO quarantine (entry_key, feed_id, run_id, last_run_id, reasons, entry)
                       VALUES ('e1', %s, %s, %s, %s, %s)""",
                    (harbor, RUN, RUN, Json(reasons),
                     Json({"title": HOSTILE_ENTRY_TITLE, "link": "javascript:alert(1)"})))
        cur.execute("""INSERT INTO validation_runs (run_id, suite, success, evaluated_at, element_count, statistics)
                       VALUES (%s, 'articles_rows', false, %s, 5, '{}') RETURNING id""", (RUN, NOW))
        validation = cur.fetchone()[0]
        cur.execute("""INSERT INTO validation_results VALUES
                       (%s, %s, 'canonical_url', false, 5, 1, 20.0, %s),
                       (%s, 'expect_column_values_to_not_be_null', 'title', true, 5, 0, 0.0, '[]')""",
                    (validation, EXPECTATION, Json(["javascript:alert(1)"]), validation))
    conn.close()
    return {"harbor": harbor, "ledger": ledger}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data dir whose Data Docs site holds one validation page."""
    page = tmp_path.joinpath(*DOCS_SITE, "validations", "articles_rows", "run", "result.html")
    page.parent.mkdir(parents=True)
    page.write_text(DOCS_HTML)
    (tmp_path / "secret.html").write_text("<p>outside the site</p>")
    return tmp_path


@pytest.fixture
def seeded(db_url: str, data_dir: Path) -> dict[str, int]:
    return seed(db_url, str(data_dir.joinpath(*DOCS_SITE, "validations", "articles_rows", "run", "result.html")))


@pytest.fixture
def client(db_url: str, seeded: dict[str, int], data_dir: Path) -> Iterator[Any]:
    """The view's app alone, as a logged-in user (the real check is test_only_logged_in_users)."""
    from fastapi.testclient import TestClient

    app = create_app(database_url=lambda: db_url, clock=lambda: NOW, data_dir=lambda: data_dir)
    app.dependency_overrides[news_reader] = lambda: object()
    with TestClient(app) as test_client:
        yield test_client


def page(client: Any, path: str) -> Any:
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert "<script>alert" not in response.text and "<img src=x" not in response.text
    assert response.headers["content-security-policy"].endswith("frame-ancestors 'self'")
    return lxml.html.fromstring(response.text)


def table(doc: Any, table_id: str) -> list[list[str]]:
    return [[text(td) for td in tr.xpath("./td")] for tr in doc.xpath(f'//table[@id="{table_id}"]/tbody/tr')]


def text(node: Any) -> str:
    """A node's text, its parts separated by one space."""
    return " ".join(" ".join(node.itertext()).split())


def figures(doc: Any) -> list[dict[str, Any]]:
    return [json.loads(node.text) for node in doc.xpath('//script[@type="application/json"][@data-chart]')]


def test_feeds_page_shows_health_quality_and_recent_entries(client: Any, seeded: dict[str, int]) -> None:
    response = client.get("/feeds")
    assert "&lt;script&gt;alert(&#34;pwn&#34;)&lt;/script&gt; Harbor &amp; Co" in response.text
    rows = table(lxml.html.fromstring(response.text), "feeds")
    by_name = {row[0].split(" http")[0]: row for row in rows}
    assert set(by_name) == {HOSTILE_TITLE, "Northern Ledger"}
    harbor, ledger = by_name[HOSTILE_TITLE], by_name["Northern Ledger"]
    assert harbor[1:3] == ["ok", "0"] and harbor[5] == "guid" and harbor[7] == "5"
    assert ledger[1].startswith("failing") and HOSTILE_ERROR in ledger[1] and ledger[2] == "3"
    assert ledger[4] == "due now" and ledger[7] == "0"
    assert float(harbor[6]) < 100  # a quarantined entry lowers the quality score


def test_feeds_sort_and_filter(client: Any) -> None:
    failing = table(page(client, "/feeds?status=failing"), "feeds")
    assert [row[0].split(" ")[0] for row in failing] == ["Northern"]
    by_streak = table(page(client, "/feeds?sort=error_streak&desc=1"), "feeds")
    assert by_streak[0][0].startswith("Northern Ledger")
    assert table(page(client, "/feeds?q=a.example"), "feeds")[0][0].startswith(HOSTILE_TITLE)
    assert table(page(client, "/feeds?q=%25"), "feeds")[0][0] == "No feed matches."  # % is no wildcard
    assert len(table(page(client, "/feeds?sort=1;DROP TABLE feeds&status=bogus"), "feeds")) == 2


def test_feed_page_history_errors_and_chart(client: Any, seeded: dict[str, int]) -> None:
    doc = page(client, f"/feeds/{seeded['harbor']}")
    history = table(doc, "history")
    assert [row[2] for row in history] == ["ok", "not_modified"]
    assert history[0][6:] == ["5", "3", "1", "0", "1"]
    [chart] = figures(doc)
    entries = dict(zip(chart["data"][0]["x"], chart["data"][0]["y"], strict=True))
    assert len(entries) == 30 and entries[(NOW - timedelta(hours=1)).date().isoformat()] == 5
    assert sum(entries.values()) == 5
    errors = table(page(client, f"/feeds/{seeded['ledger']}"), "errors")
    assert errors[0][2:] == ["500", "http", HOSTILE_ERROR]
    assert client.get("/feeds/999999").status_code == 404


def test_runs_funnel_over_the_last_runs(client: Any) -> None:
    doc = page(client, "/runs")
    rows = table(doc, "runs")
    assert [row[0] for row in rows] == [RUN, OLD_RUN]
    assert rows[0][4:] == ["1", "0", "1", "3", "1", "0", "1"]
    assert rows[1][4:] == ["0", "1", "0", "0", "0", "0", "0"]
    feeds_chart, entries_chart = figures(doc)
    assert {trace["name"]: trace["y"] for trace in feeds_chart["data"]} == {
        "fetched": [0, 1], "not modified": [1, 0], "failed": [0, 1]}  # oldest run first
    assert {trace["name"]: trace["y"][-1] for trace in entries_chart["data"]} == {
        "new": 3, "updated": 1, "duplicate": 0, "quarantined": 1}


def test_run_page_and_the_dag_run_tab(client: Any, seeded: dict[str, int]) -> None:
    for path in (f"/runs/{quote(RUN, safe='')}", f"/dag-runs/news_ingest/{quote(RUN, safe='')}"):
        response = client.get(path)
        doc = page(client, path)
        assert doc.xpath('string(//*[@id="run-status"])') == "tasks_failed"
        assert doc.xpath('string(//*[@id="run-status"]/@class)') == "badge tasks_failed"  # red (news.css)
        assert text(doc.xpath('//*[@id="failed-tasks"]')[0]) == (
            "Failed tasks: ingest_shard_2, ingest_shard_10 (their feeds are fetched again next run)")
        assert table(doc, "failing") == [["http://b.example/feed", "error", "500", "http", HOSTILE_ERROR]]
        warnings = [" ".join(li.text_content().split()) for li in doc.xpath('//ul[@id="warnings"]/li')]
        assert warnings[0] == f"Validation warning: {WARNING}"
        assert warnings[1] == f"Polling warning: {POLLING_WARNING}"
        assert "&lt;gap &amp; more&gt;" in response.text and "<gap" not in response.text
        assert warnings[2] == "Possible gaps (every entry fetched was new): http://a.example/feed"
        assert warnings[3].startswith("Needs attention (failing, 3 errors): http://b.example/feed")
        assert "HTTP 500 &lt;b&gt;boom&lt;/b&gt;" in response.text
        assert text(doc.xpath('//*[@id="polling-totals"]')[0]) == (
            "Deferred to the next run: 4 feeds · possible gaps: 1 feeds")
        assert doc.xpath('string(//*[@id="data-docs"]/a[1]/@href)') == f"/data-docs/{quote(RUN, safe='')}"
        assert "shown without its CDN styles and scripts" in doc.xpath('string(//*[@id="data-docs"])')
        funnel = table(doc, "funnel")
        assert [row[1] for row in funnel] == ["2", "1", "0", "1", "0"]
        assert [row[3] for row in funnel] == ["5", "3", "1", "0", "1"]
    # The hot lane's run of the same name is another ingest run (pipeline.run_ids).
    hot = page(client, f"/dag-runs/news_ingest_hot/{quote(RUN, safe='')}").text_content()
    assert f"No ingest run news_ingest_hot:{RUN}" in hot
    other = page(client, "/dag-runs/news_table_checks/some_run")
    assert "records no ingest run" in other.text_content()
    assert "No ingest run" in page(client, "/runs/unknown_run").text_content()


def test_data_docs_page_only_from_the_data_docs_site(client: Any, db_url: str, data_dir: Path) -> None:
    served = client.get(f"/data-docs/{quote(RUN, safe='')}")
    assert served.status_code == 200 and served.text == DOCS_HTML
    assert served.headers["content-type"].startswith("text/html")
    csp = served.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "sandbox" in csp
    assert "https:" not in csp and "*" not in csp
    no_docs = page(client, f"/runs/{quote(OLD_RUN, safe='')}")
    assert "unless DATA_DOCS=always" in text(no_docs.xpath('//*[@id="data-docs"]')[0])
    assert no_docs.xpath('string(//*[@id="data-docs"]//a/@href)') == f"/quality?run_id={quote(OLD_RUN, safe='')}"
    assert client.get(f"/data-docs/{quote(OLD_RUN, safe='')}").status_code == 404
    site = data_dir.joinpath(*DOCS_SITE)
    for stored in ("../../etc/passwd", "../../../../../secret.html", str(data_dir / "secret.html"),
                   f"file://{data_dir / 'secret.html'}", "/etc/passwd", str(site)):
        conn = psycopg2.connect(db_url)
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE ingest_runs SET data_docs = %s WHERE run_id = %s", (stored, RUN))
        conn.close()
        response = client.get(f"/data-docs/{quote(RUN, safe='')}")
        assert response.status_code == 404 and "outside" not in response.text, stored
        assert not page(client, f"/runs/{quote(RUN, safe='')}").xpath('//a[starts-with(@href, "/data-docs/")]')
    assert client.get("/data-docs/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_stories_with_outlets_and_zero_filled_days(client: Any) -> None:
    response = client.get("/stories")
    assert "Storm &lt;em&gt;hits&lt;/em&gt; coast" in response.text
    doc = page(client, "/stories")
    [story] = table(doc, "stories")
    assert story[1] == "2" and HOSTILE_TITLE in story[2] and "Northern Ledger" in story[2]
    [chart] = figures(doc)
    assert {trace["name"] for trace in chart["data"]} == {HOSTILE_TITLE, "Northern Ledger"}
    for trace in chart["data"]:
        assert len(trace["y"]) == 14 and sum(trace["y"]) == 1


def test_quarantine_grouped_by_expectation_with_the_original_entry(client: Any) -> None:
    response = client.get("/quarantine")
    doc = page(client, "/quarantine")
    assert [" ".join(h.text_content().split()) for h in doc.xpath("//section/h2")] == [f"{EXPECTATION} 1"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in response.text
    assert '"link": "javascript:alert(1)"' in doc.xpath("string(//details/pre)")
    assert not doc.xpath("//img")


def test_quality_expectations_observed_values_and_failing_rows(client: Any) -> None:
    doc = page(client, f"/quality?run_id={quote(RUN, safe='')}")
    expectations = doc.xpath('//table[contains(@class, "expectations")]/tbody/tr')
    rows = [[text(td) for td in tr.xpath("./td")] for tr in expectations]
    assert rows[0][:6] == [EXPECTATION, "canonical_url", "FAIL", "5", "1", "20.0%"]
    assert "javascript:alert(1)" in rows[0][6]
    assert rows[1][:3] == ["expect_column_values_to_not_be_null", "title", "pass"]
    failing = table(doc, "failing-rows")
    assert failing[0][:3] == [EXPECTATION, "canonical_url", HOSTILE_TITLE]
    assert page(client, "/quality").xpath('string(//option[@selected]/@value)') == RUN  # latest by default


def test_plotly_is_served_by_the_view(client: Any) -> None:
    response = client.get("/static/plotly.min.js")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/javascript")
    assert "plotly" in response.text[:2000].lower()
    assert client.get("/static/../app.py").status_code == 404


def test_the_session_is_read_only(db_url: str, seeded: dict[str, int]) -> None:
    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction), queries.read_only(db_url) as cur:
        cur.execute("DELETE FROM feeds")


@pytest.fixture
def airflow_app(airflow_db: str, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Airflow's API server app, loading the plugin from plugins/ as `make run` does."""
    from airflow import plugins_manager, settings

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "test-secret-of-the-news-view")
    monkeypatch.setenv("AIRFLOW__CORE__PLUGINS_FOLDER", str(PLUGINS))
    monkeypatch.setattr(settings, "PLUGINS_FOLDER", str(PLUGINS))
    caches = (plugins_manager._get_plugins, plugins_manager.get_fastapi_plugins, plugins_manager._get_ui_plugins)
    for cached in caches:
        cached.cache_clear()
    from airflow.api_fastapi.app import create_app as create_airflow_app
    from airflow.api_fastapi.app import purge_cached_app

    try:
        yield create_airflow_app(apps="core")
    finally:
        purge_cached_app()
        for cached in caches:
            cached.cache_clear()


def test_only_logged_in_users(airflow_app: Any, seeded: dict[str, int]) -> None:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    manager = get_auth_manager()
    admin = manager.generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    nobody = manager.generate_jwt(SimpleAuthManagerUser(username="nobody", role=None))
    with TestClient(airflow_app) as http:
        anonymous = http.get("/news/feeds", headers={"Accept": "application/json"})
        assert anonymous.status_code == 401 and "Harbor" not in anonymous.text
        browser = http.get("/news/feeds", headers={"Accept": "text/html"}, follow_redirects=False)
        assert browser.status_code == 302 and browser.headers["location"].startswith("/auth/login?next=")
        assert http.get("/news/static/plotly.min.js").status_code == 401
        assert http.get(f"/news/data-docs/{quote(RUN, safe='')}").status_code == 401
        docs_browser = http.get(f"/news/data-docs/{quote(RUN, safe='')}", headers={"Accept": "text/html"},
                                follow_redirects=False)
        assert docs_browser.status_code == 302 and docs_browser.headers["location"].startswith("/auth/login?next=")
        forged = http.get("/news/feeds", cookies={"_token": "not-a-jwt"})
        assert forged.status_code in (401, 403) and "Harbor" not in forged.text
        assert http.get("/news/feeds", headers={"Authorization": f"Bearer {nobody}"}).status_code == 403
        http.cookies.set("_token", admin)  # what the UI's login leaves in the browser
        allowed = http.get("/news/feeds")
        assert allowed.status_code == 200 and "Northern Ledger" in allowed.text
        assert "&lt;script&gt;alert(&#34;pwn&#34;)&lt;/script&gt;" in allowed.text
        plugins = http.get("/api/v2/plugins", headers={"Authorization": f"Bearer {admin}"}).json()["plugins"]
        [news] = [p for p in plugins if p["name"] == "news_view"]
        assert {(v["name"], v["destination"], v["href"]) for v in news["external_views"]} == {
            ("News", "nav", "/news/feeds"), ("News run", "dag_run", "/news/dag-runs/{DAG_ID}/{RUN_ID}")}
        assert news["fastapi_apps"][0]["url_prefix"] == "/news"
