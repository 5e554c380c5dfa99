"""The News view in a real browser: Debian's Chromium, headless, driven by Selenium,
against the Airflow that `make run DEMO=1` starts (scripts/run_airflow.sh --background),
on this session's own databases and free ports.

It logs in through Airflow's login page, waits for the first news_ingest run of the demo
feeds to finish, opens the News views (feeds, one feed, runs, stories, quarantine,
quality) and the run's "News run" tab, asserts what they show (feed names, counts, chart
elements, the run's Data Docs page or why it has none, as the database and the Data Docs
site say) and saves a screenshot of each under .data/screenshots/. Skipped, saying why,
where no chromium, chromedriver or selenium exists (.ci/run installs the first two).
Everything it starts is stopped: the browser (driver.quit) and Airflow's process group
(run_airflow.sh --stop), whatever happens.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from pipeline import database
from pipeline.config import PROJECT_ROOT
from tests.helpers import database_url, drop_database, free_port

sys.path.insert(0, str(PROJECT_ROOT / "plugins"))
from news_ui.app import DOCS_SITE, data_docs_page  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists()
                                                 else None)
SCREENSHOTS = PROJECT_ROOT / ".data" / "screenshots"
SCRIPT = PROJECT_ROOT / "scripts" / "run_airflow.sh"
DEMO_FEEDS = ("Harbor Daily", "The Northern Ledger", "Civic Wire")
START_TIMEOUT = 240  # s: migrations, then the API server (about a minute on 2 cores)
RUN_TIMEOUT = 300  # s: the first DAG run of the demo feeds (45 s on an idle machine)
WAIT = 30  # s: a page and its charts

try:
    import selenium  # noqa: F401
except ImportError:  # pragma: no cover - depends on the machine
    selenium = None

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="no chromium/chromedriver here (apt-get install chromium chromium-driver)"),
    pytest.mark.skipif(selenium is None, reason="selenium is not installed (make venv)"),
]


class Airflow:
    """The running Airflow: its URL, a REST client (JWT from /auth/token), its home."""

    def __init__(self, base: str, home: Path, db_url: str):
        self.base = base
        self.home = home
        self.db_url = db_url  # the news database it runs on
        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        self.password = passwords["admin"]
        self.token = self.post("/auth/token", {"username": "admin", "password": self.password},
                               auth=False)["access_token"]

    def request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=30) as response:
            raw = response.read().decode()
            return json.loads(raw) if raw.startswith(("{", "[")) else raw

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any, auth: bool = True) -> Any:
        return self.request("POST", path, body, auth)

    def finished_run(self, timeout: float) -> dict[str, Any]:
        """The first news_ingest run to finish (one is triggered if the scheduler made none)."""
        deadline = time.monotonic() + timeout
        triggered = False
        while time.monotonic() < deadline:
            runs = self.get("/api/v2/dags/news_ingest/dagRuns?order_by=start_date")["dag_runs"]
            done = [r for r in runs if r["state"] in ("success", "failed")]
            if done:
                return dict(done[0])
            if not runs and not triggered and time.monotonic() > deadline - timeout + 30:
                self.post("/api/v2/dags/news_ingest/dagRuns", {"logical_date": None})
                triggered = True
            time.sleep(3)
        raise AssertionError(f"no news_ingest run finished within {timeout} s")


@pytest.fixture(scope="module")
def airflow(admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Airflow]:
    """`make run DEMO=1`, in the background, on fresh databases and free ports; stopped after."""
    suffix = uuid.uuid4().hex[:8]
    news_db, airflow_db = f"news_browser_{suffix}", f"airflow_browser_{suffix}"
    for name in (news_db, airflow_db):
        database.ensure_database(admin_url, name)
    home = tmp_path_factory.mktemp("airflow-home")
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "DEMO": "1",
        "DEMO_PORT": str(free_port()),
        "DATABASE_URL": database_url(admin_url, news_db),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url(admin_url, airflow_db).replace(
            "postgresql://", "postgresql+psycopg2://", 1),
        "START_TIMEOUT": str(START_TIMEOUT),
    }
    try:
        started = subprocess.run([str(SCRIPT), "--background"], env=env, capture_output=True, text=True,
                                 timeout=START_TIMEOUT + 60)
        log = home / "airflow.log"
        assert started.returncode == 0, (started.stdout + started.stderr
                                         + (log.read_text()[-4000:] if log.exists() else ""))
        yield Airflow(f"http://127.0.0.1:{port}", home, env["DATABASE_URL"])
    finally:
        subprocess.run([str(SCRIPT), "--stop"], env=env, capture_output=True, timeout=90)
        for name in (news_db, airflow_db):
            drop_database(admin_url, name)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1440,1000", "--no-first-run", "--disable-extensions",
                     "--disable-background-networking"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)  # the whole window, inside a frame or not
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def wait_for(driver: Any, css: str, timeout: float = WAIT) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def enter_view(driver: Any, url: str | None, css: str) -> None:
    """Open an Airflow page that shows a plugin view (or stay on this one), and switch into
    the view's iframe."""
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    if url:
        driver.get(url)
    frame = wait_for(driver, "iframe")
    WebDriverWait(driver, WAIT).until(ec.frame_to_be_available_and_switch_to_it(frame))
    wait_for(driver, css)


