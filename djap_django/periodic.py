"""Periodic jobs: `every = 30` or `cron = "0 3 * * *"` on a BaseJob.

Every worker process runs a PeriodicScheduler (services/scheduler.py) over run_once.
The database decides who enqueues a tick: each periodic class has a row in
djap_periodic with its next due time, and a worker that finds it due moves it on with
a conditional UPDATE (`WHERE next_run_at = <the due time it read>`) and enqueues the
job in the same transaction. Two workers that race for one tick both run that UPDATE;
one of them changes a row, the other none, so the tick is enqueued once. A worker
killed mid-tick rolls both back, and the next worker to look finds the tick still due.
After downtime the next time is worked out from now, so missed ticks are not
replayed: one run, then the schedule.

A tick whose previous run has not ended is skipped (the job is enqueued with a
unique key that the live run still holds), unless the class sets
`periodic_overlap = True`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from django.db import connections, transaction
from django.utils import timezone

from . import conf, cron, registry
from .exceptions import EnqueueError, JobDefinitionError

if TYPE_CHECKING:
    from .jobs import BaseJob

logger = logging.getLogger("djap.periodic")

#: The unique_key a periodic job is enqueued with, so a tick skips while its previous
#: run waits or runs.
PERIODIC_KEY = "djap:periodic"


class Schedule(Protocol):
    def describe(self) -> str: ...
    def next_after(self, after: dt.datetime) -> dt.datetime: ...


@dataclass(frozen=True)
class Every:
    """Every `seconds`, on a grid counted from the Unix epoch, so every host agrees on it."""

    seconds: float

    def describe(self) -> str:
        return f"every {self.seconds:g}s"

    def next_after(self, after: dt.datetime) -> dt.datetime:
        ticks = math.floor(after.timestamp() / self.seconds) + 1
        return dt.datetime.fromtimestamp(ticks * self.seconds, dt.UTC)


@dataclass(frozen=True)
class CronSchedule:
    expression: cron.Cron
    tz_name: str

    def describe(self) -> str:
        return f"cron {self.expression.text} {self.tz_name}"

    def next_after(self, after: dt.datetime) -> dt.datetime:
        return self.expression.next_after(after, cron.zone(self.tz_name))


def _where(cls: type, attribute: str) -> str:
    return f"{cls.__module__}.{cls.__qualname__}.{attribute}"


def _every_seconds(cls: type[BaseJob]) -> float:
    every = cls.every
    if isinstance(every, dt.timedelta):
        every = every.total_seconds()
    if isinstance(every, bool) or not isinstance(every, int | float) or not every > 0:
        raise JobDefinitionError(
            f"{_where(cls, 'every')} must be seconds > 0 or a timedelta, not {cls.every!r}"
        )
    return float(every)


def _schedule(cls: type[BaseJob]) -> Schedule | None:
    if cls.every is not None and cls.cron is not None:
        raise JobDefinitionError(
            f"{_where(cls, 'every')} and .cron are both set; a periodic job has one schedule"
        )
    if cls.every is not None:
        return Every(_every_seconds(cls))
    if cls.cron is None:
        return None
    try:
        expression = cron.parse(cls.cron)
    except cron.CronError as exc:
        raise JobDefinitionError(f"{_where(cls, 'cron')}: {exc}") from None
    try:
        cron.zone(cls.cron_tz)
    except cron.CronError as exc:
        raise JobDefinitionError(f"{_where(cls, 'cron_tz')}: {exc}") from None
    return CronSchedule(expression, cls.cron_tz)


def _required_fields(inputs_cls: type) -> list[str]:
    if not dataclasses.is_dataclass(inputs_cls):
        return []
    missing = dataclasses.MISSING
    return [
        f.name
        for f in dataclasses.fields(inputs_cls)
        if f.init and f.default is missing and f.default_factory is missing
    ]


def _check_inputs(cls: type[BaseJob]) -> None:
    """A tick has no caller to give inputs: they come from periodic_inputs or defaults."""
    from . import codec

    if cls.periodic_inputs is not None:
        if cls.Inputs is None:
            raise JobDefinitionError(
                f"{_where(cls, 'periodic_inputs')} is set, but {cls.__name__} declares no Inputs"
            )
        try:
            codec.encode(cls.__name__, cls.Inputs, cls.periodic_inputs)
        except EnqueueError as exc:
            raise JobDefinitionError(f"{_where(cls, 'periodic_inputs')}: {exc}") from None
        return
    if cls.Inputs is None:
        return
    required = _required_fields(cls.Inputs)
    if required or not dataclasses.is_dataclass(cls.Inputs):
        fields = f" ({', '.join(required)})" if required else ""
        raise JobDefinitionError(
            f"{_where(cls, 'every' if cls.every is not None else 'cron')}: {cls.__name__} is "
            f"periodic but its Inputs has required fields{fields}; give them defaults or set "
            "`periodic_inputs`"
        )


def check_class(cls: type[BaseJob]) -> None:
    """Raise JobDefinitionError, naming the attribute, for a wrong periodic option."""
    schedule = _schedule(cls)
    if schedule is None:
        if cls.periodic_inputs is not None:
            raise JobDefinitionError(
                f"{_where(cls, 'periodic_inputs')} is set, but {cls.__name__} has no `every` "
                "or `cron`"
            )
        return
    _check_inputs(cls)


def schedule_of(cls: type[BaseJob]) -> Schedule | None:
    """The schedule of a (checked) job class, or None if it is not periodic."""
    return _schedule(cls)


def periodic_classes() -> dict[str, tuple[type[BaseJob], Schedule]]:
    found = {}
    for name in registry.names():
        cls = registry.get(name)
        schedule = schedule_of(cls) if cls is not None else None
        if schedule is not None:
            found[name] = (cls, schedule)
    return found


def _inputs(cls: type[BaseJob]) -> Any:
    if cls.periodic_inputs is not None:
        return cls.periodic_inputs
    return None if cls.Inputs is None else cls.Inputs()


def _db_now(alias: str) -> dt.datetime:
    """The database's clock on PostgreSQL (every host agrees on it); SQLite is one host."""
    connection = connections[alias]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement_timestamp()")
            return cursor.fetchone()[0]
    return timezone.now()


