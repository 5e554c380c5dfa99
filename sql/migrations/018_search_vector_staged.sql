-- 018: an article's search vector computed by the shard tasks, in parallel, not by the load.
--
-- 015 made `articles.search` a generated column: every insert and content update computed
-- its to_tsvector inside the load, the run's one serial writer (about 1.5 s of a 1,000-feed
-- cold run, a third of its insert). The same function now runs when a shard stages its
-- entries (`staged_entries.search`, by trigger), where shards run side by side, and the
-- load writes the staged vector with the article.
--
-- `search` stays what it was: `article_search(language, title, text)` of the row. A writer
-- that does not give it (an old staged row, a test, a bench filler, a manual fix) gets it
-- from the trigger, on insert and whenever title, text or language change without it.
CREATE FUNCTION article_search(language text, title text, body text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT setweight(to_tsvector(search_config(language), left(coalesce(title, ''), 2000)), 'A')
                 || setweight(to_tsvector(search_config(language), left(coalesce(body, ''), 100000)), 'B') $$;

ALTER TABLE articles ALTER COLUMN search DROP EXPRESSION;  -- the values stay

CREATE FUNCTION articles_search_fill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.search IS NULL OR (TG_OP = 'UPDATE' AND NEW.search IS NOT DISTINCT FROM OLD.search) THEN
        NEW.search := article_search(NEW.language, NEW.title, NEW.text);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER articles_search_fill BEFORE INSERT OR UPDATE OF title, text, language, search
    ON articles FOR EACH ROW EXECUTE FUNCTION articles_search_fill();

-- Staged: computed as each row is written (COPY included), so a shard's staging pays it.
-- An entry whose vector cannot be computed is refused like any row PostgreSQL refuses:
-- staged quarantined with the reason (pipeline/storage/staging.py), the rest go on.
ALTER TABLE staged_entries ADD COLUMN search tsvector;

CREATE FUNCTION staged_search_fill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.article IS NOT NULL AND NEW.search IS NULL THEN
        SELECT article_search(a.language, a.title, a.text) INTO NEW.search
        FROM jsonb_to_record(NEW.article) AS a(language text, title text, text text);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER staged_search_fill BEFORE INSERT ON staged_entries
    FOR EACH ROW EXECUTE FUNCTION staged_search_fill();
