"""Errors users can catch: `from djap.exceptions import InvalidInputsError`."""

from djap_django.exceptions import (
    ConfigurationError,
    DjapError,
    DuplicateJobNameError,
    EnqueueError,
    InvalidInputsError,
    InvalidJobOptionError,
    InvalidOutputsError,
    JobDefinitionError,
    JobNotRetryableError,
    MissingInputsError,
    NotARegisteredJobError,
    PipelineDefinitionError,
    PipelineTriggerError,
    Retry,
    Snooze,
    UnexpectedInputsError,
)

__all__ = [
    "ConfigurationError",
    "DjapError",
    "DuplicateJobNameError",
    "EnqueueError",
    "InvalidInputsError",
    "InvalidJobOptionError",
    "InvalidOutputsError",
    "JobDefinitionError",
    "JobNotRetryableError",
    "MissingInputsError",
    "NotARegisteredJobError",
    "PipelineDefinitionError",
    "PipelineTriggerError",
    "Retry",
    "Snooze",
    "UnexpectedInputsError",
]
