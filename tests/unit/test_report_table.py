"""The report task's log table (pipeline.report_table): totals, failures, warnings, Data Docs."""

from __future__ import annotations

from typing import Any

from pipeline.report_table import MAX_FAILURES, format_report, headline


def summary(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "run_id": "scheduled__2026-01-01T00:15:00+00:00",
        "status": "ok",
        "totals": {"feeds": 3, "fetched": 1, "not_modified": 1, "failed": 1, "disabled": 0, "not_due": 2,
                   "entries": 12, "new": 9, "updated": 1, "duplicates": 1, "quarantined": 1, "seconds": 3.5},
        "feeds": [
            {"outcome": "error", "url": "http://bad.example/[bold]feed[/bold]", "error_kind": "http",
             "error": "HTTP 500 [/oops]"},
            {"outcome": "ok", "url": "http://good.example/feed", "error_kind": None, "error": None},
        ],
        "attention": [],
        "identity_rule_changes": [],
        "validation_warning": None,
        "validation_error": None,
        "data_docs": "file:///data/gx/uncommitted/data_docs/local_site/index.html",
    }
    base.update(extra)
    return base


def rows(text: str) -> dict[str, list[str]]:
    """The totals table's cells by first column: `| fetched | 1 | new | 9 |` -> fetched: [...]."""
    found = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("|") and len(cells) == 4:
            found[cells[0]] = cells[1:]
    return found


def test_totals_are_a_table_of_feeds_and_entries() -> None:
    text = format_report(summary())
    assert text.splitlines()[0] == "Run scheduled__2026-01-01T00:15:00+00:00: ok"
    table = rows(text)
    assert table["all"] == ["3", "all", "12"]
    assert table["fetched"] == ["1", "new", "9"]
    assert table["not modified"] == ["1", "updated", "1"]
    assert table["failed"] == ["1", "duplicates", "1"]
    assert table["not due"] == ["2", "seconds", "3.5"]
    assert "Verdict: ok" in text


def test_failures_print_as_written_and_only_failures() -> None:
    text = format_report(summary())
    assert "Failures: 1 feeds" in text
    assert "http://bad.example/[bold]feed[/bold]" in text  # markup-like text stays literal
    assert "HTTP 500 [/oops]" in text
    assert "good.example" not in text


def test_no_failures_no_warnings() -> None:
    text = format_report(summary(feeds=[]))
    assert "Failures: none" in text
    assert "Warnings: none" in text


def test_warnings_data_docs_and_verdict() -> None:
    text = format_report(summary(
        validation_warning="quarantined 7% of entries (warn level 5%)",
        attention=[{"status": "failing", "error_streak": 4, "url": "http://bad.example/feed", "reason": "timeout"}],
        identity_rule_changes=[{"url": "http://x.example/", "old_rule": "guid", "new_rule": "link",
                                "reason": "GUIDs repeat"}],
        polling_warning="1 feeds may have missed entries (every entry fetched was new; polled sooner "
                        "from now): http://fast.example/feed",
    ), failure="failed tasks: ingest_shard_0")
    assert "Warnings: 4" in text
    assert "polling warning: 1 feeds may have missed entries" in text and "http://fast.example/feed" in text
    assert "validation warning: quarantined 7% of entries (warn level 5%)" in text
    assert "needs attention (failing, 4 errors): http://bad.example/feed: timeout" in text
    assert "identity rule changed: http://x.example/: guid -> link (GUIDs repeat)" in text
    assert "Data Docs: file:///data/gx/uncommitted/data_docs/local_site/index.html" in text
    assert text.rstrip().endswith("Verdict: FAILED: failed tasks: ingest_shard_0")


def test_no_data_docs_and_a_long_failure_list_is_cut() -> None:
    feeds = [{"outcome": "error", "url": f"http://f{i}.example/", "error_kind": "dns", "error": "x" * 500}
             for i in range(MAX_FAILURES + 5)]
    text = format_report(summary(feeds=feeds, data_docs=None))
    assert "Data Docs: none" in text
    assert f"Failures: {MAX_FAILURES + 5} feeds" in text
    assert "... and 5 more" in text
    assert "x" * 500 not in text


def test_headline() -> None:
    assert headline(summary()) == ("ok: 3 feeds (1 fetched, 1 not modified, 1 failed); 12 entries "
                                   "(9 new, 1 updated, 1 duplicates, 1 quarantined)")
