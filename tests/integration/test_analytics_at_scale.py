"""The analytics views at a million articles: bench.analytics_scale's fill and typical
queries on a test database, their answers asserted, their times printed (not asserted).

The fill (bench.analytics_scale.fill: 1,000,000 articles from 1,000 sources over a year,
720 runs of 1,000 fetches, fetch_log in its month partitions) takes one to three minutes
here; the test runs on one xdist worker of the integration tier while the others go on.
Each answer is checked against the generator's shape (bench.analytics_scale: silent
sources, wire domains, flood titles) or against a count taken from the tables directly.
The times go to the terminal, in the tier's output too (`capsys.disabled()`, on stderr:
an xdist worker's stderr is the terminal's), and the issue's figure is under 1 s each.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from typing import Any

import pytest

from bench import analytics_scale as scale
from pipeline import database

# `make test-fast` (the edit-test loop) sets ANALYTICS_TEST_DIVISOR=5: a fifth of the sources
# and of the articles, each source as busy as at full size; `make test` fills the million.
_DIVISOR = int(os.environ.get("ANALYTICS_TEST_DIVISOR", "1"))
ARTICLES, FEEDS = scale.ARTICLES // _DIVISOR, scale.FEEDS // _DIVISOR
DAYS, FETCH_DAYS = scale.DAYS, scale.FETCH_DAYS
RUNS = scale.runs(FETCH_DAYS)

pytestmark = pytest.mark.timeout(1200)  # the fill, on 2 cores shared with the tier's other workers


def one(cur: Any, statement: str, *params: Any) -> Any:
    cur.execute(statement, params)
    return cur.fetchone()[0]


def test_each_analytics_view_answers_a_million_articles(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    steps = scale.fill(db_url, ARTICLES, FEEDS, DAYS, FETCH_DAYS)
    results = scale.measure(db_url, repeats=2)
    with capsys.disabled():
        print(f"\nanalytics views at {ARTICLES:,} articles (fill: {steps} s; best of 2, not asserted):\n"
              f"{scale.table(results)}", file=sys.stderr)
    answer = {name: timing.rows for name, timing in results.items()}

    with database.connect(db_url) as conn, conn.cursor() as cur:
        today = scale.today(cur)
        yesterday = today - timedelta(days=1)
        assert one(cur, "SELECT count(*) FROM articles") == ARTICLES
        # fetch_log's rows are in their months' partitions, none in DEFAULT
        assert one(cur, "SELECT count(*) FROM fetch_log") == RUNS * FEEDS
        assert one(cur, "SELECT count(*) FROM fetch_log_default") == 0
        assert one(cur, "SELECT count(DISTINCT tableoid) FROM fetch_log") >= 2  # 60 days span two months

        # stories_per_day: zero-filled, feeds x days; each day's sum is that day's articles
        assert one(cur, "SELECT count(*) FROM stories_per_day WHERE day > %s::date - 7", today) == FEEDS * 7
        cur.execute("""SELECT utc_day(published_at), count(*) FROM articles
                       WHERE published_at >= utc_day_start(%s::date - 6) GROUP BY 1 ORDER BY 1""", (today,))
        published = dict(cur.fetchall())
        per_day = answer["stories_per_day: all sources, last 7 days, per day"]
        assert [d for d, _, _ in per_day] == [today - timedelta(days=k) for k in range(6, -1, -1)]
        assert {d: n for d, n, _ in per_day if n} == published
        one_source = answer["stories_per_day: one source, last 90 days"]
        assert [row[0] for row in one_source] == [today - timedelta(days=k) for k in range(89, -1, -1)]
        assert {row[1] for row in one_source} == {7}

        # search_attention: every day of the range; the matches are the flood titles
        attention = answer["search_attention: 'flood', last 90 days"]
        assert [row[0] for row in attention] == [today - timedelta(days=k) for k in range(90, -1, -1)]
        in_range = """FROM articles WHERE published_at >= utc_day_start(%s::date - 90)
                      AND published_at < utc_day_start(%s::date + 1)"""
        assert sum(row[2] for row in attention) == one(cur, f"SELECT count(*) {in_range}", today, today)
        floods = one(cur, f"SELECT count(*) {in_range} AND title LIKE 'Flood warning%%'", today, today)
        assert floods > 0 and sum(row[1] for row in attention) == floods

        # ranked search: 20 flood warnings, best first
        ranked = answer["search: ranked, top 20"]
        assert len(ranked) == 20 and all(title.startswith("Flood warning") for _, title, _ in ranked)
        assert [rank for _, _, rank in ranked] == sorted((rank for _, _, rank in ranked), reverse=True)

        # top_domains: the wires lead (www. dropped); a day's counts add up to its articles
        wires = {f"wire{k}.example" for k in range(scale.WIRES)}
        week = answer["top_domains: last 7 days, top 20"]
        assert {domain for domain, _ in week[:scale.WIRES]} == wires
        day_top = answer["top_domains: yesterday's top 10"]
        # every wire in the day's top 10, none below another domain (a tie is possible at a
        # tenth of the scale in the hour after midnight, when the generated day is 21 hours)
        wire_counts = [row[2] for row in day_top if row[1] in wires]
        assert len(wire_counts) == scale.WIRES and min(wire_counts) >= max(
            row[2] for row in day_top if row[1] not in wires)
        assert [row[0] for row in day_top] == [yesterday] * 10
        assert [row[4] for row in day_top] == sorted(row[4] for row in day_top)
        assert one(cur, "SELECT sum(articles) FROM top_domains WHERE day = %s", yesterday) == published[yesterday]

        # source_health: exactly the sources generated silent are flagged yesterday
        flagged = answer["source_health: yesterday, flagged"]
        assert sorted(row[1] for row in flagged) == list(range(scale.SILENT_EVERY, FEEDS + 1, scale.SILENT_EVERY))
        assert all(row[3] == 0 and row[4] >= 2 for row in flagged)
        assert [row[1] for row in answer["source_health: one source, last 30 days"]] == [7] * 30

        # publication_lag: the generated lag is 1 to 180 minutes; undated articles left out
        lag = answer["publication_lag: per source, last 7 days"]
        assert len(lag) == 20
        assert all(timedelta(minutes=1) <= mean <= timedelta(minutes=180) for _, _, mean, _ in lag)
        assert all(longest <= timedelta(minutes=180) for _, _, _, longest in lag)
        dated = one(cur, """SELECT count(*) FROM articles WHERE published_source <> 'fetched'
                            AND first_seen_at >= utc_day_start(%s::date - 6)""", today)
        assert one(cur, "SELECT sum(articles) FROM publication_lag WHERE day > %s::date - 7", today) == dated

        # daily_funnel: yesterday's 12 runs of every source, as fetch_log has them
        funnel = {(stage, outcome): n for stage, outcome, n in answer["daily_funnel: yesterday, all sources"]}
        cur.execute("""SELECT outcome, count(*), sum(entries), sum(new) FROM fetch_log
                       WHERE fetched_at >= utc_day_start(%s) AND fetched_at < utc_day_start(%s + 1)
                       GROUP BY 1""", (yesterday, yesterday))
        fetched = {outcome: (n, entries, new) for outcome, n, entries, new in cur.fetchall()}
        assert sum(n for (stage, _), n in funnel.items() if stage == "fetch") == 24 // scale.RUN_HOURS * FEEDS
        assert {o: n for (stage, o), n in funnel.items() if stage == "fetch"} == {o: f[0] for o, f in fetched.items()}
        assert funnel["parse", "entries"] == sum(f[1] for f in fetched.values())
        assert funnel["load", "new"] == sum(f[2] for f in fetched.values()) == 3 * fetched["ok"][0]

        # run_history: the latest runs, newest first
        history = answer["run_history: last 20 runs"]
        assert [row[0] for row in history] == [f"bench-{r}" for r in range(RUNS - 1, RUNS - 21, -1)]

        # article_lineage: the article's own run and fetch, and its body while archived
        (lineage,) = answer["article_lineage: one article"]
        cur.execute("""SELECT id, content_run_id, content_fetch_id, feed_id FROM articles
                       WHERE id = (SELECT max(id) - 200 FROM articles)""")
        article_id, run_id, fetch_id, feed_id = cur.fetchone()
        assert run_id is not None and fetch_id is not None
        assert lineage[:2] == (article_id, 1) and lineage[2] is True
        assert (lineage[5], lineage[9], lineage[10], lineage[11]) == (run_id, fetch_id, run_id, feed_id)
        assert lineage[17] == (lineage[14] == "ok")  # body_archived: the ok fetches of the last day
