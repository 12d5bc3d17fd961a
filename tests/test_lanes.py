"""Database lanes: job bodies' ORM work on a bounded set of threads and connections.

Real workers on the real test database. Each test forces the interleaving it is about
(a barrier every job must reach at once, a row lock held by the test, a killed server
process) and fails on a worker that runs ORM calls through one shared thread.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.db import connection

import djap
from djap_django.models import JobDBModel, PipelineDBModel
from djap_django.queue.postgres import connection_params
from djap_django.worker import Worker, WorkerOptions
from tests.conftest import wait_until
from tests.testapp import jobs as testjobs
from tests.testapp.jobs import LaneWhere, StuckInOrm, SyncLaneWhere
from tests.testapp.models import Execution
from tests.testapp.pipelines import ChainOfThree

pg_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="server processes and row locks are PostgreSQL's"
)


async def _until(condition, timeout: float = 30.0, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not await sync_to_async(condition)():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(0.02)


def _outputs(rows) -> list[dict]:
    return [JobDBModel.objects.get(pk=r.pk).outputs for r in rows]


async def test_async_jobs_make_their_orm_calls_at_once_each_on_its_own_lane():
    # Four jobs must all be inside an ORM call at the same time to pass the barrier:
    # through one shared thread the first would wait there alone until it broke.
    testjobs.LANE_GATES["four"] = threading.Barrier(4, timeout=15)
    rows = [
        await djap.acreate_new(LaneWhere.create(LaneWhere.Inputs(barrier="four"))) for _ in range(4)
    ]
    worker = Worker(WorkerOptions(concurrency=8, lanes=4, num_jobs=4, timeout=60, grace=0))
    stats = await worker.run()
    assert stats.done == 4, await sync_to_async(
        lambda: [r.error for r in JobDBModel.objects.all()]
    )()
    outs = await sync_to_async(_outputs)(rows)
    threads = {o["first"]["thread"] for o in outs}
    assert len(threads) == 4 and all(t.startswith("djap-lane-") for t in threads)
    for o in outs:
        # A job's calls stay on its lane, so a transaction would too.
        assert o["first"] == o["second"]


async def test_lanes_bound_the_threads_and_connections_and_keep_them_between_jobs():
    rows = [await djap.acreate_new(LaneWhere.create(LaneWhere.Inputs())) for _ in range(25)]
    rows += [await djap.acreate_new(SyncLaneWhere) for _ in range(25)]
    worker = Worker(WorkerOptions(concurrency=20, lanes=3, num_jobs=50, timeout=60, grace=0))
    stats = await worker.run()
    assert stats.done == 50
    outs = await sync_to_async(_outputs)(rows)
    seen = [o.get("first", o) for o in outs]
    assert {s["thread"] for s in seen} <= {"djap-lane-0_0", "djap-lane-1_0", "djap-lane-2_0"}
    # 50 jobs under Django's default CONN_MAX_AGE = 0: still at most one connection a lane.
    assert len({s["backend"] for s in seen}) <= 3


async def test_a_pipeline_step_finishes_while_a_job_is_stuck_in_an_orm_call():
    holder = None
    if connection.vendor == "postgresql":
        await Execution.objects.acreate(key=-1, pid=0)
        holder = await psycopg.AsyncConnection.connect(**connection_params(connection))
        await holder.execute("SELECT 1 FROM testapp_execution WHERE key = -1 FOR UPDATE")
    else:
        testjobs.LANE_GATES["stuck"] = threading.Event()
    stuck = await djap.acreate_new(StuckInOrm)
    worker = Worker(WorkerOptions(concurrency=4, lanes=2, grace=0))
    run = asyncio.create_task(worker.run())
    try:
        await _until(
            lambda: JobDBModel.objects.get(pk=stuck.pk).status == "in_progress",
            message="the stuck job runs",
        )
        started = time.monotonic()
        pipeline = await ChainOfThree.atrigger(ChainOfThree.jobs[0].Inputs(text="abc"))
        # Three steps, each finished in one ORM transaction by the worker itself.
        await _until(
            lambda: PipelineDBModel.objects.get(pk=pipeline.pk).status == "done",
            timeout=10,
            message="the pipeline finishes beside the stuck job",
        )
        assert time.monotonic() - started < 10
        assert (await JobDBModel.objects.aget(pk=stuck.pk)).status == "in_progress"
    finally:
        if holder is not None:
            await holder.close()  # the lock goes, the stuck call returns
        else:
            testjobs.LANE_GATES["stuck"].set()
        worker.request_stop()
        await asyncio.wait_for(run, 60)


@pg_only
async def test_a_lane_drops_a_broken_connection_and_the_next_job_reconnects():
    worker = Worker(WorkerOptions(concurrency=1, lanes=1, grace=0))
    run = asyncio.create_task(worker.run())

    async def one():
        row = await djap.acreate_new(SyncLaneWhere)
        await _until(
            lambda: JobDBModel.objects.get(pk=row.pk).status in ("done", "failed"),
            message="the job finishes",
        )
        return await JobDBModel.objects.aget(pk=row.pk)

    try:
        first = await one()
        assert first.status == "done"
        pid = first.outputs["backend"]
        killer = await psycopg.AsyncConnection.connect(**connection_params(connection))
        await killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await killer.close()
        broken = await one()
        assert broken.status == "failed"  # its connection was gone under it
        again = await one()
        assert again.status == "done" and again.outputs["backend"] != pid
        assert again.outputs["thread"] == first.outputs["thread"]  # the same lane
    finally:
        worker.request_stop()
        await asyncio.wait_for(run, 60)


def test_a_stuck_sync_task_does_not_hold_the_exit_past_grace(procs):
    from tests.testapp.tasks import hang

    result = hang.enqueue(3600)
    worker = procs.start("work", "--grace", "1", "--include", "task:hanging")
    wait_until(
        lambda: JobDBModel.objects.get(pk=int(result.id)).status == "in_progress",
        message="the task runs",
    )
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, procs.log(worker)
    # Grace (1 s), then at most 2 s for threads to end, then the exit: never the hour.
    assert time.monotonic() - started < 1 + 2 + 3, procs.log(worker)
    assert JobDBModel.objects.get(pk=int(result.id)).status == "new"  # put back
