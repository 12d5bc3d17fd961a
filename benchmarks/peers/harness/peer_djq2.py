"""django-q2 with its ORM broker on PostgreSQL; worker: `manage.py qcluster`.

One "worker process" is one qcluster (a sentinel, a pusher, a monitor and Q2_WORKERS pool
processes). Q2_WORKERS (default 2: the cpu count, its documented default), Q2_BULK
(default 1), Q2_POLL (default 0.2).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from importlib.metadata import version
from typing import Any

import common

os.environ.update(
    BENCH_DJ_APP="q2",
    BENCH_DJ_DB="pg",
    BENCH_DJ_DBNAME="djq2",
    DJANGO_SETTINGS_MODULE="djbench.settings",
)

import django  # noqa: E402

#: Enqueues per transaction in the second enqueue API.
CHUNK = 1000


class P(common.Peer):
    name = "django-q2"
    version = f"django-q2 {version('django-q2')}, Django {version('Django')}"
    bulk_api = "no bulk API: a loop of async_task(f, i, broker=b) (autocommit)"
    jobs = ("noop", "orm")

    def setup(self) -> None:
        common.recreate_db("djq2")
        django.setup()
        from django.conf import settings

        q = settings.Q_CLUSTER
        self.settings = (
            f"1 proc = 1 qcluster with workers={q['workers']}, bulk={q['bulk']}, "
            f"poll={q['poll']}, save_limit=0 (keep all results), orm broker, CONN_MAX_AGE=None"
        )
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from django_q.brokers import get_broker
        from django_q.models import OrmQ, Success, Task
        from django_q.tasks import async_task

        self.broker, self.OrmQ, self.Success, self.Task = get_broker(), OrmQ, Success, Task
        self.async_task = async_task
        self.func = "djbench.jobs.q2_noop" if common.JOB == "noop" else "djbench.jobs.q2_orm"

    def reset(self) -> None:
        from django.db import connection

        tables = [self.OrmQ._meta.db_table, self.Task._meta.db_table]
        if common.JOB == "orm":
            from djbench.models import BenchRow

            tables.append(BenchRow._meta.db_table)
        with connection.cursor() as c:
            c.execute(f"TRUNCATE {', '.join(tables)}")

    def enqueue_bulk(self, n: int) -> None:
        for i in range(n):
            self.async_task(self.func, i, broker=self.broker)

    def enqueue_bulk_alt(self, n: int) -> str | None:
        from django.db import transaction

        for s in range(0, n, CHUNK):
            with transaction.atomic():
                for i in range(s, min(n, s + CHUNK)):
                    self.async_task(self.func, i, broker=self.broker)
        return f"the async_task() loop inside transaction.atomic() per {CHUNK}"

    def enqueue_one(self, i: int) -> None:
        self.async_task(self.func, i, broker=self.broker)

    def start_workers(
        self, nprocs: int, env: dict[str, Any], log: pathlib.Path
    ) -> list[subprocess.Popen]:
        cmd = [sys.executable, "manage.py", "qcluster"]
        return [common.spawn(cmd, env, log) for _ in range(nprocs)]

    def done_count(self) -> int | None:
        return self.Success.objects.count()

    def post_check(self, n: int) -> dict[str, Any]:
        return {
            "success_rows": self.Success.objects.count(),
            "failed_rows": self.Task.objects.filter(success=False).count(),
            "left_in_broker": self.OrmQ.objects.count(),
        }


if __name__ == "__main__":
    common.run_peer(P())
