"""The CLI's run starts Great Expectations in a child process at the shards' tail, once a
worker has no shard left (so GX's start-up runs on that idle core, not in the load), and
the child ends with the run however the run ends."""

from __future__ import annotations

import multiprocessing

import pytest

from pipeline import local_runner, validate
from pipeline.demo import demo_feed_list, serve_demo
from pipeline.feedlist import parse_feed_list


def _ingest(db_url, settings, run_id, on_shard):
    server = serve_demo(0)
    try:
        return local_runner.ingest(db_url, settings, parse_feed_list(demo_feed_list(server)), run_id,
                                   on_shard=on_shard, validation_child=True)
    finally:
        server.stop()


def test_validation_starts_when_a_worker_is_idle_and_ends_with_the_run(db_url, settings, tmp_path):
    settings = settings.replace(shard_size=1, workers=2, data_dir=tmp_path)  # 3 shards, 2 workers
    gx_dir = tmp_path / "gx"
    started = []
    summary = _ingest(db_url, settings, "t-tail", lambda _: started.append(
        isinstance(validate._validators.get(gx_dir), validate.ValidatorProcess)))
    assert started == [False, False, True]  # after the 2nd shard only one was left for 2 workers
    assert summary["status"] == "ok" and summary["totals"]["new"] > 0
    assert gx_dir not in validate._validators and not multiprocessing.active_children()


def test_a_run_whose_shards_fail_after_the_start_ends_the_validation_process(db_url, settings, tmp_path):
    settings = settings.replace(shard_size=1, workers=2, data_dir=tmp_path)
    gx_dir = tmp_path / "gx"
    started = []

    def fail_at_the_last(_):
        started.append(isinstance(validate._validators.get(gx_dir), validate.ValidatorProcess))
        if len(started) == 3:
            raise RuntimeError("the run stops")

    with pytest.raises(RuntimeError, match="the run stops"):
        _ingest(db_url, settings, "t-tail-fails", fail_at_the_last)
    assert started == [False, False, True]
    assert gx_dir not in validate._validators and not multiprocessing.active_children()
