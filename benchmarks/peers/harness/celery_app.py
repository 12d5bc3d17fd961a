"""The Celery app: Redis broker; CELERY_RESULTS=1 adds the Redis result backend (db 1).

With BENCH_JOB=orm the worker is a Django project too (DJANGO_SETTINGS_MODULE set), so
Celery's Django fixup sets Django up in each pool process and closes obsolete
connections around each task, as in a Django project that runs Celery.
"""

from __future__ import annotations

import os

from celery import Celery

import common

RESULTS = os.environ.get("CELERY_RESULTS", "1") == "1"
BROKER = f"{common.REDIS_URL}/0"
BACKEND = f"{common.REDIS_URL}/1" if RESULTS else None

if common.JOB == "orm":
    os.environ.update(
        BENCH_DJ_APP="celery", BENCH_DJ_DB="pg", BENCH_DJ_DBNAME="celery",
        DJANGO_SETTINGS_MODULE="djbench.settings",
    )  # fmt: skip

app = Celery("bench", broker=BROKER, backend=BACKEND)
app.conf.update(
    task_ignore_result=not RESULTS,
    worker_prefetch_multiplier=int(os.environ.get("CELERY_PREFETCH", "4")),  # 4: its default
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)


@app.task(name="noop")
def noop(i: int) -> None:
    common.mark(i)


@app.task(name="orm")
def orm(i: int) -> None:
    from djbench.orm import orm_body

    common.mark(i)
    orm_body(i)
