-- 016: analytics views (README, "The output tables": analytics). Days are UTC days (015's utc_day).
--
-- Each view is a grid of days (and sources) with the numbers of each cell looked up by
-- index: a query that names its days (and sources) costs what it asks for, not the whole
-- table; a view that aggregated everything first would read every article per query.
-- Filter them by `day` (and `feed_id`). New here, not in sql/views/: a later change is a
-- new migration with CREATE OR REPLACE.

-- Every UTC day from the first article (published or first seen) to the last or today,
-- whichever is later: the days the article views are zero-filled over. The first-seen
-- bounds come per source (articles_feed_first_seen answers each in one index probe).
--
-- A function (PL/pgSQL, so never inlined) for its ROWS: the planner cannot see how many
-- days a grid holds, guesses 1,000 and a third of them after a filter on the day, and
-- multiplies that by the sources: past jit_above_cost, a query of 5 ms then spends 0.3 s
-- compiling itself (JIT). The views' queries name a few days; ROWS says so.
CREATE FUNCTION article_days() RETURNS SETOF date
LANGUAGE plpgsql STABLE ROWS 7 AS $$
BEGIN
    RETURN QUERY
    SELECT g.day::date
    FROM (SELECT least(utc_day(min(published_at)),
                       (SELECT min(m.lo) FROM feeds f CROSS JOIN LATERAL (
                            SELECT utc_day(min(a.first_seen_at)) AS lo FROM articles a WHERE a.feed_id = f.id) m)) AS lo,
                 greatest(utc_day(max(published_at)), utc_day(now()),
                          (SELECT max(m.hi) FROM feeds f CROSS JOIN LATERAL (
                               SELECT utc_day(max(a.first_seen_at)) AS hi FROM articles a WHERE a.feed_id = f.id) m)) AS hi
          FROM articles) b,
         generate_series(b.lo::timestamp, b.hi::timestamp, interval '1 day') AS g(day);
END
$$;

-- The same for fetches: every UTC day from the first fetch to the last or today.
CREATE FUNCTION fetch_days() RETURNS SETOF date
LANGUAGE plpgsql STABLE ROWS 7 AS $$
BEGIN
    RETURN QUERY
    SELECT g.day::date
    FROM (SELECT utc_day(min(fetched_at)) AS lo, greatest(utc_day(max(fetched_at)), utc_day(now())) AS hi
          FROM fetch_log) b,
         generate_series(b.lo::timestamp, b.hi::timestamp, interval '1 day') AS g(day);
END
$$;

-- Stories per day per source, by published date and by first-seen date, zero-filled: one
-- row per day and source (every source, unsubscribed ones too: their history counts).
CREATE OR REPLACE VIEW stories_per_day AS
SELECT d.day, f.id AS feed_id, coalesce(f.title, f.url) AS feed,
       (SELECT count(*) FROM articles a
        WHERE a.feed_id = f.id AND a.published_at >= utc_day_start(d.day)
          AND a.published_at < utc_day_start(d.day + 1)) AS by_published,
       (SELECT count(*) FROM articles a
        WHERE a.feed_id = f.id AND a.first_seen_at >= utc_day_start(d.day)
          AND a.first_seen_at < utc_day_start(d.day + 1)) AS by_first_seen
FROM article_days() AS d(day) CROSS JOIN feeds f;

-- Source health against the source's own baseline, as Media Cloud does: each subscribed
-- source's articles first seen that day, beside the median of its daily counts over the
-- previous 28 days (zero-filled: a silent day counts 0). Flagged when the day's count is
-- below half that median. The first-seen date measures what was collected (a source that
-- stops, or a feed that breaks, shows the same day); a day is complete only once it is
-- over, so today's row compares a partial day. A median of 0 (a source silent more than
-- half the days, or new) flags nothing. A weekly rhythm is not modelled: a source silent
-- at weekends has a weekday's median and is flagged on Saturdays and Sundays.
CREATE OR REPLACE VIEW source_health AS
SELECT d.day, f.id AS feed_id, coalesce(f.title, f.url) AS feed, n.articles, b.baseline,
       round((n.articles / nullif(b.baseline, 0))::numeric, 2) AS ratio,
       b.baseline > 0 AND n.articles < b.baseline / 2 AS flagged
