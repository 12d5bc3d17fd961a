"""procrastinate (asyncio, PostgreSQL through psycopg 3).

The worker is `python peer_procrastinate.py worker --conc K` (app.run_worker). Env:
PROCRASTINATE_CONC (worker concurrency, default 30), PROCRASTINATE_POOL (the worker's
psycopg pool size, default 32; 0 = psycopg_pool's default of 4). With the default pool the
drain rate was bimodal (about 150 or 400 jobs/s from run to run); 30/32 keeps two workers
under max_connections=100.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pathlib
import subprocess
import sys
from importlib.metadata import version
from typing import Any

import procrastinate
import psycopg

import common

DB = "procrastinate"
CONC = int(os.environ.get("PROCRASTINATE_CONC", "30"))
POOL = int(os.environ.get("PROCRASTINATE_POOL", "32"))
#: Jobs per batch_defer call.
CHUNK = 1000
# The pool size applies to the worker process only (the orchestrator keeps the default).
_pool = {"min_size": POOL, "max_size": POOL} if POOL and sys.argv[1:2] == ["worker"] else {}

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=common.dsn(DB), **_pool))


@app.task(name="noop")
async def noop(i: int) -> None:
    common.mark(i)
    await asyncio.sleep(0)


class P(common.Peer):
    name = "procrastinate"
    version = f"procrastinate {version('procrastinate')}, psycopg {version('psycopg')}"
    bulk_api = f"noop.batch_defer(*[{{'i': i}}, ...]) (sync, one call per {CHUNK} jobs)"
    settings = (
        f"worker concurrency={CONC}, connection pool size="
        f"{POOL or '4 (psycopg_pool default)'}, listen_notify=True (default), "
        "fetch_job_polling_interval=5 (default), delete_jobs=never (default)"
    )

    def setup(self) -> None:
        common.recreate_db(DB)
        app.open()
        app.schema_manager.apply_schema()
        self.conn = psycopg.connect(common.dsn(DB), autocommit=True)

    def reset(self) -> None:
        self.conn.execute(
            "TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_workers CASCADE"
        )

    def enqueue_bulk(self, n: int) -> None:
        for s in range(0, n, CHUNK):
            noop.batch_defer(*[{"i": i} for i in range(s, min(n, s + CHUNK))])

    def enqueue_one(self, i: int) -> None:
        noop.defer(i=i)

    def start_workers(
        self, nprocs: int, env: dict[str, Any], log: pathlib.Path
    ) -> list[subprocess.Popen]:
        cmd = [sys.executable, __file__, "worker", "--conc", str(CONC)]
        return [common.spawn(cmd, env, log) for _ in range(nprocs)]

    def done_count(self) -> int | None:
        return self.conn.execute(
            "select count(*) from procrastinate_jobs where status='succeeded'"
        ).fetchone()[0]

    def post_check(self, n: int) -> dict[str, Any]:
        rows = self.conn.execute(
            "select status, count(*) from procrastinate_jobs group by 1"
        ).fetchall()
        return dict(rows)

    def teardown(self) -> None:
        self.conn.close()
        app.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        ap = argparse.ArgumentParser()
        ap.add_argument("--conc", type=int, default=1)
        args = ap.parse_args(sys.argv[2:])
        logging.basicConfig(level=logging.WARNING)
        app.run_worker(concurrency=args.conc)
    else:
        common.run_peer(P())
