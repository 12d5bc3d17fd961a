"""The jobs `djap bench` runs. Imported only by the bench and its workers.

They live here, not in the user's project, so the bench works on any project;
importing this module registers them, which is why no `jobs.py` imports it.
Each run appends one line "<i> <unix time at start>" to the file named by
DJAP_BENCH_MARKS: the bench reads it back to prove that every job ran exactly
once, independently of the queue's own bookkeeping.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from django.db import connections, models
from django.db.backends.signals import connection_created
from django.db.models.expressions import RawSQL

from . import conf
from .jobs import BaseJob

#: Environment variable naming the marker file the bench jobs append to.
MARKS_ENV = "DJAP_BENCH_MARKS"

_fd: int | None = None


def mark(i: int) -> None:
    """Record that job `i` started, in one O_APPEND write (atomic for a short line)."""
    global _fd
    if _fd is None:
        _fd = os.open(os.environ[MARKS_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, b"%d %.6f\n" % (i, time.time()))


class DjapBenchNoop(BaseJob):
    """Does nothing but mark that it ran: measures the queue, not the job."""

    @dataclass
    class Inputs:
        i: int

    async def run(self) -> None:
        mark(self.inputs.i)


class DjapBenchSleep(BaseJob):
    """Marks, then sleeps: shows how many jobs one process keeps in flight."""

    @dataclass
    class Inputs:
        i: int
        seconds: float = 1.0

    async def run(self) -> None:
        mark(self.inputs.i)
        await asyncio.sleep(self.inputs.seconds)


#: SQLite has no server to sleep in: this SQL function sleeps in the calling thread, which
#: is where SQLite does its work (it releases the GIL, as waiting on a server does).
SQLITE_SLEEP_FUNCTION = "djap_bench_sleep"


def _sqlite_sleep(seconds: float) -> int:
    time.sleep(seconds)
    return 0


def _add_sqlite_sleep(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor == "sqlite":
        connection.connection.create_function(SQLITE_SLEEP_FUNCTION, 1, _sqlite_sleep)


connection_created.connect(_add_sqlite_sleep, dispatch_uid="djap-bench-sqlite-sleep")


class DjapBenchRow(models.Model):
    """The ORM bench's table: created by `djap bench --job orm` and dropped after it.

    Unmanaged, and labelled with an app that is not installed, so no migration (nor
    makemigrations) ever puts it in a user's database; the bench makes it with Django's
    schema editor for the run.
    """

    i = models.IntegerField()
    note = models.CharField(max_length=40)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "djap_bench"
        managed = False
        db_table = "djap_bench_row"

    # Its app is not installed, so django-stubs cannot add the manager itself.
    objects: ClassVar[models.Manager[DjapBenchRow]]


def slow_query(alias: str, pk: int, seconds: float) -> models.QuerySet:
    """One ORM query that takes `seconds` in the database (pg_sleep, or SQLite's stand-in)."""
    vendor = connections[alias].vendor
    sleep = "pg_sleep(%s)::text" if vendor == "postgresql" else f"{SQLITE_SLEEP_FUNCTION}(%s)"
    return (
        DjapBenchRow.objects.using(alias)
        .filter(pk=pk)
        .annotate(slept=RawSQL(sleep, (seconds,), output_field=models.TextField()))
        .values_list("i", "note", "slept")
    )


def orm_body(i: int, query_s: float) -> int:
    """The ORM bench job's body: one insert, one query that takes `query_s` on the server."""
    alias = conf.database_alias()
    row = DjapBenchRow.objects.using(alias).create(i=i, note=f"bench {i}")
    found = list(slow_query(alias, row.pk, query_s))
    return len(found)


async def aorm_body(i: int, query_s: float) -> int:
    """`orm_body` through Django's async ORM (acreate, async for)."""
    alias = conf.database_alias()
    row = await DjapBenchRow.objects.using(alias).acreate(i=i, note=f"bench {i}")
    return len([r async for r in slow_query(alias, row.pk, query_s)])


class DjapBenchOrm(BaseJob):
    """A real job body through the async ORM: one insert and one query of `query_s`."""

    @dataclass
    class Inputs:
        i: int
        query_s: float = 0.005

    async def run(self) -> None:
        mark(self.inputs.i)
        if await aorm_body(self.inputs.i, self.inputs.query_s) != 1:
            raise RuntimeError("the bench row just inserted was not found")


class DjapBenchOrmSync(BaseJob):
    """`DjapBenchOrm` as a plain `def run` (runs on a thread)."""

    @dataclass
    class Inputs:
        i: int
        query_s: float = 0.005

    def run(self) -> None:
        mark(self.inputs.i)
        if orm_body(self.inputs.i, self.inputs.query_s) != 1:
            raise RuntimeError("the bench row just inserted was not found")


#: The bench's job names: its workers run only these, and its cleanup deletes only these.
NAMES = [
    DjapBenchNoop.__name__,
    DjapBenchSleep.__name__,
    DjapBenchOrm.__name__,
    DjapBenchOrmSync.__name__,
]
