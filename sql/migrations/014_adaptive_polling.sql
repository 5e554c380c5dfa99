-- Adaptive polling: each feed's interval follows its publication rate (pipeline.polling_policy);
-- a fetch that shares no entry with what is stored from its feed is a possible gap; hot
-- feeds (interval under HOT_FEED_INTERVAL) are polled by the hot lane between main runs;
-- a run that cannot take every due feed says how many it deferred.
ALTER TABLE feeds
    ADD COLUMN publish_rate    double precision,               -- entries per hour, smoothed (NULL: not known)
    ADD COLUMN window_size     integer,                        -- entries served at the last loaded fetch
    ADD COLUMN poll_interval_s integer,                        -- the interval the rate asks for
    ADD COLUMN hot             boolean NOT NULL DEFAULT false, -- poll_interval_s < HOT_FEED_INTERVAL
    ADD COLUMN gaps            integer NOT NULL DEFAULT 0;     -- possible gaps seen, all time

ALTER TABLE fetch_log
    ADD COLUMN possible_gap    boolean NOT NULL DEFAULT false, -- every entry new, feed fetched before
    ADD COLUMN publish_rate    double precision,               -- the feed's rate after this fetch
    ADD COLUMN window_size     integer,                        -- entries it served (or, on 304, before)
    ADD COLUMN poll_interval_s integer;                        -- and the interval it asked for

ALTER TABLE ingest_runs
    ADD COLUMN lane     text    NOT NULL DEFAULT 'all',  -- 'all': every due feed; 'hot': hot feeds only
    ADD COLUMN deferred integer NOT NULL DEFAULT 0;      -- due feeds left to the next run (RUN_MAX_FEEDS)

CREATE INDEX feeds_hot_next_check ON feeds (next_check_at) WHERE hot AND enabled AND removed_at IS NULL;
CREATE INDEX fetch_log_gaps ON fetch_log (feed_id, fetched_at) WHERE possible_gap;
