"""Per-job max_attempts and timeout in create(), and Snooze."""

from __future__ import annotations

import datetime as dt

import pytest

import djap
from djap.exceptions import InvalidJobOptionError
from djap_django.models import JobDBModel
from tests.testapp.flow_jobs import SnoozeTwice
from tests.testapp.jobs import FlakyJob, JobWithSleep, SleepFor


def test_create_overrides_the_class_options_for_one_job():
    plain = djap.create_new(FlakyJob.create({"fail_times": 0}))
    assert (plain.max_attempts, plain.timeout) == (5, None)
    row = djap.create_new(FlakyJob.create({"fail_times": 0}, max_attempts=2, timeout=1.5))
    stored = JobDBModel.objects.get(pk=row.pk)
    assert (stored.max_attempts, stored.timeout) == (2, 1.5)
    rows = djap.bulk_create_new([JobWithSleep.create(max_attempts=7), JobWithSleep.create()])
    assert [r.max_attempts for r in rows] == [7, 1]


@pytest.mark.parametrize(
    ("option", "bad"),
    [("max_attempts", 0), ("max_attempts", 1.5), ("max_attempts", True), ("timeout", 0)],
)
def test_bad_per_job_options_name_job_and_option(option, bad):
    with pytest.raises(InvalidJobOptionError, match=rf"^JobWithSleep: {option} must be"):
        JobWithSleep.create(**{option: bad})


async def test_a_per_job_timeout_ends_the_attempt():
    row = await djap.acreate_new(SleepFor.create({"seconds": 30}, timeout=0.2))
    stats = await djap.run_num_jobs(max_num_workers=2, timeout=30, num_jobs=1)
    await row.arefresh_from_db()
    assert stats.failed == 1 and row.status == "failed"
    assert "SleepFor timed out after 0.2 s" in row.error


async def test_snooze_puts_the_job_back_without_spending_an_attempt():
    row = await djap.acreate_new(SnoozeTwice.create({"key": 1}))
    # Three claims: two snoozes and the run that passes.
    stats = await djap.run_num_jobs(max_num_workers=2, timeout=30, num_jobs=3)
    await row.arefresh_from_db()
    assert stats.claimed == 3 and row.status == "done" and row.outputs == {"runs": 3}
    assert row.attempts == 1 and row.max_attempts == 1 and not row.errors and not row.error


def test_snooze_inline_runs_again_at_once(djap_inline):
    row = djap.create_new(SnoozeTwice.create({"key": 2}))
    row.refresh_from_db()
    assert (row.status, row.attempts, row.outputs) == ("done", 1, {"runs": 3})


def test_snooze_checks_its_delay():
    assert djap.Snooze(after=dt.timedelta(minutes=1)).after == 60.0
    with pytest.raises(TypeError, match="Snooze"):
        djap.Snooze(after=-1)
