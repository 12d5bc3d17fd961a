"""Job id and name on every log record about a job, whoever logs it.

The worker binds the running job to a context variable (each job is its own asyncio
task, so each sees its own); `JobContextFilter` copies it onto every record that
passes a handler, and `JobFormatter` prints it. Records that already carry
`job_id` / `job_name` (passed as `extra=`) keep theirs.

In a project's LOGGING:

    "filters": {"djap_job": {"()": "djap_django.logs.JobContextFilter"}},
    "formatters": {"djap": {"()": "djap_django.logs.JobFormatter",
                            "format": "%(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler",
                             "filters": ["djap_job"], "formatter": "djap"}},
"""

from __future__ import annotations

import contextvars
import logging

#: (job id, job name) of the job this asyncio task runs, or None.
current_job: contextvars.ContextVar[tuple[int, str] | None] = contextvars.ContextVar(
    "djap_current_job", default=None
)


def bind_job(job_id: int, name: str) -> contextvars.Token:
    """Mark the current task as running this job (its later log records name it)."""
    return current_job.set((job_id, name))


class JobContextFilter(logging.Filter):
    """Give every record `job_id` and `job_name` (None outside a job); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            bound = current_job.get()
            record.job_id, record.job_name = bound if bound else (None, None)
        elif not hasattr(record, "job_name"):
            record.job_name = None
        return True


class JobFormatter(logging.Formatter):
    """A Formatter that ends a record about a job with `[job <id> <name>]`."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        job_id = getattr(record, "job_id", None)
        if job_id is None:
            return text
        suffix = f" [job {job_id} {getattr(record, 'job_name', None) or '?'}]"
        # Keep a traceback last: the job tag belongs to the message line.
        first, sep, rest = text.partition("\n")
        return f"{first}{suffix}{sep}{rest}"
