"""Workers behind a real PgBouncer in transaction mode: ORM jobs, pipelines, wake-ups.

The worker's DATABASES['default'] goes through PgBouncer (tests/settings_pgbouncer.py);
with DJAP TRANSACTION_POOLER its own connections keep no session state, and LISTEN
runs on a direct connection (LISTEN_DATABASE) or not at all (polling).
"""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

import djap
from djap_django.budget import PG_QUEUE_CONNECTIONS
from djap_django.models import JobDBModel, PipelineDBModel
from tests.pgbouncer import running_pgbouncer
from tests.testapp.jobs import LaneWhere, SyncLaneWhere
from tests.testapp.pipelines import ChainOfThree

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PgBouncer sits in front of PostgreSQL"
)


@pytest.fixture
def pgbouncer_port():
    with running_pgbouncer(connection.settings_dict) as port:
        yield port


@pytest.mark.parametrize("listen", ["direct", ""], ids=["listen-direct", "polling"])
def test_a_worker_behind_pgbouncer_runs_orm_jobs_and_pipelines(procs, pgbouncer_port, listen):
    rows = [djap.create_new(SyncLaneWhere) for _ in range(20)]
    rows += [djap.create_new(LaneWhere.create(LaneWhere.Inputs())) for _ in range(20)]
    pipeline = ChainOfThree.trigger(ChainOfThree.jobs[0].Inputs(text="abcd"))
    result = procs.run(
        "work",
        "--burst",
        "--lanes",
        "4",
        "--settings",
        "tests.settings_pgbouncer",
        env={"DJAP_TEST_PGBOUNCER_PORT": str(pgbouncer_port), "DJAP_TEST_LISTEN_DATABASE": listen},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert {JobDBModel.objects.get(pk=r.pk).status for r in rows} == {"done"}
    assert PipelineDBModel.objects.get(pk=pipeline.pk).status == "done"
    # Through PgBouncer: the lanes' connections are PgBouncer's clients, not servers.
    queue = PG_QUEUE_CONNECTIONS if listen else PG_QUEUE_CONNECTIONS - 1  # polling: no LISTEN
    assert f"{queue + 1 + 4} database connections at most" in result.stderr
    # No session setting of djap's leaked into PgBouncer's server connections.
    params = dict(connection.get_connection_params(), port=pgbouncer_port, host="127.0.0.1")
    for key in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
        params.pop(key, None)
    with psycopg.connect(**params, autocommit=True, prepare_threshold=None) as c:
        for _ in range(5):
            assert c.execute("SHOW enable_sort").fetchone()[0] == "on"
