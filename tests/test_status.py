"""`djap status`: tables, --json with the documented keys, --check for monitoring."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

from django.db import connection
from django.utils import timezone

import djap
from djap.status import take_snapshot
from djap_django.models import WorkerDBModel
from tests.conftest import wait_until
from tests.testapp.jobs import GpuJob, RecordExecution, SleepFor


def live_worker_row(**kw) -> WorkerDBModel:
    now = timezone.now()
    return WorkerDBModel.objects.create(
        host="web-1", pid=4242, started_at=now, last_heartbeat=now, **kw
    )


def test_json_has_queue_counts_and_workers_with_their_fields(procs):
    djap.bulk_create_new([RecordExecution.create(RecordExecution.Inputs(key=i)) for i in range(3)])
    djap.create_new(SleepFor.create(SleepFor.Inputs(seconds=600)))
    worker = procs.start("work", "--include", "SleepFor", "--grace", "0.5")
    wait_until(
        lambda: take_snapshot().queue.get("SleepFor", {}).get("in_progress") == 1,
        60,
        "the worker to claim its job",
    )
    result = procs.run("status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["queue"]["RecordExecution"] == {"new": 3}
    assert data["queue"]["SleepFor"] == {"in_progress": 1}
    (entry,) = [w for w in data["workers"] if w["pid"] == worker.pid]
    for key in ("host", "pid", "group", "alive", "last_heartbeat", "jobs_done", "jobs_failed"):
        assert key in entry
    assert entry["alive"] is True and entry["group"] == "default"
    dt.datetime.fromisoformat(entry["last_heartbeat"])


def test_status_counts_pipelines_by_status(procs):
    from djap_django.models import PipelineDBModel

    for status in ("running", "done", "done", "failed"):
        PipelineDBModel.objects.create(name="Thumbnails", status=status)
    result = procs.run("status", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pipelines"] == {"running": 1, "done": 2, "failed": 1}
    tables = procs.run("status")
    assert "pipelines: 1 running, 2 done, 1 failed" in tables.stdout, tables.stdout


def test_tables_show_jobs_and_workers(procs):
    djap.create_new(RecordExecution.create(RecordExecution.Inputs(key=1)))
    live_worker_row(group="gpu", include=["GpuJob"])
    result = procs.run("status")
    assert result.returncode == 0, result.stderr
    for part in ("RecordExecution", "waiting", "web-1", "4242", "gpu"):
        assert part in result.stdout, result.stdout


def test_check_fails_when_waiting_jobs_have_no_live_worker_that_takes_them(procs):
    djap.create_new(GpuJob.create(GpuJob.Inputs(key=1)))
    djap.create_new(
        RecordExecution.create(RecordExecution.Inputs(key=1), run_after=dt.timedelta(hours=1))
    )
    result = procs.run("status", "--check")
    assert result.returncode == 1
    assert "GpuJob (1 new)" in result.stderr and "RecordExecution" not in result.stderr
    # A worker that excludes it does not count; a dead one neither.
    live_worker_row(exclude=["GpuJob"])
    stale = timezone.now() - dt.timedelta(hours=1)
    WorkerDBModel.objects.create(
        host="gone", pid=1, started_at=stale, last_heartbeat=stale, include=["GpuJob"]
    )
    assert procs.run("status", "--check").returncode == 1
    live_worker_row(include=["GpuJob"])
    result = procs.run("status", "--check")
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_an_unmigrated_or_missing_database_is_one_line_naming_the_fix(procs, tmp_path):
    if connection.vendor == "postgresql":
        # A database that does not exist: the server answers, the connection fails.
        procs.env = {**procs.env, "DJAP_TEST_DB_NAME": "djap_no_such_database"}
        fix = "check DATABASES"
    else:
        # An empty SQLite file: the database opens, djap's tables are missing.
        procs.env = {**procs.env, "DJAP_TEST_DB_NAME": str(tmp_path / "empty.sqlite3")}
        fix = "manage.py migrate"
    commands = (
        ["status"],
        ["supervise", "--procs", "1", "--no-dashboard"],
        ["work", "--burst"],
        ["prune", "--older-than", "1d"],
        ["bench", "--jobs", "10"],
    )
    for args in commands:
        result = procs.run(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and fix in lines[0], (args, result.stderr)
    # The management command says the same, the Django way (CommandError, no traceback).
    command = subprocess.run(
        [sys.executable, "-m", "django", "consume_jobs_async", "--burst"],
        env=procs.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert command.returncode == 1 and fix in command.stderr, command.stderr
    assert "Traceback" not in command.stderr


def test_the_live_reader_counts_jobs_only_as_often_as_its_budget_allows():
    from django.db import connection as conn
    from django.test.utils import CaptureQueriesContext

    from djap.status import SnapshotReader

    djap.bulk_create_new([RecordExecution.create(RecordExecution.Inputs(key=i)) for i in range(3)])
    reader = SnapshotReader("default", stale_after=30, budget=20, min_interval_s=0.5)
    assert reader.read(now=100.0).queue == {"RecordExecution": {"new": 3}}
    djap.create_new(RecordExecution.create(RecordExecution.Inputs(key=3)))
    with CaptureQueriesContext(conn) as queries:
        soon = reader.read(now=100.1)
    # Workers are read every time; the counts are the last ones, not a new scan.
    assert soon.queue == {"RecordExecution": {"new": 3}}
    assert not any("djap_job" in q["sql"] for q in queries.captured_queries)
    assert reader.read(now=200.0).queue == {"RecordExecution": {"new": 4}}
