"""Real `djap supervise` processes: crashes, hangs, bloat, signals, GPU groups, two hosts.

Each test starts a real supervisor (no TTY: log-line mode), hurts one of its real
worker processes with a real signal, and waits on the database with a deadline.
"""

from __future__ import annotations

import os
import signal

import pytest
from django.db import connection

import djap
from djap_django.models import JobDBModel, WorkerDBModel
from tests.conftest import wait_until
from tests.test_outages import throwaway_pg  # noqa: F401 - a fixture, used by name
from tests.testapp.jobs import GpuJob, HoldMemory, RecordExecution, SleepFor, SleepThenRecord
from tests.testapp.models import Execution


def enqueue_sleepers(n: int, seconds: float) -> None:
    djap.bulk_create_new(
        [SleepThenRecord.create(SleepThenRecord.Inputs(key=i, seconds=seconds)) for i in range(n)]
    )


def workers_of(sup) -> list[WorkerDBModel]:
    return list(WorkerDBModel.objects.filter(supervisor_pid=sup.pid).order_by("id"))


def busy_worker(sup) -> WorkerDBModel | None:
    """A worker of this supervisor that holds a job right now."""
    job = (
        JobDBModel.objects.filter(status="in_progress", worker__supervisor_pid=sup.pid)
        .select_related("worker")
        .first()
    )
    return job.worker if job else None


def all_done(n: int) -> bool:
    return JobDBModel.objects.filter(status="done").count() == n


def test_sigkill_mid_job_a_replacement_starts_and_every_job_ends_done(procs):
    enqueue_sleepers(18, seconds=2)
    sup = procs.start(
        "supervise", "--procs", "2", "--concurrency", "3", "--burst", "--no-dashboard"
    )
    victim = wait_until(lambda: busy_worker(sup), 60, "a worker holding a job")
    os.kill(victim.pid, signal.SIGKILL)
    wait_until(
        lambda: any(w.pid != victim.pid and w.id > victim.id for w in workers_of(sup)),
        60,
        "a replacement worker",
    )
    assert sup.wait(timeout=180) == 0, procs.log(sup)
    log = procs.log(sup)
    # The supervisor put the jobs back itself, at once, counting the crash.
    assert f"pid {victim.pid} killed by SIGKILL; put back" in log, log
    assert JobDBModel.objects.filter(crashes=1).exists()
    assert all_done(18), list(JobDBModel.objects.values_list("status", flat=True))
    assert set(Execution.objects.values_list("key", flat=True)) == set(range(18))
    assert WorkerDBModel.objects.get(pk=victim.pk).state == "dead"


def test_a_sigstopped_worker_is_found_hung_and_replaced(procs):
    enqueue_sleepers(6, seconds=1)
    sup = procs.start(
        "supervise", "--procs", "1", "--concurrency", "2", "--burst", "--no-dashboard"
    )
    victim = wait_until(lambda: busy_worker(sup), 60, "a worker holding a job")
    os.kill(victim.pid, signal.SIGSTOP)
    assert sup.wait(timeout=180) == 0, procs.log(sup)
    log = procs.log(sup)
    assert f"pid {victim.pid} hung: no heartbeat" in log, log
    assert len(workers_of(sup)) >= 2
    assert all_done(6)
    assert set(Execution.objects.values_list("key", flat=True)) == set(range(6))


def test_a_worker_over_max_memory_drains_and_is_replaced(procs):
    djap.create_new(HoldMemory.create(HoldMemory.Inputs(mb=400, seconds=4)))
    sup = procs.start(
        "supervise",
        "--procs",
        "1",
        "--max-memory",
        "300MB",
        "--grace",
        "30",
        "--burst",
        "--no-dashboard",
    )
    assert sup.wait(timeout=180) == 0, procs.log(sup)
    log = procs.log(sup)
    assert "recycled (memory: RSS" in log and "over --max-memory 300M" in log, log
    first, *others = workers_of(sup)
    assert others, "no replacement started"
    # It drained: the job it was running finished, it was not killed.
    assert JobDBModel.objects.get().status == "done"
    assert WorkerDBModel.objects.get(pk=first.pk).state == "stopped"


