"""The reads that fill a snapshot: one function per question asked of the database.

Each is a plain function of a database alias, so the reader that decides how often
to ask (`djap.status.reader`) and the metrics endpoint share them. Every host's
workers come from the worker table.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from .snapshot import Failure, WorkerView, error_line

if TYPE_CHECKING:
    from djap_django.counts import JobCounts

#: Worker rows that stopped or died within this many seconds are still shown.
RECENT_WORKERS_S = 300.0
#: How many recent failures a snapshot carries.
FAILURES_SHOWN = 5


def db_now(alias: str) -> dt.datetime:
    """The database's clock: heartbeats on PostgreSQL are written with its now()."""
    from django.db import connections
    from django.utils import timezone

    connection = connections[alias]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT now()")
            return cursor.fetchone()[0]
    return timezone.now()


def query_counts(alias: str, statuses: tuple[str, ...] | None = None) -> JobCounts:
    """Counts per job name and status, exact up to a cap and estimated past it (labelled).

    Each status is read through its own partial index, at most djap_django.counts.CAP
    rows of it, so a snapshot costs the same beside a million waiting jobs.
    """
    from djap_django.counts import STATUSES, job_counts

    return job_counts(alias, statuses or STATUSES)


def query_queue(alias: str, statuses: tuple[str, ...] | None = None) -> dict[str, dict[str, int]]:
    """{name: {status: count}} (see query_counts; some counts may be estimates)."""
    return query_counts(alias, statuses).counts


def query_workers(alias: str, now: dt.datetime, stale_after: float) -> list[WorkerView]:
    """Live workers on every host, and those that ended recently."""
    from django.db.models import Q

    from djap_django.models import WorkerDBModel

    recent = now - dt.timedelta(seconds=RECENT_WORKERS_S)
    rows = (
        WorkerDBModel.objects.using(alias)
        .filter(Q(state__in=("running", "draining")) | Q(last_heartbeat__gte=recent))
        .order_by("host", "group", "id")
    )
    views = []
    for w in rows:
        age = max(0.0, (now - w.last_heartbeat).total_seconds())
        views.append(
            WorkerView(
                id=w.pk,
                host=w.host,
                pid=w.pid,
                group=w.group,
                state=w.state,
                alive=w.state in ("running", "draining") and age <= stale_after,
                started_at=w.started_at,
                last_heartbeat=w.last_heartbeat,
                heartbeat_age=age,
                jobs_done=w.jobs_done,
                jobs_failed=w.jobs_failed,
                in_flight=w.in_flight,
                concurrency=w.concurrency,
                connections=w.connections,
                include=w.include,
                exclude=list(w.exclude or []),
                supervisor_pid=w.supervisor_pid,
            )
        )
    return views


def query_pipelines(alias: str) -> dict[str, int]:
    """{status: count} of pipeline runs."""
    from django.db.models import Count

    from djap_django.models import PipelineDBModel

    rows = PipelineDBModel.objects.using(alias).values_list("status").annotate(n=Count("id"))
    return dict(rows.order_by())


def query_failures(alias: str, limit: int = FAILURES_SHOWN) -> list[Failure]:
    """The newest failed jobs, each with the line of its error that names the cause."""
    from djap_django.models import JobDBModel

    rows = (
        JobDBModel.objects.using(alias)
        # finished_at is set on every failed row; saying so lets the partial index
        # djap_job_finished serve this instead of a scan of the whole table.
        .filter(status="failed", finished_at__isnull=False)
        .order_by("-finished_at", "-id")
        .values("id", "name", "finished_at", "error")[:limit]
    )
    return [Failure(r["id"], r["name"], r["finished_at"], error_line(r["error"])) for r in rows]


def query_runnable_names(alias: str, now: dt.datetime) -> list[str]:
    """Names of jobs that are waiting and due: what some worker should be taking.

    A skip scan of the due jobs' per-name index: one descent per name, not a row each.
    """
    from djap_django.counts import due_names

    return due_names(alias)


def preflight(alias: str | None = None) -> None:
    """Fail with one line naming the fix when the queue tables cannot be read."""
    from ..django_setup import check_database

    check_database(alias)
