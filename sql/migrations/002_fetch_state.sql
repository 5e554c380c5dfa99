-- 002: fetching as a good citizen: schedule, redirects, subscriptions, raw archive.

ALTER TABLE feeds
    -- 'list': named by the feed list file; 'cli': added with `feeds add` / `feeds import`.
    ADD COLUMN source         text NOT NULL DEFAULT 'list' CHECK (source IN ('list', 'cli')),
    ADD COLUMN removed_at     timestamptz,       -- unsubscribed (`feeds remove`); articles stay
    ADD COLUMN next_check_at  timestamptz,       -- not fetched before this (NULL: due now)
    ADD COLUMN body_hash      text,              -- sha256 of the last body parsed
    -- A permanent redirect seen on consecutive fetches; the URL moves after enough of them.
    ADD COLUMN redirect_url   text,
    ADD COLUMN redirect_count integer NOT NULL DEFAULT 0;
CREATE INDEX feeds_next_check ON feeds (next_check_at) WHERE enabled AND removed_at IS NULL;

-- Old URLs of feeds that moved (301/308): a feed list naming the old URL still finds the feed.
CREATE TABLE feed_url_history (
    old_url    text PRIMARY KEY,
    feed_id    bigint      NOT NULL REFERENCES feeds ON DELETE CASCADE,
    new_url    text        NOT NULL,
    changed_at timestamptz NOT NULL
);

ALTER TABLE fetch_log
    ADD COLUMN etag               text,
    ADD COLUMN last_modified      text,
    ADD COLUMN body_hash          text,           -- the archived body (raw_bodies)
    ADD COLUMN headers            jsonb,          -- response headers kept with the body
    ADD COLUMN unchanged          boolean NOT NULL DEFAULT false,  -- 200, but the same body as before
    ADD COLUMN permanent_redirect text,
    ADD COLUMN next_check_at      timestamptz,
    ADD COLUMN entries_dropped    integer NOT NULL DEFAULT 0;      -- over the per-feed entry cap
CREATE INDEX fetch_log_archived ON fetch_log (fetched_at) WHERE body_hash IS NOT NULL;

-- Every distinct body fetched, zlib-compressed, once per content hash. Pruned by retention.
CREATE TABLE raw_bodies (
    body_hash        text PRIMARY KEY,
    body             bytea       NOT NULL,
    size             integer     NOT NULL,         -- uncompressed bytes
    content_type     text,
    first_fetched_at timestamptz NOT NULL,
    last_fetched_at  timestamptz NOT NULL
);
CREATE INDEX raw_bodies_last_fetched ON raw_bodies (last_fetched_at);

-- 'fetch': a normal run; 'replay': archived bodies pushed through the stages again.
ALTER TABLE ingest_runs
    ADD COLUMN kind text NOT NULL DEFAULT 'fetch' CHECK (kind IN ('fetch', 'replay')),
    ADD COLUMN not_due integer NOT NULL DEFAULT 0;  -- subscribed feeds skipped: next check later
