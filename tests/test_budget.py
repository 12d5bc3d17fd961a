"""The connection budget: what a worker opens, said at start, stored, shown, and checked."""

from __future__ import annotations

import json
import signal

import pytest
from django.db import connection

import djap
from djap_django.budget import Budget, over_budget_warning, server_room, worker_budget
from djap_django.models import JobDBModel, WorkerDBModel
from djap_django.worker import Worker, WorkerOptions
from tests.conftest import wait_until
from tests.testapp.jobs import SyncLaneWhere

pg_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="a server's connection limit is PostgreSQL's"
)
QUEUE = 4 if connection.vendor == "postgresql" else 1


def test_a_worker_budget_is_queue_plus_bookkeeping_plus_the_lanes_it_can_use():
    assert worker_budget("default", lanes=8, concurrency=100).total == QUEUE + 1 + 8
    # Lanes beyond the jobs in flight are never used, so never opened.
    assert worker_budget("default", lanes=8, concurrency=2) == Budget(QUEUE, 1, 2)
    text = worker_budget("default", lanes=8, concurrency=100).describe()
    assert (
        text
        == f"{QUEUE + 9} database connections at most ({QUEUE} queue + 1 bookkeeping + 8 lanes)"
    )


async def test_the_worker_row_stores_its_budget_and_the_lanes_follow_it():
    await djap.acreate_new(SyncLaneWhere)
    worker = Worker(WorkerOptions(concurrency=10, lanes=3, num_jobs=1, timeout=30, grace=0))
    await worker.run()
    row = await WorkerDBModel.objects.aget(pk=worker.worker_id)
    assert row.connections == QUEUE + 1 + 3
    assert worker.lanes.size == 3


def test_djap_work_says_what_it_opens_and_status_shows_it(procs):
    djap.create_new(SyncLaneWhere)
    worker = procs.start("work", "--lanes", "2", "--concurrency", "5")
    wait_until(lambda: JobDBModel.objects.filter(status="done").exists(), message="a job ran")
    assert f"{QUEUE + 3} database connections at most" in procs.log(worker)
    out = procs.run("status", "--json")
    assert out.returncode == 0, out.stderr
    rows = [w for w in json.loads(out.stdout)["workers"] if w["pid"] == worker.pid]
    assert rows and rows[0]["connections"] == QUEUE + 3
    table = procs.run("status")
    assert "conn" in table.stdout


@pg_only
def test_the_server_room_is_read_from_the_server():
    room = server_room("default")
    with connection.cursor() as cur:
        cur.execute("SHOW max_connections")
        assert room.max_connections == int(cur.fetchone()[0])
    assert room.allowed < room.max_connections and room.in_use >= 1
    assert over_budget_warning(1, room, "x") is None
    warning = over_budget_warning(room.allowed, room, "its workers", "2 x 4")
    assert warning.startswith(f"its workers may open {room.allowed} database connections (2 x 4)")
    assert f"the server allows {room.allowed}" in warning


@pg_only
def test_supervise_warns_before_starting_more_than_the_server_allows(procs):
    sup = procs.start(
        "supervise", "--procs", "1", "--concurrency", "5000", "--lanes", "5000", "--no-dashboard"
    )
    wait_until(lambda: "lower --procs or --lanes" in procs.log(sup), message="the warning")
    assert (
        "djap supervise: warning: its workers may open 5005 database connections (1 x 5005 "
        "database connections at most (4 queue + 1 bookkeeping + 5000 lanes)), and"
    ) in procs.log(sup)
    # The warning comes first; the workers start anyway (lanes connect only when used).
    wait_until(lambda: WorkerDBModel.objects.filter(state="running").exists(), timeout=60)
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(timeout=60) == 0, procs.log(sup)


@pg_only
def test_with_djangos_pool_a_worker_uses_no_more_lanes_than_the_pool_has(procs):
    pytest.importorskip("psycopg_pool")
    from tests.settings_pool import POOL_MAX_SIZE

    rows = [djap.create_new(SyncLaneWhere) for _ in range(30)]
    result = procs.run(
        "work",
        "--burst",
        "--lanes",
        "8",
        "--concurrency",
        "20",
        "--log-level",
        "INFO",
        "--settings",
        "tests.settings_pool",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"from Django's pool of {POOL_MAX_SIZE}" in result.stderr
    outs = [JobDBModel.objects.get(pk=r.pk) for r in rows]
    assert {o.status for o in outs} == {"done"}
    # Lanes hand their connection back to the pool after each job: never more than its size.
    assert len({o.outputs["thread"] for o in outs}) <= POOL_MAX_SIZE - 1
