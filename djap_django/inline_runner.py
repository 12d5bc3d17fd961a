"""Inline mode's runner: jobs enqueued in inline mode run here, in the caller's thread.

Once the caller's transaction commits, the jobs run one after the other, then the
steps their pipelines readied. They run through the worker's own `execute`, so inputs
are checked and outputs, failures, tracebacks and retries end up on the rows exactly
as a worker would write them; only the backoff before a retry is not waited for.

Everything goes through Django's connection of the calling thread (async jobs run
under async_to_sync, and their sync_to_async calls come back to this thread), so a
test inside `TestCase` sees the same transaction. The worker's queue modules use
connections of their own, which is why the few statements of this path live here.
"""

from __future__ import annotations

import contextvars
import json
import logging

from asgiref.sync import async_to_sync
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from . import conf
from .execution import INLINE_SYNC, execute
from .models import JobDBModel
from .pipelines import finish_step
from .queue.base import SNOOZED, ClaimedJob, Outcome

logger = logging.getLogger("djap.inline")

#: A job that asks to be put back (a retry or a snooze) runs again at once, at most this
#: many times in one inline run; past it, it stays `new` with its run_after for a worker.
MAX_RUNS_PER_JOB = 100

Status = JobDBModel.Status


def run(job_ids: list[int], alias: str | None = None) -> None:
    """Run these jobs (those still `new`) and whatever their pipelines ready next."""
    alias = alias or conf.database_alias()
    runs: dict[int, int] = {}
    pending = list(job_ids)
    while pending:
        claimed = _claim(alias, pending)
        pending = []
        for job in claimed:
            runs[job.id] = runs.get(job.id, 0) + 1
            outcome = _execute(job)
            if job.pipeline_id is None or outcome.status == SNOOZED:
                _finish(alias, outcome)
            else:
                finish_step(None, job, outcome)
                pending += _ready_in_pipeline(alias, job.pipeline_id)
            if outcome.status in (Status.NEW, SNOOZED):
                pending.append(job.id)  # a retry or a snooze: again, without the wait
        again = [i for i in dict.fromkeys(pending) if runs.get(i, 0) < MAX_RUNS_PER_JOB]
        for job_id in set(pending) - set(again):
            logger.warning(
                "inline: job %s was put back %d times; left for a worker", job_id, MAX_RUNS_PER_JOB
            )
        pending = again


def _execute(job: ClaimedJob) -> Outcome:
    # In a copy of the caller's context: execute binds the job to the log context, and
    # async_to_sync hands context changes back, which would tag the caller's later
    # records with this job.
    return contextvars.copy_context().run(async_to_sync(execute), job, INLINE_SYNC)


def _claim(alias: str, job_ids: list[int]) -> list[ClaimedJob]:
    """Mark these `new` jobs in_progress (held by no worker) and return them in id order."""
    jobs = JobDBModel.objects.using(alias)
    with transaction.atomic(using=alias):
        ids = list(
            jobs.select_for_update()
            .filter(pk__in=job_ids, status=Status.NEW)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        jobs.filter(pk__in=ids).update(
            status=Status.IN_PROGRESS,
            worker_id=None,
            started_at=timezone.now(),
            attempts=F("attempts") + 1,
        )
        rows = jobs.filter(pk__in=ids).order_by("pk")
        return [
            ClaimedJob(r.pk, r.name, r.inputs, r.attempts, r.max_attempts, r.timeout, r.pipeline_id)
            for r in rows
        ]


def _finish(alias: str, outcome: Outcome) -> None:
    """Write an outcome as the worker's finish does: status, outputs, error history."""
    with transaction.atomic(using=alias):
        row = (
            JobDBModel.objects.using(alias)
            .select_for_update()
            .filter(pk=outcome.job_id, status=Status.IN_PROGRESS, worker_id=None)
            .first()
        )
        if row is None:
            return  # cancelled while it ran
        if outcome.status == SNOOZED:
            # As the queue's jobs_snooze: back to new, the attempt given back.
            row.status, row.run_after, row.started_at = Status.NEW, outcome.run_after, None
            row.attempts -= 1
            row.save(using=alias, update_fields=["status", "run_after", "started_at", "attempts"])
            return
        now = timezone.now()
        row.status = outcome.status
        row.outputs = None if outcome.outputs_json is None else json.loads(outcome.outputs_json)
        row.error = outcome.error
        row.run_after = outcome.run_after
        row.finished_at = None if outcome.status == Status.NEW else now
        if outcome.error:
            entry = {"attempt": row.attempts, "error": outcome.error, "at": now.isoformat()}
            row.errors = [*(row.errors or []), entry]
        row.save(
            using=alias,
            update_fields=["status", "outputs", "error", "run_after", "finished_at", "errors"],
        )


def _ready_in_pipeline(alias: str, pipeline_id: int) -> list[int]:
    return list(
        JobDBModel.objects.using(alias)
        .filter(pipeline_id=pipeline_id, status=Status.NEW)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
