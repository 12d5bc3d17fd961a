"""PostgreSQL statements: claim with FOR UPDATE SKIP LOCKED, wake workers with NOTIFY.

Each method is one statement (or one short autocommit batch of them) on the
connections that postgres_connection.py opens and keeps through outages.
"""

from __future__ import annotations

import json
from typing import Any

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
from .base import NEW_JOBS_CHANNEL as CHANNEL
from .postgres_connection import PostgresConnections, connection_params, first_column

#: `connection_params` stays importable from here (benchmarks and tests use it).
__all__ = ["CHANNEL", "PostgresQueue", "connection_params"]

# Pick the oldest due rows of the highest priority that nobody else holds, and mark
# them ours in the same statement. SKIP LOCKED lets many workers claim at once without
# waiting on each other; the partial index djap_job_due serves the ORDER BY. Jobs
# waiting for a later run_after are not in it (`scheduled`, see stager.py); the
# run_after test stays for rows written by other paths (an older djap, raw SQL).
_DUE = """status = 'new' AND NOT scheduled AND (run_after IS NULL OR run_after <= now())"""
# The picked ids go into an array (an InitPlan, run once) and are updated by primary
# key. Joined to the table instead, stale statistics can make the planner hash the
# whole table, or rescan the pick once per row, on every claim.
_CLAIMED = """
UPDATE djap_job AS j
SET status = 'in_progress', worker_id = %(worker)s, started_at = now(),
    attempts = j.attempts + 1, claims = j.claims + 1
WHERE j.id = ANY(ARRAY({picked}))
RETURNING j.id, j.name, j.inputs, j.attempts, j.max_attempts, j.timeout, j.pipeline_id,
    j.claims
"""
_CLAIM = _CLAIMED.format(
    picked=f"""
    SELECT id FROM djap_job
    WHERE {_DUE}
    ORDER BY priority DESC, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED"""
)

# A worker that takes some names only walks djap_job_due_name, one name at a time: each
# name's best rows (locked as found, SKIP LOCKED), then the best of those. Its cost is
# the rows it could take, whatever other names have waiting. With several names it may
# lock up to `limit` rows of each for the moment of the statement, and claims `limit`.
#
# The name is matched as a range of one value, and ordered by: with `name = n.name` the
# planner counts the name as fixed and the order as priority's alone, which djap_job_due
# also gives; on statistics that say one name fills the table it then walks that index
# and filters by name, reading every due row for a name that has none. Written so, only
# djap_job_due_name gives the order without a sort.
_PICK_BY_NAME = f"""
SELECT c.id FROM {{names}} CROSS JOIN LATERAL (
    SELECT id, priority FROM djap_job
    WHERE {_DUE} AND name >= n.name AND name <= n.name
    ORDER BY name, priority DESC, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) AS c
ORDER BY c.priority DESC, c.id
LIMIT %(limit)s
"""
_CLAIM_INCLUDE = _CLAIMED.format(
    picked=_PICK_BY_NAME.format(names="unnest(%(include)s::text[]) AS n(name)")
)

# An --exclude worker takes every name but a few: the names that have due rows are found
# by a skip scan of djap_job_due_name (one index descent per distinct name, however many
# rows each has), and claimed from as by --include. A million waiting rows of an
# excluded name cost one descent.
_CLAIM_EXCLUDE = _CLAIMED.format(
    picked=f"""
    WITH RECURSIVE names AS (
        (SELECT name FROM djap_job WHERE {_DUE} ORDER BY name LIMIT 1)
        UNION ALL
        SELECT (SELECT d.name FROM djap_job AS d
                WHERE d.status = 'new' AND NOT d.scheduled
                  AND (d.run_after IS NULL OR d.run_after <= now()) AND d.name > names.name
                ORDER BY d.name LIMIT 1)
        FROM names WHERE names.name IS NOT NULL
    ) {
        _PICK_BY_NAME.format(
            names="(SELECT name FROM names WHERE name IS NOT NULL "
            "AND name <> ALL(%(exclude)s::text[])) AS n"
        )
    }"""
)