def cells(driver: Any, table_id: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    return [[td.text.strip() for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in driver.find_elements(By.CSS_SELECTOR, f"table#{table_id} tbody tr")]


def chart_drawn(driver: Any, count: int = 1) -> None:
    """Plotly drew `count` charts: each .chart holds Plotly's SVG."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".chart.js-plotly-plot svg.main-svg")) >= count)
    assert driver.find_elements(By.CSS_SELECTOR, ".chart .barlayer, .chart .scatterlayer")


def log_in(driver: Any, airflow: Airflow) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(airflow.base + "/")
    wait_for(driver, "input[name=username]").send_keys("admin")
    driver.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(airflow.password)
    shot(driver, "00-login")
    WebDriverWait(driver, WAIT).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "button[type=submit]").is_enabled())
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, WAIT).until(lambda d: "/auth/login" not in d.current_url)
    assert any(c["name"] == "_token" for c in driver.get_cookies())


def data_docs_expected(airflow: Airflow, run_id: str) -> tuple[str | None, bool]:
    """The run's stored Data Docs page, and whether the view can serve it (the same rule as
    the view's: an HTML file inside the Data Docs site of Airflow's data dir, which is this
    session's NEWS_DATA_DIR: tests/conftest.py sets it, Airflow inherits it)."""
    with database.connect(airflow.db_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT data_docs FROM ingest_runs WHERE run_id = %s", (run_id,))
        (stored,) = cur.fetchone()
    site = Path(os.environ["NEWS_DATA_DIR"]).joinpath(*DOCS_SITE).resolve()
    return stored, data_docs_page(site, stored) is not None


def diagnosis(airflow: Airflow) -> str:
    """What the news database and Airflow hold about the runs, for a failure's message."""
    lines = []
    with database.connect(airflow.db_url) as conn, conn.cursor() as cur:
        for query in ("SELECT run_id, kind, lane, started_at, feed_count, shards, not_due, deferred, loaded_at "
                      "FROM ingest_runs ORDER BY started_at",
                      "SELECT run_id, feed_id, outcome, error_kind, error, entries, fetched_at FROM fetch_log "
                      "ORDER BY fetched_at",
                      "SELECT id, url, title, next_check_at, last_success_at, last_error FROM feeds ORDER BY id"):
            cur.execute(query)
            lines += [query.split(" FROM ")[1].split()[0] + ": " + repr(row) for row in cur.fetchall()]
    runs = airflow.get("/api/v2/dags/~/dagRuns?order_by=start_date")["dag_runs"]
    lines += [f"dag run: {r['dag_id']} {r['dag_run_id']} {r['run_type']} {r['state']} "
              f"[{r.get('data_interval_start')}, {r.get('data_interval_end')}) {r.get('start_date')}" for r in runs]
    return "\n".join(lines)


def fetch_status(driver: Any, url: str) -> Any:
    """The HTTP status of `url` fetched by the page shown (its cookies, its origin)."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {credentials: 'same-origin'}).then(r => done(r.status), e => done(String(e)));", url)


def test_news_views_in_airflow(airflow: Airflow, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    run = airflow.finished_run(RUN_TIMEOUT)
    run_id = run["dag_run_id"]
    tasks = airflow.get(f"/api/v2/dags/news_ingest/dagRuns/{quote(run_id, safe='')}/taskInstances")
    assert run["state"] == "success", [(t["task_id"], t["state"]) for t in tasks["task_instances"]]

    # Not logged in: the view answers nothing but a way to the login page.
    browser.get(airflow.base + "/news/feeds")
    wait_for(browser, "input[name=username]")
    assert "/auth/login" in browser.current_url

    log_in(browser, airflow)
    wait_for(browser, "a[href$='/plugin/news']").click()  # the News item of Airflow's navigation
    enter_view(browser, None, "table#feeds tbody tr")
    feeds = cells(browser, "feeds")
    names = [row[0].splitlines()[0] for row in feeds]
    assert sorted(names) == sorted(DEMO_FEEDS), diagnosis(airflow)
    assert {row[1].splitlines()[0] for row in feeds} == {"ok"}
    assert sum(int(row[7]) for row in feeds) > 0  # entries of the last 7 days
    shot(browser, "01-feeds")

    browser.find_element(By.LINK_TEXT, "Harbor Daily").click()
    wait_for(browser, "table#history tbody tr")
    assert cells(browser, "history")[0][2] == "ok"
    chart_drawn(browser)
    shot(browser, "02-feed")

    browser.find_element(By.LINK_TEXT, "Runs").click()
    wait_for(browser, "table#runs tbody tr")
    runs = {row[0]: row for row in cells(browser, "runs")}
    assert run_id in runs
    fetched, failed, new = (int(runs[run_id][i]) for i in (4, 6, 7))
    assert (fetched, failed) == (3, 0) and new > 0
    chart_drawn(browser, 2)
    shot(browser, "03-runs")

    browser.find_element(By.LINK_TEXT, "Stories").click()
    wait_for(browser, "table#stories tbody tr")
    stories = cells(browser, "stories")
    assert any(int(row[1]) >= 2 for row in stories), stories
    outlets = {span.text for span in browser.find_elements(By.CSS_SELECTOR, "table#stories .outlet")}
    assert len(outlets & set(DEMO_FEEDS)) >= 2, outlets  # one story, told by several outlets
    chart_drawn(browser)
    shot(browser, "04-stories")

    browser.find_element(By.LINK_TEXT, "Quarantine").click()
    wait_for(browser, "section.group h2")
    assert "javascript:" in browser.find_element(By.TAG_NAME, "main").text
    shot(browser, "05-quarantine")

    browser.find_element(By.LINK_TEXT, "Quality").click()
    Select(wait_for(browser, "select[name=run_id]")).select_by_value(run_id)
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    wait_for(browser, "table#failing-rows tbody tr")
    assert browser.find_elements(By.CSS_SELECTOR, "table.expectations tbody tr")
    assert "javascript:" in browser.find_element(By.ID, "failing-rows").text  # the demo's held entry
    shot(browser, "06-quality")

    # The run's own tab in Airflow's run page.
    enter_view(browser, f"{airflow.base}/dags/news_ingest/runs/{quote(run_id, safe='')}/plugin/news-run",
               "#run-status")
    assert browser.find_element(By.CSS_SELECTOR, "#run-status").text == "ok"
    funnel = cells(browser, "funnel")
    assert [row[1] for row in funnel][:4] == ["3", "3", "0", "0"]
    assert int(funnel[1][3]) == new
    stored, served = data_docs_expected(airflow, run_id)
    docs_text = browser.find_element(By.ID, "data-docs").text
    docs_links = browser.find_elements(By.CSS_SELECTOR, "#data-docs a[href*='/data-docs/']")
    if served:  # the link, and the page behind it answers
        assert [a.text for a in docs_links] == ["Data Docs"], docs_text
        assert "shown without its CDN styles and scripts" in docs_text
        docs_url = docs_links[0].get_attribute("href")
        assert docs_url.endswith("/data-docs/" + quote(run_id, safe="")), docs_url
        assert fetch_status(browser, docs_url) == 200
    elif stored:  # built, then pruned from the site
        assert not docs_links and "no longer in the Data Docs site" in docs_text, docs_text
    else:  # none built: no expectation failed
        assert not docs_links and "Data Docs: none." in docs_text, docs_text
    shot(browser, "07-run-tab")
    if served:  # GX's own page, opened as a reader would, under its own CSP
        browser.switch_to.default_content()
        browser.get(docs_url)
        wait_for(browser, "body")
        assert "compiled by Great Expectations" in browser.page_source, browser.page_source[:2000]
        assert browser.find_elements(By.CSS_SELECTOR, ".card")  # its content, drawn without scripts
        shot(browser, "08-data-docs")

    # The report task's log is the readable table.
    log = airflow.get(f"/api/v2/dags/news_ingest/dagRuns/{quote(run_id, safe='')}/taskInstances/report/logs/1")
    text = json.dumps(log)
    assert "Verdict: ok" in text and "not modified" in text
