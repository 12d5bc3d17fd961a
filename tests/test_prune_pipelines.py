"""Prune and pipelines: a pipeline that can still run or resume keeps every row.

An ended pipeline (its status among those pruned, nothing of it left to run) goes
as a whole, its row and all its jobs; a pipeline's job never goes alone.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

import djap
from djap_django.maintenance import prune_jobs
from djap_django.models import JobDBModel, PipelineDBModel
from djap_django.queue import open_queue
from tests.testapp.jobs import FailWhenTold, RecordExecution, SquareIt
from tests.testapp.pipelines import ChainOfThree, FailInTheMiddle, SquareAndSum

WEEK_S = 7 * 86400


def age_everything(days: float = 30) -> None:
    """Make every finished row look `days` old."""
    then = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    JobDBModel.objects.filter(finished_at__isnull=False).update(finished_at=then)
    PipelineDBModel.objects.filter(finished_at__isnull=False).update(finished_at=then)


def prune(statuses: tuple[str, ...] = ("done", "failed", "cancelled")) -> int:
    async def run() -> int:
        queue = open_queue()
        await queue.connect()
        try:
            return await prune_jobs(queue, WEEK_S, statuses)
        finally:
            await queue.close()

    return asyncio.run(run())


def run(num_jobs: int, include: list[str] | None = None) -> None:
    asyncio.run(
        djap.run_num_jobs(max_num_workers=4, timeout=30, num_jobs=num_jobs, include=include)
    )


def join_of(pipeline: PipelineDBModel) -> JobDBModel:
    return JobDBModel.objects.filter(pipeline=pipeline).order_by("-pipeline_step").first()


def test_prune_leaves_a_running_pipeline_whole_and_its_join_gets_every_branch():
    pipeline = SquareAndSum.trigger({"count": 3})
    run(1, include=["SplitRange"])
    run(2, include=["SquareIt"])  # two branches done, one still to run: the join waits
    assert join_of(pipeline).waiting_for == 1
    age_everything()
    before = JobDBModel.objects.filter(pipeline=pipeline).count()
    prune()
    assert JobDBModel.objects.filter(pipeline=pipeline).count() == before
    run(2)
    join = join_of(pipeline)
    assert join.status == "done" and join.outputs == {"total": 0 + 1 + 4, "count": 3}
    assert PipelineDBModel.objects.get(pk=pipeline.pk).status == "done"


def test_prune_leaves_a_failed_pipeline_whole_so_a_retry_resumes_it(monkeypatch):
    real_run = SquareIt.run

    async def square(self):
        if self.inputs.x == 2 and FailWhenTold.failing:
            raise RuntimeError("square 2 failed")
        await real_run(self)

    monkeypatch.setattr(SquareIt, "run", square)
    monkeypatch.setattr(FailWhenTold, "failing", True)
    pipeline = SquareAndSum.trigger({"count": 4})
    run(5)
    assert PipelineDBModel.objects.get(pk=pipeline.pk).status == "failed"
    age_everything()
    prune(("done",))  # the failed pipeline's done branches must stay
    monkeypatch.setattr(FailWhenTold, "failing", False)
    failed = JobDBModel.objects.get(pipeline=pipeline, status="failed")
    djap.retry_job(failed.pk)
    run(2)
    join = join_of(pipeline)
    assert join.status == "done" and join.outputs == {"total": 0 + 1 + 4 + 9, "count": 4}


def test_prune_deletes_an_ended_pipeline_as_a_whole_and_nothing_else():
    old = ChainOfThree.trigger({"text": "abc"})
    run(3)
    plain = djap.create_new(RecordExecution.create({"key": 1}))
    run(1)
    age_everything()
    recent = ChainOfThree.trigger({"text": "abcd"})
    run(3)
    waiting = djap.create_new(RecordExecution.create({"key": 2}))
    assert PipelineDBModel.objects.get(pk=old.pk).status == "done"

    assert prune() == 3 + 1  # the old pipeline's three jobs and the plain job
    assert not PipelineDBModel.objects.filter(pk=old.pk).exists()
    assert not JobDBModel.objects.filter(pipeline_id=old.pk).exists()
    assert not JobDBModel.objects.filter(pk=plain.pk).exists()
    assert JobDBModel.objects.filter(pipeline=recent).count() == 3
    assert JobDBModel.objects.filter(pk=waiting.pk).exists()


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_an_ended_failed_or_cancelled_pipeline_goes_only_when_its_status_is_pruned(
    status, monkeypatch
):
    if status == "cancelled":
        pipeline = ChainOfThree.trigger({"text": "abc"})
        djap.cancel_pipeline(pipeline.pk)
    else:
        monkeypatch.setattr(FailWhenTold, "failing", True)
        pipeline = FailInTheMiddle.trigger({"text": "abc"})
        run(2)
    assert PipelineDBModel.objects.get(pk=pipeline.pk).status == status
    age_everything()
    prune(("done",))
    assert JobDBModel.objects.filter(pipeline=pipeline).count() == 3
    prune((status,))
    assert not PipelineDBModel.objects.filter(pk=pipeline.pk).exists()
    assert not JobDBModel.objects.filter(pipeline_id=pipeline.pk).exists()