def test_sigterm_with_jobs_running_exits_zero_and_leaves_nothing_in_progress(procs):
    enqueue_sleepers(4, seconds=1)
    djap.bulk_create_new([SleepFor.create(SleepFor.Inputs(seconds=600)) for _ in range(2)])
    sup = procs.start(
        "supervise", "--procs", "2", "--concurrency", "3", "--grace", "3", "--no-dashboard"
    )
    wait_until(
        lambda: JobDBModel.objects.filter(status="in_progress").count() == 6,
        60,
        "6 jobs in progress",
    )
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(timeout=60) == 0, procs.log(sup)
    assert not JobDBModel.objects.filter(status="in_progress").exists()
    # The short jobs finished within the grace; the long ones were put back.
    assert JobDBModel.objects.filter(name="SleepThenRecord", status="done").count() == 4
    assert JobDBModel.objects.filter(name="SleepFor", status="new", crashes=0).count() == 2
    assert all(w.state == "stopped" for w in workers_of(sup))


def test_a_second_ctrl_c_stops_at_once_and_still_puts_jobs_back(procs):
    djap.bulk_create_new([SleepFor.create(SleepFor.Inputs(seconds=600)) for _ in range(2)])
    sup = procs.start("supervise", "--procs", "1", "--grace", "600", "--no-dashboard")
    wait_until(
        lambda: JobDBModel.objects.filter(status="in_progress").count() == 2,
        60,
        "2 jobs in progress",
    )
    sup.send_signal(signal.SIGINT)
    wait_until(lambda: "stopping 1 processes" in procs.log(sup), 30, "the first Ctrl-C")
    sup.send_signal(signal.SIGINT)
    # Without the second Ctrl-C this would wait out the 600 s grace.
    assert sup.wait(timeout=60) == 0, procs.log(sup)
    assert JobDBModel.objects.filter(status="new").count() == 2


def test_workers_stop_by_themselves_when_their_supervisor_dies(procs):
    djap.create_new(SleepFor.create(SleepFor.Inputs(seconds=600)))
    sup = procs.start("supervise", "--procs", "1", "--grace", "1", "--no-dashboard")
    worker = wait_until(lambda: busy_worker(sup), 60, "a worker holding a job")
    os.kill(sup.pid, signal.SIGKILL)
    sup.wait(timeout=10)
    wait_until(
        lambda: WorkerDBModel.objects.get(pk=worker.pk).state == "stopped",
        60,
        "the orphaned worker to stop",
    )
    assert JobDBModel.objects.get().status == "new"


def test_gpu_jobs_run_only_in_the_gpu_processes_each_with_one_device(procs):
    djap.bulk_create_new(
        [GpuJob.create(GpuJob.Inputs(key=i)) for i in range(10)]
        + [RecordExecution.create(RecordExecution.Inputs(key=100 + i)) for i in range(10)]
    )
    env = {k: v for k, v in procs.env.items() if k != "CUDA_VISIBLE_DEVICES"}
    procs.env = env
    sup = procs.start(
        "supervise", "--procs", "1", "--gpu-procs", "2:GpuJob", "--burst", "--no-dashboard"
    )
    assert sup.wait(timeout=180) == 0, procs.log(sup)
    assert all_done(20)
    gpu_pids = set(WorkerDBModel.objects.filter(group="gpu").values_list("pid", flat=True))
    general_pids = set(WorkerDBModel.objects.filter(group="default").values_list("pid", flat=True))
    assert len(gpu_pids) == 2 and general_pids and not gpu_pids & general_pids
    gpu_runs = Execution.objects.filter(key__lt=100)
    assert {e.pid for e in gpu_runs} <= gpu_pids
    assert {e.env for e in gpu_runs} <= {"0", "1"}
    other_runs = Execution.objects.filter(key__gte=100)
    assert {e.pid for e in other_runs} <= general_pids
    assert {e.env for e in other_runs} == {""}
    for w in WorkerDBModel.objects.filter(group="gpu"):
        assert w.include == ["GpuJob"]
    for w in WorkerDBModel.objects.filter(group="default"):
        assert w.include is None and w.exclude == ["GpuJob"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="two hosts share PostgreSQL")
