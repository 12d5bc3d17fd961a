"""PostgreSQL: claim with FOR UPDATE SKIP LOCKED, wake workers with LISTEN/NOTIFY.

The hot path talks to PostgreSQL through psycopg's own async connections, not
Django's async ORM: Django runs every ORM query of a process through one
thread, which would serialise claims and completions. Here claims, completions
and notifications each have a connection, so they overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import psycopg

from .base import POISON_ERROR, ClaimedJob, Outcome, RescueReport, WorkerInfo

CHANNEL = "djap_new_jobs"
#: `cancel()` of a running job notifies this channel with the job id as payload.
CANCEL_CHANNEL = "djap_cancel"

# Django's wrapper options that are not libpq/psycopg connection arguments.
_DJANGO_ONLY_PARAMS = (
    "cursor_factory",
    "context",
    "prepare_threshold",
    "server_side_binding",
    "pool",
    "assume_role",
    "isolation_level",
)

# Pick the oldest ready rows of the highest priority that nobody else holds, and mark
# them ours in the same statement. SKIP LOCKED lets many workers claim at once without
# waiting on each other; the partial index djap_job_ready serves the ORDER BY.
_CLAIM = """
WITH picked AS (
    SELECT id FROM djap_job
    WHERE status = 'new'
      AND (run_after IS NULL OR run_after <= now())
      AND (%(include)s::text[] IS NULL OR name = ANY(%(include)s::text[]))
      AND name <> ALL(%(exclude)s::text[])
    ORDER BY priority DESC, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE djap_job AS j
SET status = 'in_progress', worker_id = %(worker)s, started_at = now(),
    attempts = j.attempts + 1
FROM picked WHERE j.id = picked.id
RETURNING j.id, j.name, j.inputs, j.attempts, j.max_attempts, j.timeout, j.pipeline_id
"""

# One statement finishes a whole batch. The guard on worker and status means a job
# that was rescued from us (we looked dead) is never overwritten by our late result.
_FINISH = """
UPDATE djap_job AS j
SET status = u.status, outputs = u.outputs::jsonb, error = u.error,
    run_after = u.run_after, worker_id = NULL,
    finished_at = CASE WHEN u.status = 'new' THEN NULL ELSE now() END,
    errors = CASE WHEN u.error = '' THEN j.errors ELSE COALESCE(j.errors, '[]'::jsonb)
        || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempts, 'error', u.error, 'at', now())) END
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::timestamptz[])
    AS u(id, status, outputs, error, run_after)
WHERE j.id = u.id AND j.status = 'in_progress' AND j.worker_id = %s
"""

# _FINISH for outcomes that are `done` with no outputs: what most batches hold.
_FINISH_DONE = """
UPDATE djap_job
SET status = 'done', outputs = NULL, error = '', run_after = NULL, worker_id = NULL,
    finished_at = now()
WHERE id = ANY(%s::bigint[]) AND status = 'in_progress' AND worker_id = %s
"""


def _is_plain_done(o: Outcome) -> bool:
    return o.status == "done" and o.outputs_json is None and not o.error and o.run_after is None


_RESCUE = """
UPDATE djap_job
SET status = CASE WHEN crashes + 1 >= %(max_crashes)s THEN 'failed' ELSE 'new' END,
    error = CASE WHEN crashes + 1 >= %(max_crashes)s THEN %(poison)s || '' ELSE error END,
    finished_at = CASE WHEN crashes + 1 >= %(max_crashes)s THEN now() ELSE NULL END,
    crashes = crashes + 1, worker_id = NULL,
    errors = COALESCE(errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
        'attempt', attempts, 'at', now(),
        'error', 'the worker running this attempt died (worker ' || worker_id || ')'))
