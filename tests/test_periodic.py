"""Periodic jobs: each tick enqueued once cluster-wide, decided by the database."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time

import pytest
from django.db import connection, transaction
from django.utils import timezone

from djap import BaseJob
from djap.exceptions import JobDefinitionError
from djap_django import periodic, registry
from djap_django.models import JobDBModel, PeriodicScheduleDBModel
from djap_django.services import scheduler
from tests.conftest import wait_until
from tests.testapp import periodic_jobs

#: In this process only the slow schedules: a 2 s one would fall due in the middle of a test.
SLOW = (periodic_jobs.HourlyReport, periodic_jobs.NightlyCleanup)


@pytest.fixture
def periodic_classes():
    """Register the periodic test jobs for this test only (see periodic_jobs' docstring)."""
    for cls in SLOW:
        registry.register(cls)
    yield
    for cls in SLOW:
        registry._jobs.pop(cls.__name__, None)


def _make_due(name: str, ago_s: float = 1.0) -> None:
    PeriodicScheduleDBModel.objects.filter(name=name).update(
        next_run_at=timezone.now() - dt.timedelta(seconds=ago_s)
    )


def _jobs(name: str) -> list[JobDBModel]:
    return list(JobDBModel.objects.filter(name=name).order_by("id"))


def test_the_first_check_schedules_and_a_due_tick_enqueues_once(periodic_classes):
    before = timezone.now()
    report = scheduler.run_once()
    assert report.enqueued == [] and 0 < report.next_in <= 3600
    rows = {r.name: r for r in PeriodicScheduleDBModel.objects.all()}
    assert set(rows) == {"HourlyReport", "NightlyCleanup"}
    assert rows["HourlyReport"].schedule == "every 3600s"
    assert rows["NightlyCleanup"].schedule == "cron 0 3 * * * Europe/Paris"
    # On the grid, in the future: every hour from the epoch, 03:00 in Paris.
    tick = rows["HourlyReport"].next_run_at
    assert before < tick <= before + dt.timedelta(hours=1) and tick.timestamp() % 3600 == 0
    assert rows["NightlyCleanup"].next_run_at.astimezone(dt.UTC).hour in (1, 2)
    t = dt.datetime(2026, 1, 1, 0, 0, 1, tzinfo=dt.UTC)
    assert periodic.Every(2.0).next_after(t) == t.replace(second=2)

    _make_due("NightlyCleanup")
    _make_due("HourlyReport")
    report = scheduler.run_once()
    assert len(report.enqueued) == 2 and scheduler.run_once().enqueued == []
    (nightly,) = _jobs("NightlyCleanup")
    assert nightly.inputs == {"days": 30} and nightly.unique_key is None  # overlap allowed
    (hourly,) = _jobs("HourlyReport")
    assert hourly.inputs == {"kind": "summary"} and hourly.unique_key == periodic.PERIODIC_KEY
    row = PeriodicScheduleDBModel.objects.get(name="HourlyReport")
    assert row.last_job_id == hourly.pk and row.last_run_at is not None
    assert row.next_run_at > timezone.now()


def test_missed_ticks_are_not_replayed(periodic_classes):
    scheduler.run_once()
    _make_due("HourlyReport", ago_s=86400)  # a worker-less day: 24 ticks missed
    assert len(scheduler.run_once().enqueued) == 1
    assert len(_jobs("HourlyReport")) == 1
    assert PeriodicScheduleDBModel.objects.get(name="HourlyReport").next_run_at > timezone.now()


def test_a_tick_is_skipped_while_the_previous_run_has_not_ended(periodic_classes):
    scheduler.run_once()
    _make_due("HourlyReport")
    scheduler.run_once()
    (first,) = _jobs("HourlyReport")
    JobDBModel.objects.filter(pk=first.pk).update(status="in_progress")
    _make_due("HourlyReport")
    report = scheduler.run_once()
    assert report.skipped == ["HourlyReport"] and len(_jobs("HourlyReport")) == 1
    JobDBModel.objects.filter(pk=first.pk).update(status="done")
    _make_due("HourlyReport")
    assert len(scheduler.run_once().enqueued) == 1 and len(_jobs("HourlyReport")) == 2
    # periodic_overlap = True: NightlyCleanup runs whatever its previous run does.
    _make_due("NightlyCleanup")
    scheduler.run_once()
    _make_due("NightlyCleanup")
    scheduler.run_once()
    assert [j.status for j in _jobs("NightlyCleanup")] == ["new", "new"]


def test_a_changed_schedule_restarts_its_timing(periodic_classes):
    scheduler.run_once()
    PeriodicScheduleDBModel.objects.filter(name="HourlyReport").update(
        schedule="every 60s", next_run_at=timezone.now() - dt.timedelta(seconds=5)
    )
    assert scheduler.run_once().enqueued == []  # a new schedule starts from now: not due
    row = PeriodicScheduleDBModel.objects.get(name="HourlyReport")
    assert row.schedule == "every 3600s" and row.next_run_at > timezone.now()


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite has one writer: two ticks cannot interleave"
)
def test_two_workers_racing_for_one_tick_enqueue_it_once(periodic_classes):
    """Forced: A has moved the tick on but not committed; B's UPDATE waits for A's lock."""
    scheduler.run_once()
    _make_due("HourlyReport")
    other: dict = {}

    def worker_b():
        other["report"] = scheduler.run_once()

    with transaction.atomic():
        assert len(scheduler.run_once().enqueued) == 1  # worker A, not committed yet
        b = threading.Thread(target=worker_b)
        b.start()
        with connection.cursor() as cursor:

            def b_waits_for_our_lock():
                # Inside a transaction the activity views are read once and cached.
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE NOT l.granted AND a.datname = current_database()"
                )
                return cursor.fetchone()[0] > 0

            wait_until(b_waits_for_our_lock, timeout=30, message="B blocked on the tick's row")
    b.join(30)
    assert other["report"].enqueued == [] and len(_jobs("HourlyReport")) == 1


