"""The labelled near-duplicate evaluation (bench.syndication) through the real ingest path:
syndicated variants of real articles are linked, distinct stories on the same topic are not;
and the 50 real news feeds ingested together merge no different stories."""

from bench import syndication


def test_syndicated_variants_cluster_and_same_topic_stories_stay_apart(db_url, settings, shared_dir):
    pool = syndication.pool(shared_dir, limit_files=50)
    pairs = syndication.same_topic_pairs(pool, 60)
    assert len(pairs) >= 50
    scores = syndication.evaluate(db_url, settings, pairs, variants_per_story=3)
    print(scores)
    assert scores["articles"] == len(pairs) * 2 * 4
    assert scores["precision"] >= 0.98 and scores["recall"] >= 0.90, scores
    assert scores["same_topic_pairs_merged"] == 0, scores
