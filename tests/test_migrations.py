"""The index migration runs both ways on a real database, outside a transaction on PostgreSQL."""

from __future__ import annotations

from django.core.management import call_command
from django.db import connection

import djap
from djap_django.models import JobDBModel
from tests.testapp.jobs import JobWithSleep


def _job_indexes() -> set[str]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "djap_job")
    return {name for name, c in constraints.items() if c["index"] and not c["primary_key"]}


def test_0006_swaps_the_indexes_and_back_without_touching_rows():
    job = djap.create_new(JobWithSleep)
    now = _job_indexes()
    assert {"djap_job_ready", "djap_job_running", "djap_job_finished", "djap_job_pipeline"} <= now
    assert not {"djap_job_name", "djap_job_status_finished"} & now

    call_command("migrate", "djap_django", "0005", verbosity=0)
    before = _job_indexes()
    assert {"djap_job_name", "djap_job_status_finished"} <= before
    assert not {"djap_job_finished", "djap_job_pipeline"} & before

    call_command("migrate", "djap_django", verbosity=0)
    assert _job_indexes() == now
    assert JobDBModel.objects.get().pk == job.pk


def test_the_models_need_no_new_migration():
    call_command("makemigrations", "djap_django", "--check", "--dry-run", verbosity=0)


def _worker_columns() -> set[str]:
    with connection.cursor() as cursor:
        return {
            c.name for c in connection.introspection.get_table_description(cursor, "djap_worker")
        }


def test_0007_adds_the_connections_column_with_a_database_default_and_back():
    import datetime as dt

    from djap_django.models import WorkerDBModel

    now = dt.datetime.now(dt.UTC)
    call_command("migrate", "djap_django", "0006", verbosity=0)
    assert "connections" not in _worker_columns()
    call_command("migrate", "djap_django", verbosity=0)
    assert "connections" in _worker_columns()
    # A worker of the previous release inserts without the column: the database fills it in.
    with connection.cursor() as cursor:
        cursor.execute(
            'INSERT INTO djap_worker (host, pid, "group", exclude, concurrency, state, '
            "started_at, last_heartbeat, jobs_done, jobs_failed, in_flight) "
            "VALUES ('old', 1, 'default', '[]', 1, 'running', %s, %s, 0, 0, 0)",
            [now, now],
        )
    assert WorkerDBModel.objects.get(host="old").connections == 0
