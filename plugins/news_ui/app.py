"""The News view: a FastAPI app that Airflow's API server mounts (see news_view_plugin.py).

Pages (server-rendered, Jinja2 with autoescape: every value from a feed is escaped):
feeds (sortable, filterable) and one feed; runs (the funnel over the last runs) and one
run (also the per-run tab of a DAG run) and its Great Expectations Data Docs page;
stories; quarantine; quality. Charts are Plotly figures drawn by plotly.js, served from the
plotly package itself (no CDN).

Every route needs a user logged in to Airflow who may read the news_ingest DAG's runs: the
auth manager decides (`news_reader`). The news database is read in read-only sessions
(`queries.read_only`). Nothing here writes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.exceptions import HTTPException as StarletteHTTPException

from news_ui import charts, queries
from pipeline.run_ids import INGEST_DAGS, MAIN_INGEST_DAG, ingest_run_id

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
NEWS_DAG = MAIN_INGEST_DAG
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'")
# GX's Data Docs page as it is: no script runs, nothing loads from another host (its CDN
# stylesheets included, so it renders unstyled), and it gets an origin of its own (sandbox).
DOCS_CSP = ("sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'self'")
# The Data Docs site of the GX project under the data dir (pipeline/validate.py: <data_dir>/gx/gx).
DOCS_SITE = ("gx", "gx", "uncommitted", "data_docs", "local_site")
PAGES = (("feeds", "Feeds"), ("runs", "Runs"), ("stories", "Stories"), ("quarantine", "Quarantine"),
         ("quality", "Quality"))
STATIC = {"news.css": "text/css", "charts.js": "text/javascript", "icon.svg": "image/svg+xml"}
CHART_DAYS = 30
STORY_DAYS = 14


async def news_reader(request: Request) -> Any:
    """The logged-in Airflow user (JWT from the `Authorization` header or the UI's `_token`
    cookie, checked by Airflow's own `get_user`), if the auth manager lets them read the
    news_ingest DAG's runs; else 401 (not logged in) or 403 (not allowed)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    user = await get_user(request, None, await bearer_scheme(request))
    allowed = get_auth_manager().is_authorized_dag(
        method="GET", user=user, access_entity=DagAccessEntity.RUN, details=DagDetails(id=NEWS_DAG))
    if not allowed:
        raise HTTPException(status_code=403, detail="Forbidden")
    return user


Reader = Annotated[Any, Depends(news_reader)]


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined)
    env.filters["when"] = lambda value: value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"
    env.filters["pct"] = lambda value: "-" if value is None else f"{float(value):.1f}%"
    env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False, default=str)
    env.filters["q"] = lambda value: quote(str(value), safe="")
    return env


def default_database_url() -> str:
    """The news database, found as the DAG's tasks find it: the `news_db` connection, then
    DATABASE_URL, then the embedded server."""
    from pipeline.config import Settings
    from pipeline.database import resolve_database_url

    def news_db() -> str | None:
        from airflow.exceptions import AirflowNotFoundException
        from airflow.models.connection import Connection

        try:
            return str(Connection.get_connection_from_secrets("news_db").get_uri())
        except AirflowNotFoundException:
            return None

    return resolve_database_url(Settings.from_env(), news_db)


def default_data_dir() -> Path:
    from pipeline.config import Settings

    return Settings.from_env().data_dir


def data_docs_page(site: Path, stored: str | None) -> Path | None:
    """The Data Docs page at `stored` (a path, or a file: URL), if it is an HTML file inside
    the Data Docs site `site` (resolved: `..` and symlinks that lead out are refused)."""
    if not stored:
        return None
    found = (site / unquote(urlsplit(stored).path if stored.startswith("file:") else stored)).resolve()
    return found if found.is_relative_to(site) and found.suffix == ".html" and found.is_file() else None


