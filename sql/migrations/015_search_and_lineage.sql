-- 015: search that ranks, lineage, and what the analytics views (016) need to stay fast.

-- Days are UTC days everywhere in the analytics: `utc_day` is the day of a time,
-- `utc_day_start` the first instant of a day. Both IMMUTABLE (the zone is a constant), so
-- they fold into index conditions: a day is always asked of an index as a time range.
CREATE FUNCTION utc_day(at timestamptz) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT (at AT TIME ZONE 'UTC')::date $$;

CREATE FUNCTION utc_day_start(day date) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT day::timestamp AT TIME ZONE 'UTC' $$;

-- The host of a URL, lower-cased, without a leading `www.`: the domain of an article.
CREATE FUNCTION url_domain(url text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT regexp_replace(lower(substring(url FROM '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?([^:/?#]+)')),
                          '^www\.', '')
$$;

-- The text-search configuration of an article's language (its ISO 639-1 code, as
-- pipeline/language.py stores it), or `simple` (no stemming, no stop words) where
-- PostgreSQL has none or the language is unknown. Built from the configurations this
-- server has (PostgreSQL 16 added Armenian, Basque, Catalan, Hindi, Serbian and Yiddish),
-- as a CASE of constants: IMMUTABLE for real, so the search vector can be a stored column,
-- and it survives a dump and restore (no table is read). A server upgraded later keeps the
-- mapping it was migrated with; a new migration re-creates it (and the vectors) if wanted.
DO $do$
DECLARE
    cases text;
BEGIN
    SELECT string_agg(format('WHEN %L THEN %L::regconfig', m.code, c.cfgname), ' ' ORDER BY m.code)
    INTO cases
    FROM (VALUES ('ar', 'arabic'), ('ca', 'catalan'), ('da', 'danish'), ('de', 'german'),
                 ('el', 'greek'), ('en', 'english'), ('es', 'spanish'), ('eu', 'basque'),
                 ('fi', 'finnish'), ('fr', 'french'), ('ga', 'irish'), ('hi', 'hindi'),
                 ('hu', 'hungarian'), ('hy', 'armenian'), ('id', 'indonesian'), ('it', 'italian'),
                 ('lt', 'lithuanian'), ('nb', 'norwegian'), ('ne', 'nepali'), ('nl', 'dutch'),
                 ('nn', 'norwegian'), ('no', 'norwegian'), ('pt', 'portuguese'), ('ro', 'romanian'),
                 ('ru', 'russian'), ('sr', 'serbian'), ('sv', 'swedish'), ('ta', 'tamil'),
                 ('tr', 'turkish'), ('yi', 'yiddish')) AS m(code, cfgname)
    JOIN pg_ts_config c ON c.cfgname = m.cfgname AND c.cfgnamespace = 'pg_catalog'::regnamespace;
    EXECUTE format(
        $f$CREATE FUNCTION search_config(language text) RETURNS regconfig
           LANGUAGE sql IMMUTABLE PARALLEL SAFE
           AS $body$ SELECT CASE lower(language) %s ELSE 'simple'::regconfig END $body$$f$,
        coalesce(cases, ''));
END
$do$;

-- Lineage: the run and the fetch that produced each row's content. An article names the
-- run and fetch that first brought it (`first_run_id`, `first_fetch_id`) and those of the
-- content it holds now (`content_run_id`, `content_fetch_id`: the same until an update);
-- a version row names those of the content it preserves (its `run_id` stays the run that
-- replaced it). The fetch is a `fetch_log` row, which leads to the archived body
-- (`raw_bodies` by `body_hash`); not foreign keys, like `first_run_id`: lineage is a
-- record, and pruning the archive or history must not touch the articles.
ALTER TABLE articles
    ADD COLUMN first_fetch_id   bigint,
    ADD COLUMN content_run_id   text,
    ADD COLUMN content_fetch_id bigint;
ALTER TABLE article_versions
    ADD COLUMN content_run_id   text,
    ADD COLUMN content_fetch_id bigint;

