"""Jobs due later wait off the claim path; stagers move them on at their time, once.

Every test runs on both databases; the races are forced: two stagers at once over
the same due rows, and (PostgreSQL) a row lock held by another transaction.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.utils import timezone

import djap
from djap_django.models import JobDBModel
from djap_django.queue import WorkerInfo, open_queue
from djap_django.resilience import DbGuard
from djap_django.services import Stager
from tests.testapp.jobs import FlakyJob, RecordExecution, RetryOnce
from tests.testapp.models import Execution


def _record(key: int, **options) -> RecordExecution:
    return RecordExecution.create(RecordExecution.Inputs(key=key), **options)


async def _queue():
    queue = open_queue()
    await queue.connect()
    return queue


async def _set_run_after(ids: list[int], when: dt.datetime) -> None:
    """Make scheduled rows due (or not) without waiting for the clock."""
    await JobDBModel.objects.filter(id__in=ids).aupdate(run_after=when)


def test_enqueue_marks_only_jobs_due_later_as_scheduled():
    now = timezone.now()
    rows = djap.bulk_create_new(
        [
            _record(1),
            _record(2, run_after=dt.timedelta(hours=1)),
            _record(3, run_after=now - dt.timedelta(seconds=5)),
        ]
    )
    one = djap.create_new(_record(4, run_after=dt.timedelta(hours=1)))
    assert [r.scheduled for r in rows] == [False, True, False]
    assert one.scheduled is True
    stored = dict(JobDBModel.objects.values_list("id", "scheduled"))
    assert stored == {rows[0].pk: False, rows[1].pk: True, rows[2].pk: False, one.pk: True}
    # Scheduled or not, a waiting job is `new`: the public statuses keep their meaning.
    assert set(JobDBModel.objects.values_list("status", flat=True)) == {"new"}


async def test_a_scheduled_job_is_not_claimed_until_staged_then_claimed_once():
    row = await djap.acreate_new(_record(1, run_after=dt.timedelta(hours=1)))
    queue = await _queue()
    try:
        me = await queue.worker_register(WorkerInfo(host="t", pid=1))
        # Due by the clock but not yet staged: never claimed past the stager.
        await _set_run_after([row.pk], timezone.now() - dt.timedelta(seconds=1))
        assert await queue.jobs_claim(me, 10, None, []) == []
        assert await queue.jobs_runnable_exists(None, [])  # burst must not give up on it
        report = await queue.jobs_stage(100)
        assert report.staged == 1 and report.next_due_s is None
        assert [c.id for c in await queue.jobs_claim(me, 10, None, [])] == [row.pk]
        assert (await queue.jobs_stage(100)).staged == 0
    finally:
        await queue.close()


async def test_stage_reports_when_the_next_job_falls_due():
    await djap.acreate_new(_record(1, run_after=dt.timedelta(seconds=40)))
    await djap.acreate_new(_record(2, run_after=dt.timedelta(hours=2)))
    queue = await _queue()
    try:
        report = await queue.jobs_stage(100)
    finally:
        await queue.close()
    assert report.staged == 0
    assert 30 < report.next_due_s <= 40


async def test_two_stagers_at_once_move_every_due_job_exactly_once(settings):
    settings.DJAP = {"STAGE_BATCH": 7}  # many small batches, interleaved between the two
    rows = await sync_to_async(djap.bulk_create_new)(
        [_record(i, run_after=dt.timedelta(hours=1)) for i in range(100)]
    )
    await _set_run_after([r.pk for r in rows], timezone.now() - dt.timedelta(seconds=1))
    queues = [await _queue(), await _queue()]
    try:
        stagers = [Stager(q, DbGuard(q)) for q in queues]
        moved = await asyncio.gather(*(s.run_once() for s in stagers))
    finally:
        for q in queues:
            await q.close()
    assert sum(moved) == 100
    assert await JobDBModel.objects.filter(scheduled=True).acount() == 0
    assert await JobDBModel.objects.filter(status="new", scheduled=False).acount() == 100


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's")
async def test_a_stager_skips_a_row_another_transaction_holds_and_takes_it_later():
    from djap_django.queue.postgres import connection_params

    held, free = await sync_to_async(djap.bulk_create_new)(
        [_record(1, run_after=dt.timedelta(hours=1)), _record(2, run_after=dt.timedelta(hours=1))]
    )
    await _set_run_after([held.pk, free.pk], timezone.now() - dt.timedelta(seconds=1))
    params = await sync_to_async(lambda: connection_params(connection))()
    other = await psycopg.AsyncConnection.connect(**params)
    queue = await _queue()
    try:
        await other.execute("SELECT 1 FROM djap_job WHERE id = %s FOR UPDATE", (held.pk,))
        # Returns at once (no wait behind the lock) with the row it could take.
        report = await asyncio.wait_for(queue.jobs_stage(100), timeout=5)
        assert report.staged == 1
        assert not (await JobDBModel.objects.aget(pk=free.pk)).scheduled
        assert (await JobDBModel.objects.aget(pk=held.pk)).scheduled
        await other.rollback()
        assert (await queue.jobs_stage(100)).staged == 1
        assert not (await JobDBModel.objects.aget(pk=held.pk)).scheduled
    finally:
        await other.close()
        await queue.close()


async def test_a_job_cancelled_while_scheduled_is_never_staged_or_run():
    row = await djap.acreate_new(_record(1, run_after=dt.timedelta(hours=1)))
    assert await row.acancel()
    await _set_run_after([row.pk], timezone.now() - dt.timedelta(seconds=1))
    queue = await _queue()
    try:
        assert (await queue.jobs_stage(100)).staged == 0
    finally:
        await queue.close()
    assert (await JobDBModel.objects.aget(pk=row.pk)).status == "cancelled"


async def test_a_worker_runs_a_job_at_its_run_after_not_before(settings):
    settings.DJAP = {"STAGE_INTERVAL": 5.0}  # the wake-up comes from the due time itself
    due = timezone.now() + dt.timedelta(seconds=1.0)
    row = await djap.acreate_new(_record(7, run_after=due))
    stats = await djap.run_num_jobs(max_num_workers=2, timeout=10, num_jobs=1)
    assert stats.done == 1
    row = await JobDBModel.objects.aget(pk=row.pk)
    assert row.status == "done" and not row.scheduled
    assert due <= row.started_at <= due + dt.timedelta(seconds=1)
    assert await Execution.objects.filter(key=7).acount() == 1


async def test_a_retry_backing_off_is_scheduled_and_runs_again_on_time(settings):
    settings.DJAP = {"RETRY_BACKOFF_BASE": 0.3, "RETRY_BACKOFF_MAX": 0.3, "STAGE_INTERVAL": 5.0}
    row = await djap.acreate_new(FlakyJob.create(FlakyJob.Inputs(fail_times=2)))
    stats = await djap.run_num_jobs(max_num_workers=2, timeout=10, num_jobs=3)
    row = await JobDBModel.objects.aget(pk=row.pk)
    assert row.status == "done" and row.attempts == 3 and not row.scheduled
    assert stats.done == 1


async def test_a_retry_far_ahead_waits_scheduled_and_burst_leaves_it(settings):
    settings.DJAP = {"MAX_ATTEMPTS": 2}
    row = await djap.acreate_new(RetryOnce.create(RetryOnce.Inputs(key=1)))
    from djap_django.worker import Worker, WorkerOptions

    stats = await Worker(WorkerOptions(concurrency=2, burst=True, grace=0)).run()
    row = await JobDBModel.objects.aget(pk=row.pk)
    assert row.status == "new" and row.scheduled and row.attempts == 1
    assert row.run_after > timezone.now() + dt.timedelta(minutes=30)
    assert stats.done == 0


async def test_burst_runs_jobs_that_fell_due_but_were_never_staged():
    from djap_django.worker import Worker, WorkerOptions

    row = await djap.acreate_new(_record(3, run_after=dt.timedelta(hours=1)))
    await _set_run_after([row.pk], timezone.now() - dt.timedelta(seconds=1))
    stats = await Worker(WorkerOptions(concurrency=2, burst=True, grace=0)).run()
    assert stats.done == 1
    assert (await JobDBModel.objects.aget(pk=row.pk)).status == "done"
