"""One worker, in this process (run_num_jobs): outcomes, failures, filters, order."""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.utils import timezone

import djap
from djap_django.models import JobDBModel
from tests.testapp.jobs import (
    FailingJob,
    JobWithCustomAsdict,
    JobWithInputsAndOutputs,
    JobWithSleep,
    Point,
    RecordExecution,
    SyncJob,
)
from tests.testapp.models import Execution


async def test_readme_examples_run():
    await djap.acreate_new(JobWithSleep)
    row = await djap.acreate_new(
        JobWithInputsAndOutputs.create(JobWithInputsAndOutputs.Inputs(id=10))
    )
    custom = await djap.acreate_new(JobWithCustomAsdict.create(Point(1, 2)))
    stats = await djap.run_num_jobs(max_num_workers=10, timeout=20, num_jobs=3)
    assert stats.done == 3
    row = await JobDBModel.objects.aget(pk=row.pk)
    assert row.status == "done" and row.outputs == {"id": 20}
    assert (await JobDBModel.objects.aget(pk=custom.pk)).outputs == {"x": 2, "y": 1}
    assert await JobDBModel.objects.filter(status="done").acount() == 3


async def test_sync_run_runs_in_a_thread():
    row = await djap.acreate_new(SyncJob.create(SyncJob.Inputs(n=1)))
    await djap.run_num_jobs(max_num_workers=2, timeout=20, num_jobs=1)
    row = await JobDBModel.objects.aget(pk=row.pk)
    assert row.status == "done" and row.outputs["thread"].startswith("djap-lane")


async def test_a_job_that_raises_fails_with_its_traceback_and_the_worker_goes_on():
    bad = await djap.acreate_new(FailingJob)
    good = await djap.acreate_new(JobWithSleep)
    stats = await djap.run_num_jobs(max_num_workers=2, timeout=20, num_jobs=2)
    assert (stats.done, stats.failed) == (1, 1)
    bad = await JobDBModel.objects.aget(pk=bad.pk)
    assert bad.status == "failed" and bad.finished_at is not None
    assert "Traceback" in bad.error and "boom from FailingJob" in bad.error
    assert (await JobDBModel.objects.aget(pk=good.pk)).status == "done"


async def test_unknown_job_name_and_stale_inputs_fail_with_a_message():
    gone = await JobDBModel.objects.acreate(name="RemovedJob", status="new")
    stale = await JobDBModel.objects.acreate(
        name="JobWithInputsAndOutputs", status="new", inputs={"identifier": 1}
    )
    await djap.acreate_new(JobWithSleep)
    stats = await djap.run_num_jobs(max_num_workers=3, timeout=20, num_jobs=3)
    assert stats.done == 1
    gone = await JobDBModel.objects.aget(pk=gone.pk)
    assert gone.status == "failed" and "RemovedJob" in gone.error
    stale = await JobDBModel.objects.aget(pk=stale.pk)
    assert stale.status == "failed" and "identifier" in stale.error


async def test_include_and_exclude():
    await djap.acreate_new(JobWithSleep)
    kept = await djap.acreate_new(RecordExecution.create(RecordExecution.Inputs(key=1)))
    await djap.run_num_jobs(max_num_workers=5, timeout=2, num_jobs=5, include=["RecordExecution"])
    assert (await JobDBModel.objects.aget(pk=kept.pk)).status == "done"
    assert await JobDBModel.objects.filter(name="JobWithSleep", status="new").acount() == 1
    await djap.run_num_jobs(max_num_workers=5, timeout=2, num_jobs=5, exclude=["JobWithSleep"])
    assert await JobDBModel.objects.filter(name="JobWithSleep", status="new").acount() == 1


async def test_priority_first_and_run_after_respected():
    low = await djap.acreate_new(RecordExecution.create(RecordExecution.Inputs(key=1)))
    high = await djap.acreate_new(RecordExecution.create(RecordExecution.Inputs(key=2), priority=9))
    later = await djap.acreate_new(
        RecordExecution.create(RecordExecution.Inputs(key=3), run_after=dt.timedelta(hours=1))
    )
    await djap.run_num_jobs(max_num_workers=1, timeout=3, num_jobs=3)
    order = [e.key async for e in Execution.objects.order_by("id")]
    assert order == [2, 1]
    assert (await JobDBModel.objects.aget(pk=later.pk)).status == "new"
    assert (await JobDBModel.objects.aget(pk=high.pk)).started_at <= (
        await JobDBModel.objects.aget(pk=low.pk)
    ).started_at


async def test_timeout_releases_unfinished_jobs():
    from tests.testapp.jobs import SleepFor

    row = await djap.acreate_new(SleepFor.create(SleepFor.Inputs(seconds=30)))
    before = timezone.now()
    await djap.run_num_jobs(max_num_workers=1, timeout=0.5, num_jobs=1)
    assert (timezone.now() - before).total_seconds() < 20
    row = await JobDBModel.objects.aget(pk=row.pk)
    assert row.status == "new" and row.worker_id is None


def test_worker_row_is_registered_and_stopped():
    import asyncio

    from djap_django.models import WorkerDBModel

    djap.create_new(JobWithSleep)
    asyncio.run(djap.run_num_jobs(max_num_workers=1, timeout=10, num_jobs=1))
    worker = WorkerDBModel.objects.get()
    assert worker.state == "stopped" and worker.jobs_done == 1
    assert connection.vendor in ("sqlite", "postgresql")


async def test_jobs_left_under_a_stopped_worker_row_are_put_back_once_its_heartbeat_is_stale():
    """A worker that wrote `stopped` has exited: anything it still holds is orphaned.

    Its heartbeat age still counts, as for every row: a row written `stopped` (or `dead`)
    while its worker lives on must not cost that worker its jobs.
    """
    import datetime as dt

    from djap_django.models import WorkerDBModel
    from djap_django.queue import open_queue

    now = timezone.now()
    gone = await WorkerDBModel.objects.acreate(
        host="h", pid=1, state="stopped", started_at=now, last_heartbeat=now
    )
    row = await JobDBModel.objects.acreate(name="JobWithSleep", status="in_progress", worker=gone)
    queue = open_queue()
    await queue.connect()
    try:
        assert (await queue.jobs_rescue_stale(3600, 3)).requeued == 0
        await WorkerDBModel.objects.filter(pk=gone.pk).aupdate(
            last_heartbeat=now - dt.timedelta(hours=2)
        )
        report = await queue.jobs_rescue_stale(3600, 3)
    finally:
        await queue.close()
    assert report.requeued == 1
    row = await JobDBModel.objects.aget(pk=row.pk)
    assert row.status == "new" and row.worker_id is None and row.crashes == 1