# One statement finishes a whole batch. The guard on the claim token (and worker and
# status) means a job rescued from us (we looked dead), or claimed again since, is never
# overwritten by a late result of ours.
_FINISH = """
UPDATE djap_job AS j
SET status = u.status, outputs = u.outputs::jsonb, error = u.error,
    run_after = u.run_after, worker_id = NULL,
    scheduled = u.status = 'new' AND COALESCE(u.run_after > now(), false),
    finished_at = CASE WHEN u.status = 'new' THEN NULL ELSE now() END,
    errors = CASE WHEN u.error = '' THEN j.errors ELSE COALESCE(j.errors, '[]'::jsonb)
        || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempts, 'error', u.error, 'at', now())) END
FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::text[], %s::text[], %s::timestamptz[])
    AS u(id, claims, status, outputs, error, run_after)
WHERE j.id = u.id AND j.claims = u.claims AND j.status = 'in_progress' AND j.worker_id = %s
"""

# _FINISH for outcomes that are `done` with no outputs: what most batches hold.
_FINISH_DONE = """
UPDATE djap_job AS j
SET status = 'done', outputs = NULL, error = '', run_after = NULL, worker_id = NULL,
    finished_at = now()
FROM unnest(%s::bigint[], %s::int[]) AS u(id, claims)
WHERE j.id = ANY(%s::bigint[]) AND j.id = u.id AND j.claims = u.claims
  AND j.status = 'in_progress' AND j.worker_id = %s
"""


# Jobs first, then their pipeline, all in one statement (the foreign key is checked at
# its end): a pipeline never loses some of its rows.
_PIPELINES_PRUNE = """
WITH p AS (
    SELECT id FROM djap_pipeline AS p
    WHERE status = ANY(%(statuses)s::text[])
      AND finished_at < now() - make_interval(secs => %(age)s)
      AND NOT EXISTS (SELECT 1 FROM djap_job AS j WHERE j.pipeline_id = p.id
                      AND j.status IN ('not_ready', 'new', 'in_progress'))
    ORDER BY id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), jobs AS (
    DELETE FROM djap_job WHERE pipeline_id IN (SELECT id FROM p) RETURNING 1
), gone AS (
    DELETE FROM djap_pipeline WHERE id IN (SELECT id FROM p) RETURNING 1
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM jobs)
"""


def _is_plain_done(o: Outcome) -> bool:
    return o.status == "done" and o.outputs_json is None and not o.error and o.run_after is None


# Move due scheduled jobs onto the claim path, oldest first, and say when the next one
# falls due. SKIP LOCKED: stagers in many processes at once each take other rows, and
# none waits behind a row another transaction holds (a cancel, say); the outer status
# test re-checks each row once locked. The NOTIFY goes out on commit, with the rows.
#
# The ids are picked once, into an array (an InitPlan), and updated by primary key.
# Written as `WHERE id IN (subquery)` or as a join, stale statistics (a queue's always
# are) let the planner rescan the subquery once per scheduled row, or hash the whole
# table, on every pass.
_STAGE = f"""
WITH staged AS (
    UPDATE djap_job SET scheduled = false
    WHERE id = ANY(ARRAY(
        SELECT id FROM djap_job
        WHERE status = 'new' AND scheduled AND run_after <= now()
        ORDER BY run_after
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED))
      AND status = 'new' AND scheduled
    RETURNING 1
), counted AS (SELECT count(*) AS n FROM staged)
SELECT counted.n,
       (SELECT extract(epoch FROM min(run_after) - now())::float8 FROM djap_job
        WHERE status = 'new' AND scheduled AND run_after > now()),
       CASE WHEN counted.n > 0 THEN pg_notify('{CHANNEL}', '') END
FROM counted
"""

# Rescue the jobs of the given workers, in one statement. With %(stale)s set, a worker is
# taken only if its heartbeat is still that old when its row is locked here: a heartbeat
# that lands meanwhile saves it. Job rows some transaction holds (a cancel in an open
# transaction) are skipped, never waited for; the next rescue takes them.
_RESCUE = """
WITH dead AS (
    UPDATE djap_worker SET state = 'dead', in_flight = 0
    WHERE id = ANY(%(workers)s::bigint[])
      AND (%(stale)s::float8 IS NULL
           OR last_heartbeat < now() - make_interval(secs => %(stale)s::float8))
    RETURNING id
), picked AS (
    SELECT id FROM djap_job
    WHERE status = 'in_progress' AND worker_id IN (SELECT id FROM dead)
    FOR UPDATE SKIP LOCKED
), jobs AS (
    UPDATE djap_job AS j
    SET status = CASE WHEN crashes + 1 >= %(max_crashes)s THEN 'failed' ELSE 'new' END,
        error = CASE WHEN crashes + 1 >= %(max_crashes)s THEN %(poison)s || '' ELSE error END,
        finished_at = CASE WHEN crashes + 1 >= %(max_crashes)s THEN now() ELSE NULL END,
        crashes = crashes + 1, worker_id = NULL,
        errors = COALESCE(errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
            'attempt', attempts, 'at', now(),
            'error', 'the worker running this attempt died (worker ' || worker_id || ')'))
    FROM picked WHERE j.id = picked.id
    RETURNING j.status
)
SELECT 'job', status FROM jobs UNION ALL SELECT 'worker', NULL FROM dead
"""

