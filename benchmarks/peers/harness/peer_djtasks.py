"""django-tasks (the backport of django.tasks) with django-tasks-db; worker: `db_worker`.

django-tasks 0.12 moved the DatabaseBackend and db_worker to the separate package
django-tasks-db (module django_tasks_db); that is what runs here.
DJT_DB=pg|sqlite; DJT_INTERVAL: db_worker --interval (default 1, its default).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from importlib.metadata import version
from typing import Any

import common

DBKIND = os.environ.get("DJT_DB", "pg")
INTERVAL = os.environ.get("DJT_INTERVAL", "1")
os.environ.update(
    BENCH_DJ_APP="tasks",
    BENCH_DJ_DB=DBKIND,
    BENCH_DJ_DBNAME="djtasks",
    BENCH_DJ_SQLITE=str(common.WORK / "djtasks.sqlite3"),
    DJANGO_SETTINGS_MODULE="djbench.settings",
)

import django  # noqa: E402

#: Enqueues per transaction in the second enqueue API.
CHUNK = 1000


class P(common.Peer):
    name = f"django-tasks-{DBKIND}" + ("" if INTERVAL == "1" else f"-interval{INTERVAL}")
    version = (
        f"django-tasks {version('django-tasks')} + django-tasks-db {version('django-tasks-db')}"
        f", Django {version('Django')}"
    )
    bulk_api = "no bulk API: a loop of task.enqueue(i) (autocommit)"
    settings = (
        f"db_worker --interval {INTERVAL} --no-startup-delay --verbosity 0, "
        "one task at a time per process"
        + (
            ", SQLite WAL, synchronous=NORMAL, transaction_mode=IMMEDIATE"
            if DBKIND == "sqlite"
            else ", CONN_MAX_AGE=None"
        )
    )
    jobs = ("noop", "orm") if DBKIND == "pg" else ("noop",)

    def setup(self) -> None:
        if DBKIND == "pg":
            common.recreate_db("djtasks")
        else:
            common.sqlite_path("djtasks")
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from django_tasks_db.models import DBTaskResult

        from djbench import jobs

        self.M = DBTaskResult
        self.task = jobs.noop if common.JOB == "noop" else jobs.orm

    def reset(self) -> None:
        from django.db import connection

        tables = [self.M._meta.db_table]
        if common.JOB == "orm":
            from djbench.models import BenchRow

            tables.append(BenchRow._meta.db_table)
        with connection.cursor() as c:
            for t in tables:
                c.execute(f"TRUNCATE {t}" if DBKIND == "pg" else f"DELETE FROM {t}")

    def enqueue_bulk(self, n: int) -> None:
        for i in range(n):
            self.task.enqueue(i)

    def enqueue_bulk_alt(self, n: int) -> str | None:
        from django.db import transaction

        for s in range(0, n, CHUNK):
            with transaction.atomic():
                for i in range(s, min(n, s + CHUNK)):
                    self.task.enqueue(i)
        return f"the enqueue() loop inside transaction.atomic() per {CHUNK}"

    def enqueue_one(self, i: int) -> None:
        self.task.enqueue(i)

    def start_workers(
        self, nprocs: int, env: dict[str, Any], log: pathlib.Path
    ) -> list[subprocess.Popen]:
        return [
            common.spawn(
                [
                    sys.executable,
                    "manage.py",
                    "db_worker",
                    "--interval",
                    INTERVAL,
                    "--no-startup-delay",
                    "--worker-id",
                    f"w{k}",
                    "--verbosity",
                    "0",
                ],
                env,
                log,
            )  # fmt: skip
            for k in range(nprocs)
        ]

    def done_count(self) -> int | None:
        return self.M.objects.filter(status="SUCCESSFUL").count()

    def post_check(self, n: int) -> dict[str, Any]:
        from django.db.models import Count

        rows = self.M.objects.values("status").annotate(n=Count("id"))
        return {r["status"]: r["n"] for r in rows}


if __name__ == "__main__":
    common.run_peer(P())
