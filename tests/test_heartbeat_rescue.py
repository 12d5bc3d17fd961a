"""A live worker's jobs are never rescued from it: its row gone, marked dead, or a lock held.

Each test runs a real worker in this process against the real database, changes its
row (or holds a lock) from another connection the way an admin, a rescuer on another
host or an open request would, and checks that the job runs exactly once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.test import override_settings

import djap
from djap_django import conf
from djap_django.models import JobDBModel, WorkerDBModel
from djap_django.queue import WorkerInfo, open_queue
from djap_django.worker import Worker, WorkerOptions
from tests.conftest import wait_until
from tests.testapp.jobs import RecordAndReport, RecordExecution


def executions(key: int) -> list[str]:
    from tests.testapp.models import Execution

    return list(Execution.objects.filter(key=key).order_by("id").values_list("env", flat=True))


async def until(condition, message: str, timeout: float = 30) -> None:
    await asyncio.to_thread(wait_until, condition, timeout, message)


def run_with_its_row_changed(change) -> tuple[int, JobDBModel]:
    """Run one job; while it runs, `change(worker_id)` and rescue from elsewhere."""
    row = djap.create_new(RecordAndReport.create({"key": 1, "seconds": 1.0}))

    async def scenario() -> int:
        worker = Worker(WorkerOptions(concurrency=2, grace=30, num_jobs=1))
        task = asyncio.ensure_future(worker.run())
        await until(lambda: "start of attempt 1" in executions(1), "the job runs")
        # Another worker or supervisor rescues right after the change, as it may any time.
        rescuer = open_queue()
        await rescuer.connect()
        try:
            await sync_to_async(change)(worker.worker_id)
            report = await rescuer.jobs_rescue_stale(
                conf.get("STALE_AFTER"), conf.get("MAX_CRASHES")
            )
        finally:
            await rescuer.close()
        requeued = report.requeued
        assert requeued == 0, "the job of a live worker was rescued"
        # The worker takes its row back at its next beat, under the same id and pid.
        await until(
            lambda: WorkerDBModel.objects.filter(
                pk=worker.worker_id, pid=os.getpid(), state="running"
            ).exists(),
            "the worker's row is its own again",
        )
        await asyncio.wait_for(task, 60)
        return requeued

    requeued = asyncio.run(scenario())
    return requeued, JobDBModel.objects.get(pk=row.pk)


def test_a_live_workers_row_deleted_by_hand_comes_back_and_its_job_runs_once():
    requeued, row = run_with_its_row_changed(
        lambda worker_id: WorkerDBModel.objects.filter(pk=worker_id).delete()
    )
    assert (row.status, row.attempts, row.crashes) == ("done", 1, 0)
    assert executions(1) == ["start of attempt 1", "end of attempt 1"]


def test_a_live_worker_marked_dead_by_mistake_keeps_its_job():
    requeued, row = run_with_its_row_changed(
        lambda worker_id: WorkerDBModel.objects.filter(pk=worker_id).update(state="dead")
    )
    assert (row.status, row.attempts, row.crashes) == ("done", 1, 0)
    assert executions(1) == ["start of attempt 1", "end of attempt 1"]


async def test_a_worker_row_that_still_holds_a_job_is_never_pruned():
    queue = open_queue()
    await queue.connect()
    try:
        holder = await queue.worker_register(WorkerInfo(host="h", pid=1))
        idle = await queue.worker_register(WorkerInfo(host="h", pid=2))
        await djap.acreate_new(RecordExecution.create({"key": 1}))
        await queue.jobs_claim(holder, 1, None, [])
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        await WorkerDBModel.objects.aupdate(state="dead", last_heartbeat=long_ago)
        assert await queue.workers_prune(3600) == 1
    finally:
        await queue.close()
    assert [w.pk async for w in WorkerDBModel.objects.all()] == [holder]
    assert idle != holder


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's")
def test_heartbeats_go_on_while_a_transaction_holds_a_job_row_a_rescue_wants():
    """cancel() joins the caller's transaction: a slow request holds the job row meanwhile."""
    from djap_django.queue.postgres import connection_params

    job = djap.create_new(RecordExecution.create({"key": 1}))
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    dead = WorkerDBModel.objects.create(
        host="gone", pid=1, started_at=long_ago, last_heartbeat=long_ago
    )
    JobDBModel.objects.filter(pk=job.pk).update(status="in_progress", worker=dead, attempts=1)
    holder = psycopg.connect(**connection_params(connection))  # a transaction, not autocommit
    holder.execute("SELECT id FROM djap_job WHERE id = %s FOR UPDATE", (job.pk,))

    async def scenario() -> None:
        worker = Worker(WorkerOptions(concurrency=1, grace=5))
        task = asyncio.ensure_future(worker.run())
        beats: set = set()

        def beat_seen_often() -> bool:
            row = WorkerDBModel.objects.filter(pk=worker.worker_id).first()
            if row is not None:
                beats.add(row.last_heartbeat)
            # 5 beats make a rescue; 15 distinct beats means the rescue held nothing up.
            return len(beats) >= 15

        try:
            await until(beat_seen_often, "heartbeats while the job row is locked", timeout=20)
        finally:
            await asyncio.to_thread(holder.rollback)
        # Released: the next rescue takes the job and this worker runs it.
        await until(
            lambda: JobDBModel.objects.filter(pk=job.pk, status="done").exists(),
            "the job, rescued once the lock went, is done",
        )
        worker.request_stop()
        await asyncio.wait_for(task, 60)

    fast = {**settings.DJAP, "HEARTBEAT_INTERVAL": 0.1, "STALE_AFTER": 1.0}
    try:
        with override_settings(DJAP=fast):
            asyncio.run(scenario())
    finally:
        holder.close()
    assert executions(1) == [""]
    assert JobDBModel.objects.get(pk=job.pk).crashes == 1
