-- 006: article versions. When an article's content changes under the same identity, the
-- current row is updated and the previous content kept here, with what changed.

CREATE TABLE article_versions (
    id            bigserial PRIMARY KEY,
    article_id    bigint      NOT NULL REFERENCES articles ON DELETE CASCADE,
    version       integer     NOT NULL,      -- the version this row preserves
    run_id        text        NOT NULL,      -- the run that replaced it
    changed       text[]      NOT NULL,      -- of: title, body, url, guid
    title         text        NOT NULL,
    text          text        NOT NULL,
    html          text        NOT NULL,
    canonical_url text        NOT NULL,
    guid          text,
    content_hash  text        NOT NULL,
    replaced_at   timestamptz NOT NULL,
    UNIQUE (article_id, version)
);
