"""Pipelines run by an in-process worker: chains, fan-out, joins, failure, retry, cancel."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

import djap
from djap.exceptions import (
    JobNotRetryableError,
    PipelineDefinitionError,
    PipelineTriggerError,
)
from djap_django import pipelines
from djap_django.models import JobDBModel, PipelineDBModel
from tests.testapp.jobs import (
    SUM_ALL_KEY,
    AddOne,
    CountChars,
    DoubleIt,
    FailWhenTold,
    Report,
    SumAll,
)
from tests.testapp.models import Execution
from tests.testapp.pipelines import (
    ChainOfThree,
    FailInTheMiddle,
    OutputsDoNotFit,
    SquareAndSum,
    SquareTwiceAndSum,
)


async def jobs_of(pipeline: PipelineDBModel) -> list[JobDBModel]:
    return [j async for j in pipeline.jobs_in_order()]


async def status_of(pipeline: PipelineDBModel) -> str:
    return (await PipelineDBModel.objects.aget(pk=pipeline.pk)).status


# -- definition and trigger ------------------------------------------------------------


def test_a_pipeline_outside_pipelines_py_is_refused():
    with pytest.raises(PipelineDefinitionError, match=r"pipelines\.py"):

        class Misplaced(djap.Pipeline):
            jobs = [CountChars, DoubleIt]


def test_a_pipeline_without_jobs_or_with_a_bad_step_is_refused():
    # Defined as if in a pipelines.py, so that only the jobs list is at fault.
    for jobs, message in [
        ([], "non-empty list"),
        ([CountChars, "DoubleIt"], r"jobs\[1\] is 'DoubleIt'"),
        ([djap.Join(SumAll), AddOne], "first step cannot be a join"),
        ([CountChars, djap.Join(Report)], "exactly one field"),
    ]:
        with pytest.raises(PipelineDefinitionError, match=message):
            type("Bad", (djap.Pipeline,), {"jobs": jobs, "__module__": "app.pipelines"})


def test_trigger_with_inputs_that_do_not_fit_the_first_job_writes_nothing():
    for bad in [None, DoubleIt.Inputs(n=1), {"txt": "x"}]:
        with pytest.raises(PipelineTriggerError, match="ChainOfThree.trigger.*CountChars"):
            ChainOfThree.trigger(bad)
    assert not PipelineDBModel.objects.exists()
    assert not JobDBModel.objects.exists()


def test_trigger_writes_every_step_and_joins_the_callers_transaction():
    pipeline = ChainOfThree.trigger(CountChars.Inputs(text="abc"))
    rows = list(pipeline.jobs_in_order())
    assert [(r.name, r.status, r.pipeline_step) for r in rows] == [
        ("CountChars", "new", 0),
        ("DoubleIt", "not_ready", 1),
        ("AddOne", "not_ready", 2),
    ]
    assert rows[0].inputs == {"text": "abc"} and rows[1].parent_id == rows[0].pk
    assert pipeline.status == "running"

    with pytest.raises(RuntimeError), transaction.atomic():
        ChainOfThree.trigger(CountChars.Inputs(text="rolled back"))
        raise RuntimeError
    assert PipelineDBModel.objects.count() == 1 and JobDBModel.objects.count() == 3


# -- running -------------------------------------------------------------------------------


async def test_a_chain_of_three_passes_results_along():
    pipeline = await ChainOfThree.atrigger(CountChars.Inputs(text="hello"))
    await djap.run_num_jobs(max_num_workers=4, timeout=30, num_jobs=3)
    rows = await jobs_of(pipeline)
    # CountChars -> next_job_inputs n=5; DoubleIt -> outputs n=10 fit AddOne -> 11.
    assert [r.status for r in rows] == ["done"] * 3
    assert rows[1].inputs == {"n": 5} and rows[2].inputs == {"n": 10}
    assert rows[2].outputs == {"n": 11}
    assert await status_of(pipeline) == "done"


async def test_results_that_do_not_fit_the_next_step_fail_the_step_and_count_as_failed():
    pipeline = await OutputsDoNotFit.atrigger(DoubleIt.Inputs(n=2))
    stats = await djap.run_num_jobs(max_num_workers=2, timeout=30, num_jobs=1)
    # The job itself ran fine; its finish found the next step cannot take its outputs.
    assert (stats.done, stats.failed) == (0, 1)
    first, second = await jobs_of(pipeline)
    assert first.status == "failed" and "outputs do not fit the next step" in first.error
    assert first.errors[-1]["error"] == first.error
    assert second.status != "done" and second.attempts == 0
    assert await status_of(pipeline) == "failed"


async def test_a_failure_in_the_middle_fails_the_pipeline_and_the_last_step_never_runs(
    monkeypatch,
):
    monkeypatch.setattr(FailWhenTold, "failing", True)
    pipeline = await FailInTheMiddle.atrigger(CountChars.Inputs(text="abc"))
    stats = await djap.run_num_jobs(max_num_workers=4, timeout=30, num_jobs=2)
    assert (stats.done, stats.failed) == (1, 1)
    first, middle, last = await jobs_of(pipeline)
    assert middle.status == "failed" and "told to fail" in middle.error
    assert last.status == "cancelled" and last.started_at is None and last.attempts == 0
    assert await status_of(pipeline) == "failed"


async def test_retrying_the_failed_step_resumes_the_pipeline(monkeypatch):
    monkeypatch.setattr(FailWhenTold, "failing", True)
    pipeline = await FailInTheMiddle.atrigger(CountChars.Inputs(text="abcd"))
    await djap.run_num_jobs(max_num_workers=4, timeout=30, num_jobs=2)
    _, middle, last = await jobs_of(pipeline)
    assert await status_of(pipeline) == "failed"

    with pytest.raises(JobNotRetryableError, match="only failed or cancelled"):
        await djap.aretry_job((await jobs_of(pipeline))[0].pk)
    monkeypatch.setattr(FailWhenTold, "failing", False)
    retried = await djap.aretry_job(middle.pk)
    assert retried.status == "new" and retried.attempts == 0
    assert await status_of(pipeline) == "running"
    assert (await JobDBModel.objects.aget(pk=last.pk)).status == "not_ready"

    await djap.run_num_jobs(max_num_workers=4, timeout=30, num_jobs=2)
    rows = await jobs_of(pipeline)
    assert [r.status for r in rows] == ["done"] * 3 and rows[2].outputs == {"n": 5}
    assert await status_of(pipeline) == "done"


async def test_fan_out_and_join_sums_every_branch_once():
    pipeline = await SquareAndSum.atrigger(SquareAndSum.steps[0].job.Inputs(count=20))
    await djap.run_num_jobs(max_num_workers=8, timeout=60, num_jobs=22)
    rows = await jobs_of(pipeline)
    squares = [r for r in rows if r.name == "SquareIt"]
    join = rows[-1]
    assert len(squares) == 20 and all(r.status == "done" for r in squares)
    # The branches' outputs arrive in the order the branches began.
    assert join.inputs == {"values": [{"y": i * i} for i in range(20)]}
    assert join.outputs == {"total": sum(i * i for i in range(20)), "count": 20}
    assert join.waiting_for == 0
    assert await Execution.objects.filter(key=SUM_ALL_KEY).acount() == 1
    assert await status_of(pipeline) == "done"


async def test_a_fan_out_inside_each_branch_and_a_step_after_the_join():
    pipeline = await SquareTwiceAndSum.atrigger({"count": 3})
    # 1 split + 3 duplicates + 6 squares + the join + the report.
    await djap.run_num_jobs(max_num_workers=8, timeout=60, num_jobs=12)
    rows = await jobs_of(pipeline)
    assert [r.status for r in rows] == ["done"] * 12
    assert rows[-2].outputs == {"total": 2 * (0 + 1 + 4), "count": 6}
    assert rows[-1].outputs == {"line": "6 values, total 10"}
    assert await Execution.objects.filter(key=SUM_ALL_KEY).acount() == 1
    assert await status_of(pipeline) == "done"


async def test_an_empty_fan_out_ends_the_pipeline_done_with_nothing_more_run():
    pipeline = await SquareAndSum.atrigger({"count": 0})
    await djap.run_num_jobs(max_num_workers=4, timeout=30, num_jobs=1)
    split, square, join = await jobs_of(pipeline)
    assert split.status == "done"
    assert square.status == join.status == "cancelled" and "empty list" in join.error
    assert await Execution.objects.filter(key=SUM_ALL_KEY).acount() == 0
    assert await status_of(pipeline) == "done"
    with pytest.raises(JobNotRetryableError, match="skipped"):
        await djap.aretry_job(join.pk)


async def test_a_failed_branch_keeps_the_join_from_running_and_a_retry_brings_it_back(
    monkeypatch,
):
    # Square 7 fails once; the join must wait for its retry, then run once with all 10.
    from tests.testapp.jobs import SquareIt

    real_run = SquareIt.run

    async def run(self):
        if self.inputs.x == 7 and FailWhenTold.failing:
            raise RuntimeError("square 7 failed")
        await real_run(self)

    monkeypatch.setattr(SquareIt, "run", run)
    monkeypatch.setattr(FailWhenTold, "failing", True)
    pipeline = await SquareAndSum.atrigger({"count": 10})
    await djap.run_num_jobs(max_num_workers=4, timeout=30, num_jobs=11)
    rows = await jobs_of(pipeline)
    failed = [r for r in rows if r.status == "failed"]
    assert [r.inputs for r in failed] == [{"x": 7}]
    assert rows[-1].status == "cancelled" and rows[-1].waiting_for == 1
    assert await status_of(pipeline) == "failed"
    assert await Execution.objects.filter(key=SUM_ALL_KEY).acount() == 0

    with pytest.raises(JobNotRetryableError, match=f"retry job {failed[0].pk}"):
        await djap.aretry_job(rows[-1].pk)  # the halted join: the failed step comes first
    monkeypatch.setattr(FailWhenTold, "failing", False)
    await djap.aretry_job(failed[0].pk)
    await djap.run_num_jobs(max_num_workers=4, timeout=30, num_jobs=2)
    join = (await jobs_of(pipeline))[-1]
    assert join.status == "done" and join.outputs["count"] == 10
    assert await Execution.objects.filter(key=SUM_ALL_KEY).acount() == 1
    assert await status_of(pipeline) == "done"


async def test_cancel_pipeline_cancels_its_waiting_steps_and_a_retry_resumes_it():
    pipeline = await ChainOfThree.atrigger(CountChars.Inputs(text="ab"))
    assert await djap.acancel_pipeline(pipeline.pk) == 3
    assert await status_of(pipeline) == "cancelled"
    assert [r.status for r in await jobs_of(pipeline)] == ["cancelled"] * 3
    stats = await djap.run_num_jobs(max_num_workers=2, timeout=0.5, num_jobs=3)
    assert stats.claimed == 0

    await djap.aretry_job((await jobs_of(pipeline))[0].pk)
    assert [r.status for r in await jobs_of(pipeline)] == ["new", "not_ready", "not_ready"]
    await djap.run_num_jobs(max_num_workers=2, timeout=30, num_jobs=3)
    assert (await jobs_of(pipeline))[-1].outputs == {"n": 5}
    assert await status_of(pipeline) == "done"


async def test_results_that_do_not_fit_the_next_step_fail_the_step_with_a_clear_error(
    monkeypatch,
):
    async def run(self):
        self.next_job_inputs = {"wrong": 1}

    monkeypatch.setattr(CountChars, "run", run)
    pipeline = await ChainOfThree.atrigger(CountChars.Inputs(text="abc"))
    await djap.run_num_jobs(max_num_workers=2, timeout=5, num_jobs=1)
    first, second, _ = await jobs_of(pipeline)
    assert first.status == "failed" and "'wrong' is not a field of DoubleIt.Inputs" in first.error
    assert second.status == "cancelled"
    assert await status_of(pipeline) == "failed"


async def test_pipeline_counts_by_status(monkeypatch):
    monkeypatch.setattr(FailWhenTold, "failing", True)
    await ChainOfThree.atrigger(CountChars.Inputs(text="a"))
    await FailInTheMiddle.atrigger(CountChars.Inputs(text="a"))
    await djap.run_num_jobs(max_num_workers=4, timeout=30, num_jobs=5)
    cancelled = await ChainOfThree.atrigger(CountChars.Inputs(text="a"))
    await djap.acancel_pipeline(cancelled.pk)
    await ChainOfThree.atrigger(CountChars.Inputs(text="a"))
    counts = await sync_to_async(pipelines.pipeline_counts)()
    assert counts == {"running": 1, "done": 1, "failed": 1, "cancelled": 1}


async def test_a_step_cancelled_by_itself_cancels_the_pipeline_and_a_retry_resumes_it():
    pipeline = await ChainOfThree.atrigger(CountChars.Inputs(text="abc"))
    first = (await jobs_of(pipeline))[0]
    assert await djap.acancel(first.pk) is True
    assert await status_of(pipeline) == "cancelled"
    assert [r.status for r in await jobs_of(pipeline)] == ["cancelled"] * 3

    await djap.aretry_job(first.pk)
    await djap.run_num_jobs(max_num_workers=2, timeout=30, num_jobs=3)
    assert (await jobs_of(pipeline))[-1].outputs == {"n": 7}
    assert await status_of(pipeline) == "done"


async def test_a_step_failed_as_poison_by_a_rescue_fails_its_pipeline():
    from django.utils import timezone

    from djap_django import conf
    from djap_django.models import WorkerDBModel
    from djap_django.queue import open_queue

    pipeline = await ChainOfThree.atrigger(CountChars.Inputs(text="abc"))
    first = (await jobs_of(pipeline))[0]
    long_ago = timezone.now() - timezone.timedelta(hours=1)
    dead = await WorkerDBModel.objects.acreate(
        host="gone", pid=1, started_at=long_ago, last_heartbeat=long_ago
    )
    # Its worker died while running it for the last time it may.
    await JobDBModel.objects.filter(pk=first.pk).aupdate(
        status="in_progress", worker_id=dead.pk, crashes=conf.get("MAX_CRASHES") - 1
    )
    queue = open_queue()
    await queue.connect()
    try:
        report = await queue.jobs_rescue_stale(1.0, conf.get("MAX_CRASHES"))
    finally:
        await queue.close()
    assert report.failed == 1
    assert await pipelines.afail_pipelines_of_failed_jobs() == 1
    assert await status_of(pipeline) == "failed"
    assert [r.status for r in await jobs_of(pipeline)] == ["failed", "cancelled", "cancelled"]
