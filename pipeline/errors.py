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
    """A run's batch cannot be loaded (not validated, undecided entries, staging lost):
    terminal, since a retry of the load meets the same state. Nothing is loaded, so its
    feeds' validators stay put and the next run fetches them again."""


class RunIdTaken(PipelineError):
    """A run id already names a run of another lane: two runs would share one plan (and
    the later one would silently do the earlier one's work)."""


class SchemaOutOfDate(PipelineError):
    """The news database lacks migrations this code needs; a retry cannot apply them."""
