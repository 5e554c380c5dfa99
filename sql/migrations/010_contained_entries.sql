-- Containment (issue: runs that no bad feed can stop).

-- NUL characters removed from a feed's entries before staging: PostgreSQL's text and
-- jsonb cannot hold them, so they are dropped, and counted here per fetch.
ALTER TABLE fetch_log ADD COLUMN nuls_removed integer NOT NULL DEFAULT 0;

-- The full-text vector reads a bounded prefix of the article: a tsvector holds at most
-- 1 MB, and a crafted body of many distinct short words reaches that from about 200,000
-- characters, which would make the whole load fail. 100,000 characters of text (and the
-- title) is more than any real article needs to be found.
DROP INDEX IF EXISTS articles_search;
ALTER TABLE articles DROP COLUMN search;
ALTER TABLE articles ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('simple'::regconfig,
                left(coalesce(title, ''), 2000) || ' ' || left(coalesce(text, ''), 100000))
) STORED;
CREATE INDEX articles_search ON articles USING gin (search);
