"""The raw archive and replay: history reprocessed with no network, idempotently."""

import uuid
import zlib
from datetime import datetime, timedelta, timezone

from pipeline import body_codec, local_runner, maintenance, tasks
from pipeline.demo import demo_feed_list, serve_demo
from pipeline.feedlist import parse_feed_list
from tests.helpers import query, scalar

YESTERDAY = datetime.now(timezone.utc) - timedelta(days=1)


def ingest_demo(db_url, settings):
    server = serve_demo(0)
    try:
        summary = local_runner.ingest(db_url, settings, parse_feed_list(demo_feed_list(server)),
                                f"t-{uuid.uuid4().hex[:6]}", force=True)
    finally:
        server.stop()  # replay must not need it
    return summary


def test_every_fetched_body_is_archived_once_compressed_with_its_headers(db_url, settings):
    ingest_demo(db_url, settings)
    rows = query(db_url, "SELECT body, size FROM raw_bodies")
    assert len(rows) == 3
    for body, size in rows:
        assert len(body_codec.decompress(body)) == size and len(bytes(body)) < size
    headers = scalar(db_url, "SELECT headers FROM fetch_log WHERE body_hash IS NOT NULL LIMIT 1")
    assert "etag" in headers and "content-type" in headers


def test_replay_restores_lost_articles_without_network_and_is_idempotent(db_url, settings):
    ingest_demo(db_url, settings)
    before = query(db_url, "SELECT canonical_url, content_hash FROM articles ORDER BY canonical_url")
    fetch_state = query(db_url, "SELECT id, last_fetched_at, etag FROM feeds ORDER BY id")
    # Simulate a stage that once mishandled a feed's entries: they are missing.
    query(db_url, "DELETE FROM articles WHERE canonical_url LIKE 'https://northernledger%%' RETURNING id")
    assert scalar(db_url, "SELECT count(*) FROM articles") == len(before) - 3

    first = maintenance.replay(db_url, settings, YESTERDAY)
    assert first["bodies"] == 3 and first["totals"]["new"] == 3
    assert query(db_url, "SELECT canonical_url, content_hash FROM articles ORDER BY canonical_url") == before
    second = maintenance.replay(db_url, settings, YESTERDAY)
    assert second["totals"]["new"] == 0 and second["totals"]["entries"] == 11
    assert second["totals"]["entries"] == (second["totals"]["duplicates"] + second["totals"]["quarantined"])
    assert query(db_url, "SELECT id, last_fetched_at, etag FROM feeds ORDER BY id") == fetch_state


def test_bodies_archived_with_zlib_before_zstandard_still_replay(db_url, settings):
    ingest_demo(db_url, settings)
    before = query(db_url, "SELECT canonical_url, content_hash FROM articles ORDER BY canonical_url")
    for body_hash, body in query(db_url, "SELECT body_hash, body FROM raw_bodies"):
        assert bytes(body)[:4] == b"\x28\xb5\x2f\xfd"  # a Zstandard frame
        query(db_url, "UPDATE raw_bodies SET body = %s WHERE body_hash = %s RETURNING 1",
              (zlib.compress(body_codec.decompress(body), 6), body_hash))  # as archived before
    query(db_url, "DELETE FROM articles RETURNING id")

    replayed = maintenance.replay(db_url, settings, YESTERDAY)
    assert replayed["bodies"] == 3 and replayed["totals"]["new"] == len(before)
    assert query(db_url, "SELECT canonical_url, content_hash FROM articles ORDER BY canonical_url") == before


def test_replay_since_a_later_date_replays_nothing(db_url, settings):
    ingest_demo(db_url, settings)
    result = maintenance.replay(db_url, settings, datetime.now(timezone.utc) + timedelta(minutes=1))
    assert result["bodies"] == 0 and result["runs"] == 0


def test_retention_prunes_old_bodies(db_url, settings):
    ingest_demo(db_url, settings)
    query(db_url, "UPDATE raw_bodies SET last_fetched_at = now() - interval '90 days' RETURNING 1")
    tasks.prepare_run(db_url, settings, "prune-run", [], datetime.now(timezone.utc))
    assert scalar(db_url, "SELECT count(*) FROM raw_bodies") == 0
    assert maintenance.replay(db_url, settings, YESTERDAY)["bodies"] == 0
