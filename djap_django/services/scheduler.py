"""The worker's scheduler of periodic jobs: enqueue each due tick once, cluster-wide.

`run_once` is one pass over every schedule (see djap_django/periodic.py for how the
database decides who enqueues a tick); the service loop decides when to look again:
at the next tick, or after PERIODIC_INTERVAL, whichever comes first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError, close_old_connections, connections, transaction
from django.utils import timezone

from .. import conf, periodic
from ..jobs import create_new
from ..models import PeriodicScheduleDBModel as Row
from ..queue import Queue
from ..resilience import DbGuard
from .base import Service

logger = logging.getLogger("djap.periodic")

#: Sleep at least this long (seconds) between two passes, even when a tick is due sooner.
MIN_SLEEP_S = 0.05


def _inputs(cls: Any) -> Any:
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
    alias = alias or conf.database_alias()
    classes = periodic.periodic_classes()
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
    cls: Any,
    schedule: periodic.Schedule,
    row: Any,
    now: dt.datetime,
    report: TickReport,
) -> None:

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
        key = None if cls.periodic_overlap else periodic.PERIODIC_KEY
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


class PeriodicScheduler(Service):
    name = "periodic"

    def __init__(self, queue: Queue, guard: DbGuard, alias: str | None = None) -> None:
        super().__init__(queue, guard)
        self.alias = alias
        self._wait = conf.get("PERIODIC_INTERVAL")
        #: Ticks this process enqueued (tests and logs).
        self.enqueued = 0

    def enabled(self) -> bool:
        return bool(periodic.periodic_classes())

    def first_delay_s(self) -> float:
        return 0.0

    def interval_s(self) -> float:
        return self._wait

    async def run_once(self) -> TickReport:
        """One check of every schedule; returns what it enqueued and when the next tick is."""
        interval = conf.get("PERIODIC_INTERVAL")
        self._wait = interval  # after an error: look again after the interval
        try:
            report = await sync_to_async(run_once)(self.alias)
        except DatabaseError:
            # An outage: the tick stays due in its row for whoever is up. Django keeps a
            # broken connection until someone closes it.
            await sync_to_async(close_old_connections)()
            raise
        self.enqueued += len(report.enqueued)
        if report.next_in is not None:
            self._wait = max(MIN_SLEEP_S, min(interval, report.next_in))
        return report
