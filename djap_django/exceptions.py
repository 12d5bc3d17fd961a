"""Errors a user can catch; `djap.exceptions` re-exports every one of them."""

from __future__ import annotations

from datetime import timedelta


class DjapError(Exception):
    """Base class of every error djap raises on purpose."""


class JobDefinitionError(DjapError, TypeError):
    """A BaseJob subclass is declared wrongly (it sets `name`, or its name is taken)."""


class DuplicateJobNameError(JobDefinitionError):
    """Two job classes in different modules share one class name."""


class EnqueueError(DjapError, ValueError):
    """A job could not be enqueued; nothing was written."""


class InvalidJobOptionError(EnqueueError):
    """`priority` or `run_after` given to `create()` has the wrong type."""


class NotARegisteredJobError(EnqueueError):
    """The object given is not a registered BaseJob subclass or instance."""


class MissingInputsError(EnqueueError):
    """The job declares `Inputs` but none were given."""


class UnexpectedInputsError(EnqueueError):
    """Inputs were given to a job that declares no `Inputs`."""


class InvalidInputsError(EnqueueError):
    """The inputs do not round-trip through the job's `Inputs` class and JSON."""


class InvalidOutputsError(DjapError, ValueError):
    """A job set outputs that do not fit its `Outputs` class or JSON."""


class PipelineDefinitionError(DjapError, TypeError):
    """A Pipeline subclass is declared wrongly (outside pipelines.py, no jobs, a bad step)."""


class PipelineTriggerError(EnqueueError):
    """`trigger` was given inputs that do not fit the pipeline's first job; nothing was written."""


class JobNotRetryableError(DjapError, ValueError):
    """`retry_job` was asked to retry a job that is neither failed nor cancelled."""


class ConfigurationError(DjapError):
    """The DJAP settings or a worker option is wrong."""


class Retry(Exception):  # noqa: N818 - raised by jobs, reads as `raise Retry(after=5)`
    """Raise from `run` to ask for another attempt, after `after` seconds.

    The attempt still counts against `max_attempts`.
    """

    def __init__(self, after: float | timedelta | None = None, reason: str = "") -> None:
        if isinstance(after, timedelta):
            after = after.total_seconds()
        super().__init__(reason or f"retry requested (after={after})")
        #: Seconds to wait before the next attempt; None = the usual backoff.
        self.after = after
        self.reason = reason


class Snooze(Exception):  # noqa: N818 - raised by jobs, reads as `raise Snooze(after=60)`
    """Raise from `run` to put the job back for `after` seconds without spending an attempt.

    For "not yet" rather than "failed": the resource is busy, the data is not there yet.
    The job's attempts count is unchanged and no error is recorded.
    """

    def __init__(self, after: float | timedelta) -> None:
        if isinstance(after, timedelta):
            after = after.total_seconds()
        if isinstance(after, bool) or not isinstance(after, int | float) or after < 0:
            raise TypeError(f"Snooze(after=...) takes seconds >= 0 or a timedelta, not {after!r}")
        super().__init__(f"snoozed for {after:g} s")
        #: Seconds until the job may run again.
        self.after = float(after)
