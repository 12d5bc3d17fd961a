"""Counts per name and status: exact up to a cap, estimates past it that say so."""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.utils import timezone

from djap_django import counts
from djap_django.models import JobDBModel


def _rows(name: str, status: str, n: int, **fields) -> None:
    now = timezone.now()
    if status in ("done", "failed", "cancelled"):
        fields.setdefault("finished_at", now)
    JobDBModel.objects.bulk_create(
        [JobDBModel(name=name, status=status, **fields) for _ in range(n)]
    )


def _fill() -> None:
    later = timezone.now() + dt.timedelta(hours=1)
    _rows("A", "new", 4)
    _rows("A", "new", 3, run_after=later, scheduled=True)
    _rows("B", "new", 2)
    _rows("A", "not_ready", 1)
    _rows("B", "in_progress", 2)
    _rows("A", "done", 5)
    _rows("B", "failed", 1)
    _rows("B", "cancelled", 1)


def test_counts_are_exact_under_the_cap_in_every_status():
    _fill()
    found = counts.job_counts("default")
    assert found.counts == {
        "A": {"new": 7, "not_ready": 1, "done": 5},
        "B": {"new": 2, "in_progress": 2, "failed": 1, "cancelled": 1},
    }
    assert found.estimated == frozenset()
    active = counts.job_counts("default", ("new", "in_progress"))
    assert active.counts == {"A": {"new": 7}, "B": {"new": 2, "in_progress": 2}}


def test_past_the_cap_a_count_is_an_estimate_and_says_so(monkeypatch):
    _fill()
    monkeypatch.setattr(counts, "CAP", 3)
    found = counts.job_counts("default")
    # Parts of at most 3 rows stay exact; the rest are marked.
    assert found.counts["B"]["in_progress"] == 2 and ("B", "in_progress") not in found.estimated
    assert ("A", "done") in found.estimated and ("A", "new") in found.estimated
    if connection.vendor == "sqlite":
        # No statistics: the rows counted before the cap, a lower bound.
        assert found.lower_bounds and found.counts["A"]["done"] == 4
    else:
        assert not found.lower_bounds and found.counts["A"]["done"] >= 4


def test_due_names_are_the_names_with_waiting_jobs_due_now():
    _fill()
    _rows("C", "new", 2, run_after=timezone.now() + dt.timedelta(hours=1), scheduled=True)
    assert counts.due_names("default") == ["A", "B"]
