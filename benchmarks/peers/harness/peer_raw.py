"""The floor under every PostgreSQL queue: a raw psycopg 3 claim/complete loop.

enqueue: multi-row INSERT, RAW_BATCH rows per statement, autocommit.
worker:  one connection, in a loop:
           UPDATE jobs SET status='running' ... WHERE id IN (SELECT id ... FOR UPDATE SKIP
             LOCKED LIMIT RAW_BATCH) RETURNING id, payload;  run each (the marker write);
           UPDATE jobs SET status='done' ... WHERE id = ANY(ids)
         each statement its own transaction (2 commits per batch); an empty queue sleeps
         10 ms (no LISTEN/NOTIFY: this peer has no latency phase).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from importlib.metadata import version
from typing import Any

import psycopg

import common

DB = "raw"
BATCH = int(os.environ.get("RAW_BATCH", "100"))
#: An empty queue: the worker sleeps this long (seconds) before it claims again.
IDLE_S = 0.01

DDL = """
CREATE TABLE jobs (
  id bigserial PRIMARY KEY,
  status text NOT NULL DEFAULT 'queued',
  payload jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  finished_at timestamptz
);
CREATE INDEX jobs_queued_idx ON jobs (id) WHERE status = 'queued';
"""
CLAIM = (
    "UPDATE jobs SET status='running', started_at=now() WHERE id IN ("
    "SELECT id FROM jobs WHERE status='queued' ORDER BY id FOR UPDATE SKIP LOCKED LIMIT %s) "
    "RETURNING id, payload"
)
DONE = "UPDATE jobs SET status='done', finished_at=now() WHERE id = ANY(%s)"


class P(common.Peer):
    name = "raw-psycopg3" if BATCH == 100 else f"raw-psycopg3-batch{BATCH}"
    version = f"psycopg {version('psycopg')} (binary)"
    bulk_api = f"INSERT ... VALUES (..),(..) x{BATCH} per statement, autocommit"
    settings = (
        f"1 connection per process; claim {BATCH} with UPDATE .. WHERE id IN (SELECT .. "
        f"FOR UPDATE SKIP LOCKED LIMIT {BATCH}) RETURNING, then done by id array; autocommit"
    )

    def setup(self) -> None:
        common.recreate_db(DB)
        self.conn = psycopg.connect(common.dsn(DB), autocommit=True)
        self.conn.execute(DDL)

    def reset(self) -> None:
        self.conn.execute("TRUNCATE jobs RESTART IDENTITY")

    def enqueue_bulk(self, n: int) -> None:
        for s in range(0, n, BATCH):
            r = range(s, min(n, s + BATCH))
            self.conn.execute(
                "INSERT INTO jobs (payload) VALUES " + ",".join(["(%s)"] * len(r)),
                [json.dumps({"i": i}) for i in r],
            )

    def start_workers(
        self, nprocs: int, env: dict[str, Any], log: pathlib.Path
    ) -> list[subprocess.Popen]:
        return [common.spawn([sys.executable, __file__, "worker"], env, log) for _ in range(nprocs)]

    def done_count(self) -> int | None:
        return self.conn.execute("SELECT count(*) FROM jobs WHERE status='done'").fetchone()[0]

    def post_check(self, n: int) -> dict[str, Any]:
        return dict(self.conn.execute("SELECT status, count(*) FROM jobs GROUP BY 1").fetchall())

    def teardown(self) -> None:
        self.conn.close()


def worker() -> None:
    conn = psycopg.connect(common.dsn(DB), autocommit=True)
    while True:
        rows = conn.execute(CLAIM, (BATCH,)).fetchall()
        if not rows:
            time.sleep(IDLE_S)
            continue
        for _id, payload in rows:
            common.mark(payload["i"])
        conn.execute(DONE, ([r[0] for r in rows],))


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker()
    else:
        common.run_peer(P())