def create_app(database_url: Callable[[], str] = default_database_url,
               clock: Callable[[], datetime] = lambda: datetime.now(UTC),
               data_dir: Callable[[], Path] = default_data_dir) -> FastAPI:
    """The app; `database_url` and `data_dir` are called once, at the first request that needs them."""
    app = FastAPI(title="News", docs_url=None, redoc_url=None, openapi_url=None)
    env = _environment()
    url = cache(database_url)

    @cache
    def docs_site() -> Path:
        return data_dir().joinpath(*DOCS_SITE).resolve()

    def page(request: Request, template: str, title: str, **context: Any) -> HTMLResponse:
        base = request.scope.get("root_path", "").rstrip("/")
        html = env.get_template(template).render(base=base, title=title, pages=PAGES, **context)
        return HTMLResponse(html)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(StarletteHTTPException)
    async def not_logged_in(request: Request, exc: StarletteHTTPException) -> Response:
        """A browser that is not logged in goes to Airflow's login page, and comes back."""
        if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
            try:
                from airflow.api_fastapi.app import get_auth_manager

                return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), 302)
            except RuntimeError:  # no auth manager in this process
                pass
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js(_: Reader) -> FileResponse:
        import plotly

        path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
        return FileResponse(path, media_type="text/javascript",
                            headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str, _: Reader) -> FileResponse:
        media = STATIC.get(name)
        if media is None:
            raise HTTPException(404)
        return FileResponse(HERE / "static" / name, media_type=media, headers={"Cache-Control": "private, max-age=600"})

    @app.get("/", include_in_schema=False)
    def index(request: Request, _: Reader) -> RedirectResponse:
        return RedirectResponse(request.scope.get("root_path", "").rstrip("/") + "/feeds", 302)

    @app.get("/feeds", response_class=HTMLResponse)
    def feeds(request: Request, _: Reader, sort: str = "feed", desc: bool = False,
              status: str | None = None, q: str | None = None) -> HTMLResponse:
        status = status if status in queries.FEED_STATUSES else None
        sort = sort if sort in queries.FEED_SORTS else "feed"
        with queries.read_only(url()) as cur:
            rows = queries.feeds(cur, clock(), sort=sort, descending=desc, status=status, text=q)

        def sort_link(key: str) -> str:
            params = {"sort": key, "desc": "1" if key == sort and not desc else "0",
                      **({"status": status} if status else {}), **({"q": q} if q else {})}
            return "?" + urlencode(params)

        return page(request, "feeds.html", "Feeds", feeds=rows, sort=sort, desc=desc, status=status or "",
                    q=q or "", statuses=queries.FEED_STATUSES, sort_link=sort_link)

    @app.get("/feeds/{feed_id}", response_class=HTMLResponse)
    def feed(request: Request, feed_id: int, _: Reader) -> HTMLResponse:
        today = clock().date()
        with queries.read_only(url()) as cur:
            found = queries.feed(cur, feed_id)
            if found is None:
                raise HTTPException(404, "no such feed")
            history = queries.fetch_history(cur, feed_id)
            errors = queries.fetch_history(cur, feed_id, limit=10, errors_only=True)
            days = queries.entries_per_day(cur, feed_id, today - timedelta(days=CHART_DAYS - 1), today)
        return page(request, "feed.html", found["feed"], feed=found, history=history, errors=errors,
                    figure=charts.entries_per_day(days))

    @app.get("/runs", response_class=HTMLResponse)
    def runs(request: Request, _: Reader, limit: Annotated[int, Query(ge=1, le=200)] = 30) -> HTMLResponse:
        with queries.read_only(url()) as cur:
            rows = queries.runs(cur, limit)
        return page(request, "runs.html", "Runs", runs=rows, charts=charts.run_funnel(rows) if rows else [])

    @app.get("/runs/{run_id:path}", response_class=HTMLResponse)
    def run(request: Request, run_id: str, _: Reader) -> HTMLResponse:
        with queries.read_only(url()) as cur:
            found = queries.run(cur, run_id)
            rows = queries.failing_rows(cur, run_id) if found else []
        if found is None:
            return page(request, "missing.html", "Run", what=f"No ingest run {run_id} is recorded "
                        "(a run of another DAG, or one whose prepare task has not run yet).")
        docs = data_docs_page(docs_site(), found["data_docs"]) is not None
        return page(request, "run.html", f"Run {run_id}", run=found, failing_rows=rows, docs=docs)

    @app.get("/data-docs/{run_id:path}", include_in_schema=False)
    def data_docs(run_id: str, _: Reader) -> FileResponse:
        """The run's Data Docs page, served only from the Data Docs site (see DOCS_CSP)."""
        with queries.read_only(url()) as cur:
            found = data_docs_page(docs_site(), queries.data_docs(cur, run_id))
        if found is None:
            raise HTTPException(404, "no Data Docs page for this run")
        return FileResponse(found, media_type="text/html", headers={"Content-Security-Policy": DOCS_CSP})

    @app.get("/dag-runs/{dag_id}/{run_id:path}", response_class=HTMLResponse)
    def dag_run_tab(request: Request, dag_id: str, run_id: str, reader: Reader) -> HTMLResponse:
        """The per-run tab of every DAG run: the ingest run's page for the ingest DAGs' runs
        (the main one's and its hot lane's, each under its own id: pipeline.run_ids)."""
        if dag_id not in INGEST_DAGS:
            return page(request, "missing.html", "Run", what=f"The {dag_id} DAG records no ingest run.")
        return run(request, ingest_run_id(dag_id, run_id), reader)

    @app.get("/stories", response_class=HTMLResponse)
    def stories(request: Request, _: Reader) -> HTMLResponse:
        today = clock().date()
        with queries.read_only(url()) as cur:
            clusters = queries.story_clusters(cur)
            per_day = queries.stories_per_day(cur, today - timedelta(days=STORY_DAYS - 1), today)
        return page(request, "stories.html", "Stories", clusters=clusters,
                    figure=charts.stories_per_day(per_day) if per_day else None)

    @app.get("/quarantine", response_class=HTMLResponse)
    def quarantine(request: Request, _: Reader) -> HTMLResponse:
        with queries.read_only(url()) as cur:
            rows = queries.held_entries(cur)
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(row["expectation"] or "?", []).append(row)
        return page(request, "quarantine.html", "Quarantine", groups=groups, held=len({r["id"] for r in rows}))

    @app.get("/quality", response_class=HTMLResponse)
    def quality(request: Request, _: Reader, run_id: str | None = None) -> HTMLResponse:
        with queries.read_only(url()) as cur:
            recent = queries.validation_runs(cur)
            chosen = run_id or (recent[0]["run_id"] if recent else None)
            suites = queries.validation_suites(cur, chosen) if chosen else []
            rows = queries.failing_rows(cur, chosen) if chosen else []
        return page(request, "quality.html", "Quality", recent=recent, chosen=chosen, suites=suites,
                    failing_rows=rows)

    return app
