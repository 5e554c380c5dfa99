-- 005: near-duplicate story clusters (MinHash + LSH, see pipeline/neardup.py).

-- Each article's MinHash signature (64 x uint32), for scoring candidates.
CREATE TABLE article_signatures (
    article_id bigint PRIMARY KEY REFERENCES articles ON DELETE CASCADE,
    signature  bytea  NOT NULL
);

-- LSH band keys: articles sharing a (band, bucket) are candidates. The primary key is
-- the lookup index, so finding candidates costs the same at 10k or 10M articles.
CREATE TABLE article_bands (
    band       smallint NOT NULL,
    bucket     bigint   NOT NULL,
    article_id bigint   NOT NULL REFERENCES articles ON DELETE CASCADE,
    PRIMARY KEY (band, bucket, article_id)
);
CREATE INDEX article_bands_article ON article_bands (article_id);

-- Cluster membership: each clustered article, its cluster (named by its first article),
-- the similarity score that linked it and the rule ('seed' for the first article).
CREATE TABLE article_clusters (
    article_id bigint      PRIMARY KEY REFERENCES articles ON DELETE CASCADE,
    cluster_id bigint      NOT NULL,
    score      real        NOT NULL,
    rule       text        NOT NULL,
    linked_at  timestamptz NOT NULL
);
CREATE INDEX article_clusters_cluster ON article_clusters (cluster_id);
