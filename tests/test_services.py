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
            DJAP={**settings.DJAP, "HEARTBEAT_INTERVAL": 0.05, "STALE_AFTER": 0.1}
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


async def test_cancel_watch_stops_the_jobs_no_longer_ours():
    ours = await JobDBModel.objects.acreate(name="JobWithSleep", status="in_progress")
    cancelled = await JobDBModel.objects.acreate(name="JobWithSleep", status="cancelled")
    rescued = await JobDBModel.objects.acreate(name="JobWithSleep", status="new")
    gone = rescued.pk + 1000
    running = [ours.pk, cancelled.pk, rescued.pk, gone]
    stopped: list[int] = []
    queue, guard = await _open()
    try:
        watch = CancelWatch(queue, guard, running=lambda: running, stop_job=stopped.append)
        assert await watch.run_once() == [cancelled.pk, rescued.pk, gone]
    finally:
        await queue.close()
    assert stopped == [cancelled.pk, rescued.pk, gone]


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
