"""`djap bench`: its figures are computed honestly (every job ran once, counts add up).

No assertion here is about speed: that is what the bench itself reports. These tests
run the real command, with real worker processes, against the test database.
"""

from __future__ import annotations

import json
import os
import signal

import psutil
import pytest
from django.db import connection

import djap
from djap.bench import max_in_flight, percentile, verify
from djap_django.models import JobDBModel, WorkerDBModel
from tests.conftest import wait_until
from tests.testapp.jobs import RecordExecution

BENCH_NAMES = ["DjapBenchNoop", "DjapBenchSleep", "DjapBenchOrm", "DjapBenchOrmSync"]


def _bench_json(procs, *args: str) -> dict:
    result = procs.run("bench", "--json", *args, timeout=170)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_bench_counts_every_job_once_and_cleans_up(procs):
    user_job = djap.create_new(RecordExecution.create(RecordExecution.Inputs(key=7)))

    out = _bench_json(
        procs, "--jobs", "300", "--procs", "2", "--concurrency", "20", "--latency-jobs", "5"
    )

    total = 300 + 5
    assert out["all_ran_once"] is True
    assert (out["executions"], out["unique"], out["duplicates"], out["missing"]) == (
        total,
        total,
        0,
        0,
    )
    assert out["unexpected"] == 0
    # The rows and the workers' own counters agree with the marker file.
    assert out["rows"] == {"done": total}
    assert out["workers_jobs_done"] == total
    assert out["latency_ms"]["n"] == 5
    assert out["latency_ms"]["p50"] <= out["latency_ms"]["p95"] <= out["latency_ms"]["p99"]
    assert out["enqueue_jobs_per_s"] > 0 and out["drain_jobs_per_s"] > 0
    assert out["drain_steady_jobs_per_s"] >= out["drain_jobs_per_s"]
    assert (out["jobs"], out["procs"], out["concurrency"]) == (300, 2, 20)
    assert out["worker_rss_mb"]["peak"] >= out["worker_rss_mb"]["end"] > 0

    # Cleaned up: no bench rows, no bench worker rows; the user's job was not touched.
    assert not JobDBModel.objects.filter(name__in=BENCH_NAMES).exists()
    assert not WorkerDBModel.objects.filter(group="djap-bench").exists()
    user_job.refresh_from_db()
    assert user_job.status == "new" and user_job.attempts == 0


def test_bench_backlog_rows_are_written_first_left_unrun_and_cleaned_up(procs):
    user_job = djap.create_new(RecordExecution.create(RecordExecution.Inputs(key=8)))

    for filter_ in ("include", "exclude"):
        out = _bench_json(
            procs,
            *("--jobs", "200", "--concurrency", "20", "--latency-jobs", "3"),
            *("--backlog-scheduled", "300", "--backlog-other", "400", "--filter", filter_),
        )
        assert out["backlog"]["scheduled"] == 300 and out["backlog"]["other"] == 400
        assert out["backlog"]["filter"] == filter_
        # The bench's own jobs ran once each; no backlog row ran (a run marks i < 0).
        assert out["all_ran_once"] is True and out["unexpected"] == 0
        assert out["rows"] == {"done": 203}

    assert not JobDBModel.objects.filter(name__in=[*BENCH_NAMES, "DjapBenchOther"]).exists()
    user_job.refresh_from_db()
    assert user_job.status == "new" and user_job.attempts == 0


def test_bench_rejects_an_unknown_filter_in_one_line(procs):
    result = procs.run("bench", "--filter", "both")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "djap bench: error: --filter must be include or exclude, not 'both'"
    )


def test_bench_sleep_jobs_report_how_many_ran_at_once(procs):
    out = _bench_json(
        procs,
        "--job",
        "sleep",
        "--sleep",
        "0.5",
        "--jobs",
        "200",
        "--concurrency",
        "200",
        "--latency-jobs",
        "0",
    )
    assert out["all_ran_once"] is True and out["executions"] == 200
    assert 1 <= out["max_in_flight"] <= 200
    assert out["latency_ms"] == {"p50": None, "p95": None, "p99": None, "max": None, "n": 0}


def test_bench_table_says_whether_every_job_ran_once(procs):
    result = procs.run("bench", "--jobs", "50", "--latency-jobs", "2", timeout=170)
    assert result.returncode == 0, result.stderr
    assert "every job ran exactly once" in result.stdout and "yes" in result.stdout


def test_bench_rejects_an_unknown_job_kind_in_one_line(procs):
    result = procs.run("bench", "--job", "fast")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "djap bench: error: --job must be one of noop, sleep, orm, orm-sync, not 'fast'"
    )
    assert not JobDBModel.objects.filter(name__in=BENCH_NAMES).exists()


