-- 019: lz4 for the large values each run writes and reads back, where the server has it.
--
-- A cold run writes every entry's raw form, article document and search vector into
-- `staged_entries` (the shards, side by side), reads them back in the load (its one
-- serial writer) and writes each new article's text, HTML and vector into `articles`.
-- Such values (in a row over about 2 kB) are compressed on write and decompressed on read.
-- A server-side COPY of the 1,000-feed corpus's 24,800 staged rows (without the search
-- trigger) took 2.9 s here with pglz, the default, and 1.7 s with lz4, at about the same
-- size (60 against 61 MB); lz4 is also the faster of the two to decompress.
--
-- Values already stored stay as they are (readable either way); new ones use lz4.
-- A server built without lz4 (`--with-lz4`; the embedded pgserver build is one) refuses
-- the method: there the columns keep pglz, and this migration says so and succeeds (it is
-- not tried again should the data later move to a server with lz4). A dump of a database
-- with lz4 columns restores onto such a server with `pg_dump --no-toast-compression`.
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
