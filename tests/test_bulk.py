"""bulk_create_new's raw INSERT (djap_django/bulk.py) writes what the ORM would have."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction
from django.forms.models import model_to_dict
from django.utils import timezone

import djap
from djap_django.models import JobDBModel
from tests.testapp.jobs import JobWithInputsAndOutputs, JobWithSleep, RecordExecution


def test_returned_rows_match_the_database_field_by_field():
    later = timezone.now() + dt.timedelta(hours=1)
    jobs = [
        JobWithInputsAndOutputs.create(JobWithInputsAndOutputs.Inputs(id=i), priority=i % 3)
        for i in range(30)
    ]
    jobs += [JobWithSleep.create(), RecordExecution.create({"key": 5}, run_after=later)]
    rows = djap.bulk_create_new(jobs)

    assert len(rows) == len(jobs) == JobDBModel.objects.count()
    for job, row in zip(jobs, rows, strict=True):
        assert job.id == row.pk
        assert not row._state.adding and row._state.db == "default"
        stored = JobDBModel.objects.get(pk=row.pk)
        assert model_to_dict(row) == model_to_dict(stored)
        assert row.created_at == stored.created_at and row.errors == stored.errors
    # Each pk carries its own job's inputs: the ids line up with the order given.
    assert [r.inputs for r in rows[:30]] == [{"id": i} for i in range(30)]
    assert [JobDBModel.objects.get(pk=r.pk).inputs for r in rows[:30]] == [
        {"id": i} for i in range(30)
    ]
    assert rows[30].inputs is None and JobDBModel.objects.get(pk=rows[30].pk).inputs is None
    assert JobDBModel.objects.get(pk=rows[31].pk).run_after == later
    assert {r.status for r in rows} == {"new"}


def test_a_mutable_default_is_not_shared_between_rows():
    a, b = djap.bulk_create_new([JobWithSleep.create(), JobWithSleep.create()])
    assert a.errors == [] and a.errors is not b.errors


def test_bulk_insert_joins_the_callers_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        djap.bulk_create_new([JobWithSleep.create() for _ in range(5)])
        assert JobDBModel.objects.count() == 5
        raise RuntimeError("roll back")
    assert JobDBModel.objects.count() == 0


def test_many_rows_in_one_call_all_get_pks():
    rows = djap.bulk_create_new(
        [RecordExecution.create(RecordExecution.Inputs(key=i)) for i in range(12_345)]
    )
    assert len({r.pk for r in rows}) == 12_345
    stored = dict(JobDBModel.objects.values_list("pk", "inputs"))
    assert all(stored[r.pk] == {"key": i} for i, r in enumerate(rows))


def test_empty_list_writes_nothing():
    assert djap.bulk_create_new([]) == []
    assert JobDBModel.objects.count() == 0


def test_enqueue_notifies_listening_workers_once_per_call():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    import psycopg

    from djap_django.queue.postgres import CHANNEL, connection_params

    with psycopg.connect(**connection_params(connection), autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        djap.create_new(JobWithSleep)
        djap.bulk_create_new([JobWithSleep.create() for _ in range(3)])
        with transaction.atomic():  # inside the caller's transaction: sent on its commit
            djap.create_new(JobWithSleep)
            djap.create_new(JobWithSleep)
        got = list(listener.notifies(timeout=2.0))
    # PostgreSQL folds identical notifications of one transaction into one.
    assert [n.channel for n in got] == [CHANNEL] * 3


def test_a_bad_job_in_a_late_chunk_writes_none_of_the_earlier_chunks():
    from djap_django import bulk
    from djap_django.exceptions import InvalidInputsError

    jobs = [RecordExecution.create(RecordExecution.Inputs(key=i)) for i in range(3 * bulk.CHUNK)]
    jobs.append(RecordExecution.create({"key": "not a number"}))
    with pytest.raises(InvalidInputsError, match="'key' must be int"):
        djap.bulk_create_new(jobs)
    assert JobDBModel.objects.count() == 0


def test_a_failed_bulk_rolls_back_only_itself_inside_the_callers_transaction():
    from djap_django import bulk
    from djap_django.exceptions import InvalidInputsError

    bad = [RecordExecution.create(RecordExecution.Inputs(key=i)) for i in range(2 * bulk.CHUNK)]
    bad.append(RecordExecution.create({"key": "x"}))
    with transaction.atomic():
        kept = djap.create_new(JobWithSleep)
        with pytest.raises(InvalidInputsError):
            djap.bulk_create_new(bad)
        later = djap.bulk_create_new([JobWithSleep.create() for _ in range(bulk.CHUNK + 1)])
    assert JobDBModel.objects.count() == 1 + len(later)
    assert JobDBModel.objects.filter(pk=kept.pk).exists()
    assert not JobDBModel.objects.filter(name="RecordExecution").exists()
