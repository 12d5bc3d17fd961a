"""The worker's background services, one pass at a time (`run_once`), on the real database."""

from __future__ import annotations

import datetime as dt
import os
import time

from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from djap_django.models import JobDBModel, WorkerDBModel
from djap_django.queue import WorkerInfo, open_queue
from djap_django.resilience import DbGuard
from djap_django.services import CancelWatch, Heartbeat, Rescuer
from djap_django.services.heartbeat import Pulse


async def _open():
    queue = open_queue()
    await queue.connect()
    return queue, DbGuard(queue)


async def test_rescue_waits_out_an_outage_then_puts_back_a_dead_workers_jobs():
    long_ago = timezone.now() - dt.timedelta(hours=1)
    dead = await WorkerDBModel.objects.acreate(
        host="h", pid=1, state="running", started_at=long_ago, last_heartbeat=long_ago
    )
    row = await JobDBModel.objects.acreate(name="JobWithSleep", status="in_progress", worker=dead)
    queue, guard = await _open()
    try:
        with override_settings(
            DJAP={
                **settings.DJAP,
                "HEARTBEAT_INTERVAL": 0.05,
                "STALE_AFTER": 0.1,
                "SQLITE_BUSY_TIMEOUT": 0.01,
            }
        ):
            guard.note_error("test", OSError("the database went away"))
            # Right after an outage every heartbeat looks stale: the pass is skipped.
            assert await Rescuer(queue, guard).run_once() is None
            assert (await JobDBModel.objects.aget(pk=row.pk)).status == "in_progress"
            deadline = time.monotonic() + 10
            while guard.healthy_for() <= 0.1:
                assert time.monotonic() < deadline
                await queue.wait_for_jobs(0.02)
            report = await Rescuer(queue, guard).run_once()
    finally:
        await queue.close()
    assert report is not None and (report.requeued, report.dead_workers) == (1, 1)
    row = await JobDBModel.objects.aget(pk=row.pk)
    assert row.status == "new" and row.worker_id is None


async def test_cancel_watch_stops_the_attempts_whose_claim_is_no_longer_ours():
    now = timezone.now()
    me = await WorkerDBModel.objects.acreate(host="h", pid=1, started_at=now, last_heartbeat=now)
    other = await WorkerDBModel.objects.acreate(host="h", pid=2, started_at=now, last_heartbeat=now)

    async def job(status: str, worker=None, claims: int = 1) -> int:
        row = await JobDBModel.objects.acreate(
            name="JobWithSleep", status=status, worker=worker, claims=claims
        )
        return row.pk

    ours = await job("in_progress", me)
    cancelled = await job("cancelled")
    rescued = await job("new")
    elsewhere = await job("in_progress", other)
    claimed_again = await job("in_progress", me, claims=2)  # we still run claim 1
    gone = claimed_again + 1000
    running = [(i, 1) for i in (ours, cancelled, rescued, elsewhere, claimed_again, gone)]
    stopped: list[tuple[int, int]] = []
    queue, guard = await _open()
    try:
        watch = CancelWatch(
            queue, guard, worker_id=me.pk, running=lambda: running, stop_claim=stopped.append
        )
        assert await watch.run_once() == running[1:]
    finally:
        await queue.close()
    assert stopped == running[1:]


async def test_heartbeat_writes_its_pulse_and_notices_a_lost_supervisor_once():
    queue, guard = await _open()
    orphaned: list[bool] = []
    try:
        worker_id = await queue.worker_register(WorkerInfo(host="h", pid=os.getpid()))
        beat = Heartbeat(
            queue,
            guard,
            worker_id=worker_id,
            pulse=lambda: Pulse(done=3, failed=1, in_flight=2, state="draining"),
            supervisor_pid=os.getppid() + 1,  # not our parent: the supervisor is gone
            on_orphaned=lambda: orphaned.append(True),
        )
        await beat.run_once()
        await beat.run_once()
    finally:
        await queue.close()
    row = await WorkerDBModel.objects.aget(pk=worker_id)
    assert (row.jobs_done, row.jobs_failed, row.in_flight, row.state) == (3, 1, 2, "draining")
    assert orphaned == [True]
