"""Celery 5, Redis broker, prefork pool. CELERY_RESULTS=1|0: result backend on or off.

One "worker process" is one `celery worker -P prefork -c CELERY_CONC` instance (a parent
and CELERY_CONC pool processes); "2 procs" is two instances. CELERY_CONC defaults to 2 (the
cores) for the no-op and to 20 for the ORM job, whose 5 ms on the server leave the pool
processes idle most of the time.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from importlib.metadata import version
from typing import Any

import redis

import common
from celery_app import RESULTS, app, noop, orm

CONC = os.environ.get("CELERY_CONC", "2" if common.JOB == "noop" else "20")
PREFETCH = os.environ.get("CELERY_PREFETCH", "4")
#: Tasks per group in the second enqueue API.
CHUNK = 1000


class P(common.Peer):
    name = "celery-results" if RESULTS else "celery-noresults"
    version = f"celery {version('celery')}, kombu {version('kombu')}, redis-py {version('redis')}"
    bulk_api = "a loop of task.apply_async((i,), producer=p) on one producer"
    settings = (
        f"prefork -c {CONC}, prefetch_multiplier={PREFETCH}, --without-gossip/mingle/heartbeat, "
        + ("result backend redis db 1" if RESULTS else "task_ignore_result=True, no backend")
        + ", acks_late=False (default)"
    )
    jobs = ("noop", "orm")

    def setup(self) -> None:
        self.task = noop if common.JOB == "noop" else orm
        if common.JOB == "orm":
            common.recreate_db("celery")
            import django

            django.setup()
            from django.core.management import call_command

            call_command("migrate", verbosity=0)
        self.r0 = redis.Redis.from_url(f"{common.REDIS_URL}/0")
        self.r1 = redis.Redis.from_url(f"{common.REDIS_URL}/1")

    def reset(self) -> None:
        self.r0.flushdb()
        self.r1.flushdb()
        if common.JOB == "orm":
            from djbench.models import BenchRow

            BenchRow.objects.all().delete()

    def enqueue_bulk(self, n: int) -> None:
        with app.producer_or_acquire() as p:
            for i in range(n):
                self.task.apply_async((i,), producer=p)

    def enqueue_bulk_alt(self, n: int) -> str | None:
        from celery import group

        for s in range(0, n, CHUNK):
            group(self.task.s(i) for i in range(s, min(n, s + CHUNK))).apply_async()
        return f"group(task.s(i) ...).apply_async() per {CHUNK}"

    def enqueue_one(self, i: int) -> None:
        self.task.apply_async((i,))

    def start_workers(
        self, nprocs: int, env: dict[str, Any], log: pathlib.Path
    ) -> list[subprocess.Popen]:
        return [
            common.spawn(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "celery_app",
                    "worker",
                    "-P",
                    "prefork",
                    "-c",
                    CONC,
                    "-n",
                    f"w{k}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-l",
                    "WARNING",
                ],
                env,
                log,
            )  # fmt: skip
            for k in range(nprocs)
        ]

    def done_count(self) -> int | None:
        if not RESULTS:
            return None  # acks_late=False: a message is acked before its task runs
        return self.r1.dbsize()  # one celery-task-meta-<id> key per finished task

    def post_check(self, n: int) -> dict[str, Any]:
        out = {"left_in_broker_queue": self.r0.llen("celery"), "unacked": self.r0.hlen("unacked")}
        if RESULTS:
            out["result_keys"] = self.r1.dbsize()
        return out


if __name__ == "__main__":
    common.run_peer(P())
