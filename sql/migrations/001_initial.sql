-- 001: the news schema. Forward-only: never edit an applied migration, add a new one.

-- Feeds and their fetch state. The URL is the feed's identity.
CREATE TABLE feeds (
    id                 bigserial PRIMARY KEY,
    url                text        NOT NULL UNIQUE,
    title              text,
    enabled            boolean     NOT NULL DEFAULT true,
    disabled_reason    text,
    -- HTTP validators for conditional GET; advanced only when a run's load commits,
    -- so a run that fails after fetching re-fetches next time instead of losing entries.
    etag               text,
    last_modified      text,
    last_fetched_at    timestamptz,
    last_success_at    timestamptz,
    last_status        integer,
    last_error_kind    text,
    last_error         text,
    consecutive_errors integer     NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- One row per ingest run (a DAG run or a CLI invocation).
CREATE TABLE ingest_runs (
    run_id      text PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    validated_at     timestamptz,     -- set when every entry has its final decision
    validation_error text,            -- set when the quarantined share passed the fail level
    loaded_at   timestamptz,          -- set in the load transaction: a retried load is a no-op
    finished_at timestamptz,
    status      text        NOT NULL DEFAULT 'running',
    feed_count  integer     NOT NULL DEFAULT 0,
    shards      integer     NOT NULL DEFAULT 1,
    counts      jsonb,
    summary     jsonb
);

-- Which feeds a run covers, and the fetch shard (mapped task) each belongs to.
CREATE TABLE run_feeds (
    run_id  text    NOT NULL REFERENCES ingest_runs ON DELETE CASCADE,
    feed_id bigint  NOT NULL REFERENCES feeds ON DELETE CASCADE,
    shard   integer NOT NULL,
    PRIMARY KEY (run_id, feed_id)
);
CREATE INDEX run_feeds_shard ON run_feeds (run_id, shard);

-- Every fetch of every feed: the per-feed outcome of a run, kept as history.
CREATE TABLE fetch_log (
    id           bigserial PRIMARY KEY,
    run_id       text        NOT NULL,
    feed_id      bigint      NOT NULL REFERENCES feeds ON DELETE CASCADE,
    url          text        NOT NULL,
    fetched_at   timestamptz NOT NULL,
    outcome      text        NOT NULL CHECK (outcome IN ('ok', 'not_modified', 'error', 'disabled')),
    status       integer,
    error_kind   text,
    error        text,
    duration_ms  integer     NOT NULL DEFAULT 0,
    bytes        integer     NOT NULL DEFAULT 0,
    final_url    text,
    entries      integer     NOT NULL DEFAULT 0,
    new          integer     NOT NULL DEFAULT 0,
    updated      integer     NOT NULL DEFAULT 0,
    duplicates   integer     NOT NULL DEFAULT 0,
    quarantined  integer     NOT NULL DEFAULT 0,
    UNIQUE (run_id, feed_id)
);
CREATE INDEX fetch_log_feed_time ON fetch_log (feed_id, fetched_at DESC);

-- Staging between stages (the DAG's tasks hand off through these, by run id).
-- UNLOGGED: rebuilt by re-running the run, so WAL would be wasted work.
CREATE UNLOGGED TABLE staged_fetches (
    run_id        text   NOT NULL,
    feed_id       bigint NOT NULL,
    body          bytea  NOT NULL,
    content_type  text,
    etag          text,
    last_modified text,
    final_url     text,
    fetched_at    timestamptz NOT NULL,
    PRIMARY KEY (run_id, feed_id)
);

CREATE UNLOGGED TABLE staged_entries (
    run_id             text    NOT NULL,
    feed_id            bigint  NOT NULL,
    seq                integer NOT NULL,
    raw                jsonb   NOT NULL,   -- the entry as the parser yielded it
    fetched_at         timestamptz NOT NULL,
    feed_language      text,
    feed_link          text,
    article            jsonb,              -- the normalized article
    decision           text CHECK (decision IN ('new', 'update', 'duplicate', 'quarantined')),
    rule               text,
    matched_article_id bigint,
    matched_url        text,
    reasons            jsonb,              -- failed expectations, for quarantined rows
    PRIMARY KEY (run_id, feed_id, seq)
);

-- The articles: one row per distinct article.
CREATE TABLE articles (
    id               bigserial PRIMARY KEY,
    feed_id          bigint      NOT NULL REFERENCES feeds,
    guid             text,
    identity_key     text        NOT NULL,  -- see pipeline/identity.py (versioned)
    canonical_url    text        NOT NULL,
    title            text        NOT NULL DEFAULT '',
    text             text        NOT NULL DEFAULT '',
    html             text        NOT NULL DEFAULT '',
    published_at     timestamptz NOT NULL,
    published_source text        NOT NULL,  -- published | updated | created | fetched (date was missing)
    authors          text[]      NOT NULL DEFAULT '{}',
    tags             text[]      NOT NULL DEFAULT '{}',
    language         text,
    content_hash     text        NOT NULL,
    version          integer     NOT NULL DEFAULT 1,
    first_seen_at    timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    first_run_id     text,
    search           tsvector GENERATED ALWAYS AS (
                         to_tsvector('simple'::regconfig, coalesce(title, '') || ' ' || coalesce(text, ''))
                     ) STORED,
    CONSTRAINT articles_canonical_url_key UNIQUE (canonical_url),
    CONSTRAINT articles_feed_identity_key UNIQUE (feed_id, identity_key)
);
CREATE INDEX articles_published_at ON articles (published_at DESC);
CREATE INDEX articles_feed_published ON articles (feed_id, published_at DESC);
CREATE INDEX articles_content_hash ON articles (content_hash);
CREATE INDEX articles_search ON articles USING gin (search);

-- Exact duplicates, one row per distinct (entry, rule, matched article); a
-- duplicate re-served on every fetch bumps times_seen instead of adding rows.
CREATE TABLE duplicates (
    id                 bigserial PRIMARY KEY,
    dup_key            text        NOT NULL UNIQUE,
    feed_id            bigint      NOT NULL REFERENCES feeds ON DELETE CASCADE,
    guid               text,
    canonical_url      text,
    content_hash       text,
    rule               text        NOT NULL CHECK (rule IN ('feed_guid', 'canonical_url', 'content_hash')),
    matched_article_id bigint      REFERENCES articles ON DELETE SET NULL,
    first_run_id       text        NOT NULL,
    last_run_id        text        NOT NULL,
    first_seen_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at       timestamptz NOT NULL DEFAULT now(),
    times_seen         integer     NOT NULL DEFAULT 1
);
CREATE INDEX duplicates_matched ON duplicates (matched_article_id);

-- Entries that failed validation, with why, waiting to be fixed and released.
CREATE TABLE quarantine (
    id            bigserial PRIMARY KEY,
    entry_key     text        NOT NULL UNIQUE,  -- hash of feed and original entry
    feed_id       bigint      NOT NULL REFERENCES feeds ON DELETE CASCADE,
    run_id        text        NOT NULL,         -- first run that quarantined it
    last_run_id   text        NOT NULL,
    reasons       jsonb       NOT NULL,         -- [{expectation, column, observed}]
    entry         jsonb       NOT NULL,         -- the original entry
    article       jsonb,                        -- the normalized form that failed
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    times_seen    integer     NOT NULL DEFAULT 1,
    released_at   timestamptz
);
CREATE INDEX quarantine_feed ON quarantine (feed_id);
