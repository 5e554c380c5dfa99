-- 003: data contracts: validation results in SQL, quarantine release, warnings.

ALTER TABLE ingest_runs DROP CONSTRAINT ingest_runs_kind_check;
ALTER TABLE ingest_runs
    ADD CONSTRAINT ingest_runs_kind_check CHECK (kind IN ('fetch', 'replay', 'release')),
    ADD COLUMN validation_warning text,   -- past the warn level: the run succeeds and says so
    ADD COLUMN data_docs text;            -- Great Expectations Data Docs page of the run

-- What normalize needs to re-run a held entry, and the release that let it through.
ALTER TABLE quarantine
    ADD COLUMN feed_language   text,
    ADD COLUMN feed_link       text,
    ADD COLUMN fetched_at      timestamptz,
    ADD COLUMN released_run_id text;
CREATE INDEX quarantine_held ON quarantine (feed_id) WHERE released_at IS NULL;

-- One row per suite run: quality over time is a query.
CREATE TABLE validation_runs (
    id            bigserial PRIMARY KEY,
    run_id        text        NOT NULL,          -- the ingest run (or the table check's run)
    suite         text        NOT NULL,          -- articles_rows | articles_feeds | articles_table
    success       boolean     NOT NULL,
    evaluated_at  timestamptz NOT NULL,
    element_count integer,
    statistics    jsonb       NOT NULL,          -- GX statistics: evaluated, successful, percent
    data_docs     text,
    UNIQUE (run_id, suite)
);
CREATE INDEX validation_runs_time ON validation_runs (suite, evaluated_at DESC);

-- One row per expectation per suite run.
CREATE TABLE validation_results (
    validation_id      bigint  NOT NULL REFERENCES validation_runs ON DELETE CASCADE,
    expectation        text    NOT NULL,
    column_name        text,
    success            boolean NOT NULL,
    element_count      integer,
    unexpected_count   integer,
    unexpected_percent double precision,
    observed           jsonb,                    -- a sample of unexpected values, or the observed value
    PRIMARY KEY (validation_id, expectation, column_name)
);