def test_two_supervisors_on_one_database_one_stops_hard_the_other_finishes(procs):
    enqueue_sleepers(24, seconds=1.5)
    a = procs.start(
        "supervise", "--procs", "1", "--concurrency", "4", "--node-name", "host-a",
        "--no-dashboard", "--grace", "1",
    )  # fmt: skip
    b = procs.start(
        "supervise", "--procs", "1", "--concurrency", "4", "--node-name", "host-b",
        "--no-dashboard", "--grace", "1",
    )  # fmt: skip
    wait_until(
        lambda: JobDBModel.objects.filter(status="in_progress", worker__host="host-a").exists(),
        60,
        "host-a holding jobs",
    )
    # host-a vanishes: its supervisor and workers die at once, nobody puts its jobs back.
    os.killpg(a.pid, signal.SIGKILL)
    a.wait(timeout=10)
    wait_until(lambda: all_done(24), 120, "host-b to finish every job")
    assert set(Execution.objects.values_list("key", flat=True)) == set(range(24))
    assert JobDBModel.objects.filter(crashes=1).exists(), "no job was rescued from host-a"
    assert set(WorkerDBModel.objects.filter(host="host-a").values_list("state", flat=True)) == {
        "dead"
    }
    b.send_signal(signal.SIGTERM)
    assert b.wait(timeout=60) == 0, procs.log(b)


def test_bad_supervise_input_is_one_line_and_exit_code_2(procs):
    for args, expect in (
        (["--gpu-procs", "GpuJob"], "N:JobName"),
        (["--max-memory", "lots"], "512MB"),
        (["--gpu-procs", "1:GpuJbo"], "did you mean 'GpuJob'"),
        (["--pool", "1:A", "--pool", "1:A"], "both"),
    ):
        result = procs.run("supervise", "--no-dashboard", *args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expect in lines[0], result.stderr


def test_restarts_are_counted_in_the_metrics(procs):
    pytest.importorskip("prometheus_client")
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sup = procs.start("supervise", "--procs", "1", "--no-dashboard", "--metrics-port", str(port))
    first = wait_until(lambda: workers_of(sup), 60, "a worker")[0]
    os.kill(first.pid, signal.SIGKILL)

    def restarts() -> str:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        line = 'djap_worker_restarts_total{group="default",reason="crashed"} 1.0'
        return line if line in text else ""

    wait_until(restarts, 60, "the restart in /metrics")
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(timeout=60) == 0, procs.log(sup)


def test_a_database_outage_kills_no_worker_and_rescues_no_running_job(
    procs, subprocess_env, request
):
    """After an outage every heartbeat looks stale: the supervisor must not act on that."""
    import subprocess
    import sys
    import time
    from urllib.parse import urlsplit

    from tests.conftest import ROOT
    from tests.test_outages import _count, _pg_ctl

    folder, url = request.getfixturevalue("throwaway_pg")  # from tests.test_outages
    env = {**subprocess_env, "DJAP_TEST_DATABASE_URL": url, "DJAP_TEST_DB_NAME": "postgres"}
    run = {"env": env, "cwd": ROOT, "capture_output": True, "text": True, "timeout": 120}
    assert subprocess.run([sys.executable, "-m", "django", "migrate", "-v0"], **run).returncode == 0
    enqueue = (
        "import django; django.setup(); import djap; "
        "from tests.testapp.jobs import SleepThenRecordWithRetries as J; "
        "djap.bulk_create_new([J.create(J.Inputs(key=i, seconds=0.3)) for i in range(300)])"
    )
    assert subprocess.run([sys.executable, "-c", enqueue], **run).returncode == 0
    procs.env = env
    sup = procs.start("supervise", "--procs", "2", "--concurrency", "10", "--no-dashboard")
    executions = "SELECT count(*) FROM testapp_execution"
    wait_until(lambda: _count(url, executions) >= 40, timeout=60, message="work under way")
    _pg_ctl("-D", f"{folder}/data", "-m", "fast", "-w", "stop")
    wait_until(lambda: "cannot read the worker table" in procs.log(sup), 30, "the outage seen")
    time.sleep(6)  # down past STALE_AFTER (5 s in tests), on purpose
    port = str(urlsplit(url).port)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
    _pg_ctl("-D", f"{folder}/data", "-l", f"{folder}/server.log", "-w", "-o", options, "start")
    done = "SELECT count(*) FROM djap_job WHERE status = 'done'"
    wait_until(lambda: _count(url, done) == 300, timeout=180, message="all done")
    log = procs.log(sup)
    assert "readable again" in log, log
    assert "hung" not in log and "restart in" not in log, log
    assert _count(url, "SELECT count(*) FROM djap_job WHERE crashes > 0") == 0
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(timeout=60) == 0, log
