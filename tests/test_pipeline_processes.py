"""Pipelines drained by real `djap work` processes: a fan-out joined once, SIGKILLed workers."""

from __future__ import annotations

import os
import signal

from djap_django.models import JobDBModel, PipelineDBModel
from tests.conftest import wait_until
from tests.testapp.jobs import SUM_ALL_KEY, CountChars
from tests.testapp.models import Execution
from tests.testapp.pipelines import ChainOfThree, SquareAndSum, SurviveAKill

#: A dead worker's jobs come back after this many seconds without a heartbeat.
SHORT_STALE = {"DJAP_TEST_STALE_AFTER": "1"}


def finished(pipeline: PipelineDBModel) -> str | None:
    status = PipelineDBModel.objects.get(pk=pipeline.pk).status
    return status if status != "running" else None


def test_a_fan_out_of_100_is_joined_exactly_once_by_three_worker_processes(procs):
    pipeline = SquareAndSum.trigger({"count": 100})
    workers = [procs.start("work", "--concurrency", "8") for _ in range(3)]
    status = wait_until(lambda: finished(pipeline), timeout=180, message="the pipeline to end")
    logs = "\n".join(procs.log(w) for w in workers)
    assert status == "done", logs
    for worker in workers:
        assert worker.poll() is None, procs.log(worker)
    assert "Traceback" not in logs

    rows = list(pipeline.jobs_in_order())
    squares = [r for r in rows if r.name == "SquareIt"]
    assert len(squares) == 100 and {r.status for r in squares} == {"done"}
    assert all(r.attempts == 1 for r in rows), "a step ran more than once"
    join = rows[-1]
    assert join.name == "SumAll" and join.waiting_for == 0
    assert sorted(v["y"] for v in join.inputs["values"]) == [i * i for i in range(100)]
    assert join.outputs == {"total": sum(i * i for i in range(100)), "count": 100}
    runs = list(Execution.objects.filter(key=SUM_ALL_KEY).values_list("env", flat=True))
    assert runs == ["100"], "the join must run exactly once, with 100 outputs"


def test_a_worker_killed_between_two_steps_loses_nothing(procs):
    # The first worker may only run the first step: once it is done, the second step is
    # already `new` (same transaction), so killing the worker right then strands nothing.
    pipeline = ChainOfThree.trigger(CountChars.Inputs(text="abcdef"))
    first = procs.start("work", "--include", "CountChars")
    wait_until(
        lambda: JobDBModel.objects.filter(
            pipeline=pipeline, pipeline_step=1, status="new"
        ).exists(),
        timeout=60,
        message="the second step to become new",
    )
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert [r.status for r in pipeline.jobs_in_order()] == ["done", "new", "not_ready"]

    procs.start("work")
    assert wait_until(lambda: finished(pipeline), timeout=60) == "done"
    assert list(pipeline.jobs_in_order())[-1].outputs == {"n": 13}


def test_a_worker_killed_during_a_step_is_rescued_and_the_pipeline_completes(procs):
    pipeline = SurviveAKill.trigger(CountChars.Inputs(text="abc"))
    first = procs.start("work", env=SHORT_STALE)
    wait_until(
        lambda: Execution.objects.filter(key=3, env="attempt 1").exists(),
        timeout=60,
        message="the second step to start (and hang)",
    )
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert [r.status for r in pipeline.jobs_in_order()] == ["done", "in_progress", "not_ready"]

    second = procs.start("work", env=SHORT_STALE)
    status = wait_until(lambda: finished(pipeline), timeout=90, message="the pipeline to end")
    assert status == "done", procs.log(second)
    rows = list(pipeline.jobs_in_order())
    assert [r.status for r in rows] == ["done"] * 3
    assert rows[1].crashes == 1 and rows[1].attempts == 2
    assert rows[2].outputs == {"n": 4} and rows[2].attempts == 1
    runs = list(Execution.objects.filter(key=3).order_by("id").values_list("env", flat=True))
    assert runs == ["attempt 1", "attempt 2"]
