"""The run summary: per-feed outcomes and totals, as JSON and as a terminal table.

Totals always add up: entries = new + updated + duplicates + quarantined for a
loaded run, and every feed of the run appears with its outcome, disabled and
failing ones included. Each parsed feed says which parser read it (`lxml`, the fast
path; `feedparser`; `jsonfeed`), and the totals count the feeds each parser took.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

OUTCOME_TOTALS = {"ok": "fetched", "not_modified": "not_modified", "error": "failed",
                  "disabled": "disabled"}
ENTRY_COUNTS = ("entries", "new", "updated", "duplicates", "quarantined")


def build_summary(feeds: Sequence[dict[str, Any]], started_at: datetime, now: datetime) -> dict[str, Any]:
    totals: dict[str, Any] = {"feeds": len(feeds), **{name: 0 for name in OUTCOME_TOTALS.values()}}
    totals.update({name: 0 for name in ENTRY_COUNTS})
    for feed in feeds:
        totals[OUTCOME_TOTALS[feed["outcome"]]] += 1
        for name in ENTRY_COUNTS:
            totals[name] += feed[name]
    parsers: dict[str, int] = {}
    for feed in feeds:
        if feed.get("parser"):
            parsers[feed["parser"]] = parsers.get(feed["parser"], 0) + 1
    totals["parsers"] = dict(sorted(parsers.items()))
    totals["seconds"] = round((now - started_at).total_seconds(), 3)
    ordered = sorted(feeds, key=lambda f: (f["outcome"] != "error", f["outcome"] != "disabled", f["url"]))
    return {"totals": totals, "feeds": [dict(f) for f in ordered]}


def render_summary(summary: dict[str, Any], console: Any, max_feed_rows: int = 40) -> None:
    """Print the summary as rich tables: totals, then feeds (failures first).

    Whatever a feed or a server provided (URLs, errors, reasons) is printed as rich `Text`,
    never parsed as markup: a reason phrase such as `HTTP 500 [/oops]` prints as written.
    """
    from rich.table import Table
    from rich.text import Text

    line = Text.assemble  # strings stay literal (no markup); (text, style) pairs are styled
    totals = summary["totals"]
    table = Table(title=f"Run summary: {summary.get('status', '?')}", show_header=False)
    table.add_column("what")
    table.add_column("feeds", justify="right")
    table.add_column("what")
    table.add_column("entries", justify="right")
    feed_rows = ("feeds", "fetched", "not_modified", "failed", "disabled", "seconds")
    for feed_key, entry_key in zip(feed_rows, (*ENTRY_COUNTS, ""), strict=False):
        table.add_row(feed_key.replace("_", " "), str(totals[feed_key]),
                      entry_key, str(totals[entry_key]) if entry_key else "")
    console.print(table)
    if summary.get("failed_tasks"):
        console.print(line(("failed tasks: ", "red"), ", ".join(summary["failed_tasks"])))
    if totals.get("parsers"):
        console.print("parsed by: " + ", ".join(f"{name} {count}" for name, count in totals["parsers"].items()))
    if totals.get("not_due"):
        console.print(f"{totals['not_due']} subscribed feeds are not due yet (use --force to fetch them now)")
    attention = summary.get("attention") or []
    if attention:
        console.print(line((f"{len(attention)} feeds need attention", "yellow"),
                           " (see the feed_health view):"))
        for feed in attention[:10]:
            console.print(line(f"  {feed['status']}: {feed['url']} "
                               f"({feed['error_streak']} errors): {feed['reason']}"))
    changes = summary.get("identity_rule_changes") or []
    if changes:
        console.print(line((f"{len(changes)} feeds changed their identity rule", "yellow"),
                           " (broken GUIDs):"))
        for change in changes[:10]:
            console.print(line(f"  {change['url']}: {change['old_rule']} -> {change['new_rule']} "
                               f"({change['reason']})"))
    if summary.get("validation_warning"):
        console.print(line(("validation warning: ", "yellow"), str(summary["validation_warning"])))
    if summary.get("data_docs"):
        console.print(line(f"Data Docs: {summary['data_docs']}"))
    if summary.get("validation_error"):
        console.print(line(("validation: ", "red"), str(summary["validation_error"])))
    feeds = Table(show_header=True, title="Feeds")
    for column in ("outcome", "url", "parser", "entries", "new", "updated", "dup", "quar", "error"):
        feeds.add_column(column, overflow="fold")
    for feed in summary["feeds"][:max_feed_rows]:
        feeds.add_row(*(Text(str(value)) for value in (
            feed["outcome"], feed["url"], feed.get("parser") or "", feed["entries"], feed["new"], feed["updated"],
            feed["duplicates"], feed["quarantined"], (feed.get("error") or "")[:120],
        )))
    if len(summary["feeds"]) > max_feed_rows:
        feeds.caption = f"... and {len(summary['feeds']) - max_feed_rows} more feeds (use --json)"
    console.print(feeds)
