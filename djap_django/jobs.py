"""BaseJob, and the enqueue API: create_new, bulk_create_new and their async twins."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from asgiref.sync import sync_to_async
from django.db import connections
from django.utils import timezone

from . import bulk, codec, conf, inline, options, registry
from .exceptions import (
    InvalidJobOptionError,
    JobDefinitionError,
    MissingInputsError,
    NotARegisteredJobError,
    UnexpectedInputsError,
)
from .models import JobDBModel
from .queue.base import NEW_JOBS_CHANNEL


class BaseJob:
    """Subclass in `<app>/jobs.py`; the class name is the job's name.

    Declare nested `Inputs` / `Outputs` dataclasses (or classes with a zero-argument
    `asdict()`), then `async def run(self)` reads `self.inputs` and sets
    `self.outputs`. A plain `def run(self)` runs in a thread.
    """

    #: The nested dataclasses (None: the job takes no inputs, returns no outputs).
    Inputs: ClassVar[Any] = None
    Outputs: ClassVar[Any] = None
    #: Attempts before the job is failed; None takes DJAP["MAX_ATTEMPTS"].
    max_attempts: ClassVar[int | None] = None
    #: Seconds before a running attempt is cancelled; None takes DJAP["TIMEOUT"].
    timeout: ClassVar[float | None] = None
    #: Higher runs first.
    priority: ClassVar[int] = 0
    #: Inputs fields whose values make the job's unique key when `create()` names none:
    #: while a job with the same values waits or runs, enqueueing returns that one.
    unique_fields: ClassVar[tuple[str, ...]] = ()
    #: Periodic: enqueued by the running workers every this many seconds (or a timedelta)...
    every: ClassVar[float | dt.timedelta | None] = None
    #: ...or on this five-field cron schedule ("0 3 * * *"), in the time zone `cron_tz`.
    cron: ClassVar[str | None] = None
    cron_tz: ClassVar[str] = "UTC"
    #: The inputs of each periodic run (else Inputs() from its defaults, or none).
    periodic_inputs: ClassVar[Any] = None
    #: True: a tick runs even while the previous run has not ended (default: skipped).
    periodic_overlap: ClassVar[bool] = False
    #: Set `abstract = True` on a base class that should not be registered itself.
    abstract: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            raise JobDefinitionError(
                f"{cls.__module__}.{cls.__qualname__} sets `name`; a job's name is its class "
                f"name ({cls.__name__!r}). Remove the attribute or rename the class."
            )
        if not cls.__dict__.get("abstract", False):
            cls.abstract = False
            options.check_class(cls)
            registry.register(cls)

    def __init__(
        self,
        inputs: Any = None,
        *,
        priority: int | None = None,
        run_after: dt.datetime | dt.timedelta | float | None = None,
        unique_key: str | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> None:
        name = type(self).__name__
        self.inputs = inputs
        self.outputs: Any = None
        #: In a pipeline: the next step's inputs (a list fans out into branches).
        self.next_job_inputs: Any = None
        self.priority_override = _check_priority(name, priority)
        self.run_after = _check_run_after(name, run_after)
        self.unique_key = options.check_unique_key(name, unique_key)
        self.max_attempts_override = options.check_max_attempts(name, max_attempts)
        self.timeout_override = options.check_timeout(name, timeout)
        #: Set by the worker: the row's id and which attempt this is (1-based).
        self.id: int | None = None
        self.attempt = 0

    @property
    def name(self) -> str:
        return type(self).__name__

    @classmethod
    def create(
        cls,
        inputs: Any = None,
        *,
        priority: int | None = None,
        run_after: dt.datetime | dt.timedelta | float | None = None,
        unique_key: str | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> BaseJob:
        """An unsaved job; pass it to `create_new` or `bulk_create_new`.

        `unique_key`: while a job of this class with that key waits or runs, enqueueing
        returns it instead of writing another. `max_attempts` and `timeout` (seconds)
        override the class options for this job only.
        """
        return cls(
            inputs,
            priority=priority,
            run_after=run_after,
            unique_key=unique_key,
            max_attempts=max_attempts,
            timeout=timeout,
        )

    if TYPE_CHECKING:
        # For type checkers: `async def run` and a plain `def run` are both overrides.
        def run(self) -> Awaitable[None] | None: ...
    else:

        async def run(self) -> None:
            raise NotImplementedError(f"{type(self).__name__} must define run()")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id} inputs={self.inputs!r}>"


def _check_priority(name: str, priority: Any) -> int | None:
    if priority is None or (isinstance(priority, int) and not isinstance(priority, bool)):
        return priority
    raise InvalidJobOptionError(
        f"{name}: priority must be a whole number (higher runs first), not {priority!r}"
    )


def _check_run_after(name: str, run_after: Any) -> dt.datetime | dt.timedelta | None:
    """A datetime, a timedelta, or a number of seconds from now."""
    if run_after is None or isinstance(run_after, dt.timedelta):
        return run_after
    if isinstance(run_after, dt.datetime):
        if timezone.is_naive(run_after):
            return timezone.make_aware(run_after)
        return run_after
    if isinstance(run_after, int | float) and not isinstance(run_after, bool):
        return dt.timedelta(seconds=run_after)
    raise InvalidJobOptionError(
        f"{name}: run_after must be a datetime, a timedelta or seconds from now, not {run_after!r}"
    )


def _as_job(job_or_class: Any) -> BaseJob:
    if isinstance(job_or_class, type) and issubclass(job_or_class, BaseJob):
        job = job_or_class.create()
    elif isinstance(job_or_class, BaseJob):
        job = job_or_class
    else:
        raise NotARegisteredJobError(
            f"{job_or_class!r} is not a BaseJob subclass or instance; "
            "define jobs as `class MyJob(BaseJob)` in <app>/jobs.py"
        )
    name = type(job).__name__
    if registry.get(name) is not type(job):
        raise NotARegisteredJobError(
            f"{name} is not a registered job (abstract, or shadowed by another class "
            "of that name); registered jobs: " + (", ".join(registry.names()) or "none")
        )
    return job


def _inputs_and_json(job: BaseJob) -> tuple[Any, str | None]:
    """The job's inputs as stored (JSON data) and as JSON text, checked against its Inputs."""
    cls, name = type(job), type(job).__name__
    if cls.Inputs is None:
        if job.inputs is not None:
            raise UnexpectedInputsError(
                f"{name}: inputs were given ({job.inputs!r}) but {name} declares no Inputs"
            )
        return None, None
    if job.inputs is None:
        raise MissingInputsError(f"{name}: inputs are missing; {name} declares Inputs")
    data, text = codec.encode(name, cls.Inputs, job.inputs)
    return codec.as_stored(data, text), text