-- The fetch whose body held an entry loaded by `run`: the real fetch (not a replay's or a
-- release's record) of the feed at the entry's fetch time, the run's own first. A replay
-- re-reads an archived body and a release re-runs a held entry, so theirs is the original
-- fetch; failing that (its row gone), the run's own row for the feed.
CREATE FUNCTION fetch_of_entry(run text, feed bigint, fetched timestamptz) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(
        (SELECT l.id FROM fetch_log l JOIN ingest_runs r ON r.run_id = l.run_id AND r.kind = 'fetch'
         WHERE l.feed_id = feed AND l.fetched_at = fetched AND l.body_hash IS NOT NULL
         ORDER BY l.run_id = run DESC, l.id LIMIT 1),
        (SELECT l.id FROM fetch_log l WHERE l.run_id = run AND l.feed_id = feed))
$$;

-- The search vector is rebuilt below: dropped first, so the backfill does not compute it.
DROP INDEX IF EXISTS articles_search;
ALTER TABLE articles DROP COLUMN search;

-- Backfill of what the record allows: an article at version 1 holds its first run's
-- content; at version n, the content of the run that replaced version n-1 (NULL when that
-- version was not kept: the cap per feed per run). A fetch is found by run and feed.
UPDATE articles a
SET (first_fetch_id, content_run_id, content_fetch_id) = (
        SELECT (SELECT l.id FROM fetch_log l WHERE l.run_id = a.first_run_id AND l.feed_id = a.feed_id),
               c.run, fetch_of_entry(c.run, a.feed_id, a.fetched_at)
        FROM (SELECT CASE WHEN a.version = 1 THEN a.first_run_id
                          ELSE (SELECT v.run_id FROM article_versions v
                                WHERE v.article_id = a.id AND v.version = a.version - 1) END) AS c(run))
WHERE a.first_run_id IS NOT NULL;

UPDATE article_versions v
SET (content_run_id, content_fetch_id) = (
        SELECT c.run, (SELECT l.id FROM fetch_log l WHERE l.run_id = c.run AND l.feed_id = a.feed_id)
        FROM articles a,
             LATERAL (SELECT CASE WHEN v.version = 1 THEN a.first_run_id
                                  ELSE (SELECT p.run_id FROM article_versions p
                                        WHERE p.article_id = v.article_id AND p.version = v.version - 1)
                             END) AS c(run)
        WHERE a.id = v.article_id);

-- Search that ranks: the title weighted A, the text B (ts_rank scores an A match 1.0 and a
-- B match 0.4), each in its language's configuration, so `websearch_to_tsquery('english',
-- 'flooding')` finds "floods" in an English article. Stored (computed once, at insert or
-- update: the load's rows pay one to_tsvector each, as before), so ranking reads it
-- instead of recomputing it; the same bounded prefixes as 010 (a tsvector holds 1 MB).
-- Adding it rewrites the table and computes it for every existing row.
ALTER TABLE articles ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector(search_config(language), left(coalesce(title, ''), 2000)), 'A')
    || setweight(to_tsvector(search_config(language), left(coalesce(text, ''), 100000)), 'B')
) STORED;
CREATE INDEX articles_search ON articles USING gin (search);

-- For the analytics views: an article's first-seen day per source (stories per day, source
-- health, publication lag ask (feed, time range)), and fetches by time (the daily funnel).
-- Published time per source has articles_feed_published already.
CREATE INDEX articles_feed_first_seen ON articles (feed_id, first_seen_at);
CREATE INDEX fetch_log_fetched_at ON fetch_log (fetched_at);

-- run_history.feeds read `counts ->> 'feeds'`, which nothing wrote: the run's feed counts
-- are now merged into `counts` when the run finishes (storage.finish_run); finished runs
-- get them from their summary.
UPDATE ingest_runs
SET counts = coalesce(counts, '{}'::jsonb) || jsonb_build_object(
        'feeds', (summary -> 'totals' ->> 'feeds')::int,
        'feeds_fetched', (summary -> 'totals' ->> 'fetched')::int,
        'feeds_not_modified', (summary -> 'totals' ->> 'not_modified')::int,
        'feeds_failed', (summary -> 'totals' ->> 'failed')::int,
        'feeds_disabled', (summary -> 'totals' ->> 'disabled')::int)
WHERE summary -> 'totals' ? 'feeds';
