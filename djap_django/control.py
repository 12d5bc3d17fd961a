"""Cancel a job: at once while it waits, within about a second while it runs.

A waiting job (`new`, `not_ready`) is simply marked `cancelled`. A running job is
marked `cancelled` too, which already makes its worker's late result a no-op (a
worker only finishes rows that are still `in_progress` and its own); then the
worker that runs it stops it: on PostgreSQL a NOTIFY on `djap_cancel` reaches every
worker at once, and every worker also polls the status of the jobs it runs, which is
the only signal on SQLite and the fallback when a notification is missed.

An async job is cancelled in its `await` (it sees asyncio.CancelledError). A sync job
cannot be stopped inside its thread: its result is discarded, the thread runs on.
The statement itself is the queue's: InTransaction.job_cancel.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async

from .models import JobDBModel


def _job_id(job: int | JobDBModel) -> int:
    if isinstance(job, JobDBModel):
        return job.pk
    if isinstance(job, bool) or not isinstance(job, int):
        raise TypeError(f"cancel() takes a job id or a JobDBModel, not {job!r}")
    return job


def cancel(job: int | JobDBModel) -> bool:
    """Cancel a job by id or row; True if this call cancelled it, False if it had finished.

    Joins the caller's transaction; a running job is stopped once that commits.
    Raises JobDBModel.DoesNotExist for an id that names no job.
    """
    if isinstance(job, JobDBModel):
        return job.cancel()
    return JobDBModel(pk=_job_id(job)).cancel()


async def acancel(job: int | JobDBModel) -> bool:
    """Async twin of cancel."""
    return await sync_to_async(cancel)(job)