FROM article_days() AS d(day)
CROSS JOIN feeds f
CROSS JOIN LATERAL (
    SELECT count(*) AS articles FROM articles a
    WHERE a.feed_id = f.id AND a.first_seen_at >= utc_day_start(d.day)
      AND a.first_seen_at < utc_day_start(d.day + 1)) n
CROSS JOIN LATERAL (
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY coalesce(c.n, 0)) AS baseline
    FROM generate_series(1, 28) AS k
    LEFT JOIN (SELECT utc_day(a.first_seen_at) AS day, count(*) AS n FROM articles a
               WHERE a.feed_id = f.id AND a.first_seen_at >= utc_day_start(d.day - 28)
                 AND a.first_seen_at < utc_day_start(d.day)
               GROUP BY 1) c ON c.day = d.day - k) b
WHERE f.removed_at IS NULL;

-- Publication lag per source: first seen minus published, over the articles first seen
-- that day (sources and days with none are left out). Undated articles (published_source
-- 'fetched': their date is the fetch time) have no lag to measure and are not counted.
-- A negative lag is a published time after the article was seen (a clock ahead). For a
-- period, `sum(lag_mean * articles) / sum(articles)` is the period's mean.
CREATE OR REPLACE VIEW publication_lag AS
SELECT d.day, f.id AS feed_id, coalesce(f.title, f.url) AS feed, x.articles,
       x.lag_median, x.lag_p90, x.lag_mean, x.lag_max
FROM article_days() AS d(day)
CROSS JOIN feeds f
CROSS JOIN LATERAL (
    SELECT count(*) AS articles,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY a.first_seen_at - a.published_at) AS lag_median,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY a.first_seen_at - a.published_at) AS lag_p90,
           avg(a.first_seen_at - a.published_at) AS lag_mean,
           max(a.first_seen_at - a.published_at) AS lag_max
    FROM articles a
    WHERE a.feed_id = f.id AND a.first_seen_at >= utc_day_start(d.day)
      AND a.first_seen_at < utc_day_start(d.day + 1) AND a.published_source <> 'fetched') x
WHERE x.articles > 0;

-- Top domains: the domains of the articles' canonical URLs (url_domain: no `www.`) per
-- published day, with how many sources carried them and their rank that day (1: most
-- articles). Over several days, `sum(articles)` ranks them; `sources` does not add up.
CREATE OR REPLACE VIEW top_domains AS
SELECT d.day, x.domain, x.articles, x.sources,
       rank() OVER (PARTITION BY d.day ORDER BY x.articles DESC) AS rank
FROM article_days() AS d(day)
CROSS JOIN LATERAL (
    SELECT url_domain(a.canonical_url) AS domain, count(*) AS articles,
           count(DISTINCT a.feed_id) AS sources
    FROM articles a
    WHERE a.published_at >= utc_day_start(d.day) AND a.published_at < utc_day_start(d.day + 1)
    GROUP BY 1) x;

-- The daily funnel: per day of fetch and source, how many fetches ended how (stage
-- 'fetch': ok, not_modified, error, disabled; real fetches only, not a replay's or a
-- release's record), the entries their bodies gave (stage 'parse': 'entries', and
-- 'over_cap' cut by FETCH_MAX_ENTRIES) and what the load made of them (stage 'load': new,
-- updated, duplicate, quarantined). Each source fetched that day has every parse and
-- load row, 0 included.
CREATE OR REPLACE VIEW daily_funnel AS
SELECT d.day, x.feed_id, coalesce(f.title, f.url) AS feed, x.stage, x.outcome, x.count
FROM fetch_days() AS d(day)
CROSS JOIN LATERAL (
    SELECT l.feed_id, s.stage, s.outcome, sum(s.n)::bigint AS count
    FROM fetch_log l
    LEFT JOIN ingest_runs r ON r.run_id = l.run_id
    CROSS JOIN LATERAL (VALUES
        ('fetch', l.outcome, CASE WHEN coalesce(r.kind, 'fetch') = 'fetch' THEN 1 END),
        ('parse', 'entries', l.entries), ('parse', 'over_cap', l.entries_dropped),
        ('load', 'new', l.new), ('load', 'updated', l.updated),
        ('load', 'duplicate', l.duplicates), ('load', 'quarantined', l.quarantined)
    ) AS s(stage, outcome, n)
    WHERE l.fetched_at >= utc_day_start(d.day) AND l.fetched_at < utc_day_start(d.day + 1)
    GROUP BY 1, 2, 3
    HAVING count(s.n) > 0) x
