-- 004: more of what normalize knows about an article's text.

ALTER TABLE articles
    ADD COLUMN word_count      integer NOT NULL DEFAULT 0,
    -- Where `language` came from: 'entry' or 'feed' (declared), 'detected' (py3langid), NULL (unknown).
    ADD COLUMN language_source text;
