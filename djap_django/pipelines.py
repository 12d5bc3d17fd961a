"""Pipelines: define them, trigger them, and finish their steps.

    class Thumbnails(Pipeline):              # in <app>/pipelines.py
        jobs = [Download, Resize, Join(Zip)]

    row = Thumbnails.trigger(Download.Inputs(url=...))

The state transitions of a finishing step live in pipeline_flow.py; this module
is the public face: the class, trigger, retry, cancel, and the worker's hook.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, ClassVar

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, close_old_connections, transaction
from django.db.models import Count

from . import conf, inline, pipeline_flow, registry
from .exceptions import (
    EnqueueError,
    JobNotRetryableError,
    PipelineDefinitionError,
    PipelineTriggerError,
)
from .jobs import BaseJob, build_row, notify_new_jobs
from .models import ENDED_STATUSES, JobDBModel, PipelineDBModel
from .pipeline_flow import Step, StepError
from .queue import in_transaction
from .queue.base import ClaimedJob, Outcome

logger = logging.getLogger("djap.pipelines")

Status = JobDBModel.Status

__all__ = [
    "Join",
    "Pipeline",
    "acancel_pipeline",
    "aretry_job",
    "cancel_pipeline",
    "finish_step",
    "pipeline_counts",
    "retry_job",
]


class Join:
    """Marks a step of `Pipeline.jobs` as a join: it runs once, after every branch.

    The join's `Inputs` must be a dataclass with one field; that field receives
    the list of the branches' outputs (JSON dicts), in the order the branches began.
    """

    def __init__(self, job: type[BaseJob]) -> None:
        self.job = job

    def __repr__(self) -> str:
        return f"Join({getattr(self.job, '__name__', self.job)!r})"


_pipelines: dict[str, type[Pipeline]] = {}


def get_pipeline(name: str) -> type[Pipeline] | None:
    """The Pipeline class a row's name refers to; only classes the project defined."""
    return _pipelines.get(name)


def _in_pipelines_module(module: str) -> bool:
    return "pipelines" in module.split(".")


