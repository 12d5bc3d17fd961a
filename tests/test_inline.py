"""Inline mode: a user's test enqueues and the job has run, no worker needed."""

from __future__ import annotations

import logging

import pytest
from django.db import transaction
from django.test import override_settings

import djap
from djap_django.models import JobDBModel, PipelineDBModel
from tests.testapp.flow_jobs import CountExecutions
from tests.testapp.jobs import FailingJob, FlakyJob, JobWithInputsAndOutputs, RecordExecution
from tests.testapp.models import Execution
from tests.testapp.pipelines import FailInTheMiddle, SquareAndSum


def test_an_enqueued_job_has_run_with_its_outputs_on_the_row(djap_inline):
    row = djap.create_new(JobWithInputsAndOutputs.create({"id": 21}))
    row.refresh_from_db()
    assert (row.status, row.outputs, row.attempts) == ("done", {"id": 42}, 1)
    assert row.started_at and row.finished_at and row.worker_id is None


def test_jobs_wait_for_the_commit_and_a_rollback_runs_none(djap_inline):
    with transaction.atomic():
        row = djap.create_new(RecordExecution.create({"key": 1}))
        assert JobDBModel.objects.get(pk=row.pk).status == "new"
        assert not Execution.objects.exists()
    assert JobDBModel.objects.get(pk=row.pk).status == "done"
    assert list(Execution.objects.values_list("key", flat=True)) == [1]
    with pytest.raises(RuntimeError), transaction.atomic():
        djap.create_new(RecordExecution.create({"key": 2}))
        raise RuntimeError("the view failed")
    assert list(Execution.objects.values_list("key", flat=True)) == [1]


def test_retries_and_failures_are_recorded_as_a_worker_would(djap_inline):
    flaky = djap.create_new(FlakyJob.create({"fail_times": 2}))
    failing = djap.create_new(FailingJob)
    flaky.refresh_from_db()
    failing.refresh_from_db()
    assert (flaky.status, flaky.attempts, flaky.outputs) == ("done", 3, {"attempt": 3})
    assert [e["attempt"] for e in flaky.errors] == [1, 2]
    assert "flaky failure on attempt 2" in flaky.errors[1]["error"]
    assert failing.status == "failed" and "boom from FailingJob" in failing.error
    assert "Traceback" in failing.error


def test_bulk_enqueue_runs_every_job(djap_inline):
    djap.bulk_create_new(RecordExecution.create({"key": i}) for i in range(20))
    assert sorted(Execution.objects.values_list("key", flat=True)) == list(range(20))
    assert set(JobDBModel.objects.values_list("status", flat=True)) == {"done"}


def test_a_pipeline_runs_every_step_fan_out_and_join(djap_inline):
    pipeline = SquareAndSum.trigger({"count": 4})
    pipeline.refresh_from_db()
    assert pipeline.status == "done"
    join = pipeline.jobs.get(name="SumAll")
    assert join.outputs == {"total": 0 + 1 + 4 + 9, "count": 4}


def test_a_failing_step_fails_its_pipeline(djap_inline):
    pipeline = FailInTheMiddle.trigger({"text": "abc"})
    pipeline.refresh_from_db()
    assert pipeline.status == PipelineDBModel.Status.FAILED
    assert [j.status for j in pipeline.jobs_in_order()] == ["done", "failed", "cancelled"]


def test_the_job_runs_inside_the_callers_transaction(django_capture_on_commit_callbacks):
    """As in a django TestCase: the test's transaction never commits, on_commit is captured."""
    with djap.inline(), pytest.raises(RuntimeError), transaction.atomic():
        Execution.objects.create(key=99, pid=0)  # uncommitted
        with django_capture_on_commit_callbacks(execute=True):
            sync = djap.create_new(CountExecutions)
            djap.create_new(RecordExecution.create({"key": 100}))
        # The sync job saw the uncommitted row; the async one wrote through this connection.
        assert JobDBModel.objects.get(pk=sync.pk).outputs == {"executions": 1}
        assert Execution.objects.filter(key=100).exists()
        raise RuntimeError("the test's transaction is rolled back")
    assert not Execution.objects.exists() and not JobDBModel.objects.exists()


async def test_async_enqueue_runs_inline(djap_inline):
    row = await djap.acreate_new(JobWithInputsAndOutputs.create({"id": 1}))
    await row.arefresh_from_db()
    assert row.outputs == {"id": 2}


def test_the_setting_and_the_context_manager():
    with override_settings(DJAP={"INLINE": True}):
        row = djap.create_new(JobWithInputsAndOutputs.create({"id": 2}))
        with djap.inline(False):
            off = djap.create_new(JobWithInputsAndOutputs.create({"id": 3}))
    assert JobDBModel.objects.get(pk=row.pk).status == "done"
    assert JobDBModel.objects.get(pk=off.pk).status == "new"
    # Without either, enqueue only writes the row.
    assert djap.create_new(JobWithInputsAndOutputs.create({"id": 4})).status == "new"
    assert JobDBModel.objects.filter(status="new").count() == 2


def test_the_callers_log_context_is_left_as_it_was(djap_inline):
    from djap_django.logs import JobContextFilter

    djap.create_new(JobWithInputsAndOutputs.create({"id": 5}))
    record = logging.LogRecord("djap.test", logging.INFO, __file__, 1, "after", (), None)
    JobContextFilter().filter(record)
    assert record.job_id is None  # the inline job's id stayed with the job
