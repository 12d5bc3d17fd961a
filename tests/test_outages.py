"""Real failures under real `djap work` processes: SIGKILL, cancel, PG down, SQLite locked."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest

import djap
from djap_django.models import JobDBModel
from djap_django.queue import WorkerInfo, open_queue
from tests.conftest import ROOT, wait_until
from tests.testapp.jobs import HangingSyncJob, RecordExecution, RecordThenHang, SleepFor
from tests.testapp.models import Execution

DB_KIND = os.environ.get("DJAP_TEST_DB", "sqlite")
RELIABILITY_SETTINGS = {"DJANGO_SETTINGS_MODULE": "tests.settings_reliability"}


def status_of(job_id: int) -> str:
    return JobDBModel.objects.get(pk=job_id).status


def test_sigkill_mid_job_the_job_comes_back_after_the_heartbeat_threshold(procs):
    row = djap.create_new(RecordThenHang.create(RecordThenHang.Inputs(key=1)))
    first = procs.start("work", "--concurrency", "2")
    wait_until(lambda: Execution.objects.filter(key=1).exists(), message="first attempt runs")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    assert status_of(row.pk) == "in_progress", "nobody may touch the job before it is stale"

    second = procs.start("work", "--concurrency", "2")
    wait_until(lambda: status_of(row.pk) == "done", timeout=90, message="rescued job done")
    row = JobDBModel.objects.get(pk=row.pk)
    assert row.attempts == 2 and row.crashes == 1
    assert "the worker running this attempt died" in row.errors[-1]["error"]
    assert row.errors[-1]["attempt"] == 1
    # At-least-once: the first attempt's effects stay; the job ran again, once.
    assert Execution.objects.filter(key=1).count() == 2
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0, procs.log(second)
    assert "rescued jobs of 1 dead workers: 1 put back" in procs.log(second)


async def test_a_job_whose_worker_keeps_dying_is_failed_as_poison():
    row = await djap.acreate_new(RecordExecution.create(RecordExecution.Inputs(key=1)))
    queue = open_queue()
    await queue.connect()
    try:
        for crash in range(1, 4):
            worker_id = await queue.worker_register(WorkerInfo(host="gone", pid=crash))
            claimed = await queue.jobs_claim(worker_id, 5, None, [])
            assert [c.id for c in claimed] == [row.pk]
            report = await queue.jobs_rescue_worker(worker_id, max_crashes=3)
            assert (report.requeued, report.failed) == ((1, 0) if crash < 3 else (0, 1))
    finally:
        await queue.close()
    row = await JobDBModel.objects.aget(pk=row.pk)
    assert row.status == "failed" and row.crashes == 3 and row.finished_at is not None
    assert "died while running this job 3 times" in row.error
    assert [e["attempt"] for e in row.errors] == [1, 2, 3]


@pytest.mark.parametrize("poll", ["0.5", "3600"], ids=["poll", "notify-only"])
def test_cancel_sent_from_another_process_stops_the_running_job(procs, poll):
    if poll == "3600" and DB_KIND != "postgres":
        pytest.skip("SQLite has no NOTIFY: polling is its only cancel signal")
    hung = djap.create_new(SleepFor.create(SleepFor.Inputs(seconds=3600)))
    after = djap.create_new(RecordExecution.create(RecordExecution.Inputs(key=9)))
    worker = procs.start(
        "work",
        "--concurrency",
        "1",
        env={**RELIABILITY_SETTINGS, "DJAP_TEST_CANCEL_POLL": poll},
    )
    wait_until(lambda: status_of(hung.pk) == "in_progress", message="the long job runs")
    assert status_of(after.pk) == "new", "one slot: the second job waits for the first"
    # This test process is not the worker: the cancel reaches it through the database.
    assert djap.cancel(hung.pk) is True
    wait_until(lambda: status_of(after.pk) == "done", message="the slot is free again")
    assert status_of(hung.pk) == "cancelled"
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, procs.log(worker)
    assert f"job {hung.pk} SleepFor cancelled" in procs.log(worker)


def test_a_stuck_sync_thread_does_not_keep_djap_work_from_exiting(procs):
    row = djap.create_new(HangingSyncJob.create(HangingSyncJob.Inputs(seconds=3600)))
    worker = procs.start("work", "--burst")
    # Without the exit path the process would wait an hour for the thread.
    assert worker.wait(timeout=60) == 0, procs.log(worker)
    assert "1 sync job threads are still running; exiting without them" in procs.log(worker)
    row = JobDBModel.objects.get(pk=row.pk)
    assert row.status == "failed" and "timed out after 0.5 s" in row.error


# -- PostgreSQL stopped and started again under running workers ----------------------

PG_SCRIPT = str(ROOT / "scripts" / "pg-throwaway")


def _pg_ctl(*args: str) -> None:
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    pg_ctl = bindirs[-1] if bindirs else "pg_ctl"
    # initdb refuses root, so as root the cluster belongs to `postgres` (see the script).
    owner = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    subprocess.run([*owner, pg_ctl, *args], check=True, capture_output=True, timeout=90)


@pytest.fixture
def throwaway_pg() -> Iterator[tuple[str, str]]:
    """A PostgreSQL cluster of this test's own, which it may stop and start at will."""
    if DB_KIND != "postgres":
        pytest.skip("the PostgreSQL outage test runs in the PostgreSQL half of the suite")
    folder = tempfile.mkdtemp(prefix="djap-pg-outage-")
    started = subprocess.run([PG_SCRIPT, "start", folder], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.skip(f"cannot start a throwaway PostgreSQL: {started.stderr.strip()}")
    try:
        yield folder, started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([PG_SCRIPT, "stop", folder], capture_output=True)


def _count(url: str, sql: str) -> int:
    with contextlib.suppress(psycopg.OperationalError), psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]
    return -1


