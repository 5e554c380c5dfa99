-- 007: per-feed identity rules (broken GUIDs) and where each published date came from.

-- The rule each feed's identity keys follow (pipeline/identity.py), chosen from how its
-- GUIDs behave (pipeline/feed_identity.py), with why and since when.
ALTER TABLE feeds
    ADD COLUMN identity_rule            text NOT NULL DEFAULT 'guid'
        CHECK (identity_rule IN ('guid', 'link', 'link_date', 'title_hash')),
    ADD COLUMN identity_rule_reason     text,
    ADD COLUMN identity_rule_changed_at timestamptz;

-- Every change of a feed's identity rule, for the record.
CREATE TABLE feed_identity_changes (
    id         bigserial PRIMARY KEY,
    feed_id    bigint      NOT NULL REFERENCES feeds ON DELETE CASCADE,
    run_id     text        NOT NULL,
    old_rule   text        NOT NULL,
    new_rule   text        NOT NULL,
    reason     text        NOT NULL,
    changed_at timestamptz NOT NULL
);
CREATE INDEX feed_identity_changes_feed ON feed_identity_changes (feed_id, changed_at DESC);

-- The date policy (pipeline/dates.py): the published date as the feed wrote it, and why
-- a date field was passed over (missing, unparseable, before 1995, in the future).
ALTER TABLE articles
    ADD COLUMN published_raw text,
    ADD COLUMN date_issue    text;
