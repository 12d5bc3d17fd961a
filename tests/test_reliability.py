"""Retries, timeouts and cancellation with real failures, in one in-process worker."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings
from django.test import override_settings

import djap
from djap_django.execution import backoff_seconds
from djap_django.models import JobDBModel
from tests.testapp.jobs import (
    FailingJob,
    FlakyJob,
    HangingJob,
    HangingSyncJob,
    RecordExecution,
    SleepFor,
    SyncRecordExecution,
)
from tests.testapp.models import Execution


def fast_retries():
    """Backoff of a few milliseconds, so a test sees every retry."""
    return override_settings(DJAP={**settings.DJAP, "RETRY_BACKOFF_BASE": 0.01})


async def test_a_job_that_raises_n_times_then_succeeds_keeps_each_error():
    row = await djap.acreate_new(FlakyJob.create(FlakyJob.Inputs(fail_times=3)))
    assert row.max_attempts == 5
    with fast_retries():
        stats = await djap.run_num_jobs(max_num_workers=2, timeout=30, num_jobs=4)
    assert stats.done == 1
    row = await JobDBModel.objects.aget(pk=row.pk)
    assert row.status == "done" and row.attempts == 4 and row.outputs == {"attempt": 4}
    assert [e["attempt"] for e in row.errors] == [1, 2, 3]
    for entry in row.errors:
        assert f"flaky failure on attempt {entry['attempt']}" in entry["error"]
        assert "Traceback" in entry["error"] and entry["at"]
    assert row.errors[-1]["error"].startswith("attempt 3 of 5 failed; retrying")
    assert row.error == "", "a job that succeeded in the end shows no error"


async def test_a_job_that_always_raises_fails_after_max_attempts():
    row = await djap.acreate_new(FlakyJob.create(FlakyJob.Inputs(fail_times=99)))
    with fast_retries():
        await djap.run_num_jobs(max_num_workers=2, timeout=30, num_jobs=5)
    row = await JobDBModel.objects.aget(pk=row.pk)
    assert row.status == "failed" and row.attempts == 5 and row.finished_at is not None
    assert [e["attempt"] for e in row.errors] == [1, 2, 3, 4, 5]
    assert row.error.startswith("attempt 5 of 5 failed\n")


async def test_a_failed_job_without_retries_keeps_its_one_error():
    row = await djap.acreate_new(FailingJob)
    await djap.run_num_jobs(max_num_workers=1, timeout=30, num_jobs=1)
    row = await JobDBModel.objects.aget(pk=row.pk)
    assert len(row.errors) == 1 and "boom from FailingJob" in row.errors[0]["error"]


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    with override_settings(DJAP={"RETRY_BACKOFF_BASE": 1.0, "RETRY_BACKOFF_MAX": 10.0}):
        assert 0.75 <= backoff_seconds(1) <= 1.25
        assert 3.0 <= backoff_seconds(3) <= 5.0
        assert 7.5 <= backoff_seconds(10) <= 12.5
        assert len({backoff_seconds(2) for _ in range(20)}) > 1, "no jitter"


async def test_a_hung_async_job_hits_its_timeout():
    row = await djap.acreate_new(HangingJob)
    stats = await djap.run_num_jobs(max_num_workers=1, timeout=30, num_jobs=1)
    assert stats.failed == 1
    row = await JobDBModel.objects.aget(pk=row.pk)
    assert row.status == "failed"
    assert "timed out after 0.5 s" in row.error


async def test_a_hung_sync_job_fails_at_its_deadline_and_does_not_block_the_next():
    """One slot: the stuck thread must not keep the next sync job from running."""
    hung = await djap.acreate_new(HangingSyncJob.create(HangingSyncJob.Inputs(seconds=12)))
    nxt = await djap.acreate_new(SyncRecordExecution.create(SyncRecordExecution.Inputs(key=7)))
    stats = await djap.run_num_jobs(max_num_workers=1, timeout=8, num_jobs=2)
    assert (stats.done, stats.failed) == (1, 1)
    hung = await JobDBModel.objects.aget(pk=hung.pk)
    assert hung.status == "failed" and "runs on in the background" in hung.error
    assert (await JobDBModel.objects.aget(pk=nxt.pk)).status == "done"
    assert await Execution.objects.filter(key=7).acount() == 1


async def test_retry_requested_by_the_job_waits_the_time_it_asked_for():
    row = await djap.acreate_new(RecordExecution.create(RecordExecution.Inputs(key=1)))
    await JobDBModel.objects.filter(pk=row.pk).aupdate(name="RetryOnce", max_attempts=3)
    await djap.run_num_jobs(max_num_workers=1, timeout=2, num_jobs=1)
    row = await JobDBModel.objects.aget(pk=row.pk)
    assert row.status == "new" and row.attempts == 1
    assert "Retry requested" in row.errors[0]["error"]
    assert (row.run_after - row.started_at).total_seconds() > 3000
    await asyncio.sleep(0)


async def test_cancel_a_waiting_job_at_once():
    row = await djap.acreate_new(RecordExecution.create(RecordExecution.Inputs(key=1)))
    other = await djap.acreate_new(RecordExecution.create(RecordExecution.Inputs(key=2)))
    assert await djap.acancel(row.pk) is True
    assert await other.acancel() is True and other.status == "cancelled"
    assert await djap.acancel(row) is False, "a second cancel has nothing to do"
    stats = await djap.run_num_jobs(max_num_workers=2, timeout=1, num_jobs=2)
    assert stats.claimed == 0 and await Execution.objects.acount() == 0
    row = await JobDBModel.objects.aget(pk=row.pk)
    assert row.status == "cancelled" and row.finished_at is not None


def test_cancel_a_finished_or_unknown_job():
    row = djap.create_new(RecordExecution.create(RecordExecution.Inputs(key=1)))
    JobDBModel.objects.filter(pk=row.pk).update(status="done")
    assert djap.cancel(row.pk) is False
    assert JobDBModel.objects.get(pk=row.pk).status == "done"
    with pytest.raises(JobDBModel.DoesNotExist, match="no job has id 999999"):
        djap.cancel(999999)
    with pytest.raises(TypeError, match="job id or a JobDBModel"):
        djap.cancel("12")


async def test_cancel_a_running_async_job_in_this_process():
    hung = await djap.acreate_new(SleepFor.create(SleepFor.Inputs(seconds=3600)))
    after = await djap.acreate_new(RecordExecution.create(RecordExecution.Inputs(key=5)))
    worker = asyncio.ensure_future(djap.run_num_jobs(max_num_workers=1, timeout=60, num_jobs=2))

    async def running():
        return (await JobDBModel.objects.aget(pk=hung.pk)).status == "in_progress"

    await wait_until_async(running)
    assert await djap.acancel(hung) is True
    stats = await asyncio.wait_for(worker, 60)
    assert stats.cancelled == 1 and stats.done == 1
    assert (await JobDBModel.objects.aget(pk=hung.pk)).status == "cancelled"
    assert (await JobDBModel.objects.aget(pk=after.pk)).status == "done"


async def wait_until_async(condition, timeout: float = 30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {condition}"
        await asyncio.sleep(0.05)


def test_retry_accepts_seconds_or_a_timedelta():
    import datetime as dt

    assert djap.Retry(after=dt.timedelta(minutes=2)).after == 120.0
    assert djap.Retry(after=5).after == 5 and djap.Retry().after is None