def _run_after(value: dt.datetime | dt.timedelta | None) -> dt.datetime | None:
    if isinstance(value, dt.timedelta):
        return timezone.now() + value
    return value


def build_row(job_or_class: Any, **extra: Any) -> JobDBModel:
    """Validate a job and return its unsaved row; raises before anything is written."""
    row = new_row(job_or_class)
    return JobDBModel(
        name=row.name,
        status=JobDBModel.Status.NEW,
        inputs=row.inputs,
        priority=row.priority,
        run_after=row.run_after,
        scheduled=row.run_after is not None and row.run_after > timezone.now(),
        max_attempts=row.max_attempts,
        timeout=row.timeout,
        unique_key=row.unique_key,
        **extra,
    )


def notify_new_jobs(alias: str) -> None:
    """Wake idle workers once the caller's transaction commits (PostgreSQL only)."""
    connection = connections[alias]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {NEW_JOBS_CHANNEL}")


def create_new(job_or_class: Any) -> JobDBModel:
    """Enqueue one job (a class or an instance); joins the caller's transaction."""
    # The same raw INSERT as bulk_create_new: on PostgreSQL one round trip with its
    # NOTIFY, which is most of a single enqueue's latency.
    alias = conf.database_alias()
    (row,) = bulk.enqueue([[new_row(job_or_class)]], alias)
    if isinstance(job_or_class, BaseJob):
        job_or_class.id = row.pk
    inline.after_enqueue([row.pk], alias)
    return row


def new_row(job_or_class: Any, defaults: tuple[int, float | None] | None = None) -> bulk.NewRow:
    """Validate a job: its varying columns, inputs both as data and as JSON text.

    `defaults` is (MAX_ATTEMPTS, TIMEOUT) read once for a whole batch.
    """
    job = _as_job(job_or_class)
    cls = type(job)
    max_attempts, timeout = defaults or (conf.get("MAX_ATTEMPTS"), conf.get("TIMEOUT"))
    inputs, inputs_json = _inputs_and_json(job)  # raises the same errors as create_new
    unique_key = job.unique_key
    if unique_key is None and cls.unique_fields:
        unique_key = options.key_from_inputs(cls, inputs)
    if job.timeout_override is not None:
        timeout = job.timeout_override
    elif cls.timeout is not None:
        timeout = cls.timeout
    return bulk.NewRow(
        name=cls.__name__,
        inputs_json=inputs_json,
        inputs=inputs,
        priority=job.priority_override if job.priority_override is not None else cls.priority,
        max_attempts=job.max_attempts_override or cls.max_attempts or max_attempts,
        timeout=timeout,
        run_after=_run_after(job.run_after),
        unique_key=unique_key,
    )


def bulk_create_new(jobs: Iterable[Any]) -> list[JobDBModel]:
    """Enqueue many jobs in a few statements; all or none are written."""
    jobs = list(jobs)
    defaults = (conf.get("MAX_ATTEMPTS"), conf.get("TIMEOUT"))

    def validated() -> Iterator[list[bulk.NewRow]]:
        # Chunk by chunk: PostgreSQL inserts one while the next is checked. A job that
        # fails validation rolls back the chunks already sent, so none are written.
        for lo in range(0, len(jobs), bulk.CHUNK):
            yield [new_row(job, defaults) for job in jobs[lo : lo + bulk.CHUNK]]

    # Raw INSERTs with their NOTIFY (bulk.py): ORM bulk_create costs ~10x more per job.
    alias = conf.database_alias()
    rows = bulk.enqueue(validated(), alias)
    for job, row in zip(jobs, rows, strict=True):
        if isinstance(job, BaseJob):
            job.id = row.pk
    inline.after_enqueue([row.pk for row in rows], alias)
    return rows


async def acreate_new(job_or_class: Any) -> JobDBModel:
    """Async twin of create_new."""
    return await sync_to_async(create_new)(job_or_class)


async def abulk_create_new(jobs: Iterable[Any]) -> list[JobDBModel]:
    """Async twin of bulk_create_new."""
    return await sync_to_async(bulk_create_new)(list(jobs))