WHERE status = 'in_progress' AND worker_id = ANY(%(workers)s::bigint[])
RETURNING status
"""


# A queue table's statistics are always stale: rows go new -> in_progress -> done far
# faster than autovacuum analyzes them, and dead index entries pile up between vacuums.
# On stale statistics the planner believes few rows are `new` and claims with a bitmap
# scan of every new row plus a sort, so each claim costs O(queue length). Walking the
# partial index djap_job_ready in order and stopping at LIMIT is right for a queue
# whatever the statistics say, so these connections rule out the other plans.
_PLANNER_SETTINGS = "SET enable_bitmapscan = off; SET enable_sort = off"

# The claim connection (claims, heartbeats, rescues) commits without waiting for the WAL
# flush. Delivery stays at-least-once: if the server crashes before the flush, a claim is
# undone and the job is claimed again, as if rescued from a dead worker. Nothing is lost
# either: the job's own commits, and the completer's (on its own, synchronous connection),
# flush the WAL up to and including the claim. This takes a disk flush off every pickup.
_CLAIM_SETTINGS = "SET synchronous_commit = off"


def connection_params(django_connection: Any) -> dict[str, Any]:
    """psycopg.connect() keyword arguments for the database Django is configured with."""
    params = dict(django_connection.get_connection_params())
    for key in _DJANGO_ONLY_PARAMS:
        params.pop(key, None)
    return params


class PostgresQueue:
    def __init__(self, django_connection: Any) -> None:
        self.params = connection_params(django_connection)
        self._conn: psycopg.AsyncConnection | None = None
        self._finish_conn: psycopg.AsyncConnection | None = None
        self._listen_conn: psycopg.AsyncConnection | None = None
        self._listener: asyncio.Task | None = None
        self._wakeup = asyncio.Event()
        #: Called with a job id when a cancel notification arrives (set by the worker).
        self.on_cancel: Callable[[int], None] | None = None

    async def _open(self, claims: bool = False) -> psycopg.AsyncConnection:
        conn = await psycopg.AsyncConnection.connect(**self.params, autocommit=True)
        await conn.execute(_PLANNER_SETTINGS)
        if claims:
            await conn.execute(_CLAIM_SETTINGS)
        return conn

    async def connect(self) -> None:
        self._conn = await self._open(claims=True)
        self._finish_conn = await self._open()

    # -- outages -------------------------------------------------------------------

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        """A lost or refused connection (server restart, network): retry after reconnect."""
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))

    async def reconnect(self) -> None:
        """Reopen whichever connection the server dropped; healthy ones are kept."""
        for attr in ("_conn", "_finish_conn"):
            conn = getattr(self, attr)
            if conn is None or conn.closed:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
                setattr(self, attr, await self._open(claims=attr == "_conn"))

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        for conn in (self._conn, self._finish_conn, self._listen_conn):
            if conn is not None and not conn.closed:
                await conn.close()
        self._conn = self._finish_conn = self._listen_conn = None

    # -- workers -------------------------------------------------------------------

    async def worker_register(self, info: WorkerInfo) -> int:
        cur = await self._conn.execute(
            """INSERT INTO djap_worker (host, pid, "group", include, exclude, concurrency,
                   supervisor_pid, state, started_at, last_heartbeat, jobs_done, jobs_failed,
                   in_flight)
               VALUES (%s, %s, %s, %s, %s, %s, %s, 'running', now(), now(), 0, 0, 0)
               RETURNING id""",
            (
                info.host,
                info.pid,
                info.group,
                None if info.include is None else json.dumps(info.include),
                json.dumps(info.exclude),
                info.concurrency,
                info.supervisor_pid,
            ),
        )
        return (await cur.fetchone())[0]

    async def worker_heartbeat(
        self, worker_id: int, *, done: int, failed: int, in_flight: int, state: str
    ) -> None:
        await self._conn.execute(
            """UPDATE djap_worker SET last_heartbeat = now(), jobs_done = %s,
                   jobs_failed = %s, in_flight = %s, state = %s
               WHERE id = %s""",
            (done, failed, in_flight, state, worker_id),
        )

    async def worker_stop(self, worker_id: int) -> None:
        await self._conn.execute(
            "UPDATE djap_worker SET state = 'stopped', in_flight = 0, last_heartbeat = now() "
            "WHERE id = %s",
            (worker_id,),
        )

    async def workers_prune(self, older_than_s: float) -> int:
        cur = await self._conn.execute(
            """DELETE FROM djap_worker
               WHERE state IN ('stopped', 'dead')
                 AND last_heartbeat < now() - make_interval(secs => %s)""",
            (older_than_s,),
        )
        return cur.rowcount

    # -- jobs ----------------------------------------------------------------------

    async def jobs_claim(
        self, worker_id: int, limit: int, include: list[str] | None, exclude: list[str]
    ) -> list[ClaimedJob]:
        cur = await self._conn.execute(
            _CLAIM,
            {"include": include, "exclude": exclude, "limit": limit, "worker": worker_id},
        )
        return [ClaimedJob(*row) for row in await cur.fetchall()]

    async def jobs_finish(self, worker_id: int, outcomes: list[Outcome]) -> None:
        plain: list[int] = []
        rest: list[Outcome] = []
        for o in outcomes:
            if _is_plain_done(o):
                plain.append(o.job_id)
            else:
                rest.append(o)
        if plain:
            # The common case needs only ids: one array literal built by str.join, where
            # psycopg would adapt five lists element by element in Python.
            ids = "{" + ",".join(map(str, plain)) + "}"
            await self._finish_conn.execute(_FINISH_DONE, (ids, worker_id))
        if not rest:
            return
        await self._finish_conn.execute(
            _FINISH,
            (
                [o.job_id for o in rest],
                [o.status for o in rest],
                [o.outputs_json for o in rest],
                [o.error for o in rest],
                [o.run_after for o in rest],
                worker_id,
            ),
        )

    async def jobs_release(self, worker_id: int, job_ids: list[int]) -> int:
        """Put back jobs this worker holds but will not finish (shutdown)."""
        cur = await self._conn.execute(
            """UPDATE djap_job SET status = 'new', worker_id = NULL, started_at = NULL
               WHERE id = ANY(%s::bigint[]) AND status = 'in_progress' AND worker_id = %s""",
            (job_ids, worker_id),
        )
        return cur.rowcount

    async def _rescue(self, workers: list[int], max_crashes: int) -> RescueReport:
        if not workers:
            return RescueReport()
        # One statement, never BEGIN ... COMMIT: the claim loop shares this connection, and
        # a claim that ran inside an open transaction here would return rows nobody else
        # sees yet; their completions would match nothing and leave them in_progress.
        cur = await self._conn.execute(
            f"""WITH jobs AS ({_RESCUE}), dead AS (
                    UPDATE djap_worker SET state = 'dead', in_flight = 0
                    WHERE id = ANY(%(workers)s::bigint[]))
                SELECT status FROM jobs""",
            {
                "workers": workers,
                "max_crashes": max_crashes,
                "poison": POISON_ERROR.format(crashes=max_crashes),
            },
        )
        statuses = [r[0] for r in await cur.fetchall()]
        if statuses:
            await self._conn.execute(f"NOTIFY {CHANNEL}")
        return RescueReport(
            requeued=statuses.count("new"),
            failed=statuses.count("failed"),
            dead_workers=len(workers),
        )

    async def jobs_rescue_stale(self, stale_after_s: float, max_crashes: int) -> RescueReport:
        """Put back the jobs of workers whose heartbeat is older than `stale_after_s`.

        Also catches jobs whose worker row is gone altogether.
        """
        cur = await self._conn.execute(
            """SELECT id FROM djap_worker
               WHERE state IN ('running', 'draining')
                 AND last_heartbeat < now() - make_interval(secs => %s)""",
            (stale_after_s,),
        )
        stale = [r[0] for r in await cur.fetchall()]
        cur = await self._conn.execute(
            """SELECT DISTINCT j.worker_id FROM djap_job j
               LEFT JOIN djap_worker w ON w.id = j.worker_id
               WHERE j.status = 'in_progress'
                 AND (w.id IS NULL OR w.state IN ('dead', 'stopped'))"""
        )
        orphaned = [r[0] for r in await cur.fetchall() if r[0] is not None]
        return await self._rescue(sorted(set(stale) | set(orphaned)), max_crashes)

    async def jobs_rescue_worker(self, worker_id: int, max_crashes: int) -> RescueReport:
        return await self._rescue([worker_id], max_crashes)

    async def jobs_runnable_exists(self, include: list[str] | None, exclude: list[str]) -> bool:
        cur = await self._conn.execute(
            """SELECT EXISTS (SELECT 1 FROM djap_job
                   WHERE status = 'new' AND (run_after IS NULL OR run_after <= now())
                     AND (%(include)s::text[] IS NULL OR name = ANY(%(include)s::text[]))
                     AND name <> ALL(%(exclude)s::text[]))""",
            {"include": include, "exclude": exclude},
        )
        return (await cur.fetchone())[0]

    async def jobs_held(self, worker_id: int) -> list[int]:
        """Jobs the database says this worker runs (to find a claim lost in an outage)."""
        cur = await self._conn.execute(
            "SELECT id FROM djap_job WHERE status = 'in_progress' AND worker_id = %s",
            (worker_id,),
        )
        return [r[0] for r in await cur.fetchall()]

    async def jobs_prune(self, older_than_s: float, statuses: list[str], limit: int) -> int:
        """Delete up to `limit` jobs in `statuses` that finished over `older_than_s` ago.

        One short statement per batch, so the hot table is never held for long.
        """
        cur = await self._conn.execute(
            """DELETE FROM djap_job WHERE id IN (
                   SELECT id FROM djap_job
                   WHERE status = ANY(%s::text[])
                     AND finished_at < now() - make_interval(secs => %s)
                   LIMIT %s)""",
            (statuses, older_than_s, limit),
        )
        return cur.rowcount

    async def jobs_status(self, job_ids: list[int]) -> dict[int, str]:
        cur = await self._conn.execute(
            "SELECT id, status FROM djap_job WHERE id = ANY(%s::bigint[])", (job_ids,)
        )
        return dict(await cur.fetchall())

    # -- waking up -----------------------------------------------------------------

    async def _listen(self) -> None:
        while True:
            try:
                if self._listen_conn is None or self._listen_conn.closed:
                    self._listen_conn = await self._open()
                    await self._listen_conn.execute(f"LISTEN {CHANNEL}")
                    await self._listen_conn.execute(f"LISTEN {CANCEL_CHANNEL}")
                    # Jobs may have arrived while we were not listening.
                    self._wakeup.set()
                async for note in self._listen_conn.notifies():
                    if note.channel == CANCEL_CHANNEL:
                        if self.on_cancel is not None and note.payload.isdigit():
                            self.on_cancel(int(note.payload))
                        continue
                    self._wakeup.set()
            except asyncio.CancelledError:
                raise
            except psycopg.Error:
                # The poll in wait_for_jobs covers us while we reconnect.
                await asyncio.sleep(1.0)
                self._listen_conn = None

    def listen(self) -> None:
        """Start listening now, so cancel notifications arrive even while no one waits."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="djap-listen")

    async def wait_for_jobs(self, timeout: float) -> None:
        """Return when a NOTIFY arrives, or after `timeout` seconds (the poll fallback)."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="djap-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        self._wakeup.clear()