N_OUTAGE_JOBS = 400


def test_postgresql_stopped_and_restarted_mid_run_every_job_done_once(
    procs, subprocess_env, throwaway_pg
):
    folder, url = throwaway_pg
    env = {**subprocess_env, "DJAP_TEST_DATABASE_URL": url, "DJAP_TEST_DB_NAME": "postgres"}
    run = {"env": env, "cwd": ROOT, "capture_output": True, "text": True, "timeout": 120}
    migrated = subprocess.run([sys.executable, "-m", "django", "migrate", "-v0"], **run)
    assert migrated.returncode == 0, migrated.stderr
    enqueue = (
        "import django; django.setup(); import djap; "
        "from tests.testapp.jobs import SleepThenRecordWithRetries as J; "
        f"djap.bulk_create_new([J.create(J.Inputs(key=i, seconds=0.3)) "
        f"for i in range({N_OUTAGE_JOBS})])"
    )
    enqueued = subprocess.run([sys.executable, "-c", enqueue], **run)
    assert enqueued.returncode == 0, enqueued.stderr

    procs.env = env
    workers = [procs.start("work", "--concurrency", "20", "--grace", "1") for _ in range(2)]
    executions = "SELECT count(*) FROM testapp_execution"
    wait_until(lambda: _count(url, executions) >= 60, timeout=60, message="work under way")

    port = str(urlsplit(url).port)
    _pg_ctl("-D", f"{folder}/data", "-m", "fast", "-w", "stop")
    wait_until(
        lambda: all("database unavailable" in procs.log(w) for w in workers),
        message="both workers notice the outage",
    )
    # Keep it down past STALE_AFTER (5 s in tests): when it returns, every heartbeat
    # looks stale, and no worker may take the others' running jobs for dead ones.
    time.sleep(6)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
    _pg_ctl("-D", f"{folder}/data", "-l", f"{folder}/server.log", "-w", "-o", options, "start")

    done = "SELECT count(*) FROM djap_job WHERE status = 'done'"
    wait_until(lambda: _count(url, done) == N_OUTAGE_JOBS, timeout=180, message="all done")
    assert _count(url, executions) == N_OUTAGE_JOBS, "a job ran twice"
    assert _count(url, "SELECT count(DISTINCT key) FROM testapp_execution") == N_OUTAGE_JOBS
    assert _count(url, "SELECT count(*) FROM djap_job WHERE crashes > 0") == 0
    # Jobs in flight at the outage failed to record and were retried: the test bit.
    assert _count(url, "SELECT count(*) FROM djap_job WHERE attempts > 1") > 0
    for worker in workers:
        assert "database reachable again" in procs.log(worker), procs.log(worker)

    # Never hang: told to stop while the database is down again, a worker waits for it a
    # bounded time (max(grace, 5 s)), then exits 0.
    _pg_ctl("-D", f"{folder}/data", "-m", "fast", "-w", "stop")
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout=90) == 0, procs.log(worker)
        assert "database unavailable at shutdown" in procs.log(worker)


# -- SQLite: heavy "database is locked" contention ----------------------------------


def test_sqlite_lock_contention_with_several_writers_loses_nothing(procs):
    if DB_KIND != "sqlite":
        pytest.skip("SQLite lock contention")
    djap.bulk_create_new(
        [RecordExecution.create(RecordExecution.Inputs(key=i)) for i in range(300)]
    )
    # Writers that enqueue and hold the write lock for 0.1 s each time.
    hog = (
        "import sys, time, django; django.setup(); import djap\n"
        "from django.db import transaction\n"
        "from tests.testapp.jobs import RecordExecution as R\n"
        "base = int(sys.argv[1])\n"
        "for i in range(40):\n"
        "    with transaction.atomic():\n"
        "        djap.create_new(R.create(R.Inputs(key=base + i)))\n"
        "        time.sleep(0.1)\n"
    )
    env = {**procs.env, **RELIABILITY_SETTINGS, "DJAP_TEST_BUSY_TIMEOUT": "0.005"}
    hogs = [
        subprocess.Popen([sys.executable, "-c", hog, str(base)], env=env, cwd=ROOT)
        for base in (10_000, 20_000)
    ]
    workers = [
        procs.start("work", "--concurrency", "10", env={**RELIABILITY_SETTINGS, **env})
        for _ in range(3)
    ]
    try:
        for h in hogs:
            assert h.wait(timeout=120) == 0
    finally:
        for h in hogs:
            if h.poll() is None:
                h.kill()
    total = 300 + 2 * 40
    wait_until(
        lambda: JobDBModel.objects.filter(status="done").count() == total,
        timeout=120,
        message="every job done",
    )
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout=60) == 0, procs.log(worker)
    assert Execution.objects.count() == total, "a job ran twice"
    assert Execution.objects.values("key").distinct().count() == total
    logs = "".join(procs.log(w) for w in workers)
    assert "database is locked" in logs, "the test did not create contention"