@pytest.mark.parametrize("job", ["orm", "orm-sync"])
def test_orm_bench_runs_real_orm_jobs_beside_its_ceiling_and_drops_its_table(procs, job):
    out = _bench_json(
        procs,
        "--job",
        job,
        "--jobs",
        "60",
        "--query-ms",
        "2",
        "--ceiling-threads",
        "3",
        "--ceiling-seconds",
        "0.5",
        "--latency-jobs",
        "2",
    )
    assert out["all_ran_once"] is True and out["rows"] == {"done": 62}
    assert out["query_ms"] == 2.0
    ceiling = out["ceiling"]
    assert ceiling["threads"] == 3
    assert ceiling["body"] == ("async-tasks" if job == "orm" else "sync-threads")
    assert ceiling["body_per_s"] > 0
    assert out["drain_vs_body_ceiling"] > 0
    if connection.vendor == "postgresql":
        assert ceiling["psycopg_per_s"] > 0
        # The workers' connections were seen while they drained.
        assert out["worker_connections"]["max"] >= 1
    else:
        assert "psycopg_per_s" not in ceiling and out["worker_connections"] is None
    # The bench's table is gone with the run.
    assert "djap_bench_row" not in connection.introspection.table_names()


def test_verify_finds_duplicates_missing_and_strays():
    marks = [(0, 1.0), (1, 1.1), (1, 1.2), (3, 1.3), (9, 1.4)]
    assert verify(marks, 4) == {
        "executions": 5,
        "unique": 4,
        "duplicates": 1,
        "missing": 1,  # index 2 never ran
        "unexpected": 1,  # index 9 was never enqueued
    }


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (
        50.0,
        95.0,
        99.0,
    )
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None


def test_max_in_flight_counts_starts_inside_one_window():
    # Three jobs start within 1 s of each other, then one more much later.
    assert max_in_flight([0.0, 0.4, 0.9, 5.0], 1.0) == 3
    assert max_in_flight([0.0, 2.0, 4.0], 1.0) == 1
    assert max_in_flight([], 1.0) == 0


def _bench_worker_pids() -> list[int]:
    return list(
        WorkerDBModel.objects.filter(group="djap-bench", state="running").values_list(
            "pid", flat=True
        )
    )


def _start_long_bench(procs):
    # TMPDIR: a SIGKILLed bench cannot remove its scratch folder; pytest removes this one.
    proc = procs.start(
        "bench",
        "--job",
        "sleep",
        "--sleep",
        "30",
        "--jobs",
        "50",
        "--concurrency",
        "10",
        env={"TMPDIR": str(procs.logdir)},
    )
    pids = wait_until(_bench_worker_pids, timeout=60, message="bench workers registered")
    return proc, pids


def test_a_terminated_bench_stops_its_workers_and_cleans_up(procs):
    proc, pids = _start_long_bench(procs)
    os.kill(proc.pid, signal.SIGTERM)  # the bench process only, not its workers
    assert proc.wait(timeout=60) != 0
    assert not any(psutil.pid_exists(pid) for pid in pids)
    assert not JobDBModel.objects.filter(name__in=BENCH_NAMES).exists()
    assert not WorkerDBModel.objects.filter(group="djap-bench").exists()


def test_workers_of_a_killed_bench_exit_and_the_next_bench_cleans_up(procs):
    proc, pids = _start_long_bench(procs)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    wait_until(
        lambda: not any(psutil.pid_exists(pid) for pid in pids),
        timeout=60,
        message="orphaned bench workers exit",
    )
    assert JobDBModel.objects.filter(name__in=BENCH_NAMES).exists()  # left behind...
    out = _bench_json(procs, "--jobs", "20", "--latency-jobs", "0")
    assert out["all_ran_once"] is True and out["rows"] == {"done": 20}
    assert not JobDBModel.objects.filter(name__in=BENCH_NAMES).exists()  # ...and gone


def test_a_second_bench_on_the_same_database_is_refused(procs):
    proc, pids = _start_long_bench(procs)
    result = procs.run("bench", "--jobs", "10")
    assert result.returncode == 2
    assert "another djap bench is running on this database" in result.stderr
    os.kill(proc.pid, signal.SIGTERM)  # leave no worker behind for the next test
    proc.wait(timeout=60)
    assert not any(psutil.pid_exists(pid) for pid in pids)


def test_the_orm_bench_table_never_needs_a_migration():
    # Imported (as bench workers do), its model must not look like a djap_django change.
    from django.core.management import call_command

    import djap_django.benchjobs  # noqa: F401

    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
