"""Unique jobs: one live job per (name, unique_key), decided by the database."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest
from django.db import transaction

import djap
from djap.exceptions import InvalidJobOptionError, JobDefinitionError, JobNotRetryableError
from djap_django.models import JobDBModel
from tests.conftest import ROOT
from tests.testapp.flow_jobs import UniqueOrder
from tests.testapp.jobs import FailingJob, JobWithInputsAndOutputs, JobWithSleep


def _live(key: str) -> list[JobDBModel]:
    return list(
        JobDBModel.objects.filter(unique_key=key).exclude(
            status__in=["done", "failed", "cancelled"]
        )
    )


def test_a_second_enqueue_of_a_live_key_returns_the_first_row():
    first = djap.create_new(JobWithSleep.create(unique_key="nightly"))
    job = JobWithSleep.create(unique_key="nightly")
    again = djap.create_new(job)
    assert again.pk == first.pk == job.id and again.unique_key == "nightly"
    assert JobDBModel.objects.count() == 1
    # Another key, or another job name with the same key, is a different job.
    assert djap.create_new(JobWithSleep.create(unique_key="hourly")).pk != first.pk
    other = djap.create_new(JobWithInputsAndOutputs.create({"id": 1}, unique_key="nightly"))
    assert other.pk != first.pk and JobDBModel.objects.count() == 3


def test_once_the_job_ended_the_key_enqueues_again():
    first = djap.create_new(JobWithSleep.create(unique_key="k"))
    JobDBModel.objects.filter(pk=first.pk).update(status="in_progress")
    assert djap.create_new(JobWithSleep.create(unique_key="k")).pk == first.pk
    for ended in ("done", "failed", "cancelled"):
        JobDBModel.objects.filter(unique_key="k").update(status=ended)
        fresh = djap.create_new(JobWithSleep.create(unique_key="k"))
        assert fresh.pk != first.pk and fresh.status == "new"
        first = fresh
    assert len(_live("k")) == 1


def test_bulk_mixes_new_taken_and_repeated_keys_in_order():
    taken = djap.create_new(JobWithSleep.create(unique_key="taken"))
    jobs = [JobWithSleep.create(unique_key=f"k{i % 1500}") for i in range(3000)]
    jobs[10:10] = [JobWithSleep.create(unique_key="taken"), JobWithSleep.create()]
    rows = djap.bulk_create_new(jobs)
    assert len(rows) == len(jobs) == 3002
    assert rows[10].pk == taken.pk and rows[11].unique_key is None
    by_key = {}
    for job, row in zip(jobs, rows, strict=True):
        assert row.unique_key == job.unique_key and job.id == row.pk
        if job.unique_key is not None:
            assert by_key.setdefault(job.unique_key, row.pk) == row.pk
    # 1500 keys, "taken" and one job without a key.
    assert JobDBModel.objects.count() == 1502
    assert {r.pk for r in rows} == set(JobDBModel.objects.values_list("pk", flat=True))


def test_keyed_and_plain_chunks_in_one_batch_keep_their_order():
    plain = [JobWithSleep.create() for _ in range(1200)]
    keyed = [JobWithSleep.create(unique_key=f"x{i}") for i in range(1200)]
    rows = djap.bulk_create_new(plain + keyed + plain[:0] + [JobWithSleep.create(unique_key="x5")])
    assert rows[-1].pk == rows[1205].pk
    assert [r.unique_key for r in rows[1200:2400]] == [f"x{i}" for i in range(1200)]
    assert JobDBModel.objects.count() == 2400


def test_unique_fields_make_the_key_from_the_inputs():
    a = djap.create_new(UniqueOrder.create(UniqueOrder.Inputs(order_id=42, note="first")))
    b = djap.create_new(UniqueOrder.create(UniqueOrder.Inputs(order_id=42, note="second")))
    c = djap.create_new(UniqueOrder.create(UniqueOrder.Inputs(order_id=43)))
    assert a.pk == b.pk != c.pk and a.unique_key == '{"order_id":42}'
    assert JobDBModel.objects.get(pk=a.pk).inputs["note"] == "first"
    # An explicit key wins over the class rule.
    d = djap.create_new(UniqueOrder.create(UniqueOrder.Inputs(order_id=42), unique_key="manual"))
    assert d.pk not in (a.pk, c.pk)


def test_a_rolled_back_enqueue_frees_the_key():
    with pytest.raises(RuntimeError), transaction.atomic():
        djap.create_new(JobWithSleep.create(unique_key="k"))
        raise RuntimeError("roll back")
    assert not JobDBModel.objects.exists()
    assert djap.create_new(JobWithSleep.create(unique_key="k")).unique_key == "k"


async def test_async_twins_return_the_live_row():
    first = await djap.acreate_new(JobWithSleep.create(unique_key="a"))
    rows = await djap.abulk_create_new([JobWithSleep.create(unique_key="a") for _ in range(3)])
    assert {r.pk for r in rows} == {first.pk}


@pytest.mark.parametrize("bad", [42, "", "x" * 201, b"bytes", ["a"]])
def test_a_bad_unique_key_is_refused_naming_job_and_option(bad):
    with pytest.raises(InvalidJobOptionError, match=r"^JobWithSleep: unique_key must be a string"):
        JobWithSleep.create(unique_key=bad)


def test_unique_fields_must_name_inputs_fields():
    from djap import BaseJob

    with pytest.raises(JobDefinitionError, match=r"BadUnique.unique_fields names \['nope'\]"):

        class BadUnique(BaseJob):
            unique_fields = ("nope",)

            @dataclass
            class Inputs:
                order_id: int

    with pytest.raises(JobDefinitionError, match=r"unique_fields must be a tuple"):

        class BadUniqueString(BaseJob):
            unique_fields = "order_id"


def test_retrying_an_ended_job_whose_key_is_live_again_is_refused():
    failed = djap.create_new(FailingJob.create(unique_key="r"))
    JobDBModel.objects.filter(pk=failed.pk).update(status="failed")
    live = djap.create_new(FailingJob.create(unique_key="r"))
    with pytest.raises(JobNotRetryableError, match=rf"job {live.pk} has unique_key 'r'"):
        djap.retry_job(failed.pk)
    assert JobDBModel.objects.get(pk=failed.pk).status == "failed"


_ENQUEUE_MANY = """
import os, sys, time
import django
django.setup()
import djap
from tests.testapp.jobs import JobWithSleep
go = sys.argv[1]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
ids = set()
for i in range(15):
    if i % 3:
        ids.add(djap.create_new(JobWithSleep.create(unique_key="race")).pk)
    else:
        rows = djap.bulk_create_new([JobWithSleep.create(unique_key="race") for _ in range(5)])
        ids.update(r.pk for r in rows)
print(sorted(ids))
"""


def test_concurrent_enqueue_from_several_processes_writes_one_row(subprocess_env, tmp_path):
    go = tmp_path / "go"
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _ENQUEUE_MANY, str(go)],
            env=subprocess_env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    # Released together once every process is set up, so their enqueues overlap.
    assert all(p.stdout.readline().strip() == "ready" for p in runs)
    go.touch()
    outs = [p.communicate(timeout=60) for p in runs]
    assert all(p.returncode == 0 for p in runs), [err for _, err in outs]
    ids = {out.strip() for out, _ in outs}
    row = JobDBModel.objects.get()
    assert ids == {f"[{row.pk}]"}
