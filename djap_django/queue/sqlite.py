"""SQLite statements: every write is one BEGIN IMMEDIATE transaction (see _write).

The connection, its thread and its write transactions are in sqlite_connection.py.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from typing import Any

from ..index_terms import NOT_SCHEDULED, SCHEDULED
from .base import (
    BEAT,
    MISSING,
    ORPHAN_HOST,
    POISON_ERROR,
    RESTORED,
    REVIVED,
    ClaimedJob,
    Outcome,
    RescueReport,
    StageReport,
    WorkerInfo,
)
from .sqlite_connection import SQLiteConnection


def _ts(value: dt.datetime) -> str:
    """A timestamp as Django stores it in SQLite: naive UTC text."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return str(value)


def _now(offset_s: float = 0.0) -> str:
    return _ts(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset_s))


def _names_filter(include: list[str] | None, exclude: list[str]) -> tuple[str, list[str]]:
    sql, params = "", []
    if include is not None:
        sql += f" AND name IN ({','.join('?' * len(include))})" if include else " AND 0"
        params += include
    if exclude:
        sql += f" AND name NOT IN ({','.join('?' * len(exclude))})"
        params += exclude
    return sql, params


# A row the claim may take now: the partial indexes' own terms, word for word, so that
# SQLite can use them, and the run_after test for rows other paths wrote.
_DUE = f"status = 'new' AND {NOT_SCHEDULED['sqlite']} AND (run_after IS NULL OR run_after <= ?)"
_SCHEDULED = SCHEDULED["sqlite"]


def _due_names(db: sqlite3.Connection, now: str) -> list[str]:
    """The names that have due rows: a skip scan, one index descent per distinct name."""
    return [
        r[0]
        for r in db.execute(
            f"""WITH RECURSIVE n(name) AS (
                    SELECT (SELECT min(name) FROM djap_job INDEXED BY djap_job_due_name
                            WHERE {_DUE})
                    UNION ALL
                    SELECT (SELECT min(name) FROM djap_job INDEXED BY djap_job_due_name
                            WHERE {_DUE} AND name > n.name)
                    FROM n WHERE n.name IS NOT NULL)
                SELECT name FROM n WHERE name IS NOT NULL""",
            (now, now),
        )
    ]


def _pick_by_name(names: list[str], now: str, limit: int) -> tuple[str, list[Any]]:
    """Each name's best due rows from djap_job_due_name, then the best `limit` of those."""
    arm = (
        f"SELECT * FROM (SELECT id, priority FROM djap_job INDEXED BY djap_job_due_name "
        f"WHERE {_DUE} AND name = ? ORDER BY priority DESC, id LIMIT ?)"
    )
    sql = (
        "SELECT id FROM ("
        + " UNION ALL ".join([arm] * len(names))
        + ") ORDER BY priority DESC, id LIMIT ?"
    )
    params: list[Any] = []
    for name in names:
        params += [now, name, limit]
    return sql, [*params, limit]


def _seconds_until(stored: str) -> float:
    """Seconds from now until a timestamp stored as Django stores it (naive UTC text)."""
    when = dt.datetime.fromisoformat(stored).replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _identity(info: WorkerInfo) -> tuple[Any, ...]:
    """The worker row's columns that say which process it is, in INSERT order."""
    return (
        info.host,
        info.pid,
        info.group,
        None if info.include is None else json.dumps(info.include),
        json.dumps(info.exclude),
        info.concurrency,
        info.supervisor_pid,
    )


