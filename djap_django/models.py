"""The queue's tables: jobs, pipelines and the worker processes that run them."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import models
from django.db.models import Q

from .queue import in_transaction

#: Statuses a job never leaves (except by an explicit retry).
ENDED_STATUSES = ("done", "failed", "cancelled")
#: Longest `unique_key` accepted, in characters.
UNIQUE_KEY_MAX_LENGTH = 200


class PipelineDBModel(models.Model):
    """One run of a Pipeline: its status is kept current as its jobs finish."""

    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    name = models.CharField(max_length=200, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "djap_pipeline"
        verbose_name = "pipeline"

    def __str__(self) -> str:
        return f"{self.name} #{self.pk} ({self.status})"

    def jobs_in_order(self) -> models.QuerySet:
        """Its jobs by step, and within a step in the order the branches began."""
        return self.jobs.order_by("pipeline_step", "id")


class WorkerDBModel(models.Model):
    """One worker process, on any host; heartbeats keep `last_heartbeat` fresh."""

    class State(models.TextChoices):
        RUNNING = "running"
        DRAINING = "draining"
        STOPPED = "stopped"
        DEAD = "dead"

    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    group = models.CharField(max_length=100, default="default")
    include = models.JSONField(null=True, blank=True)
    exclude = models.JSONField(default=list, blank=True)
    concurrency = models.IntegerField(default=0)
    supervisor_pid = models.IntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    started_at = models.DateTimeField()
    last_heartbeat = models.DateTimeField(db_index=True)
    jobs_done = models.BigIntegerField(default=0)
    jobs_failed = models.BigIntegerField(default=0)
    in_flight = models.IntegerField(default=0)
    #: Database connections the process opens at most (djap_django.budget).
    connections = models.IntegerField(default=0, db_default=0)

    class Meta:
        db_table = "djap_worker"
        verbose_name = "worker"

    def __str__(self) -> str:
        return f"{self.host}:{self.pid} ({self.group})"


class JobDBModel(models.Model):
    """One job: its inputs, where it stands, what it returned or why it failed."""

    class Status(models.TextChoices):
        NOT_READY = "not_ready"
        NEW = "new"
        IN_PROGRESS = "in_progress"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    # Indexed only while claimable (djap_job_due_name).
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    inputs = models.JSONField(null=True, blank=True)
    outputs = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # One entry per failed attempt, oldest first: {"attempt", "error", "at"}. NULL = none
    # yet, so that a raw INSERT which leaves the column out stays valid.
    errors = models.JSONField(null=True, blank=True, default=list)
    attempts = models.IntegerField(default=0)
    max_attempts = models.IntegerField(default=1)
    # Times a worker died while running this job; past DJAP MAX_CRASHES it is failed.
    crashes = models.IntegerField(default=0)
    # Times this row was claimed, never reset: the current claim's token. Every write of
    # a claim (finish, release) names the token it holds, so a late outcome of an earlier
    # claim (its worker looked dead, the job was rescued and claimed again) changes nothing.
    # The database default keeps raw INSERTs and older workers valid.
    claims = models.IntegerField(default=0, db_default=0)
    priority = models.IntegerField(default=0)
    timeout = models.FloatField(null=True, blank=True)
    run_after = models.DateTimeField(null=True, blank=True)
    # True while a `new` job waits for a run_after in the future (retries backing off
    # included): it sits in djap_job_scheduled, off the claim path, until the stager
    # (djap_django.stager) clears it at its time. Not a status: the job is `new`
    # (waiting) either way. A database default, so that raw INSERTs may leave it out.
    scheduled = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # No database constraint: the worker row may be pruned while the job row lives on.
    worker = models.ForeignKey(
        WorkerDBModel,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        # No index of its own: djap_job_running (worker_id of in_progress rows) serves
        # every lookup by worker, and each index costs a write on every claim and finish.
        db_index=False,
        related_name="jobs",
    )
    pipeline = models.ForeignKey(
        PipelineDBModel,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="jobs",
        # Indexed in Meta.indexes for pipeline steps only, not for every plain job.
        db_index=False,
    )
    pipeline_step = models.IntegerField(null=True, blank=True)
    # The job whose finish created or readied this one (a fan-out branch's origin).
    parent_id = models.BigIntegerField(null=True, blank=True)
    # A join step waits until this counter of unfinished branches reaches zero.
    waiting_for = models.IntegerField(default=0)
    # `create(unique_key=...)`: while a job of this name and key has not ended, enqueueing
    # the same pair returns it (djap_job_unique decides, in the database).
    unique_key = models.CharField(max_length=UNIQUE_KEY_MAX_LENGTH, null=True, blank=True)

    class Meta:
        db_table = "djap_job"
        verbose_name = "job"
        # Every index costs a write on each insert, and on each claim and finish too
        # (a status change is never a HOT update). So each one is partial: a row is in
        # an index only while some query needs to find it there.
        indexes = [
            # The claim's hot path: only rows that can be claimed now, in claim order.
            models.Index(
                fields=["-priority", "id"],
                name="djap_job_due",
                condition=Q(status="new", scheduled=False),
            ),
            # The same per job name: an --include/--exclude worker's claim walks only
            # the names it takes, whatever the other names have waiting.
            models.Index(
                fields=["name", "-priority", "id"],
                name="djap_job_due_name",
                condition=Q(status="new", scheduled=False),
            ),
            # Jobs waiting for their run_after, in the order the stager moves them.
            models.Index(
                fields=["run_after"],
                name="djap_job_scheduled",
                condition=Q(status="new", scheduled=True),
            ),
            models.Index(
                fields=["worker"], name="djap_job_running", condition=Q(status="in_progress")
            ),
            # Pipeline steps waiting for their predecessors: counted by `djap status`.
            models.Index(
                fields=["pipeline"], name="djap_job_blocked", condition=Q(status="not_ready")
            ),
            # Finished rows, for prune, the failures list and throughput per minute.
            models.Index(
                fields=["status", "finished_at"],
                name="djap_job_finished",
                condition=Q(finished_at__isnull=False),
            ),
            models.Index(
                fields=["pipeline"], name="djap_job_pipeline", condition=Q(pipeline__isnull=False)
            ),
            # A finishing pipeline step finds its branch's next row by its parent.
            models.Index(
                fields=["parent_id"], name="djap_job_parent", condition=Q(parent_id__isnull=False)
            ),
        ]
        constraints = [
            # One live job per (name, unique_key): the ended statuses are listed, not the
            # live ones, so a waiting state added later is covered without a migration.
            models.UniqueConstraint(
                fields=["name", "unique_key"],
                name="djap_job_unique",
                condition=Q(unique_key__isnull=False) & ~Q(status__in=ENDED_STATUSES),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk} ({self.status})"

    # -- cancellation: one statement of the queue's (queue/in_transaction.py) ----------

    def cancel(self) -> bool:
        """Cancel this job (see djap_django.control.cancel); True if this call did."""
        result = in_transaction().job_cancel(self.pk)
        if not result.found:
            raise JobDBModel.DoesNotExist(f"cancel(): no job has id {self.pk}")
        if result.cancelled:
            self.status, self.finished_at, self.worker_id = (
                JobDBModel.Status.CANCELLED,
                result.finished_at,
                None,
            )
        return result.cancelled

    async def acancel(self) -> bool:
        """Async twin of cancel."""
        return await sync_to_async(self.cancel)()


class PeriodicScheduleDBModel(models.Model):
    """One periodic job class: when it is next due and when it last ran.

    Every worker checks the due rows; the one whose conditional UPDATE moves
    `next_run_at` on enqueues the tick, in the same transaction (djap_django.periodic).
    """

    name = models.CharField(max_length=200, unique=True)
    #: The class's schedule as text ("every 30s", "cron 0 3 * * * UTC"): a changed
    #: schedule restarts the row's timing on the next deploy.
    schedule = models.CharField(max_length=200)
    next_run_at = models.DateTimeField()
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_job_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        db_table = "djap_periodic"
        verbose_name = "periodic schedule"

    def __str__(self) -> str:
        return f"{self.name} ({self.schedule})"


class QueueOverview(JobDBModel):
    """The admin's queue overview page: a proxy, so it is listed on the admin index
    and guarded by Django's permissions like any model, without a table of its own."""

    class Meta:
        proxy = True
        verbose_name = "queue overview"
        verbose_name_plural = "queue overview"
