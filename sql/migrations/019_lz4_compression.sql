-- 019: lz4 for the large values each run writes and reads back, where the server has it.
--
-- A cold run writes every entry's raw form, article document and search vector into
-- `staged_entries` (the shards, side by side), reads them back in the load (its one
-- serial writer) and writes each new article's text, HTML and vector into `articles`.
-- Every such value over 2 kB is compressed on write and decompressed on read. pglz, the
-- default, spent 1.25 s of the 2.9 s a server-side COPY of the 1,000-feed corpus's 24,800
-- staged rows took here (without the search trigger); lz4 does it in a fraction of that,
-- and decompresses several times faster, at about the same size (60 against 61 MB).
--
-- Values already stored stay as they are (readable either way); new ones use lz4.
-- A server built without lz4 (`--with-lz4`; the embedded pgserver build is one) refuses
-- the method: there the columns keep pglz, and this migration says so and succeeds.
DO $$
BEGIN
    ALTER TABLE staged_entries ALTER COLUMN raw SET COMPRESSION lz4,
                               ALTER COLUMN article SET COMPRESSION lz4,
                               ALTER COLUMN search SET COMPRESSION lz4;
    ALTER TABLE articles ALTER COLUMN text SET COMPRESSION lz4,
                         ALTER COLUMN html SET COMPRESSION lz4,
                         ALTER COLUMN search SET COMPRESSION lz4;
    ALTER TABLE quarantine ALTER COLUMN entry SET COMPRESSION lz4,
                           ALTER COLUMN article SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE '019: this server has no lz4 compression; pglz kept';
END
$$;
