"""The statements that join the caller's transaction (queue/in_transaction.py), on each database."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from djap_django.models import JobDBModel, PipelineDBModel
from djap_django.queue import in_transaction
from djap_django.queue.base import HALTED


def test_job_cancel_cancels_a_waiting_step_and_halts_its_pipeline():
    pipeline = PipelineDBModel.objects.create(name="P")
    step = JobDBModel.objects.create(name="A", status="new", pipeline=pipeline, pipeline_step=0)
    later = JobDBModel.objects.create(
        name="B", status="not_ready", pipeline=pipeline, pipeline_step=1
    )
    before = timezone.now() - dt.timedelta(seconds=5)
    result = in_transaction().job_cancel(step.pk)
    assert result.found and result.cancelled and result.finished_at >= before
    step.refresh_from_db()
    later.refresh_from_db()
    pipeline.refresh_from_db()
    assert (step.status, step.worker_id) == ("cancelled", None)
    assert step.finished_at == result.finished_at
    assert (later.status, later.error) == ("cancelled", HALTED)
    assert pipeline.status == "cancelled" and pipeline.finished_at is not None


def test_job_cancel_leaves_a_finished_job_and_knows_a_missing_one():
    done = JobDBModel.objects.create(name="A", status="done")
    assert in_transaction().job_cancel(done.pk).cancelled is False
    assert in_transaction().job_cancel(done.pk).found is True
    assert in_transaction().job_cancel(done.pk + 1000).found is False
    done.refresh_from_db()
    assert done.status == "done"


def test_job_cancel_joins_the_callers_transaction():
    row = JobDBModel.objects.create(name="A", status="new")
    try:
        with transaction.atomic():
            assert in_transaction().job_cancel(row.pk).cancelled
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    row.refresh_from_db()
    assert row.status == "new"


def test_job_finish_step_writes_the_outcome_and_the_error_history():
    row = JobDBModel.objects.create(name="A", status="in_progress", attempts=2, worker_id=None)
    in_transaction().job_finish_step(
        row.pk, status="failed", outputs_json='{"n": 1}', error="boom", run_after=None
    )
    row.refresh_from_db()
    assert (row.status, row.outputs, row.error) == ("failed", {"n": 1}, "boom")
    assert row.finished_at is not None
    assert [(e["attempt"], e["error"]) for e in row.errors] == [(2, "boom")]
    assert "at" in row.errors[0]
    due = timezone.now() + dt.timedelta(minutes=5)
    in_transaction().job_finish_step(
        row.pk, status="new", outputs_json=None, error="again", run_after=due
    )
    row.refresh_from_db()
    assert (row.status, row.finished_at, len(row.errors)) == ("new", None, 2)
    assert abs((row.run_after - due).total_seconds()) < 0.001


def test_job_retry_gives_a_failed_job_a_fresh_start():
    row = JobDBModel.objects.create(
        name="A", status="failed", attempts=3, crashes=1, finished_at=timezone.now()
    )
    running = JobDBModel.objects.create(name="A", status="in_progress")
    assert in_transaction().job_retry(row.pk) == 1
    assert in_transaction().job_retry(running.pk) == 0
    row.refresh_from_db()
    assert (row.status, row.attempts, row.crashes, row.finished_at) == ("new", 0, 0, None)


def test_pipeline_halt_ends_the_pipeline_and_stops_the_steps_named():
    pipeline = PipelineDBModel.objects.create(name="P")
    waiting = JobDBModel.objects.create(name="A", status="not_ready", pipeline=pipeline)
    ready = JobDBModel.objects.create(name="B", status="new", pipeline=pipeline)
    halted, finished_at = in_transaction().pipeline_halt(pipeline.pk, "failed", ("not_ready",))
    assert halted == 1
    pipeline.refresh_from_db()
    waiting.refresh_from_db()
    ready.refresh_from_db()
    assert (pipeline.status, pipeline.finished_at) == ("failed", finished_at)
    assert (waiting.status, waiting.error, ready.status) == ("cancelled", HALTED, "new")


def test_pipeline_finish_if_idle_waits_for_every_step():
    pipeline = PipelineDBModel.objects.create(name="P")
    step = JobDBModel.objects.create(name="A", status="in_progress", pipeline=pipeline)
    assert in_transaction().pipeline_finish_if_idle(pipeline.pk) is None
    JobDBModel.objects.filter(pk=step.pk).update(status="done")
    finished_at = in_transaction().pipeline_finish_if_idle(pipeline.pk)
    pipeline.refresh_from_db()
    assert finished_at is not None and (pipeline.status, pipeline.finished_at) == (
        "done",
        finished_at,
    )
