"""Real `djap work` processes: exactly-once across processes, CLI errors, burst, the command."""

from __future__ import annotations

import os
import subprocess
import sys

import djap
from djap_django.models import JobDBModel
from tests.conftest import ROOT, wait_until
from tests.testapp.jobs import RecordExecution
from tests.testapp.models import Execution

N_JOBS = 3000


def test_three_processes_run_every_job_exactly_once(procs):
    djap.bulk_create_new(
        [RecordExecution.create(RecordExecution.Inputs(key=i)) for i in range(N_JOBS)]
    )
    workers = [procs.start("work", "--concurrency", "20", "--burst") for _ in range(3)]
    for worker in workers:
        worker.wait(timeout=240)
        assert worker.returncode == 0, procs.log(worker)
    keys = list(Execution.objects.values_list("key", flat=True))
    assert len(keys) == N_JOBS, "some job ran twice or not at all"
    assert sorted(keys) == list(range(N_JOBS))
    assert JobDBModel.objects.filter(status="done").count() == N_JOBS
    pids = set(Execution.objects.values_list("pid", flat=True))
    assert len(pids) > 1, "only one process did any work"


def test_burst_exits_zero_when_the_queue_is_empty(procs):
    djap.create_new(RecordExecution.create(RecordExecution.Inputs(key=1)))
    result = procs.run("work", "--burst")
    assert result.returncode == 0, result.stderr
    assert JobDBModel.objects.get().status == "done"


def test_num_jobs_stops_after_that_many(procs):
    djap.bulk_create_new([RecordExecution.create(RecordExecution.Inputs(key=i)) for i in range(5)])
    result = procs.run("work", "--num-jobs", "2", "--concurrency", "1")
    assert result.returncode == 0, result.stderr
    assert JobDBModel.objects.filter(status="done").count() == 2
    assert JobDBModel.objects.filter(status="new").count() == 3


def test_unknown_include_name_is_a_warning_not_silence(procs):
    result = procs.run("work", "--include", "NoSuchJob", "--burst")
    assert result.returncode == 0
    assert "NoSuchJob" in result.stderr and "no registered job" in result.stderr


def test_bad_cli_input_is_one_line_and_exit_code_2(procs):
    for args in (
        ["work", "--concurrency", "zero"],
        ["work", "--concurrency", "0"],
        ["work", "--nope"],
    ):
        result = procs.run(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "error" in lines[0], result.stderr
        assert "Traceback" not in result.stderr


def test_missing_settings_is_a_clear_error(procs):
    env = {k: v for k, v in procs.env.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-m", "djap", "work"], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 2 and "DJANGO_SETTINGS_MODULE" in result.stderr


def test_manage_py_command_runs_the_same_worker(subprocess_env):
    djap.create_new(RecordExecution.create(RecordExecution.Inputs(key=7)))
    result = subprocess.run(
        [sys.executable, "-m", "django", "consume_jobs_async", "--burst", "--concurrency", "3"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert list(Execution.objects.values_list("key", flat=True)) == [7]
    bad = subprocess.run(
        [sys.executable, "-m", "django", "consume_jobs_async", "--concurrency", "zero"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and "zero" in bad.stderr


def test_sigterm_stops_cleanly_and_puts_nothing_in_limbo(procs):
    import signal

    from tests.testapp.jobs import SleepFor

    djap.bulk_create_new([SleepFor.create(SleepFor.Inputs(seconds=60)) for _ in range(3)])
    worker = procs.start("work", "--concurrency", "3", "--grace", "0.5")
    wait_until(
        lambda: JobDBModel.objects.filter(status="in_progress").count() == 3,
        message="3 jobs in progress",
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, procs.log(worker)
    assert JobDBModel.objects.filter(status="in_progress").count() == 0
    assert JobDBModel.objects.filter(status="new").count() == 3


def test_settings_come_from_manage_py_in_the_current_folder(tmp_path):
    from djap.django_setup import settings_from_manage_py

    assert settings_from_manage_py(str(ROOT / "sample_project")) == "mysite.settings"
    assert settings_from_manage_py(str(tmp_path)) is None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJAP_TEST", "DJANGO_SET"))}
    env["SAMPLE_SQLITE"] = str(tmp_path / "sample.sqlite3")
    result = subprocess.run(
        [sys.executable, "-m", "djap", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT / "sample_project",
    )
    # Found mysite.settings by itself; the new database only lacks its tables.
    assert result.returncode == 2 and "manage.py migrate" in result.stderr, result.stderr


def test_burst_waits_for_a_retry_due_soon_but_not_for_one_due_later(procs):
    from tests.testapp.jobs import FlakyJob

    flaky = djap.create_new(FlakyJob.create(FlakyJob.Inputs(fail_times=2)))
    later = djap.create_new(RecordExecution.create(RecordExecution.Inputs(key=1), run_after=3600))
    result = procs.run("work", "--burst", timeout=120)
    assert result.returncode == 0, result.stderr
    flaky.refresh_from_db()
    assert flaky.status == "done" and flaky.attempts == 3, flaky.error
    later.refresh_from_db()
    assert later.status == "new" and later.attempts == 0
    assert "1 jobs wait for a later run_after" in result.stderr