class SQLiteQueue(SQLiteConnection):
    """The queue contract on SQLite (plumbing inherited from SQLiteConnection)."""

    # -- workers -------------------------------------------------------------------

    async def worker_register(self, info: WorkerInfo) -> int:
        def register(db: sqlite3.Connection) -> int:
            now = _now()
            cur = db.execute(
                """INSERT INTO djap_worker (host, pid, "group", include, exclude, concurrency,
                       supervisor_pid, state, started_at, last_heartbeat, jobs_done,
                       jobs_failed, in_flight, connections)
                   VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, 0, 0, 0, ?)""",
                (
                    info.host,
                    info.pid,
                    info.group,
                    None if info.include is None else json.dumps(info.include),
                    json.dumps(info.exclude),
                    info.concurrency,
                    info.supervisor_pid,
                    now,
                    now,
                    info.connections,
                ),
            )
            if cur.lastrowid is None:  # pragma: no cover - an INSERT always sets it
                raise RuntimeError("the worker row was not inserted")
            return cur.lastrowid

        return await self._call(self._write, register)

    async def worker_heartbeat(
        self,
        worker_id: int,
        *,
        done: int,
        failed: int,
        in_flight: int,
        state: str,
        info: WorkerInfo | None = None,
    ) -> str:
        """Beat; returns BEAT, or REVIVED if the row said dead, or RESTORED if it was gone.

        With `info`, a row that is gone is written again under the same id, and a
        placeholder a rescuer wrote for it gets this worker's identity back.
        """

        def beat(db: sqlite3.Connection) -> str:
            now = _now()
            old = db.execute("SELECT state FROM djap_worker WHERE id = ?", (worker_id,)).fetchone()
            if old is None:
                if info is None:
                    return MISSING
                db.execute(
                    """INSERT INTO djap_worker (id, host, pid, "group", include, exclude,
                           concurrency, supervisor_pid, state, started_at, last_heartbeat,
                           jobs_done, jobs_failed, in_flight)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (worker_id, *_identity(info), state, now, now, done, failed, in_flight),
                )
                return RESTORED
            db.execute(
                """UPDATE djap_worker SET last_heartbeat = ?, jobs_done = ?, jobs_failed = ?,
                       in_flight = ?, state = ? WHERE id = ?""",
                (now, done, failed, in_flight, state, worker_id),
            )
            if info is not None:
                db.execute(
                    """UPDATE djap_worker SET host = ?, pid = ?, "group" = ?, include = ?,
                           exclude = ?, concurrency = ?, supervisor_pid = ?
                       WHERE id = ? AND pid <> ?""",
                    (*_identity(info), worker_id, info.pid),
                )
            return REVIVED if old[0] == "dead" else BEAT

        return await self._call(self._write, beat)

    async def workers_prune(self, older_than_s: float) -> int:
        """Delete rows of workers long stopped or dead; never one that still holds a job."""

        def prune(db: sqlite3.Connection) -> int:
            return db.execute(
                """DELETE FROM djap_worker
                   WHERE state IN ('stopped', 'dead') AND last_heartbeat < ?
                     AND NOT EXISTS (SELECT 1 FROM djap_job AS j
                         WHERE j.status = 'in_progress' AND j.worker_id = djap_worker.id)""",
                (_now(-older_than_s),),
            ).rowcount

        return await self._call(self._write, prune)

    # -- jobs ----------------------------------------------------------------------

    async def jobs_claim(
        self, worker_id: int, limit: int, include: list[str] | None, exclude: list[str]
    ) -> list[ClaimedJob]:
        def claim(db: sqlite3.Connection) -> list[ClaimedJob]:
            now = _now()
            if include is None and not exclude:
                # INDEXED BY: without statistics SQLite may pick another index and sort
                # every waiting row on each claim; djap_job_due is already in claim order.
                picked, params = (
                    f"SELECT id FROM djap_job INDEXED BY djap_job_due WHERE {_DUE} "
                    "ORDER BY priority DESC, id LIMIT ?",
                    [now, limit],
                )
            else:
                names = _due_names(db, now) if include is None else include
                names = [n for n in names if n not in exclude]
                if not names:
                    return []
                picked, params = _pick_by_name(names, now, limit)
            rows = db.execute(
                f"""UPDATE djap_job
                    SET status = 'in_progress', worker_id = ?, started_at = ?,
                        attempts = attempts + 1, claims = claims + 1
                    WHERE id IN ({picked})
                    RETURNING id, name, inputs, attempts, max_attempts, timeout, pipeline_id,
                        claims""",
                (worker_id, now, *params),
            ).fetchall()
            return [
                ClaimedJob(r[0], r[1], None if r[2] is None else json.loads(r[2]), *r[3:])
                for r in rows
            ]

        claimed = await self._call(self._write, claim)
        if claimed:
            self._poll_s = 0.0  # work is flowing: poll fast again when it runs dry
        return claimed

    async def jobs_stage(self, limit: int) -> StageReport:
        """Move up to `limit` due scheduled jobs onto the claim path, oldest first."""

        def stage(db: sqlite3.Connection) -> StageReport:
            now = _now()
            staged = db.execute(
                f"""UPDATE djap_job SET scheduled = 0 WHERE id IN (
                       SELECT id FROM djap_job INDEXED BY djap_job_scheduled
                       WHERE {_SCHEDULED} AND status = 'new' AND run_after <= ?
                       ORDER BY run_after LIMIT ?)""",
                (now, limit),
            ).rowcount
            (next_due,) = db.execute(
                f"""SELECT min(run_after) FROM djap_job INDEXED BY djap_job_scheduled
                   WHERE {_SCHEDULED} AND status = 'new' AND run_after > ?""",
                (now,),
            ).fetchone()
            if staged:
                self._poll_s = 0.0  # jobs are ready: idle claims poll fast again
            return StageReport(staged, None if next_due is None else _seconds_until(next_due))

        return await self._call(self._write, stage)

    async def jobs_finish(self, worker_id: int, outcomes: list[Outcome]) -> None:
        def finish(db: sqlite3.Connection) -> None:
            now = _now()
            db.executemany(
                """UPDATE djap_job SET status = ?, outputs = ?, error = ?, run_after = ?,
                       scheduled = ?, worker_id = NULL, finished_at = ?,
                       errors = CASE WHEN ? = '' THEN errors ELSE json_insert(
                           COALESCE(errors, '[]'), '$[#]',
                           json_object('attempt', attempts, 'error', ?,
                               'at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))) END
                   WHERE id = ? AND claims = ? AND status = 'in_progress' AND worker_id = ?""",
                [
                    (
                        o.status,
                        o.outputs_json,
                        o.error,
                        None if o.run_after is None else _ts(o.run_after),
                        # A retry backing off waits off the claim path (see stager.py).
                        o.status == "new" and o.run_after is not None and _ts(o.run_after) > now,
                        None if o.status == "new" else now,
                        # Plain `?` twice, not `?3`: numbered markers with a sequence of
                        # parameters are deprecated in Python 3.12's sqlite3.
                        o.error,
                        o.error,
                        o.job_id,
                        o.claim,
                        worker_id,
                    )
                    for o in outcomes
                ],
            )

        await self._call(self._write, finish)

    async def jobs_release(self, worker_id: int, claims: list[tuple[int, int]]) -> int:
        """Put back jobs this worker holds but will not finish: (job id, claim token) pairs."""

        def release(db: sqlite3.Connection) -> int:
            return db.executemany(
                """UPDATE djap_job SET status = 'new', worker_id = NULL, started_at = NULL
                   WHERE id = ? AND claims = ? AND status = 'in_progress' AND worker_id = ?""",
                [(job_id, claim, worker_id) for job_id, claim in claims],
            ).rowcount

        return await self._call(self._write, release)

    async def jobs_snooze(self, worker_id: int, outcome: Outcome) -> bool:
        """Put a snoozed job back to `new` until its run_after, giving its attempt back."""

        def snooze(db: sqlite3.Connection) -> bool:
            return (
                db.execute(
                    """UPDATE djap_job SET status = 'new', worker_id = NULL, run_after = ?,
                           scheduled = ?, attempts = attempts - 1, started_at = NULL
                       WHERE id = ? AND claims = ? AND status = 'in_progress' AND worker_id = ?""",
                    (
                        None if outcome.run_after is None else _ts(outcome.run_after),
                        outcome.run_after is not None
                        and outcome.run_after > dt.datetime.now(dt.UTC),
                        outcome.job_id,
                        outcome.claim,
                        worker_id,
                    ),
                ).rowcount
                == 1
            )

        return await self._call(self._write, snooze)

    def _rescue(self, db: sqlite3.Connection, workers: list[int], max_crashes: int) -> RescueReport:
        if not workers:
            return RescueReport()
        marks = ",".join("?" * len(workers))
        now = _now()
        statuses = [
            r[0]
            for r in db.execute(
                f"""UPDATE djap_job
                    SET status = CASE WHEN crashes + 1 >= ? THEN 'failed' ELSE 'new' END,
                        error = CASE WHEN crashes + 1 >= ? THEN ? ELSE error END,
                        finished_at = CASE WHEN crashes + 1 >= ? THEN ? ELSE NULL END,
                        crashes = crashes + 1, worker_id = NULL,
                        errors = json_insert(COALESCE(errors, '[]'), '$[#]', json_object(
                            'attempt', attempts, 'at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
                            'error', 'the worker running this attempt died (worker '
                                || worker_id || ')'))
                    WHERE status = 'in_progress' AND worker_id IN ({marks})
                    RETURNING status""",
                (
                    max_crashes,
                    max_crashes,
                    POISON_ERROR.format(crashes=max_crashes),
                    max_crashes,
                    now,
                    *workers,
                ),
            ).fetchall()
        ]
        db.execute(
            f"UPDATE djap_worker SET state = 'dead', in_flight = 0 WHERE id IN ({marks})",
            workers,
        )
        return RescueReport(
            requeued=statuses.count("new"),
            failed=statuses.count("failed"),
            dead_workers=len(workers),
        )

    async def jobs_rescue_stale(self, stale_after_s: float, max_crashes: int) -> RescueReport:
        """Put back the jobs of workers whose heartbeat is older than `stale_after_s`.

        Any state counts: a dead or stopped row that still holds jobs is rescued once it
        has been silent that long too, so a row marked dead by mistake whose worker beats
        again keeps its jobs. Jobs whose worker row is gone get a placeholder row with a
        fresh heartbeat: a live worker takes it over at its next beat; a dead one's
        placeholder goes stale and is rescued.
        """

        def rescue(db: sqlite3.Connection) -> RescueReport:
            now = _now()
            db.execute(
                """INSERT INTO djap_worker (id, host, pid, "group", include, exclude,
                       concurrency, supervisor_pid, state, started_at, last_heartbeat,
                       jobs_done, jobs_failed, in_flight)
                   SELECT DISTINCT j.worker_id, ?, 0, 'default', NULL, '[]', 0, NULL,
                       'running', ?, ?, 0, 0, 0
                   FROM djap_job AS j
                   WHERE j.status = 'in_progress' AND j.worker_id IS NOT NULL
                     AND NOT EXISTS (SELECT 1 FROM djap_worker AS w WHERE w.id = j.worker_id)""",
                (ORPHAN_HOST, now, now),
            )
            stale = [
                r[0]
                for r in db.execute(
                    """SELECT id FROM djap_worker AS w WHERE last_heartbeat < ?
                       AND (state IN ('running', 'draining') OR EXISTS (
                           SELECT 1 FROM djap_job AS j
                           WHERE j.status = 'in_progress' AND j.worker_id = w.id))""",
                    (_now(-stale_after_s),),
                )
            ]
            return self._rescue(db, sorted(stale), max_crashes)

        return await self._call(self._write, rescue)

    async def jobs_rescue_worker(self, worker_id: int, max_crashes: int) -> RescueReport:
        return await self._call(self._write, lambda db: self._rescue(db, [worker_id], max_crashes))

    async def jobs_runnable_exists(self, include: list[str] | None, exclude: list[str]) -> bool:
        names_sql, names = _names_filter(include, exclude)

        def exists() -> bool:
            now = _now()
            # Due rows on the claim path, or due rows a stager has not moved yet.
            row = self._db.execute(
                f"""SELECT EXISTS (SELECT 1 FROM djap_job WHERE {_DUE} {names_sql})
                        OR EXISTS (SELECT 1 FROM djap_job INDEXED BY djap_job_scheduled
                                   WHERE {_SCHEDULED} AND status = 'new' AND run_after <= ?
                                   {names_sql})""",
                (now, *names, now, *names),
            ).fetchone()
            return bool(row[0])

        return await self._call(exists)

    async def jobs_held(self, worker_id: int) -> dict[int, int]:
        """The jobs the database says this worker runs: job id -> claim token.

        A task whose (id, token) is not in here is no longer this worker's to run; a row
        in here that no task runs is a claim lost in an outage.
        """

        def held() -> dict[int, int]:
            return dict(
                self._db.execute(
                    "SELECT id, claims FROM djap_job WHERE status = 'in_progress' "
                    "AND worker_id = ?",
                    (worker_id,),
                ).fetchall()
            )

        return await self._call(held)

    async def jobs_prune(self, older_than_s: float, statuses: list[str], limit: int) -> int:
        """Delete up to `limit` jobs in `statuses` that finished over `older_than_s` ago.

        Jobs of pipelines are left to pipelines_prune: a pipeline goes whole or not at all.
        One short write transaction per batch, so other writers wait only briefly.
        """
        marks = ",".join("?" * len(statuses))

        def prune(db: sqlite3.Connection) -> int:
            return db.execute(
                f"""DELETE FROM djap_job WHERE id IN (
                        SELECT id FROM djap_job
                        WHERE status IN ({marks}) AND pipeline_id IS NULL AND finished_at < ?
                        LIMIT ?)""",
                (*statuses, _now(-older_than_s), limit),
            ).rowcount

        return await self._call(self._write, prune) if statuses else 0

    async def pipelines_prune(
        self, older_than_s: float, statuses: list[str], limit: int
    ) -> tuple[int, int]:
        """Delete up to `limit` ended pipelines with all their jobs: (pipelines, jobs).

        Ended: the pipeline's status is in `statuses`, it ended over `older_than_s` ago,
        and none of its jobs is waiting or running. One write transaction.
        """
        marks = ",".join("?" * len(statuses))

        def prune(db: sqlite3.Connection) -> tuple[int, int]:
            ids = [
                r[0]
                for r in db.execute(
                    f"""SELECT id FROM djap_pipeline AS p
                        WHERE status IN ({marks}) AND finished_at < ?
                          AND NOT EXISTS (SELECT 1 FROM djap_job AS j
                              WHERE j.pipeline_id = p.id
                                AND j.status IN ('not_ready', 'new', 'in_progress'))
                        ORDER BY id LIMIT ?""",
                    (*statuses, _now(-older_than_s), limit),
                )
            ]
            if not ids:
                return 0, 0
            some = ",".join("?" * len(ids))
            jobs = db.execute(f"DELETE FROM djap_job WHERE pipeline_id IN ({some})", ids)
            gone = db.execute(f"DELETE FROM djap_pipeline WHERE id IN ({some})", ids)
            return gone.rowcount, jobs.rowcount

        return await self._call(self._write, prune) if statuses else (0, 0)

    async def jobs_status(self, job_ids: list[int]) -> dict[int, str]:
        def status() -> dict[int, str]:
            marks = ",".join("?" * len(job_ids))
            return dict(
                self._db.execute(
                    f"SELECT id, status FROM djap_job WHERE id IN ({marks})", job_ids
                ).fetchall()
            )

        return await self._call(status) if job_ids else {}
