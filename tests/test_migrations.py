"""The index migration runs both ways on a real database, outside a transaction on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import importlib

from django.core.management import call_command
from django.db import connection
from django.utils import timezone

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
    assert {"djap_job_due", "djap_job_running", "djap_job_finished", "djap_job_pipeline"} <= now
    assert not {"djap_job_name", "djap_job_status_finished", "djap_job_ready"} & now

    call_command("migrate", "djap_django", "0005", verbosity=0)
    before = _job_indexes()
    assert {"djap_job_name", "djap_job_status_finished", "djap_job_ready"} <= before
    assert not {"djap_job_finished", "djap_job_pipeline"} & before

    call_command("migrate", "djap_django", verbosity=0)
    assert _job_indexes() == now
    assert JobDBModel.objects.get().pk == job.pk


MIGRATION_0008 = "djap_django.migrations.0008_scheduled_jobs"


def _rows() -> dict[int, tuple]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, name, status, attempts, run_after FROM djap_job")
        return {r[0]: tuple(r[1:]) for r in cursor.fetchall()}


def _scheduled_ids() -> set[int]:
    return set(JobDBModel.objects.filter(scheduled=True).values_list("id", flat=True))


def test_0008_flags_future_waiting_jobs_and_goes_back_with_every_status_intact(monkeypatch):
    now = timezone.now()
    later, earlier = now + dt.timedelta(hours=1), now - dt.timedelta(hours=1)
    rows = {}
    for status in ("not_ready", "new", "in_progress", "done", "failed", "cancelled"):
        for run_after in (None, earlier, later):
            row = JobDBModel.objects.create(
                name=f"Job_{status}", status=status, run_after=run_after
            )
            rows[row.pk] = (status, run_after)
    future_new = {pk for pk, (st, ra) in rows.items() if st == "new" and ra == later}

    call_command("migrate", "djap_django", "0007", verbosity=0)
    back = _job_indexes()
    assert "djap_job_ready" in back
    assert (
        not {"djap_job_due", "djap_job_due_name", "djap_job_scheduled", "djap_job_blocked"} & back
    )
    columns = {
        c.name
        for c in connection.introspection.get_table_description(connection.cursor(), "djap_job")
    }
    assert "scheduled" not in columns
    at_0007 = _rows()
    assert {pk: r[1] for pk, r in at_0007.items()} == {pk: st for pk, (st, _) in rows.items()}

    # Small batches, so that the move crosses batch boundaries as it does on a big table.
    monkeypatch.setattr(importlib.import_module(MIGRATION_0008), "BATCH_IDS", 4)
    call_command("migrate", "djap_django", verbosity=0)
    assert {"djap_job_due", "djap_job_due_name", "djap_job_scheduled", "djap_job_blocked"} <= (
        _job_indexes()
    )
    assert "djap_job_ready" not in _job_indexes()
    assert _rows() == at_0007  # nothing but the flag changed
    # Exactly the waiting jobs due later are off the claim path.
    assert _scheduled_ids() == future_new


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


def _job_columns() -> set[str]:
    with connection.cursor() as cursor:
        return {c.name for c in connection.introspection.get_table_description(cursor, "djap_job")}


def test_0009_adds_the_claim_token_with_a_database_default_and_back():
    job = djap.create_new(JobWithSleep)
    assert "claims" in _job_columns()
    call_command("migrate", "djap_django", "0008", verbosity=0)
    assert "claims" not in _job_columns()
    with connection.cursor() as cursor:
        # An INSERT that names no token, as an older djap (or a raw INSERT) writes it.
        cursor.execute(
            "INSERT INTO djap_job (name, status, error, attempts, max_attempts, crashes, "
            "priority, created_at, waiting_for) "
            "VALUES ('JobWithSleep', 'new', '', 0, 1, 0, 0, CURRENT_TIMESTAMP, 0)"
        )
    call_command("migrate", "djap_django", verbosity=0)
    assert sorted(JobDBModel.objects.values_list("claims", flat=True)) == [0, 0]
    assert JobDBModel.objects.filter(pk=job.pk).exists()


def _unique_index_exists() -> bool:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "djap_job")
    return "djap_job_unique" in constraints


def test_0010_adds_the_unique_index_and_periodic_table_and_takes_them_back():
    job = djap.create_new(JobWithSleep.create(unique_key="k"))
    assert _unique_index_exists() and "djap_periodic" in connection.introspection.table_names()
    call_command("migrate", "djap_django", "0009", verbosity=0)
    assert not _unique_index_exists()
    assert "djap_periodic" not in connection.introspection.table_names()
    call_command("migrate", "djap_django", verbosity=0)
    assert _unique_index_exists()
    # The row is kept; its key went with the column.
    assert JobDBModel.objects.get().pk == job.pk and JobDBModel.objects.get().unique_key is None
    # The index is there for real: a second live row with a key is refused by it.
    again = djap.create_new(JobWithSleep.create(unique_key="k"))
    assert djap.create_new(JobWithSleep.create(unique_key="k")).pk == again.pk
