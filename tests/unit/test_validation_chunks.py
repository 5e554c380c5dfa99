"""A large batch is validated in chunks of whole feeds, one suite run each; the run records
one result, merged from the chunks' (`validate.merged`). It must say what one run over the
whole batch says."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from pipeline import validate
from pipeline.expectations import ROWS_SUITE
from pipeline.records import PlannedRow

PARAMETERS = {"latest_published": time.time() + 86_400, "max_title_chars": 1000, "max_entries": 500,
              "max_undated_share": 0.5, "feed_fail_ratio": 0.9}
NOW = datetime.now(UTC)


def row(feed: int, seq: int, url: str | None = None, key: str | None = None, title: str = "A title",
        language: str | None = "en", published: datetime = NOW) -> PlannedRow:
    return PlannedRow(feed, seq, key or f"v1:guid:{feed}:{seq}", url or f"https://news.example/{feed}/{seq}",
                      title, published, language, 20)


ROWS = [
    row(1, 0), row(1, 1, url="javascript:void(0)"), row(1, 2, language=None),
    row(2, 0, key="same"), row(2, 1, key="same"), row(2, 2, title="x" * 1200),
    row(3, 0, published=NOW + timedelta(days=30)), row(3, 1, language="zz"), row(3, 2),
]


@pytest.fixture(scope="module")
def validator(tmp_path_factory):
    return validate.Validator(tmp_path_factory.mktemp("gx"))


def _summary(outcome):
    return (outcome.success, outcome.element_count,
            [(e.expectation, e.column, e.success, e.element_count, e.unexpected_count,
              round(e.unexpected_percent or 0, 6), e.observed) for e in outcome.expectations])


def test_chunk_outcomes_merged_are_the_whole_batchs_outcome(validator):
    whole = validator.run(ROWS_SUITE, "whole", PARAMETERS, validate.article_frame(ROWS))
    chunks = [ROWS[:3], ROWS[3:6], ROWS[6:]]
    outcomes = [validator.run(ROWS_SUITE, "chunked", PARAMETERS, validate.article_frame(c)) for c in chunks]
    merged = validate.merged(outcomes)
    assert not whole.success and sum(not e.success for e in whole.expectations) >= 4  # the rows bite
    assert _summary(merged) == _summary(whole)
    assert merged.statistics == whole.statistics
    failed_rows = {(c[i].feed_id, c[i].seq) for c, o in zip(chunks, outcomes, strict=True) for i in o.failures}
    assert failed_rows == {(ROWS[i].feed_id, ROWS[i].seq) for i in whole.failures}
    assert merged.data_docs == outcomes[0].data_docs  # the first failing chunk's page


def test_a_batch_of_one_chunk_is_its_own_outcome(validator):
    only = validator.run(ROWS_SUITE, "one", PARAMETERS, validate.article_frame(ROWS[:3]))
    assert validate.merged([only]) is only


def test_the_decider_hands_over_chunks_without_waiting_for_a_slow_validator(monkeypatch, tmp_path):
    """While the validation child still starts Great Expectations, the decider goes on:
    up to `IN_FLIGHT` chunks are handed over before it waits for the oldest verdict; the
    verdicts are then applied in the order the chunks were handed over."""
    from pipeline import plan_decider
    from pipeline.config import Settings

    awaited: list[int] = []

    class SlowValidator:
        def run_soon(self, suite, run_name, parameters, rows):
            def outcome():
                awaited.append(rows[0].feed_id)
                failures = {i: [validate.Failure("expect_x", "title", r.title)]
                            for i, r in enumerate(rows) if r.title == "bad"}
                return validate.SuiteOutcome(suite, not failures, {}, (), len(rows), None, failures)
            return outcome

    monkeypatch.setattr(validate, "validator", lambda project_dir: SlowValidator())
    checks = plan_decider.RowChecks(Settings.from_env(data_dir=tmp_path), "r", NOW)
    assert checks.IN_FLIGHT > 1  # more than the one chunk the decider works on
    for feed in range(1, checks.IN_FLIGHT + 1):
        checks.check(lambda feed=feed: [row(feed, 0), row(feed, 1, title="bad")])
    assert awaited == []  # nothing waited for yet
    checks.check(lambda: [row(9, 0)])
    assert awaited == [1]  # room made for the next chunk: the oldest judged first
    checks.judged()
    assert awaited == [*range(1, checks.IN_FLIGHT + 1), 9]
    assert checks.validated == 2 * checks.IN_FLIGHT + 1
    assert sorted(checks.reasons) == [(feed, 1) for feed in range(1, checks.IN_FLIGHT + 1)]


_FRESH_VALIDATOR = """
import sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from pipeline import validate
from pipeline.expectations import ROWS_SUITE
from tests.unit.test_validation_chunks import PARAMETERS, ROWS
outcome = validate.Validator(Path(tempfile.mkdtemp())).run_rows(ROWS_SUITE, "fresh", PARAMETERS, ROWS)
ran = "scipy.stats._stats_py" in sys.modules
import scipy.stats
print(sorted(outcome.failures), ran, scipy.stats.norm.cdf(0.0))
"""


def test_gx_validates_in_a_fresh_process_without_running_scipy_stats(validator):
    """Great Expectations imports scipy.stats for distribution expectations the suites do
    not use; the validator defers it (a third of GX's start-up, which the load waits for).
    The suites' verdicts are the same, and scipy.stats still works when something uses it."""
    import subprocess
    import sys

    from pipeline.config import PROJECT_ROOT

    done = subprocess.run([sys.executable, "-c", _FRESH_VALIDATOR, str(PROJECT_ROOT)], capture_output=True,
                          text=True, timeout=300, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    here = validator.run(ROWS_SUITE, "here", PARAMETERS, validate.article_frame(ROWS))
    assert done.stdout.split("]")[0] + "]" == str(sorted(here.failures))
    assert done.stdout.split("]")[1].split() == ["False", "0.5"]