JOIN feeds f ON f.id = x.feed_id;

-- Lineage: each version of each article (the current one, and those article_versions
-- kept) with the run that produced it, the fetch whose body held it, and that body in
-- the archive (`body_archived` false once retention pruned it). Ask it by article_id.
CREATE OR REPLACE VIEW article_lineage AS
SELECT v.article_id, v.version, v.current, v.title, v.content_hash,
       v.run_id, r.kind AS run_kind, r.started_at AS run_started_at, r.status AS run_status,
       v.fetch_id, l.run_id AS fetch_run_id, l.feed_id, l.url AS fetch_url, l.fetched_at,
       l.outcome AS fetch_outcome, l.status AS http_status, l.body_hash,
       b.body_hash IS NOT NULL AS body_archived, b.size AS body_size, b.content_type AS body_content_type
FROM (SELECT id AS article_id, version, true AS current, title, content_hash,
             content_run_id AS run_id, content_fetch_id AS fetch_id
      FROM articles
      UNION ALL
      SELECT article_id, version, false, title, content_hash, content_run_id, content_fetch_id
      FROM article_versions) v
LEFT JOIN ingest_runs r ON r.run_id = v.run_id
LEFT JOIN fetch_log l ON l.id = v.fetch_id
LEFT JOIN raw_bodies b ON b.body_hash = l.body_hash;

-- Attention over time for a search: per published day from `first_day` to `last_day`,
-- the articles matching `query` over all articles (zero-filled; share NULL on a day
-- without articles), optionally of some sources only. A function, as the query is a
-- parameter: SELECT * FROM search_attention(websearch_to_tsquery('english', 'flood'),
-- '2026-11-01', '2026-11-30'). Each day's total is counted in the published-time index;
-- the matches come from one search of the GIN index. Without JIT (`SET`, which also keeps
-- the function from being inlined into the caller's query): its plan's cost guess crosses
-- jit_above_cost, and compiling took 0.9 s of a 0.25 s query at a million articles.
CREATE FUNCTION search_attention(query tsquery, first_day date, last_day date,
                                 feed_ids bigint[] DEFAULT NULL)
RETURNS TABLE (day date, matching bigint, total bigint, share double precision)
LANGUAGE sql STABLE SET jit = off AS $$
    SELECT d.day, coalesce(m.n, 0), t.n, coalesce(m.n, 0)::double precision / nullif(t.n, 0)
    FROM (SELECT g.day::date AS day
          FROM generate_series(first_day::timestamp, last_day::timestamp, interval '1 day') AS g(day)) d
    CROSS JOIN LATERAL (  -- two lookups, so that all sources count in the index alone
        SELECT CASE WHEN feed_ids IS NULL
                    THEN (SELECT count(*) FROM articles a
                          WHERE a.published_at >= utc_day_start(d.day) AND a.published_at < utc_day_start(d.day + 1))
                    ELSE (SELECT count(*) FROM articles a
                          WHERE a.feed_id = ANY (feed_ids)
                            AND a.published_at >= utc_day_start(d.day) AND a.published_at < utc_day_start(d.day + 1))
               END AS n) t
    LEFT JOIN (
        SELECT utc_day(a.published_at) AS day, count(*) AS n FROM articles a
        WHERE a.search @@ query
          AND a.published_at >= utc_day_start(first_day) AND a.published_at < utc_day_start(last_day + 1)
          AND (feed_ids IS NULL OR a.feed_id = ANY (feed_ids))
        GROUP BY 1) m ON m.day = d.day
    ORDER BY d.day
$$;