# Workers to rescue: silent for `stale` seconds, in any state. A running one died or
# hangs; a dead or stopped one still holds jobs (it exited without writing them back).
# Heartbeat age counts for every state: a row marked dead by mistake, whose worker
# lives on and beats again, keeps its jobs.
_STALE_WORKERS = """
SELECT id FROM djap_worker AS w
WHERE last_heartbeat < now() - make_interval(secs => %(stale)s)
  AND (state IN ('running', 'draining') OR EXISTS (
      SELECT 1 FROM djap_job AS j WHERE j.status = 'in_progress' AND j.worker_id = w.id))
"""

# Jobs held by a worker whose row is gone (deleted by hand): the row has no heartbeat to
# judge by, so a placeholder row is written with a fresh one. If its worker lives, its
# next heartbeat takes the row over; if not, the placeholder goes stale and is rescued.
_ADOPT_ORPHANS = """
INSERT INTO djap_worker (id, host, pid, "group", include, exclude, concurrency,
    supervisor_pid, state, started_at, last_heartbeat, jobs_done, jobs_failed, in_flight)
SELECT DISTINCT j.worker_id, %(host)s, 0, 'default', NULL::jsonb, '[]'::jsonb, 0, NULL::int,
    'running', now(), now(), 0, 0, 0
FROM djap_job AS j
WHERE j.status = 'in_progress' AND j.worker_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM djap_worker AS w WHERE w.id = j.worker_id)
ON CONFLICT (id) DO NOTHING
"""


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


