"""Command line: the same ingest path as the DAG, once, plus database helpers.

    python -m pipeline ingest --feeds FILE [--json]
    python -m pipeline demo            # serve the bundled feeds on loopback and ingest them
    python -m pipeline demo-serve      # only serve them (for `make run DEMO=1`)
    python -m pipeline migrate | db-url | psql
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline import database, local_runner, maintenance, storage, tasks
from pipeline.config import Settings
from pipeline.demo import DEFAULT_DEMO_PORT
from pipeline.errors import (
    ConfigError,
    EveryFeedFailed,
    PipelineError,
    ShardsFailed,
    SystemicFetchFailure,
    ValidationThresholdExceeded,
)
from pipeline.feedlist import read_feed_list
from pipeline.summary import render_summary

EXIT_OK, EXIT_VALIDATION, EXIT_SYSTEMIC, EXIT_CONFIG, EXIT_SHARDS = 0, 3, 4, 2, 5


def new_run_id(prefix: str = "cli") -> str:
    return f"{prefix}__{tasks.utcnow():%Y%m%dT%H%M%S}__{uuid.uuid4().hex[:8]}"


def _db_url(settings: Settings) -> str:
    url = database.resolve_database_url(settings)
    database.migrate(url)
    return url


def _instant(value: str, option: str) -> datetime:
    """An ISO date or time from the command line, UTC unless it says otherwise."""
    try:
        instant = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"{option} must be an ISO date or time, got {value!r}") from exc
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def run_ingest(settings: Settings, feeds_file: Path, as_json: bool, run_id: str | None = None,
               force: bool = False, now: str | None = None, lane: str = "all") -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.text import Text

    sources = read_feed_list(feeds_file)
    clock = tasks.utcnow
    if now is not None:  # a replay at a simulated time: the whole run takes it as its time
        instant = _instant(now, "--now")
        clock = lambda: instant  # noqa: E731
    url = _db_url(settings)
    run_id = run_id or new_run_id()
    console = Console(stderr=as_json)
    summary: dict[str, Any] | None = None
    code = EXIT_OK
    progress = Progress(
        TextColumn("feeds"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty(),
    )
    lock = threading.Lock()
    with progress:
        task = progress.add_task("fetch", total=len(sources))

        def advance(shard: tasks.ShardSummary) -> None:
            with lock:
                progress.advance(task, shard.feeds)

        try:
            summary = local_runner.ingest(url, settings, sources, run_id, clock=clock,
                                          on_shard=advance, force=force, lane=lane, validation_child=True)
        except ValidationThresholdExceeded as exc:
            console.print(Text.assemble(("validation failed: ", "red"), str(exc)))
            code = EXIT_VALIDATION
        except SystemicFetchFailure as exc:
            console.print(Text.assemble(("systemic failure: ", "red"), str(exc)))
            code = EXIT_SYSTEMIC
        except EveryFeedFailed as exc:
            console.print(Text.assemble(("every feed failed: ", "red"), str(exc)))
            code = EXIT_SYSTEMIC
        except ShardsFailed as exc:  # the other shards' entries loaded: the summary follows
            console.print(Text.assemble(("shards failed: ", "red"), str(exc)))
            code = EXIT_SHARDS
    if summary is None:
        summary = _query(url, storage.run_summary, run_id)
    if summary is not None:
        if as_json:
            print(json.dumps(summary, default=str, indent=2))
        else:
            render_summary(summary, console)
    return code


def _query(url: str, read: Callable[..., Any], *args: Any) -> Any:
    """Run one storage read in its own transaction."""
    with database.connect(url) as conn, conn.cursor() as cur:
        return read(cur, *args)


def run_demo(settings: Settings, as_json: bool, port: int) -> int:
    from pipeline.demo import demo_feed_list, serve_demo

    server = serve_demo(port)
    settings = settings.allowing("127.0.0.1/32")  # the demo's own loopback server
    try:
        with tempfile.TemporaryDirectory() as tmp:
            feeds = Path(tmp) / "demo-feeds.txt"
            feeds.write_text(demo_feed_list(server), encoding="utf-8")
            code = run_ingest(settings, feeds, as_json, force=True)
        total = _query(database.resolve_database_url(settings), storage.article_count)
        print(f"articles in the database: {total}", file=sys.stderr if as_json else sys.stdout)
        return code
    finally:
        server.stop()


def serve_demo_forever(port: int, feeds_out: Path | None) -> int:
    from pipeline.demo import demo_feed_list, serve_demo

    server = serve_demo(port)
    if feeds_out is not None:
        feeds_out.parent.mkdir(parents=True, exist_ok=True)
        feeds_out.write_text(demo_feed_list(server), encoding="utf-8")
    print(f"serving demo feeds on http://127.0.0.1:{server.port}/", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return EXIT_OK


def run_psql(settings: Settings, extra: Sequence[str]) -> int:
    import pgserver  # its wheel ships a psql binary; a system psql works too

    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    psql = str(bundled) if bundled.exists() else shutil.which("psql")
    if psql is None:
        raise ConfigError("no psql binary found")
    url = _db_url(settings)
    os.execv(psql, [psql, url, *extra])
    return EXIT_OK  # not reached


def run_replay(settings: Settings, since: str, as_json: bool) -> int:
    start = _instant(since, "--since")
    result = maintenance.replay(_db_url(settings), settings, start)
    if as_json:
        print(json.dumps(result, default=str, indent=2))
    else:
        t = result["totals"]
        print(f"replayed {result['bodies']} archived bodies in {result['runs']} runs: "
              f"{t.get('entries', 0)} entries, {t.get('new', 0)} new, {t.get('updated', 0)} updated, "
              f"{t.get('duplicates', 0)} duplicates, {t.get('quarantined', 0)} quarantined")
    return EXIT_OK


def run_feeds(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline import subscriptions

    url = _db_url(settings)
    if args.feeds_command == "import":
        print(f"subscribed to {subscriptions.import_feeds(url, args.file)} feeds from {args.file}")
    elif args.feeds_command == "export":
        opml = subscriptions.export_feeds(url)
        if args.output:
            args.output.write_text(opml, encoding="utf-8")
        else:
            print(opml, end="")
    elif args.feeds_command == "add":
        feed_url, how = subscriptions.add_feed(url, settings, args.url, tasks.utcnow())
        print(f"subscribed to {feed_url} ({how})")
    elif args.feeds_command == "remove":
        if not subscriptions.remove_feed(url, args.url, tasks.utcnow()):
            print(f"not subscribed: {args.url}", file=sys.stderr)
            return 1
        print(f"removed {args.url} (its articles are kept)")
        if args.url in {s.url for s in read_feed_list(settings.feeds_file)}:
            print(f"note: {settings.feeds_file} names it; it stays removed until `feeds add`",
                  file=sys.stderr)
    elif args.feeds_command == "list":
        feeds = subscriptions.list_feeds(url)
        if args.json:
            print(json.dumps(feeds, default=str, indent=2))
        else:
            for feed in feeds:
                identity = ("" if feed["identity_rule"] == "guid" else
                            f"; identity by {feed['identity_rule']}: {feed['identity_rule_reason']}")
                print(f"{feed['status']:<14} {feed['url']}  (errors: {feed['error_streak']}, "
                      f"next check: {feed['next_check_at'] or 'now'}"
                      f"{', ' + feed['reason'] if feed['reason'] else ''}{identity})")
    return EXIT_OK


def run_quarantine(settings: Settings, args: argparse.Namespace) -> int:
    url = _db_url(settings)
    if args.quarantine_command == "release":
        result = maintenance.release_quarantined(url, settings, args.ids or None)
        print(json.dumps(result, default=str, indent=2) if args.json else
              f"re-ran {result['held']} held entries: {result['released']} released "
              f"(now loaded or recognized as duplicates), {result['still_held']} still held")
        return EXIT_OK
    if args.quarantine_command == "show":
        entry = _query(url, storage.quarantined_entry, args.id)
        if entry is None:
            print(f"no quarantined entry {args.id}", file=sys.stderr)
            return 1
        print(json.dumps(entry, default=str, indent=2))
        return EXIT_OK
    rows = _query(url, storage.quarantined_entries, args.all)
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
    else:
        for r in rows:
            state = f"released {r['released_at']:%Y-%m-%d}" if r["released_at"] else "held"
            print(f"{r['id']:>6}  {state:<18} {', '.join(r['expectations'] or [])}  "
                  f"{r['feed']}  {r['title']!r}")
        print(f"{sum(1 for r in rows if not r['released_at'])} held")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log each stage's counts")
    sub = parser.add_subparsers(dest="command", required=True)
    ingest = sub.add_parser("ingest", help="fetch, normalize, dedup, validate and load once")
    ingest.add_argument("--feeds", type=Path, help="OPML file or plain list of URLs (default: FEEDS_FILE)")
    ingest.add_argument("--json", action="store_true", help="print the summary as JSON")
    ingest.add_argument("--run-id", help="name the run (default: generated)")
    ingest.add_argument("--force", action="store_true",
                        help="fetch every feed now, even those whose next check is later")
    ingest.add_argument("--now", help="the run's time, ISO (UTC unless given; default: the clock): "
                        "which feeds are due, and when each is checked next, follow it")
    ingest.add_argument("--lane", choices=tasks.LANES, default="all",
                        help="'hot': only the feeds that publish too fast for the main schedule")
    demo = sub.add_parser("demo", help="serve the bundled demo feeds on loopback and ingest them")
    demo.add_argument("--json", action="store_true")
    demo.add_argument("--port", type=int, default=0, help="loopback port (default: any free one)")
    serve = sub.add_parser("demo-serve", help="serve the demo feeds until interrupted")
    serve.add_argument("--port", type=int, default=DEFAULT_DEMO_PORT)
    serve.add_argument("--write-feeds", type=Path, help="write the feed list to this file")
    replay = sub.add_parser("replay", help="reprocess archived bodies through today's stages, "
                            "with no network")
    replay.add_argument("--since", required=True, help="ISO date or time (UTC unless given)")
    replay.add_argument("--json", action="store_true")
    feeds = sub.add_parser("feeds", help="manage subscribed feeds")
    feeds_sub = feeds.add_subparsers(dest="feeds_command", required=True)
    feeds_import = feeds_sub.add_parser("import", help="subscribe to every feed of an OPML file or URL list")
    feeds_import.add_argument("file", type=Path)
    feeds_export = feeds_sub.add_parser("export", help="print (or write) the subscribed feeds as OPML")
    feeds_export.add_argument("--output", type=Path)
    feeds_add = feeds_sub.add_parser("add", help="subscribe to a feed URL, or to the feed a web page announces")
    feeds_add.add_argument("url")
    feeds_remove = feeds_sub.add_parser("remove", help="unsubscribe (articles are kept)")
    feeds_remove.add_argument("url")
    feeds_list = feeds_sub.add_parser("list", help="subscribed feeds and their health")
    feeds_list.add_argument("--json", action="store_true")
    quarantine = sub.add_parser("quarantine", help="entries held by validation")
    q_sub = quarantine.add_subparsers(dest="quarantine_command", required=True)
    q_list = q_sub.add_parser("list", help="held entries (--all: released ones too)")
    q_list.add_argument("--all", action="store_true")
    q_list.add_argument("--json", action="store_true")
    q_show = q_sub.add_parser("show", help="one entry: reasons, original entry, normalized form")
    q_show.add_argument("id", type=int)
    q_release = q_sub.add_parser("release", help="re-run today's stages on held entries "
                                 "(all, or the ids given); those that pass load once")
    q_release.add_argument("ids", type=int, nargs="*")
    q_release.add_argument("--json", action="store_true")
    sub.add_parser("migrate", help="apply database migrations")
    db_url = sub.add_parser("db-url", help="print the news database URL")
    db_url.add_argument("--database", help="URL of this other database on the same server "
                        "(created if missing), e.g. for Airflow's metadata")
    db_url.add_argument("--sqlalchemy", action="store_true", help="with the psycopg2 driver prefix")
    sub.add_parser("psql", help="open psql on the news database (extra arguments go to psql)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    if extra and args.command != "psql":
        build_parser().error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env()
        if args.command == "ingest":
            return run_ingest(settings, args.feeds or settings.feeds_file, args.json, args.run_id,
                              args.force, args.now, args.lane)
        if args.command == "demo":
            return run_demo(settings, args.json, args.port)
        if args.command == "demo-serve":
            return serve_demo_forever(args.port, args.write_feeds)
        if args.command == "feeds":
            return run_feeds(settings, args)
        if args.command == "quarantine":
            return run_quarantine(settings, args)
        if args.command == "replay":
            return run_replay(settings, args.since, args.json)
        if args.command == "migrate":
            applied = database.migrate(database.resolve_database_url(settings))
            print(f"migrations applied: {applied or 'none (up to date)'}")
            return EXIT_OK
        if args.command == "db-url":
            url = database.resolve_database_url(settings)
            if args.database:
                url = database.sibling_url(url, args.database)
            print(url.replace("postgresql://", "postgresql+psycopg2://", 1) if args.sqlalchemy else url)
            return EXIT_OK
        if args.command == "psql":
            return run_psql(settings, extra)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return EXIT_OK
