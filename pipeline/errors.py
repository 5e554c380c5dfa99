"""One exception hierarchy for the pipeline.

Terminal errors will fail again if retried (bad configuration, a breached
quality threshold); transient ones may succeed on retry (a database restart).
A failing feed or a bad entry is *data*, recorded on rows, never an exception
that escapes a stage.
"""


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""

    transient = False


class ConfigError(PipelineError):
    """Settings or a feed list are invalid."""


class FeedListError(ConfigError):
    """A feed list file cannot be read."""


class ValidationThresholdExceeded(PipelineError):
    """Too large a share of a batch failed validation: the run must fail loudly."""


class EveryFeedFailed(PipelineError):
    """Every feed of a run failed (at fetch or in its content): nothing could be loaded."""


class SystemicFetchFailure(EveryFeedFailed):
    """Every feed in a run failed to fetch: the network or the resolver is down, not the feeds."""

    transient = True


class RunNotLoadable(PipelineError):
    """A run's batch cannot be loaded (undecided entries; a replay run whose staging was
    lost), or a shard of a run loaded already cannot stage (a cleared shard task: its
    entries would never load): terminal, since a retry meets the same state. Nothing of
    it is loaded, so its feeds' validators stay put."""


class ShardsFailed(PipelineError):
    """Shards of a CLI run failed (not a feed or an entry, which are data: a lost database,
    a killed worker). Raised after the run's load and report: the other shards' entries
    landed, and the failed shards' fetched feeds are their errors, fetched again next run."""

    def __init__(self, failed: dict[int, str], also: BaseException | None = None):
        self.failed = dict(failed)
        super().__init__(f"{len(failed)} shard(s) failed, the other shards' entries loaded: "
                         + "; ".join(f"shard {shard}: {error}" for shard, error in sorted(failed.items()))
                         + (f"; and the run: {also}" if also is not None else ""))


class RunIdTaken(PipelineError):
    """A run id already names a run of another lane: two runs would share one plan (and
    the later one would silently do the earlier one's work)."""


class SchemaOutOfDate(PipelineError):
    """The news database lacks migrations this code needs; a retry cannot apply them."""
