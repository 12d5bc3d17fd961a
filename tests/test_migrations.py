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
