"""Cancel a job: at once while it waits, within about a second while it runs.

A waiting job (`new`, `not_ready`) is simply marked `cancelled`. A running job is
marked `cancelled` too, which already makes its worker's late result a no-op (a
worker only finishes rows that are still `in_progress` and its own); then the
worker that runs it stops it: on PostgreSQL a NOTIFY on `djap_cancel` reaches every
worker at once, and every worker also polls the status of the jobs it runs, which is
the only signal on SQLite and the fallback when a notification is missed.

An async job is cancelled in its `await` (it sees asyncio.CancelledError). A sync job
cannot be stopped inside its thread: its result is discarded, the thread runs on.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.utils import timezone

from . import conf, pipelines
from .models import JobDBModel
from .queue.base import CANCEL_CHANNEL

_WAITING = (JobDBModel.Status.NEW, JobDBModel.Status.NOT_READY)


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
    job_id = _job_id(job)
    alias = conf.database_alias()
    jobs = JobDBModel.objects.using(alias).filter(pk=job_id)
    with transaction.atomic(using=alias):
        pipeline = pipelines.lock_pipeline_of(job_id)
        now = timezone.now()
        running = jobs.filter(status=JobDBModel.Status.IN_PROGRESS).update(
            status=JobDBModel.Status.CANCELLED, finished_at=now, worker_id=None
        )
        waiting = 0
        if not running:
            waiting = jobs.filter(status__in=_WAITING).update(
                status=JobDBModel.Status.CANCELLED, finished_at=now
            )
        if running and connections[alias].vendor == "postgresql":
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, %s)", [CANCEL_CHANNEL, str(job_id)])
        if not (running or waiting) and not jobs.exists():
            raise JobDBModel.DoesNotExist(f"cancel(): no job has id {job_id}")
        if pipeline is not None and (running or waiting):
            # A pipeline cannot finish without this step: cancel it (retry resumes it).
            pipelines.step_cancelled(pipeline)
    if isinstance(job, JobDBModel) and (running or waiting):
        job.status, job.finished_at, job.worker_id = JobDBModel.Status.CANCELLED, now, None
    return bool(running or waiting)


async def acancel(job: int | JobDBModel) -> bool:
    """Async twin of cancel."""
    return await sync_to_async(cancel)(job)