class Pipeline:
    """Subclass in `<app>/pipelines.py` and list the steps: `jobs = [A, B, Join(C)]`.

    A step's job hands the next step its inputs through `self.next_job_inputs`
    (a list fans out: one branch per item), or through outputs that fit the next
    job's Inputs. The class name is the pipeline's name.
    """

    jobs: ClassVar[list[Any]] = []
    #: Set `abstract = True` on a base class that is not a pipeline itself.
    abstract: ClassVar[bool] = True
    #: The steps, checked and normalised from `jobs` when the class is defined.
    steps: ClassVar[tuple[Step, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("abstract", False):
            return
        cls.abstract = False
        where = f"{cls.__module__}.{cls.__qualname__}"
        if not _in_pipelines_module(cls.__module__):
            raise PipelineDefinitionError(
                f"{where}: define pipelines in an app's pipelines.py (found in "
                f"{cls.__module__}), so that every worker process finds them at startup"
            )
        cls.steps = _check_steps(where, cls.__dict__.get("jobs", cls.jobs))
        existing = _pipelines.get(cls.__name__)
        if existing is not None and existing.__module__ != cls.__module__:
            raise PipelineDefinitionError(
                f"Two pipelines are named {cls.__name__!r}: {existing.__module__} and "
                f"{cls.__module__}. A pipeline's name is its class name; rename one of them."
            )
        _pipelines[cls.__name__] = cls

    @classmethod
    def trigger(cls, inputs: Any = None) -> PipelineDBModel:
        """Write the pipeline and all its steps (the first `new`); joins the open transaction."""
        if cls.abstract or not cls.steps:
            raise PipelineDefinitionError(f"{cls.__name__} is abstract and cannot be triggered")
        first = cls.steps[0].job
        try:
            first_row = build_row(first.create(inputs))
        except EnqueueError as exc:
            got = "" if isinstance(inputs, dict | None) else f" (got a {type(inputs).__qualname__})"
            raise PipelineTriggerError(
                f"{cls.__name__}.trigger: inputs do not fit its first job: {exc}{got}"
            ) from None
        alias = conf.database_alias()
        with transaction.atomic(using=alias):
            pipeline = PipelineDBModel.objects.using(alias).create(name=cls.__name__)
            first_row.pipeline, first_row.pipeline_step = pipeline, 0
            first_row.save(using=alias, force_insert=True)
            previous = first_row
            for index, step in enumerate(cls.steps[1:], start=1):
                row = pipeline_flow.step_row(
                    step.job,
                    pipeline=pipeline,
                    pipeline_step=index,
                    status=Status.NOT_READY,
                    # A join has many parents (the branches); it counts them instead.
                    parent_id=None if step.join else previous.pk,
                    waiting_for=1 if step.join else 0,
                )
                row.save(using=alias, force_insert=True)
                previous = row
            notify_new_jobs(alias)
            inline.after_enqueue([first_row.pk], alias)
        return pipeline

    @classmethod
    async def atrigger(cls, inputs: Any = None) -> PipelineDBModel:
        """Async twin of trigger."""
        return await sync_to_async(cls.trigger)(inputs)


def _check_steps(where: str, jobs: Any) -> tuple[Step, ...]:
    if not isinstance(jobs, list | tuple) or not jobs:
        raise PipelineDefinitionError(
            f"{where}: set `jobs` to a non-empty list of job classes, e.g. jobs = [A, B, Join(C)]"
        )
    steps = []
    for position, entry in enumerate(jobs):
        join = isinstance(entry, Join)
        job = entry.job if join else entry
        if not (isinstance(job, type) and issubclass(job, BaseJob)):
            raise PipelineDefinitionError(
                f"{where}: jobs[{position}] is {entry!r}, not a BaseJob subclass or Join(...)"
            )
        if not registry.is_registered(job):
            raise PipelineDefinitionError(
                f"{where}: jobs[{position}] {job.__name__} is not a registered job "
                "(abstract, or shadowed by another class of that name)"
            )
        if join:
            if position == 0:
                raise PipelineDefinitionError(
                    f"{where}: the first step cannot be a join; a join collects the branches "
                    "of the steps before it"
                )
            _check_join_inputs(where, job)
        steps.append(Step(job, join))
    return tuple(steps)


def _check_join_inputs(where: str, job: type[BaseJob]) -> None:
    inputs = job.Inputs
    fields = (
        [f for f in dataclasses.fields(inputs) if f.init]
        if inputs is not None and dataclasses.is_dataclass(inputs)
        else None
    )
    if fields is None or len(fields) != 1:
        raise PipelineDefinitionError(
            f"{where}: the join {job.__name__} needs an Inputs dataclass with exactly one "
            f"field, which receives the list of outputs (e.g. `results: list`)"
        )


# -- the worker's hook -------------------------------------------------------------

#: A step's finish is retried this many times when the database connection fails.
FINISH_ATTEMPTS = 5


def finish_step(worker_id: int | None, claimed: ClaimedJob, outcome: Outcome) -> Outcome | None:
    """Write a pipeline step's outcome and ready its successors in one transaction.

    Returns the outcome as written: `failed`, with the reason, when the step's results
    do not fit the next step; None if the job was no longer ours to finish.
    Safe to repeat: the write is guarded by this worker holding the row, so after
    a lost connection the retry applies it once or finds it already applied.
    `worker_id` None is inline mode (inline_runner.py): no worker holds the row.
    """
    alias = conf.database_alias()
    for attempt in range(1, FINISH_ATTEMPTS + 1):
        try:
            with transaction.atomic(using=alias):
                return _finish(alias, worker_id, claimed, outcome)
        except (OperationalError, InterfaceError) as exc:
            if attempt == FINISH_ATTEMPTS:
                raise
            logger.warning(
                "finishing pipeline step %s failed (%s); retrying",
                claimed.id,
                exc,
                extra={"job_id": claimed.id, "job_name": claimed.name},
            )
            # Drop the broken connection so the next attempt opens a fresh one.
            close_old_connections()
            time.sleep(min(5.0, 0.1 * 2**attempt))
    raise AssertionError("unreachable: the last attempt returns or raises")


def _finish(
    alias: str, worker_id: int | None, claimed: ClaimedJob, outcome: Outcome
) -> Outcome | None:
    # Lock order, here and everywhere: the pipeline row first, then job rows.
    pipeline = (
        None
        if claimed.pipeline_id is None
        else PipelineDBModel.objects.using(alias)
        .select_for_update()
        .filter(pk=claimed.pipeline_id)
        .first()
    )
    row = (
        JobDBModel.objects.using(alias)
        .select_for_update()
        .filter(pk=claimed.id, status=Status.IN_PROGRESS, worker_id=worker_id, claims=claimed.claim)
        .first()
    )
    if row is None:
        # The job was rescued from us (we looked dead), and perhaps claimed again since:
        # whoever holds it now, under its own claim, finishes it.
        return None
    status, error, items = outcome.status, outcome.error, []
    pipeline_cls = get_pipeline(pipeline.name) if pipeline is not None else None
    if status == Status.DONE and pipeline is not None:
        try:
            if pipeline_cls is None:
                raise StepError(
                    f"no Pipeline named {pipeline.name!r} is defined (renamed or removed from "
                    "its pipelines.py?); the next step cannot be found"
                )
            items = pipeline_flow.plan_next(
                pipeline_cls.steps, pipeline_flow.step_of(row), outcome, row.name
            )
        except StepError as exc:
            status, error = Status.FAILED, str(exc)
    in_transaction(alias).job_finish_step(
        row.pk,
        status=status,
        outputs_json=outcome.outputs_json,
        error=error,
        run_after=outcome.run_after,
    )
    row.status = status
    written = (
        outcome
        if status == outcome.status
        else dataclasses.replace(outcome, status=status, error=error)
    )
    if pipeline is None:
        return written
    if status == Status.DONE and pipeline_cls is not None:
        moved = pipeline_flow.advance(alias, pipeline, pipeline_cls.steps, row, items)
        if moved == pipeline_flow.READIED:
            notify_new_jobs(alias)
        elif moved == pipeline_flow.ENDED:
            pipeline_flow.finish_if_idle(alias, pipeline)
    elif status == Status.FAILED:
        pipeline_flow.fail(alias, pipeline)
    return written


def fail_pipelines_of_failed_jobs() -> int:
    """Fail running pipelines that hold a failed job written outside finish_step.

    A job failed by a rescue (its worker died too often while running it) is failed
    by the queue's own SQL; this brings its pipeline in line. Returns how many failed.
    """
    alias = conf.database_alias()
    ids = list(
        PipelineDBModel.objects.using(alias)
        .filter(status=PipelineDBModel.Status.RUNNING, jobs__status=Status.FAILED)
        .values_list("id", flat=True)
        .distinct()
    )
    for pipeline_id in ids:
        with transaction.atomic(using=alias):
            pipeline = PipelineDBModel.objects.using(alias).select_for_update().get(pk=pipeline_id)
            pipeline_flow.fail(alias, pipeline)
    return len(ids)


async def afail_pipelines_of_failed_jobs() -> int:
    """Async twin of fail_pipelines_of_failed_jobs (for the rescues)."""
    return await sync_to_async(fail_pipelines_of_failed_jobs)()


# -- retry, cancel, counts ---------------------------------------------------------


def retry_job(job_id: int) -> JobDBModel:
    """Put a failed or cancelled job back to `new`; in a pipeline, resume the pipeline.

    The pipeline runs again once none of its jobs is failed; its halted steps come
    back where they stopped. Joins the caller's transaction.
    """
    alias = conf.database_alias()
    with transaction.atomic(using=alias):
        pipeline = pipeline_flow.lock_pipeline_of(alias, job_id)
        row = JobDBModel.objects.using(alias).select_for_update().filter(pk=job_id).first()
        if row is None:
            raise JobNotRetryableError(f"there is no job with id {job_id}")
        if row.error == pipeline_flow.SKIPPED:
            raise JobNotRetryableError(
                f"job {job_id} ({row.name}) was skipped: an earlier step fanned out into an "
                "empty list, so it has no inputs to run with"
            )
        if row.status not in (Status.FAILED, Status.CANCELLED):
            raise JobNotRetryableError(
                f"job {job_id} ({row.name}) is {row.status}; only failed or cancelled jobs "
                "can be retried"
            )
        _check_key_free(alias, row)
        woke = _retry_row(alias, row, pipeline)
        if woke:
            notify_new_jobs(alias)
    row.refresh_from_db(using=alias)
    return row


def _check_key_free(alias: str, row: JobDBModel) -> None:
    """A retried row takes its unique_key back: refuse while another job holds it."""
    if row.unique_key is None:
        return
    holder = (
        JobDBModel.objects.using(alias)
        .filter(name=row.name, unique_key=row.unique_key)
        .exclude(status__in=ENDED_STATUSES)
        .values_list("pk", flat=True)
        .first()
    )
    if holder is not None:
        raise JobNotRetryableError(
            f"job {holder} has unique_key {row.unique_key!r} and has not ended; job {row.pk} "
            f"({row.name}) can be retried once it has, or cancel it first"
        )


def _retry_row(alias: str, row: JobDBModel, pipeline: PipelineDBModel | None) -> bool:
    """Returns True if a row became `new`."""
    halted = row.status == Status.CANCELLED and row.error == pipeline_flow.HALTED
    failed = []
    if pipeline is not None:
        failed = list(
            pipeline.jobs.using(alias)
            .filter(status=Status.FAILED)
            .exclude(pk=row.pk)
            .values_list("id", flat=True)
        )
    if halted and failed:
        raise JobNotRetryableError(
            f"job {row.pk} ({row.name}) waits on failed steps of its pipeline; retry "
            + ", ".join(f"job {i}" for i in failed)
        )
    if not halted:
        # A fresh start: all its attempts again, no leftover schedule or crash count.
        in_transaction(alias).job_retry(row.pk)
    if pipeline is None:
        return True
    pipeline_cls = get_pipeline(pipeline.name)
    if failed or pipeline_cls is None:
        # Another step is still failed: the pipeline stays failed until it is retried too.
        if pipeline.status != PipelineDBModel.Status.FAILED:
            pipeline_flow.halt(alias, pipeline, PipelineDBModel.Status.FAILED, ())
        return True
    if pipeline.status == PipelineDBModel.Status.RUNNING:
        return True
    if pipeline.status == PipelineDBModel.Status.DONE:
        # A step cancelled on its own came back: the pipeline has work again.
        pipeline.status, pipeline.finished_at = PipelineDBModel.Status.RUNNING, None
        pipeline.save(using=alias, update_fields=["status", "finished_at"])
        return True
    return pipeline_flow.resume(alias, pipeline, pipeline_cls.steps) or not halted


async def aretry_job(job_id: int) -> JobDBModel:
    """Async twin of retry_job."""
    return await sync_to_async(retry_job)(job_id)


def cancel_pipeline(pipeline_id: int) -> int:
    """Cancel a pipeline's waiting steps (`not_ready` and `new`); returns how many.

    Steps already running finish; what they would ready stays halted. A done
    pipeline is left as it is. `retry_job` on a cancelled step resumes it.
    """
    alias = conf.database_alias()
    with transaction.atomic(using=alias):
        pipeline = PipelineDBModel.objects.using(alias).select_for_update().get(pk=pipeline_id)
        if pipeline.status == PipelineDBModel.Status.DONE:
            return 0
        return pipeline_flow.halt(
            alias, pipeline, PipelineDBModel.Status.CANCELLED, (Status.NOT_READY, Status.NEW)
        )


async def acancel_pipeline(pipeline_id: int) -> int:
    """Async twin of cancel_pipeline."""
    return await sync_to_async(cancel_pipeline)(pipeline_id)


def pipeline_counts() -> dict[str, int]:
    """Pipelines by status, every status present (for `djap status` and the dashboard)."""
    counts = dict.fromkeys(PipelineDBModel.Status.values, 0)
    rows = (
        PipelineDBModel.objects.using(conf.database_alias())
        .values_list("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts.update(dict(rows))
    return counts
