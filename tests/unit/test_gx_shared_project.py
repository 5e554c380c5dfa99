"""Two processes on one Great Expectations project (a CLI run beside a DAG task): each
saves the suites when it starts, so the one that started first finds them changed. Its
validation must still run, and still judge rows, instead of failing the load."""

import time
from datetime import UTC, datetime

from pipeline import validate
from pipeline.expectations import ROWS_SUITE
from pipeline.records import Article

PARAMETERS = {"latest_published": time.time() + 86_400, "max_title_chars": 1000, "max_entries": 500,
              "max_undated_share": 0.5, "feed_fail_ratio": 0.9}


def article(seq: int, url: str) -> Article:
    return Article(feed_id=1, seq=seq, identity_key=f"v1:guid:{seq}", guid=str(seq), canonical_url=url,
                   title=f"Title {seq}", text="Some text.", html="", published_at=datetime.now(UTC),
                   published_source="published", content_hash=f"h{seq}")


def test_a_validator_whose_suites_another_process_saved_still_validates(tmp_path):
    first = validate.Validator(tmp_path)
    second = validate.Validator(tmp_path)  # saves the same suites again, as a second process does
    rows = [article(0, "https://news.example/a"), article(1, "javascript:void(0)")]
    frame = validate.article_frame(rows, [10, 10])
    later = second.run(ROWS_SUITE, "run-2", PARAMETERS, frame)
    earlier = first.run(ROWS_SUITE, "run-1", PARAMETERS, frame)
    for outcome in (later, earlier):
        assert outcome.success is False
        assert list(outcome.failures) == [1]  # the javascript: URL, and only it
