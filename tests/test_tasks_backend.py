"""Django's Tasks API on djap: @task functions enqueue job rows that djap workers run."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction
from django.utils import timezone

import djap
from djap_django.backend import DjapBackend, job_name
from djap_django.models import JobDBModel
from djap_django.tasks_compat import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
)
from djap_django.worker import Worker, WorkerOptions
from tests.testapp import tasks
from tests.testapp.jobs import JobWithSleep


async def burst(**options) -> None:
    """Run a worker in this process until nothing runnable is left."""
    await Worker(WorkerOptions(concurrency=4, burst=True, grace=0, **options)).run()


def test_the_settings_backend_is_djaps():
    assert isinstance(task_backends["default"], DjapBackend)
    backend = task_backends["default"]
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority


async def test_sync_task_runs_on_a_worker_and_returns_its_value():
    result = await tasks.add.aenqueue(2, 3)
    assert result.status == TaskResultStatus.READY and not result.is_finished
    row = await JobDBModel.objects.aget(pk=int(result.id))
    assert row.name == "task:default"
    assert row.inputs["task"] == "tests.testapp.tasks.add" and row.inputs["args"] == [2, 3]
    await burst()
    result = await tasks.add.aget_result(result.id)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.errors == [] and result.attempts == 1
    assert result.started_at is not None and result.finished_at >= result.started_at


def test_sync_enqueue_and_refresh():
    result = tasks.add.enqueue(a=40, b=2)
    with pytest.raises(ValueError, match="not finished"):
        result.return_value  # noqa: B018 - the property raises until the task finished
    import asyncio

    asyncio.run(burst())
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 42


async def test_async_task_and_its_priority():
    low = await tasks.add.aenqueue(1, 1)
    high = await tasks.async_shout.aenqueue("hi")
    assert (await JobDBModel.objects.aget(pk=int(high.id))).priority == 5
    assert (await JobDBModel.objects.aget(pk=int(low.id))).priority == 0
    # One slot: the higher priority task is claimed first, although enqueued last.
    await Worker(WorkerOptions(concurrency=1, num_jobs=1, grace=0)).run()
    assert (await tasks.async_shout.aget_result(high.id)).return_value == "HI"
    assert (await tasks.add.aget_result(low.id)).status == TaskResultStatus.READY


async def test_a_failing_task_reports_its_exception_class_and_traceback():
    result = await tasks.explode.aenqueue("kaboom")
    await burst()
    result = await tasks.explode.aget_result(result.id)
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is tasks.TaskBoom
    assert "kaboom" in error.traceback and "Traceback" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        result.return_value  # noqa: B018


async def test_queue_name_is_a_job_name_workers_include_or_exclude():
    email = await tasks.send_email.aenqueue("a@example.com")
    other = await tasks.add.aenqueue(1, 2)
    assert (await JobDBModel.objects.aget(pk=int(email.id))).name == job_name("emails")
    await burst(exclude=["task:emails"])
    assert (await tasks.add.aget_result(other.id)).is_finished
    assert (await tasks.send_email.aget_result(email.id)).status == TaskResultStatus.READY
    await burst(include=["task:emails"])
    email = await tasks.send_email.aget_result(email.id)
    assert email.return_value == {"sent_to": "a@example.com"}
    assert email.task.queue_name == "emails"


async def test_run_after_defers_the_task():
    later = timezone.now() + dt.timedelta(hours=1)
    deferred = await tasks.add.using(run_after=later).aenqueue(1, 2)
    now = await tasks.add.aenqueue(3, 4)
    await burst()
    assert (await tasks.add.aget_result(now.id)).return_value == 7
    deferred = await tasks.add.aget_result(deferred.id)
    assert deferred.status == TaskResultStatus.READY
    assert deferred.task.run_after == later


def test_enqueue_joins_the_callers_transaction():
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        result = tasks.add.enqueue(1, 1)
        assert JobDBModel.objects.filter(pk=int(result.id)).exists()
        raise Rollback
    assert not JobDBModel.objects.filter(name__startswith="task:").exists()


def test_takes_context_sees_its_own_result_id():
    result = tasks.whoami.enqueue(tag="x")
    import asyncio

    asyncio.run(burst())
    value = tasks.whoami.get_result(result.id).return_value
    assert value == {"id": result.id, "tag": "x", "attempt": 1}


def test_arguments_that_are_not_json_are_refused_and_nothing_is_written():
    with pytest.raises((InvalidTask, TypeError), match="tests.testapp.tasks.add"):
        tasks.add.enqueue(dt.datetime.now(), 1)
    assert not JobDBModel.objects.exists()


def test_unknown_result_ids():
    backend = task_backends["default"]
    plain_job = djap.create_new(JobWithSleep)
    for bad in ["nope", "999999", str(plain_job.pk)]:
        with pytest.raises(TaskResultDoesNotExist):
            backend.get_result(bad)


async def test_a_row_naming_an_undefined_task_fails_and_imports_nothing():
    # A forged row: the worker must look the path up, never import it.
    row = await JobDBModel.objects.acreate(
        name="task:default",
        status="new",
        inputs={"task": "os.system", "args": ["true"], "kwargs": {}, "backend": "default"},
    )
    await burst()
    row = await JobDBModel.objects.aget(pk=row.pk)
    assert row.status == "failed"
    assert "No task 'os.system' is defined" in row.error


def test_a_real_worker_process_runs_tasks_from_tasks_py(procs):
    result = tasks.send_email.enqueue("ops@example.com")
    done = procs.run("work", "--burst", "--include", "task:emails")
    assert done.returncode == 0, done.stderr
    assert tasks.send_email.get_result(result.id).return_value == {"sent_to": "ops@example.com"}


def test_retries_keep_one_error_per_failed_attempt(settings):
    settings.DJAP = {**settings.DJAP, "RETRY_BACKOFF_BASE": 0.01, "RETRY_BACKOFF_MAX": 0.01}
    import asyncio

    result = tasks.flaky.enqueue(2)
    row = JobDBModel.objects.get(pk=int(result.id))
    assert (row.name, row.max_attempts) == ("task:retries", 3)
    asyncio.run(djap.run_num_jobs(max_num_workers=1, timeout=60, num_jobs=3))
    result = tasks.flaky.get_result(result.id)
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == "finally"
    assert result.attempts == 3
    assert [e.exception_class for e in result.errors] == [RuntimeError, RuntimeError]
    assert "attempt 1" in result.errors[0].traceback
    assert "attempt 2" in result.errors[1].traceback


def test_the_backend_check_names_a_wrong_option():
    backend = DjapBackend(alias="bad", params={"OPTIONS": {"MAX_ATTEMPT": 3}})
    [error] = backend.check()
    assert "MAX_ATTEMPT" in error.msg and "MAX_ATTEMPTS" in error.msg
    assert task_backends["default"].check() == []
