"""`djap show`, `djap retry`, `djap cancel`: real `djap` processes on the test database."""

from __future__ import annotations

import json

import djap
from djap_django.models import JobDBModel
from tests.testapp.jobs import FailingJob, JobWithInputsAndOutputs, JobWithSleep


def _fail(job: JobDBModel) -> JobDBModel:
    """What a worker leaves behind after the last attempt raised."""
    JobDBModel.objects.filter(pk=job.pk).update(
        status="failed",
        attempts=1,
        error="Traceback (most recent call last):\nRuntimeError: boom from FailingJob\n",
        errors=[{"attempt": 1, "error": "RuntimeError: boom from FailingJob", "at": "now"}],
        finished_at=job.created_at,
    )
    return JobDBModel.objects.get(pk=job.pk)


def test_show_prints_a_failed_jobs_inputs_and_traceback(procs):
    job = djap.create_new(JobWithInputsAndOutputs.create(JobWithInputsAndOutputs.Inputs(id=7)))
    _fail(job)
    result = procs.run("show", str(job.pk))
    assert result.returncode == 0, result.stderr
    assert f"{job.pk} JobWithInputsAndOutputs" in result.stdout
    assert "failed" in result.stdout and '{"id": 7}' in result.stdout
    assert "RuntimeError: boom from FailingJob" in result.stdout

    as_json = procs.run("show", str(job.pk), "--json")
    data = json.loads(as_json.stdout)
    assert data["id"] == job.pk and data["status"] == "failed" and data["inputs"] == {"id": 7}
    assert data["errors"][0]["attempt"] == 1


def test_show_an_unknown_id_names_it_and_exits_1(procs):
    job = djap.create_new(JobWithSleep)
    result = procs.run("show", str(job.pk), "999999", "--json")
    assert result.returncode == 1
    assert [j["id"] for j in json.loads(result.stdout)] == [job.pk]
    assert "no job with id 999999" in result.stderr


def test_retry_puts_failed_jobs_back_and_refuses_the_rest(procs):
    failed = _fail(djap.create_new(FailingJob))
    waiting = djap.create_new(JobWithSleep)
    result = procs.run("retry", str(failed.pk), str(waiting.pk))
    assert result.returncode == 1
    assert f"job {failed.pk} (FailingJob) is new again" in result.stdout
    assert f"job {waiting.pk} (JobWithSleep) is new; only failed or cancelled" in result.stderr
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("new", 0)


def test_retry_failed_takes_every_failed_job_of_a_name(procs):
    a = _fail(djap.create_new(FailingJob))
    b = _fail(djap.create_new(FailingJob))
    other = _fail(djap.create_new(JobWithSleep))
    result = procs.run("retry", "--failed", "--name", "FailingJob")
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = dict(JobDBModel.objects.values_list("pk", "status"))
    assert statuses == {a.pk: "new", b.pk: "new", other.pk: "failed"}
    assert procs.run("retry", "--failed", "--name", "FailingJob").stdout.strip() == (
        "no failed jobs named FailingJob"
    )


def test_retry_and_cancel_usage_mistakes_are_one_line(procs):
    nothing = procs.run("retry")
    assert nothing.returncode == 2
    assert nothing.stderr.strip() == "djap retry: error: give job ids to retry, or --failed"
    name_alone = procs.run("retry", "--name", "FailingJob")
    assert name_alone.returncode == 2 and "--name goes with --failed" in name_alone.stderr
    not_a_number = procs.run("cancel", "seven")
    assert not_a_number.returncode == 2
    assert not_a_number.stderr.startswith("djap cancel: error: 'seven' is not a job id")
    no_ids = procs.run("show")
    assert no_ids.returncode == 2 and "give the ids of the jobs to show" in no_ids.stderr


def test_cancel_marks_a_waiting_job_and_reports_finished_ones(procs):
    waiting = djap.create_new(JobWithSleep)
    finished = _fail(djap.create_new(FailingJob))
    result = procs.run("cancel", str(waiting.pk), str(finished.pk), "999999")
    assert result.returncode == 1
    assert f"job {waiting.pk} cancelled" in result.stdout
    assert f"job {finished.pk} had already finished" in result.stderr
    assert "no job with id 999999" in result.stderr
    assert JobDBModel.objects.get(pk=waiting.pk).status == "cancelled"
    assert JobDBModel.objects.get(pk=finished.pk).status == "failed"
