"""Statements that run in the caller's transaction, on Django's own connection.

The worker's statements (postgres.py, sqlite.py) run on the queue's connections.
These are the ones a request, a shell, the admin or a pipeline step's finish
issues: they must join whatever transaction the caller has open, so they go
through Django's connection for the alias. One method per statement (or per
short, fixed sequence of them), named noun-first like the queue's, and every
timestamp comes from the database's clock on PostgreSQL (`now()`, the same
clock the worker's statements use). SQLite's clock is this machine's, so there
the time is the Python timestamp Django itself would store.

The SQL is the same on both databases apart from `NOW` and row locks (SQLite
has none: its write transaction already holds the whole file). Django's cursor
takes `%s` markers on both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from .base import CANCEL_CHANNEL, HALTED

#: What cancel may stop: waiting or running jobs (a finished job stays as it is).
CANCELLABLE = ("new", "not_ready", "in_progress")
#: The steps of a cancelled pipeline that are halted with it.
WAITING = ("not_ready", "new")
#: A pipeline with a step in one of these is not done.
UNFINISHED = ("not_ready", "new", "in_progress")


@dataclass(frozen=True, slots=True)
class CancelResult:
    """What `job_cancel` did: was there such a job, did this call cancel it, and when."""

    found: bool
    cancelled: bool = False
    finished_at: dt.datetime | None = None


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


class InTransaction:
    """The statements on one database alias; open one per call (they are cheap)."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.connection = connections[alias]
        postgres = self.connection.vendor == "postgresql"
        #: The database's clock in SQL, or a marker for the timestamp passed in (SQLite).
        self._now_sql = "now()" if postgres else "%s"
        self._for_update = " FOR UPDATE" if postgres else ""
        self._postgres = postgres

    def _now(self) -> list[Any]:
        """The parameter for one `NOW` marker: none on PostgreSQL, the time on SQLite."""
        if self._postgres:
            return []
        return [self.connection.ops.adapt_datetimefield_value(timezone.now())]

    def _execute(self, cursor: Any, sql: str, params: list[Any]) -> Any:
        cursor.execute(sql.replace("NOW", self._now_sql), params)
        return cursor

    # -- jobs ----------------------------------------------------------------------

    def job_cancel(self, job_id: int) -> CancelResult:
        """Cancel a waiting or running job; a pipeline it belongs to is cancelled with it.

        The order of the locks is the pipeline row first, then job rows, as everywhere.
        One UPDATE covers waiting and running jobs alike: a claim landing between two
        statements would make a running job look finished. A running job's worker is
        told on PostgreSQL by a NOTIFY once the caller's transaction commits; every
        worker also polls the status of its running jobs (services/cancel_watch.py).
        """
        with transaction.atomic(using=self.alias), self.connection.cursor() as cursor:
            pipeline_id = self._pipeline_lock_of_job(cursor, job_id)
            now, stamp = self._stamp()
            rows = self._execute(
                cursor,
                f"UPDATE djap_job SET status = 'cancelled', finished_at = NOW, worker_id = NULL"
                f" WHERE id = %s AND status IN {_in(CANCELLABLE)} RETURNING finished_at",
                [*now, job_id],
            ).fetchall()
            if not rows:
                found = self._execute(
                    cursor, "SELECT 1 FROM djap_job WHERE id = %s", [job_id]
                ).fetchone()
                return CancelResult(found=found is not None)
            finished_at = self._returned(rows, stamp)
            if self._postgres:
                # Workers that do not run the job ignore the notification.
                cursor.execute("SELECT pg_notify(%s, %s)", [CANCEL_CHANNEL, str(job_id)])
            if pipeline_id is not None:
                # A pipeline cannot finish without this step: cancel it (retry resumes it).
                self._pipeline_halt(cursor, pipeline_id, "cancelled", WAITING)
        return CancelResult(found=True, cancelled=True, finished_at=finished_at)

    def job_retry(self, job_id: int) -> int:
        """Put a failed or cancelled job back to `new` with a fresh start; returns rows changed.

        All its attempts again, no leftover schedule or crash count. The caller decides
        whether the job may be retried and what its pipeline does (pipelines.retry_job).
        """
        with self.connection.cursor() as cursor:
            return self._execute(
                cursor,
                "UPDATE djap_job SET status = 'new', attempts = 0, crashes = 0,"
                " run_after = NULL, scheduled = %s, finished_at = NULL, started_at = NULL"
                " WHERE id = %s AND status IN ('failed', 'cancelled')",
                [False, job_id],
            ).rowcount

    def job_finish_step(
        self,
        job_id: int,
        *,
        status: str,
        outputs_json: str | None,
        error: str,
        run_after: dt.datetime | None,
    ) -> None:
        """Write a pipeline step's outcome to its row, which the caller has locked.

        As the worker's own finish does: `finished_at` from the database's clock (none
        for a retry), and a failed attempt appended to the row's error history.
        """
        jsonb = "::jsonb" if self._postgres else ""
        if self._postgres:
            history = (
                "COALESCE(errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object("
                "'attempt', attempts, 'error', %s::text, 'at', NOW))"
            )
        else:
            history = (
                "json_insert(COALESCE(errors, '[]'), '$[#]', json_object('attempt', attempts,"
                " 'error', %s, 'at', strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', 'now')))"
            )
        # A retry backing off waits off the claim path until a stager moves it (the
        # claim's own run_after test covers a clock a moment off from the database's).
        scheduled = status == "new" and run_after is not None and run_after > timezone.now()
        due = (
            None if run_after is None else self.connection.ops.adapt_datetimefield_value(run_after)
        )
        with self.connection.cursor() as cursor:
            self._execute(
                cursor,
                f"UPDATE djap_job SET status = %s, outputs = %s{jsonb}, error = %s,"
                f" run_after = %s, scheduled = %s, worker_id = NULL,"
                f" finished_at = CASE WHEN %s = 'new' THEN NULL ELSE NOW END,"
                f" errors = CASE WHEN %s = '' THEN errors ELSE {history} END"
                f" WHERE id = %s",
                [
                    status,
                    outputs_json,
                    error,
                    due,
                    scheduled,
                    status,
                    *self._now(),
                    error,
                    error,
                    job_id,
                ],
            )

    # -- pipelines -----------------------------------------------------------------

    def _pipeline_lock_of_job(self, cursor: Any, job_id: int) -> int | None:
        """Lock the pipeline of a job (if any) before touching the job's row."""
        row = self._execute(
            cursor,
            "SELECT id FROM djap_pipeline"
            " WHERE id = (SELECT pipeline_id FROM djap_job WHERE id = %s)" + self._for_update,
            [job_id],
        ).fetchone()
        return None if row is None else row[0]

    def pipeline_halt(
        self, pipeline_id: int, status: str, statuses: Sequence[str]
    ) -> tuple[int, dt.datetime]:
        """End a pipeline in `status` and stop its steps in `statuses` (the caller locked it).

        Returns how many steps stopped, and the pipeline's `finished_at`.
        """
        with self.connection.cursor() as cursor:
            now, stamp = self._stamp()
            rows = self._execute(
                cursor,
                "UPDATE djap_pipeline SET status = %s, finished_at = NOW WHERE id = %s"
                " RETURNING finished_at",
                [status, *now, pipeline_id],
            ).fetchall()
            halted = self._halt_steps(cursor, pipeline_id, tuple(statuses), now)
        return halted, self._returned(rows, stamp)

    def pipeline_finish_if_idle(self, pipeline_id: int) -> dt.datetime | None:
        """Mark a running pipeline done if none of its steps is left to run or waiting.

        Returns its `finished_at`, or None if it is not done (yet).
        """
        with self.connection.cursor() as cursor:
            now, stamp = self._stamp()
            rows = self._execute(
                cursor,
                f"UPDATE djap_pipeline SET status = 'done', finished_at = NOW"
                f" WHERE id = %s AND status = 'running' AND NOT EXISTS ("
                f"SELECT 1 FROM djap_job WHERE pipeline_id = %s AND status IN {_in(UNFINISHED)})"
                f" RETURNING finished_at",
                [*now, pipeline_id, pipeline_id],
            ).fetchall()
        return self._returned(rows, stamp) if rows else None

    def _pipeline_halt(
        self, cursor: Any, pipeline_id: int, status: str, statuses: tuple[str, ...]
    ) -> int:
        """End a running pipeline in `status` and stop its steps in `statuses`."""
        ended = self._execute(
            cursor,
            "UPDATE djap_pipeline SET status = %s, finished_at = NOW"
            " WHERE id = %s AND status = 'running'",
            [status, *self._now(), pipeline_id],
        ).rowcount
        if not ended:
            return 0
        return self._halt_steps(cursor, pipeline_id, statuses, self._now())

    def _halt_steps(
        self, cursor: Any, pipeline_id: int, statuses: tuple[str, ...], now: list[Any]
    ) -> int:
        if not statuses:
            return 0
        return self._execute(
            cursor,
            f"UPDATE djap_job SET status = 'cancelled', error = %s, finished_at = NOW"
            f" WHERE pipeline_id = %s AND status IN {_in(statuses)}",
            [HALTED, *now, pipeline_id],
        ).rowcount

    # -- the clock -----------------------------------------------------------------

    def _stamp(self) -> tuple[list[Any], dt.datetime]:
        """(the parameters for one NOW marker, the Python time they stand for on SQLite)."""
        stamp = timezone.now()
        if self._postgres:
            return [], stamp
        return [self.connection.ops.adapt_datetimefield_value(stamp)], stamp

    def _returned(self, rows: list[Any], stamp: dt.datetime) -> dt.datetime:
        """The `finished_at` a statement wrote: the database's on PostgreSQL."""
        if not self._postgres or not rows:
            return stamp
        value: dt.datetime = rows[0][0]
        return value if settings.USE_TZ else timezone.make_naive(value)
