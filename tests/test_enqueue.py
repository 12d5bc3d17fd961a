"""The enqueue API: create_new, bulk_create_new, their async twins, and validation."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from django.db import transaction

import djap
from djap.exceptions import (
    InvalidInputsError,
    JobDefinitionError,
    MissingInputsError,
    NotARegisteredJobError,
    UnexpectedInputsError,
)
from djap_django.models import JobDBModel
from tests.testapp.jobs import (
    JobWithCustomAsdict,
    JobWithInputsAndOutputs,
    JobWithSleep,
    Point,
    SyncJob,
)


def test_create_new_from_class_and_instance():
    row = djap.create_new(JobWithSleep)
    assert row.pk and row.name == "JobWithSleep" and row.status == "new"
    job = JobWithInputsAndOutputs.create(JobWithInputsAndOutputs.Inputs(id=10), priority=5)
    row2 = djap.create_new(job)
    assert job.id == row2.pk
    stored = JobDBModel.objects.get(pk=row2.pk)
    assert stored.inputs == {"id": 10} and stored.priority == 5


def test_inputs_as_dict_and_custom_asdict():
    djap.create_new(JobWithInputsAndOutputs.create({"id": 3}))
    row = djap.create_new(JobWithCustomAsdict.create(Point(1, 2)))
    assert JobDBModel.objects.get(pk=row.pk).inputs == {"x": 1, "y": 2}


def test_run_after_timedelta():
    row = djap.create_new(JobWithSleep.create(run_after=dt.timedelta(hours=1)))
    assert row.run_after > dt.datetime.now(dt.UTC)


def test_bulk_create_new_writes_all_rows():
    rows = djap.bulk_create_new(
        [JobWithInputsAndOutputs.create(JobWithInputsAndOutputs.Inputs(id=i)) for i in range(2500)]
    )
    assert len(rows) == 2500 and all(r.pk for r in rows)
    assert JobDBModel.objects.filter(status="new").count() == 2500


async def test_async_twins():
    row = await djap.acreate_new(JobWithSleep)
    rows = await djap.abulk_create_new([JobWithSleep.create() for _ in range(10)])
    assert row.pk and len(rows) == 10
    assert await JobDBModel.objects.acount() == 11


def test_enqueue_rolls_back_with_the_callers_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        djap.create_new(JobWithSleep)
        djap.bulk_create_new([JobWithSleep.create() for _ in range(5)])
        raise RuntimeError("roll back")
    assert JobDBModel.objects.count() == 0


@pytest.mark.parametrize(
    ("job", "error", "words"),
    [
        (lambda: JobWithInputsAndOutputs.create(), MissingInputsError, ["JobWithInputsAndOutputs"]),
        (lambda: JobWithSleep.create({"a": 1}), UnexpectedInputsError, ["JobWithSleep"]),
        (lambda: JobWithInputsAndOutputs.create([1, 2]), InvalidInputsError, ["list"]),
        (
            lambda: JobWithInputsAndOutputs.create({"id": 1, "colour": "red"}),
            InvalidInputsError,
            ["colour", "JobWithInputsAndOutputs"],
        ),
        (
            lambda: JobWithCustomAsdict.create({"x": object(), "y": 1}),
            InvalidInputsError,
            ["'x'", "JSON"],
        ),
        (
            lambda: JobWithInputsAndOutputs.create({"id": "abc"}),
            InvalidInputsError,
            ["'id'", "must be int", "str"],
        ),
        (
            lambda: JobWithInputsAndOutputs.create(JobWithInputsAndOutputs.Inputs(id=True)),
            InvalidInputsError,
            ["'id'", "must be int", "bool"],
        ),
        (
            lambda: JobWithInputsAndOutputs.create(SyncJob.Inputs(n=1)),
            InvalidInputsError,
            ["SyncJob.Inputs"],
        ),
        (
            lambda: JobWithInputsAndOutputs.create(JobWithInputsAndOutputs.Inputs(id={1, 2})),
            InvalidInputsError,
            ["'id'"],
        ),
        (lambda: JobWithInputsAndOutputs.create({}), InvalidInputsError, ["id"]),
        (lambda: object(), NotARegisteredJobError, ["BaseJob"]),
        (lambda: dict, NotARegisteredJobError, ["BaseJob"]),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(job, error, words):
    with pytest.raises(error) as info:
        djap.create_new(job())
    with pytest.raises(error):
        djap.bulk_create_new([JobWithSleep.create(), job()])
    for word in words:
        assert word in str(info.value)
    assert JobDBModel.objects.count() == 0


def test_bad_priority_or_run_after_is_refused_at_create():
    from djap.exceptions import InvalidJobOptionError

    with pytest.raises(InvalidJobOptionError, match="priority"):
        JobWithSleep.create(priority="high")
    with pytest.raises(InvalidJobOptionError, match="run_after"):
        JobWithSleep.create(run_after="tomorrow")
    # A number of seconds is a natural guess, so it works.
    row = djap.create_new(JobWithSleep.create(run_after=60))
    assert row.run_after > dt.datetime.now(dt.UTC) + dt.timedelta(seconds=50)


def test_optional_and_container_fields_are_checked_by_their_type():
    @dataclass
    class Inputs:
        ids: list[int]
        note: str | None = None
        ratio: float = 1.0

    class TypedJob(djap.BaseJob):
        pass

    TypedJob.Inputs = Inputs
    djap.create_new(TypedJob.create({"ids": [1], "note": None, "ratio": 2}))
    with pytest.raises(InvalidInputsError, match="'note' must be str or None"):
        djap.create_new(TypedJob.create({"ids": [1], "note": 3}))
    with pytest.raises(InvalidInputsError, match="'ids' must be list"):
        djap.create_new(TypedJob.create({"ids": "1,2"}))
    assert JobDBModel.objects.count() == 1


def test_a_job_may_not_set_its_name():
    with pytest.raises(JobDefinitionError, match="sets `name`"):

        class Named(djap.BaseJob):
            name = "custom"

            async def run(self):
                pass


def test_two_jobs_with_one_name_in_different_modules_are_refused():
    from djap.exceptions import DuplicateJobNameError

    namespace: dict = {"__name__": "someapp.jobs", "BaseJob": djap.BaseJob}
    with pytest.raises(DuplicateJobNameError) as info:
        exec("class JobWithSleep(BaseJob):\n    async def run(self): pass", namespace)
    assert "someapp.jobs" in str(info.value) and "tests.testapp.jobs" in str(info.value)


def test_abstract_base_is_not_registered():
    class Base(djap.BaseJob):
        abstract = True

    with pytest.raises(NotARegisteredJobError):
        djap.create_new(Base)

    @dataclass
    class _Unused:
        pass
