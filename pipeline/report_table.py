"""The run report as plain text: what the report task logs, readable in Airflow's log view.

`format_report(summary, failure)` turns the summary `tasks.report_run` returns (and the
run's verdict, when it fails) into a few aligned tables: the funnel's totals, the
failing feeds, the warnings, and where the Data Docs page is. `headline(summary)` is the
same outcome in one line. Both are pure functions over the summary dict: no I/O, no
Airflow, no colours (a log viewer shows escape codes as text). Whatever a feed or server
provided (URLs, error messages) is printed as written, never parsed as markup.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

FEED_ROWS = (("all", "feeds"), ("fetched", "fetched"), ("not modified", "not_modified"),
             ("failed", "failed"), ("disabled", "disabled"), ("not due", "not_due"))
ENTRY_ROWS = (("all", "entries"), ("new", "new"), ("updated", "updated"),
              ("duplicates", "duplicates"), ("quarantined", "quarantined"), ("seconds", "seconds"))
FAILED_OUTCOMES = ("error", "disabled")
MAX_FAILURES = 25
ERROR_WIDTH = 160


def headline(summary: dict[str, Any]) -> str:
    """`ok: 3 feeds (2 fetched, 1 not modified, 0 failed); 12 entries (9 new, ...)`."""
    t = summary.get("totals") or {}
    return (f"{summary.get('status', '?')}: {t.get('feeds', 0)} feeds ({t.get('fetched', 0)} fetched, "
            f"{t.get('not_modified', 0)} not modified, {t.get('failed', 0)} failed); "
            f"{t.get('entries', 0)} entries ({t.get('new', 0)} new, {t.get('updated', 0)} updated, "
            f"{t.get('duplicates', 0)} duplicates, {t.get('quarantined', 0)} quarantined)")


def failing_feeds(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [feed for feed in summary.get("feeds") or [] if feed.get("outcome") in FAILED_OUTCOMES]


def warnings_of(summary: dict[str, Any]) -> list[str]:
    """Everything that did not fail the run but deserves a look, one line each."""
    lines = []
    if summary.get("validation_warning"):
        lines.append(f"validation warning: {summary['validation_warning']}")
    if summary.get("polling_warning"):  # possible gaps, deferred feeds (pipeline.polling_policy)
        lines.append(f"polling warning: {summary['polling_warning']}")
    for feed in summary.get("attention") or []:
        lines.append(f"needs attention ({feed.get('status')}, {feed.get('error_streak')} errors): "
                     f"{feed.get('url')}: {feed.get('reason')}")
    for change in summary.get("identity_rule_changes") or []:
        lines.append(f"identity rule changed: {change.get('url')}: {change.get('old_rule')} -> "
                     f"{change.get('new_rule')} ({change.get('reason')})")
    return lines


def format_report(summary: dict[str, Any], failure: str | None = None, width: int = 132) -> str:
    """The report as text: title, totals, failures, warnings, Data Docs and the verdict."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, force_terminal=False,
                      highlight=False, emoji=False, markup=False)
    totals = summary.get("totals") or {}
    console.print(Text(f"Run {summary.get('run_id', '?')}: {summary.get('status', '?')}"))
    table = Table(box=box.ASCII2, show_header=True)
    for name, justify in (("feeds", "left"), ("count", "right"), ("entries", "left"), ("count", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for (feed_label, feed_key), (entry_label, entry_key) in zip(FEED_ROWS, ENTRY_ROWS, strict=True):
        table.add_row(feed_label, str(totals.get(feed_key, 0)), entry_label, str(totals.get(entry_key, 0)))
    console.print(table)
    _print_failures(console, failing_feeds(summary))
    notes = warnings_of(summary)
    console.print(Text(f"Warnings: {len(notes) or 'none'}"))
    for line in notes:
        console.print(Text(f"  - {line}"), soft_wrap=True)
    if summary.get("validation_error"):
        console.print(Text(f"Validation failed: {summary['validation_error']}"))
    console.print(Text(f"Data Docs: {summary.get('data_docs') or 'none (no expectation failed, or none ran)'}"))
    console.print(Text(f"Verdict: {'FAILED: ' + failure if failure else 'ok'}"))
    return out.getvalue().rstrip() + "\n"


def _print_failures(console: Any, failures: Sequence[dict[str, Any]]) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    if not failures:
        console.print(Text("Failures: none"))
        return
    console.print(Text(f"Failures: {len(failures)} feeds"))
    table = Table(box=box.ASCII2)
    for column in ("outcome", "feed", "kind", "error"):
        table.add_column(column, overflow="fold")
    for feed in failures[:MAX_FAILURES]:
        error = str(feed.get("error") or "")
        table.add_row(*(Text(str(value)) for value in (
            feed.get("outcome"), feed.get("url"), feed.get("error_kind") or "",
            error if len(error) <= ERROR_WIDTH else error[:ERROR_WIDTH] + "...")))
    if len(failures) > MAX_FAILURES:
        table.caption = f"... and {len(failures) - MAX_FAILURES} more (see the News view)"
    console.print(table)
