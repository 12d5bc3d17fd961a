"""Claims of --include / --exclude workers: only their names, priority first, once each.

The claim walks djap_job_due_name one name at a time (see queue/postgres.py); these
tests pin down what that must keep: the names, the priority order across names, no
row claimed twice when workers claim at once, and nothing scheduled for later.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from asgiref.sync import sync_to_async

import djap
from djap_django.models import JobDBModel
from djap_django.queue import WorkerInfo, open_queue
from tests.testapp.jobs import GpuJob, JobWithSleep, RecordExecution


async def _queue():
    queue = open_queue()
    await queue.connect()
    return queue


async def _enqueue(cls, n: int, **options) -> list[int]:
    make = (
        (lambda i: cls.create(cls.Inputs(key=i), **options))
        if cls is not JobWithSleep
        else (lambda i: cls.create(**options))
    )
    rows = await sync_to_async(djap.bulk_create_new)([make(i) for i in range(n)])
    return [r.pk for r in rows]


async def _claim(queue, worker, limit, include=None, exclude=()):
    """The ids claimed, sorted: which rows were picked, not the order RETURNING lists them."""
    return sorted(c.id for c in await queue.jobs_claim(worker, limit, include, list(exclude)))


async def test_include_claims_only_its_names_in_priority_order_across_them():
    low_gpu = await _enqueue(GpuJob, 3)
    await _enqueue(JobWithSleep, 50)  # a backlog of a name nobody here takes
    high_rec = await _enqueue(RecordExecution, 2, priority=5)
    low_rec = await _enqueue(RecordExecution, 2)
    queue = await _queue()
    try:
        me = await queue.worker_register(WorkerInfo(host="t", pid=1))
        both = ["GpuJob", "RecordExecution"]
        first = await _claim(queue, me, 3, include=both)
        # Priority wins across names, then id: both high rows, then the oldest low one.
        assert first == sorted([*high_rec, low_gpu[0]])
        rest = await _claim(queue, me, 100, include=both)
        assert sorted(rest) == sorted(low_gpu[1:] + low_rec)
        assert await _claim(queue, me, 100, include=both) == []
        assert await _claim(queue, me, 100, include=["NoSuchJob"]) == []
        assert await _claim(queue, me, 100, include=[]) == []
    finally:
        await queue.close()
    assert await JobDBModel.objects.filter(name="JobWithSleep", status="new").acount() == 50


async def test_exclude_claims_every_other_name_in_priority_order():
    gpu = await _enqueue(GpuJob, 40)
    rec = await _enqueue(RecordExecution, 3)
    high = await _enqueue(JobWithSleep, 2, priority=3)
    queue = await _queue()
    try:
        me = await queue.worker_register(WorkerInfo(host="t", pid=1))
        first = await _claim(queue, me, 4, exclude=["GpuJob"])
        assert first == sorted([*high, *rec[:2]])
        assert await _claim(queue, me, 100, exclude=["GpuJob"]) == rec[2:]
        assert await _claim(queue, me, 100, exclude=["GpuJob"]) == []
        # include and exclude together: the included names less the excluded ones.
        assert await _claim(queue, me, 100, include=["GpuJob"], exclude=["GpuJob"]) == []
    finally:
        await queue.close()
    assert await JobDBModel.objects.filter(id__in=gpu, status="new").acount() == 40


async def test_scheduled_rows_are_left_by_every_kind_of_claim():
    later = dt.timedelta(hours=1)
    await _enqueue(GpuJob, 5, run_after=later)
    await _enqueue(RecordExecution, 5, run_after=later)
    queue = await _queue()
    try:
        me = await queue.worker_register(WorkerInfo(host="t", pid=1))
        assert await _claim(queue, me, 100) == []
        assert await _claim(queue, me, 100, include=["GpuJob", "RecordExecution"]) == []
        assert await _claim(queue, me, 100, exclude=["JobWithSleep"]) == []
    finally:
        await queue.close()


async def test_workers_claiming_at_once_by_name_take_each_row_exactly_once():
    ids = set(await _enqueue(GpuJob, 300)) | set(await _enqueue(RecordExecution, 300))
    await _enqueue(JobWithSleep, 100)
    queues = [await _queue() for _ in range(3)]
    claimed: list[int] = []
    try:
        workers = [
            await q.worker_register(WorkerInfo(host="t", pid=i)) for i, q in enumerate(queues)
        ]
        kinds = [
            {"include": ["GpuJob", "RecordExecution"]},
            {"include": ["RecordExecution", "GpuJob"]},
            {"exclude": ["JobWithSleep"]},
        ]

        async def drain(queue, worker, kind):
            while got := await _claim(queue, worker, 17, **kind):
                claimed.extend(got)
                await asyncio.sleep(0)

        await asyncio.gather(
            *(drain(q, w, k) for q, w, k in zip(queues, workers, kinds, strict=True))
        )
    finally:
        for q in queues:
            await q.close()
    assert len(claimed) == len(set(claimed)) == 600
    assert set(claimed) == ids
