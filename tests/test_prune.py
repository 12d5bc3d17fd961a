"""`djap prune` on a large table, its bad input, and the periodic prune in a worker."""

from __future__ import annotations

import asyncio
import datetime as dt

from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from djap_django.models import JobDBModel
from djap_django.worker import Worker, WorkerOptions
from tests.conftest import wait_until

OLD = {"done": 25_000, "failed": 20_000, "cancelled": 5_000}


def make_jobs(status: str, n: int, finished_days_ago: float | None) -> None:
    finished = None
    if finished_days_ago is not None:
        finished = timezone.now() - dt.timedelta(days=finished_days_ago)
    JobDBModel.objects.bulk_create(
        (JobDBModel(name="JobWithSleep", status=status, finished_at=finished) for _ in range(n)),
        batch_size=2000,
    )


def counts() -> dict[str, int]:
    return {s: JobDBModel.objects.filter(status=s).count() for s in ("done", "failed", "new")}


def test_prune_deletes_old_finished_jobs_of_a_large_table_in_batches(procs):
    for status, n in OLD.items():
        make_jobs(status, n, finished_days_ago=30)
    make_jobs("done", 500, finished_days_ago=1)  # too recent
    make_jobs("new", 200, finished_days_ago=None)  # not finished
    result = procs.run("prune", "--older-than", "7d", "--batch-size", "4000", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "deleted 50000 jobs (done, failed, cancelled)" in result.stdout
    assert counts() == {"done": 500, "failed": 0, "new": 200}
    assert not JobDBModel.objects.filter(status="cancelled").exists()


def test_prune_only_the_statuses_asked_for(procs):
    make_jobs("done", 300, finished_days_ago=10)
    make_jobs("failed", 200, finished_days_ago=10)
    result = procs.run("prune", "--older-than", "2d", "--status", "done", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "deleted 300 jobs (done)" in result.stdout
    assert counts() == {"done": 0, "failed": 200, "new": 0}


def test_prune_bad_input_is_one_line_and_deletes_nothing(procs):
    make_jobs("done", 10, finished_days_ago=30)
    bad_age = procs.run("prune", "--older-than", "7x")
    assert bad_age.returncode == 2
    assert bad_age.stderr.strip() == (
        "djap prune: error: --older-than: '7x' is not a duration like 7d, 12h, 30m, 90s or 2w"
    )
    bad_status = procs.run("prune", "--older-than", "7d", "--status", "done,running")
    assert bad_status.returncode == 2
    assert len(bad_status.stderr.strip().splitlines()) == 1
    assert "--status: running cannot be pruned" in bad_status.stderr
    assert JobDBModel.objects.count() == 10


def test_workers_prune_periodically_when_the_setting_asks():
    make_jobs("done", 2500, finished_days_ago=3)
    make_jobs("failed", 20, finished_days_ago=3)
    make_jobs("done", 30, finished_days_ago=0.5)
    djap = {
        **settings.DJAP,
        "PRUNE_OLDER_THAN": 86400,
        "PRUNE_STATUSES": ["done"],
        "PRUNE_INTERVAL": 0.05,
    }

    async def run_until_pruned() -> None:
        worker = Worker(WorkerOptions(concurrency=1, grace=0))
        task = asyncio.ensure_future(worker.run())
        deadline = asyncio.get_running_loop().time() + 60
        while await JobDBModel.objects.filter(status="done").acount() != 30:
            assert asyncio.get_running_loop().time() < deadline, "never pruned"
            await asyncio.sleep(0.05)
        worker.request_stop()
        await asyncio.wait_for(task, 60)

    with override_settings(DJAP=djap):
        asyncio.run(run_until_pruned())
    wait_until(lambda: counts() == {"done": 30, "failed": 20, "new": 0})
