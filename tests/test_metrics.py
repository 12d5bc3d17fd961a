"""Prometheus metrics: scraped over real HTTP from a running metrics server."""

from __future__ import annotations

import asyncio
import datetime as dt
import urllib.error
import urllib.request

import pytest
from django.utils import timezone

import djap
from djap.metrics import Metrics, start_metrics_server
from djap.status import Snapshot
from tests.testapp.jobs import FailingJob, JobWithSleep


@pytest.fixture
def server():
    running = start_metrics_server(0, addr="127.0.0.1")
    yield running
    running.stop()


def scrape(port: int) -> dict[str, float]:
    """The scrape as {'metric{labels}': value}, comments dropped."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def test_finished_jobs_histograms_depth_and_restarts(server):
    for job in (JobWithSleep, JobWithSleep, FailingJob):
        djap.create_new(job)
    asyncio.run(djap.run_num_jobs(max_num_workers=3, timeout=30, num_jobs=3))
    djap.create_new(JobWithSleep)  # still waiting: part of the depth
    server.record_restart("gpu", "hung")

    samples = scrape(server.port)
    assert samples['djap_jobs_finished_total{name="JobWithSleep",status="done"}'] == 2
    assert samples['djap_jobs_finished_total{name="FailingJob",status="failed"}'] == 1
    assert samples['djap_job_run_seconds_count{name="JobWithSleep"}'] == 2
    assert samples['djap_job_pickup_latency_seconds_count{name="FailingJob"}'] == 1
    assert samples['djap_queue_jobs{name="JobWithSleep",status="new"}'] == 1
    assert samples['djap_worker_restarts_total{group="gpu",reason="hung"}'] == 1

    # A second scrape counts nothing twice.
    again = scrape(server.port)
    assert again['djap_jobs_finished_total{name="JobWithSleep",status="done"}'] == 2
    assert again['djap_job_run_seconds_count{name="JobWithSleep"}'] == 2


def test_other_paths_are_404(server):
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/nope", timeout=30)
    assert info.value.code == 404


def test_a_taken_port_is_a_one_line_error(server):
    from djap.errors import CliError

    with pytest.raises(CliError, match=f"--metrics-port {server.port}"):
        start_metrics_server(server.port, addr="127.0.0.1")


def test_late_rows_are_counted_once_and_latency_starts_when_due():
    t0 = timezone.now()
    metrics = Metrics(since=t0)
    s = dt.timedelta(seconds=1)
    # (id, name, status, created, run_after, started, finished)
    first = [(1, "A", "done", t0, None, t0 + s, t0 + 3 * s)]
    assert metrics.observe(first) == 1
    # The next scrape sees row 1 again (look-back) and a row committed late with an
    # older finished_at: only the new one counts.
    late = [(2, "A", "done", t0, t0 + 2 * s, t0 + 2.5 * s, t0 + 2.8 * s), *first]
    assert metrics.observe(late) == 1
    value = metrics.registry.get_sample_value
    assert value("djap_jobs_finished_total", {"name": "A", "status": "done"}) == 2
    # Row 2 was due at run_after (t0+2s), started at t0+2.5s: 0.5 s, in the 0.5 bucket.
    assert value("djap_job_pickup_latency_seconds_bucket", {"name": "A", "le": "0.5"}) == 1
    assert value("djap_job_pickup_latency_seconds_sum", {"name": "A"}) == pytest.approx(1.5)


def test_depth_comes_from_the_supervisor_snapshot_when_given():
    snap = Snapshot(taken_at=timezone.now(), queue={"Resize": {"new": 5, "done": 9}}, workers=())
    metrics = Metrics(snapshot_fn=lambda: snap)
    metrics.refresh()
    value = metrics.registry.get_sample_value
    assert value("djap_queue_jobs", {"name": "Resize", "status": "new"}) == 5
    assert value("djap_queue_jobs", {"name": "Resize", "status": "done"}) is None