class PostgresQueue(PostgresConnections):
    """The queue contract on PostgreSQL (plumbing inherited from PostgresConnections)."""

    # -- workers -------------------------------------------------------------------

    async def worker_register(self, info: WorkerInfo) -> int:
        cur = await self._beat_conn.execute(
            """INSERT INTO djap_worker (host, pid, "group", include, exclude, concurrency,
                   supervisor_pid, state, started_at, last_heartbeat, jobs_done, jobs_failed,
                   in_flight, connections)
               VALUES (%s, %s, %s, %s, %s, %s, %s, 'running', now(), now(), 0, 0, 0, %s)
               RETURNING id""",
            (
                info.host,
                info.pid,
                info.group,
                None if info.include is None else json.dumps(info.include),
                json.dumps(info.exclude),
                info.concurrency,
                info.supervisor_pid,
                info.connections,
            ),
        )
        return await first_column(cur)

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

        With `info`, a row that is gone (deleted, pruned) is written again under the same
        id, and a placeholder a rescuer wrote for it gets this worker's identity back, so
        the jobs it holds stay its own.
        """
        cur = await self._beat_conn.execute(
            """WITH old AS (SELECT state FROM djap_worker WHERE id = %s)
               UPDATE djap_worker SET last_heartbeat = now(), jobs_done = %s,
                   jobs_failed = %s, in_flight = %s, state = %s
               WHERE id = %s
               RETURNING (SELECT state FROM old)""",
            (worker_id, done, failed, in_flight, state, worker_id),
        )
        row = await cur.fetchone()
        if row is not None:
            found = REVIVED if row[0] == "dead" else BEAT
            if info is not None:
                await self._beat_conn.execute(
                    """UPDATE djap_worker SET host = %s, pid = %s, "group" = %s, include = %s,
                           exclude = %s, concurrency = %s, supervisor_pid = %s
                       WHERE id = %s AND pid <> %s""",
                    (*_identity(info), worker_id, info.pid),
                )
            return found
        if info is None:
            return MISSING
        await self._beat_conn.execute(
            """INSERT INTO djap_worker (id, host, pid, "group", include, exclude, concurrency,
                   supervisor_pid, state, started_at, last_heartbeat, jobs_done, jobs_failed,
                   in_flight)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now(), now(), %s, %s, %s)
               ON CONFLICT (id) DO NOTHING""",
            (worker_id, *_identity(info), state, done, failed, in_flight),
        )
        return RESTORED

    async def workers_prune(self, older_than_s: float) -> int:
        """Delete rows of workers long stopped or dead; never one that still holds a job."""
        cur = await self._conn.execute(
            """DELETE FROM djap_worker AS w
               WHERE state IN ('stopped', 'dead')
                 AND last_heartbeat < now() - make_interval(secs => %s)
                 AND NOT EXISTS (SELECT 1 FROM djap_job AS j
                                 WHERE j.status = 'in_progress' AND j.worker_id = w.id)""",
            (older_than_s,),
        )
        return cur.rowcount

    # -- jobs ----------------------------------------------------------------------

    async def jobs_claim(
        self, worker_id: int, limit: int, include: list[str] | None, exclude: list[str]
    ) -> list[ClaimedJob]:
        if include is not None:
            include = [n for n in include if n not in exclude]
            sql = _CLAIM_INCLUDE
        elif exclude:
            sql = _CLAIM_EXCLUDE
        else:
            sql = _CLAIM
        cur = await self._conn.execute(
            sql, {"include": include, "exclude": exclude, "limit": limit, "worker": worker_id}
        )
        return [ClaimedJob(*row) for row in await cur.fetchall()]

    async def jobs_finish(self, worker_id: int, outcomes: list[Outcome]) -> None:
        plain: list[Outcome] = []
        rest: list[Outcome] = []
        for o in outcomes:
            (plain if _is_plain_done(o) else rest).append(o)
        if plain:
            # The common case needs only ids and tokens: two array literals built by
            # str.join, where psycopg would adapt lists element by element in Python.
            ids = "{" + ",".join([str(o.job_id) for o in plain]) + "}"
            claims = "{" + ",".join([str(o.claim) for o in plain]) + "}"
            # `id = ANY(ids)` too: the primary key finds the rows, whatever the join plan.
            await self._finish_conn.execute(_FINISH_DONE, (ids, claims, ids, worker_id))
        if not rest:
            return
        await self._finish_conn.execute(
            _FINISH,
            (
                [o.job_id for o in rest],
                [o.claim for o in rest],
                [o.status for o in rest],
                [o.outputs_json for o in rest],
                [o.error for o in rest],
                [o.run_after for o in rest],
                worker_id,
            ),
        )

    async def jobs_release(self, worker_id: int, claims: list[tuple[int, int]]) -> int:
        """Put back jobs this worker holds but will not finish: (job id, claim token) pairs."""
        cur = await self._conn.execute(
            """UPDATE djap_job AS j SET status = 'new', worker_id = NULL, started_at = NULL
               FROM unnest(%s::bigint[], %s::int[]) AS u(id, claims)
               WHERE j.id = u.id AND j.claims = u.claims AND j.status = 'in_progress'
                 AND j.worker_id = %s""",
            ([c[0] for c in claims], [c[1] for c in claims], worker_id),
        )
        return cur.rowcount

    async def jobs_snooze(self, worker_id: int, outcome: Outcome) -> bool:
        """Put a snoozed job back to `new` until its run_after, giving its attempt back."""
        cur = await self._finish_conn.execute(
            """UPDATE djap_job SET status = 'new', worker_id = NULL, run_after = %s,
                   scheduled = COALESCE(%s::timestamptz > now(), false),
                   attempts = attempts - 1, started_at = NULL
               WHERE id = %s AND claims = %s AND status = 'in_progress' AND worker_id = %s""",
            (outcome.run_after, outcome.run_after, outcome.job_id, outcome.claim, worker_id),
        )
        return cur.rowcount == 1

    async def _rescue(
        self, workers: list[int], max_crashes: int, stale_after_s: float | None
    ) -> RescueReport:
        if not workers:
            return RescueReport()
        # One statement, never BEGIN ... COMMIT: the claim loop shares this connection, and
        # a claim that ran inside an open transaction here would return rows nobody else
        # sees yet; their completions would match nothing and leave them in_progress.
        cur = await self._conn.execute(
            _RESCUE,
            {
                "workers": workers,
                "stale": stale_after_s,
                "max_crashes": max_crashes,
                "poison": POISON_ERROR.format(crashes=max_crashes),
            },
        )
        rows = await cur.fetchall()
        statuses = [status for kind, status in rows if kind == "job"]
        if statuses:
            await self._conn.execute(f"NOTIFY {CHANNEL}")
        return RescueReport(
            requeued=statuses.count("new"),
            failed=statuses.count("failed"),
            dead_workers=len(rows) - len(statuses),
        )

    async def jobs_rescue_stale(self, stale_after_s: float, max_crashes: int) -> RescueReport:
        """Put back the jobs of workers whose heartbeat is older than `stale_after_s`.

        Jobs whose worker row is gone get a placeholder row first (see _ADOPT_ORPHANS), and
        are rescued once that has been silent for `stale_after_s` too.
        """
        await self._conn.execute(_ADOPT_ORPHANS, {"host": ORPHAN_HOST})
        cur = await self._conn.execute(_STALE_WORKERS, {"stale": stale_after_s})
        stale = sorted(r[0] for r in await cur.fetchall())
        return await self._rescue(stale, max_crashes, stale_after_s)

    async def jobs_rescue_worker(self, worker_id: int, max_crashes: int) -> RescueReport:
        """Put back the jobs of a worker known to be dead (its process was reaped)."""
        return await self._rescue([worker_id], max_crashes, None)

    async def jobs_runnable_exists(self, include: list[str] | None, exclude: list[str]) -> bool:
        names = "AND name <> ALL(%(exclude)s::text[])"
        if include is not None:
            names += " AND name = ANY(%(include)s::text[])"
        cur = await self._conn.execute(
            # Due rows on the claim path, or due rows a stager has not moved yet.
            f"""SELECT EXISTS (SELECT 1 FROM djap_job WHERE {_DUE} {names})
                   OR EXISTS (SELECT 1 FROM djap_job
                              WHERE status = 'new' AND scheduled AND run_after <= now()
                              {names})""",
            {"include": include, "exclude": exclude},
        )
        return await first_column(cur)

    async def jobs_stage(self, limit: int) -> StageReport:
        """Move up to `limit` due scheduled jobs onto the claim path (see _STAGE)."""
        cur = await self._conn.execute(_STAGE, {"limit": limit})
        row = await cur.fetchone()
        if row is None:
            raise RuntimeError("the stage statement returned no row")
        staged, next_due_s, _ = row
        return StageReport(staged=staged, next_due_s=next_due_s)

    async def jobs_held(self, worker_id: int) -> dict[int, int]:
        """The jobs the database says this worker runs: job id -> claim token.

        A task whose (id, token) is not in here is no longer this worker's to run (it was
        cancelled, or rescued and perhaps claimed again); a row in here that no task runs
        is a claim lost in an outage.
        """
        cur = await self._conn.execute(
            "SELECT id, claims FROM djap_job WHERE status = 'in_progress' AND worker_id = %s",
            (worker_id,),
        )
        return dict(await cur.fetchall())

    async def jobs_prune(self, older_than_s: float, statuses: list[str], limit: int) -> int:
        """Delete up to `limit` jobs in `statuses` that finished over `older_than_s` ago.

        Jobs of pipelines are left to pipelines_prune: a pipeline goes whole or not at all.
        One short statement per batch, so the hot table is never held for long; rows a
        transaction holds are skipped, not waited for.
        """
        cur = await self._conn.execute(
            """DELETE FROM djap_job WHERE id IN (
                   SELECT id FROM djap_job
                   WHERE status = ANY(%s::text[]) AND pipeline_id IS NULL
                     AND finished_at < now() - make_interval(secs => %s)
                   LIMIT %s FOR UPDATE SKIP LOCKED)""",
            (statuses, older_than_s, limit),
        )
        return cur.rowcount

    async def pipelines_prune(
        self, older_than_s: float, statuses: list[str], limit: int
    ) -> tuple[int, int]:
        """Delete up to `limit` ended pipelines with all their jobs: (pipelines, jobs).

        Ended: the pipeline's status is in `statuses`, it ended over `older_than_s` ago,
        and none of its jobs is waiting or running. A pipeline row being written (a step
        finishing, a retry resuming it) is locked, and skipped.
        """
        cur = await self._conn.execute(
            _PIPELINES_PRUNE,
            {"statuses": statuses, "age": older_than_s, "limit": limit},
        )
        row = await cur.fetchone()
        if row is None:
            raise RuntimeError("the pipeline prune returned no row")
        pipelines, jobs = row
        return pipelines, jobs

    async def jobs_status(self, job_ids: list[int]) -> dict[int, str]:
        cur = await self._conn.execute(
            "SELECT id, status FROM djap_job WHERE id = ANY(%s::bigint[])", (job_ids,)
        )
        return dict(await cur.fetchall())