def test_bad_periodic_options_name_job_and_attribute():
    cases = [
        (dict(every=0), "BadPeriodic.every must be seconds > 0 or a timedelta, not 0"),
        (dict(every="30"), "every must be seconds > 0"),
        (dict(cron="0 3 * *"), r"BadPeriodic.cron: '0 3 \* \*' has 4 fields"),
        (dict(cron="61 * * * *"), "BadPeriodic.cron: minute '61' is outside 0-59"),
        (dict(cron="@daily", cron_tz="Paris"), "BadPeriodic.cron_tz: unknown time zone 'Paris'"),
        (dict(every=5, cron="@daily"), "every and .cron are both set"),
        (dict(periodic_inputs={"x": 1}), "periodic_inputs is set, but BadPeriodic has no"),
    ]
    for attributes, message in cases:
        with pytest.raises(JobDefinitionError, match=message):
            type("BadPeriodic", (BaseJob,), {"__module__": __name__, **attributes})

    from dataclasses import dataclass

    @dataclass
    class Needs:
        customer_id: int

    with pytest.raises(JobDefinitionError, match=r"required fields \(customer_id\).*periodic_in"):
        type("BadPeriodic", (BaseJob,), {"__module__": __name__, "every": 5, "Inputs": Needs})
    with pytest.raises(JobDefinitionError, match="BadPeriodic.periodic_inputs: BadPeriodic"):
        type(
            "BadPeriodic",
            (BaseJob,),
            {"__module__": __name__, "every": 5, "Inputs": Needs, "periodic_inputs": {"x": 1}},
        )
    registry._jobs.pop("BadPeriodic", None)


# -- real worker processes -----------------------------------------------------------