@dataclass
class TickReport:
    enqueued: list[int] = dataclasses.field(default_factory=list)
    #: Ticks that found the previous run still waiting or running.
    skipped: list[str] = dataclasses.field(default_factory=list)
    #: Seconds until the soonest next tick (None: no periodic jobs).
    next_in: float | None = None


def run_once(alias: str | None = None) -> TickReport:
    """Enqueue every periodic job that is due, each tick once cluster-wide."""
    from .models import PeriodicScheduleDBModel as Row

    alias = alias or conf.database_alias()
    classes = periodic_classes()
    report = TickReport()
    if not classes:
        return report
    rows = Row.objects.using(alias)
    now = _db_now(alias)
    known = {r.name: r for r in rows.filter(name__in=classes)}
    fresh = [
        Row(name=name, schedule=schedule.describe(), next_run_at=schedule.next_after(now))
        for name, (_, schedule) in classes.items()
        if name not in known
    ]
    if fresh:
        # Another worker may insert the same rows at once: the unique name keeps one.
        rows.bulk_create(fresh, ignore_conflicts=True)
        known.update({r.name: r for r in rows.filter(name__in=[f.name for f in fresh])})
    soonest = None
    for name, (cls, schedule) in classes.items():
        row = known[name]
        if row.schedule != schedule.describe():
            # A deploy changed the schedule: start its timing afresh from now.
            row.next_run_at = schedule.next_after(now)
            rows.filter(name=name, schedule=row.schedule).update(
                schedule=schedule.describe(), next_run_at=row.next_run_at
            )
        elif row.next_run_at <= now:
            _tick(alias, cls, schedule, row, now, report)
        due_in = (row.next_run_at - now).total_seconds()
        soonest = due_in if soonest is None else min(soonest, due_in)
    report.next_in = soonest
    return report


def _tick(
    alias: str,
    cls: type[BaseJob],
    schedule: Schedule,
    row: Any,
    now: dt.datetime,
    report: TickReport,
) -> None:
    from .jobs import create_new
    from .models import PeriodicScheduleDBModel as Row

    due, following = row.next_run_at, schedule.next_after(now)
    with transaction.atomic(using=alias):
        won = (
            Row.objects.using(alias)
            .filter(name=row.name, next_run_at=due)
            .update(next_run_at=following, last_run_at=now)
        )
        if not won:
            row.next_run_at = Row.objects.using(alias).get(name=row.name).next_run_at
            return  # another worker took this tick
        later = _db_now(alias)
        if following <= later:
            # We waited for a lock long enough for the next tick to fall due too: skip
            # it rather than enqueue it right after this one.
            following = schedule.next_after(later)
            Row.objects.using(alias).filter(name=row.name).update(next_run_at=following)
        key = None if cls.periodic_overlap else PERIODIC_KEY
        job = create_new(cls.create(_inputs(cls), unique_key=key))
        if job.pk == row.last_job_id:
            # The previous tick's run still holds the key: this tick is skipped.
            logger.info(
                "periodic %s: previous run %s has not ended; tick skipped", row.name, job.pk
            )
            report.skipped.append(row.name)
        else:
            Row.objects.using(alias).filter(name=row.name).update(last_job_id=job.pk)
            report.enqueued.append(job.pk)
    row.next_run_at = following