def _ticks() -> list[dt.datetime]:
    return list(
        JobDBModel.objects.filter(name="TickEveryTwo")
        .order_by("id")
        .values_list("created_at", flat=True)
    )


def _gaps(times: list[dt.datetime]) -> list[float]:
    return [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]


PERIODIC_ENV = {"DJAP_TEST_PERIODIC": "1"}


def test_two_workers_enqueue_each_tick_once_and_a_killed_one_loses_none(procs):
    """every = 2 for ~12 s with two workers: ~6 ticks, not 12; SIGKILL one half-way."""
    a = procs.start("work", "--concurrency", "4", env=PERIODIC_ENV)
    procs.start("work", "--concurrency", "4", env=PERIODIC_ENV)
    wait_until(lambda: len(_ticks()) >= 1, timeout=60, message="the first tick")
    start = time.monotonic()
    wait_until(lambda: len(_ticks()) >= 3, timeout=30, message="three ticks")
    os.killpg(a.pid, signal.SIGKILL)
    wait_until(lambda: time.monotonic() - start >= 12, timeout=30, message="12 s of ticks")
    ticks, gaps = _ticks(), _gaps(_ticks())
    # About one per 2 s: 6 or 7 in 12 s with the first, where every worker alone would
    # make as many again.
    assert 6 <= len(ticks) <= 8, ticks
    assert min(gaps) > 1.0, gaps  # never two enqueues of one tick
    assert max(gaps) < 3.5, gaps  # never a tick lost (a lost one leaves a gap of 4 s)


def _backend_port_of_blocked_insert() -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT client_port FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query ILIKE '%%INSERT INTO%%djap_job%%'"
        )
        found = cursor.fetchone()
    return found[0] if found else None


def _process_with_port(procs_, port: int):
    import psutil

    for proc in procs_:
        for conn in psutil.Process(proc.pid).net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port:
                return proc
    raise AssertionError(f"no worker owns local port {port}")


@pytest.mark.skipif(
    connection.vendor == "sqlite",
    reason="SQLite has one writer and no row locks: a tick cannot be held half-done",
)
def test_a_worker_killed_mid_tick_leaves_the_tick_to_the_other(procs):
    """Forced: worker A has moved the tick on and waits to insert its job; B waits for A's
    row lock. SIGKILL A: its half-done tick rolls back, and B enqueues the tick once."""
    import psycopg

    from djap_django.queue.postgres import connection_params

    workers = [procs.start("work", "--concurrency", "2", env=PERIODIC_ENV) for _ in range(2)]
    wait_until(
        lambda: PeriodicScheduleDBModel.objects.filter(name="HourlyReport").exists(),
        timeout=60,
        message="the workers' first periodic check",
    )
    # An uncommitted job holding HourlyReport's unique key: the tick's INSERT waits for it.
    holder = psycopg.connect(**connection_params(connection))
    holder.execute(
        "INSERT INTO djap_job (name, status, unique_key, attempts, max_attempts, crashes, "
        "priority, created_at, waiting_for, error) "
        "VALUES ('HourlyReport', 'new', %s, 0, 1, 0, 0, now(), 0, '')",
        (periodic.PERIODIC_KEY,),
    )
    try:
        _make_due("HourlyReport")
        port = wait_until(_backend_port_of_blocked_insert, timeout=30, message="A mid-tick")
        a = _process_with_port(workers, port)
        os.killpg(a.pid, signal.SIGKILL)
        a.wait(10)
    finally:
        holder.rollback()
        holder.close()
    wait_until(lambda: _jobs("HourlyReport"), timeout=30, message="the survivor's tick")
    time.sleep(0.5)  # a second enqueue of this tick would land now; none may
    assert len(_jobs("HourlyReport")) == 1
    row = PeriodicScheduleDBModel.objects.get(name="HourlyReport")
    assert row.last_job_id == _jobs("HourlyReport")[0].pk and row.next_run_at > timezone.now()
