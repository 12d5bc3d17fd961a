"""pgqueuer (asyncio, PostgreSQL through asyncpg).

The worker is `python peer_pgqueuer.py worker`: its documented programmatic API
(PgQueuer(AsyncpgDriver(conn)) with an @entrypoint, then PgQueuer.run(batch_size=...)).
pgqueuer 1.6.0's `pgq run` CLI crashes at start-up with typer 0.29
(AttributeError: 'str' object has no attribute 'name' in setup_fancy_logger).
PGQ_BATCH: batch_size (100 here; its default of 10 drained at about half the rate).
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
from importlib.metadata import version
from typing import Any

import asyncpg
import psycopg

import common

DB = "pgqueuer"
BATCH = os.environ.get("PGQ_BATCH", "100")
PGQ = os.path.join(os.path.dirname(sys.executable), "pgq")
#: Jobs per Queries.enqueue call.
CHUNK = 1000


async def create_pgqueuer() -> Any:
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver

    conn = await asyncpg.connect(common.dsn(DB))
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("noop")
    async def noop(job: Any) -> None:
        common.mark(int(job.payload))
        await asyncio.sleep(0)

    return pgq


class P(common.Peer):
    name = "pgqueuer"
    version = f"pgqueuer {version('pgqueuer')}, asyncpg {version('asyncpg')}"
    bulk_api = f"Queries.enqueue(names, payloads, priorities) per {CHUNK} (one statement)"
    settings = (
        f"PgQueuer.run(batch_size={BATCH}) (its default is 10), asyncpg driver, "
        "no per-entrypoint concurrency limit (default), LISTEN/NOTIFY"
    )

    def setup(self) -> None:
        common.recreate_db(DB)
        subprocess.run(
            [PGQ, "--pg-dsn", common.dsn(DB), "install"], check=True, stdout=subprocess.DEVNULL
        )
        self.loop = asyncio.new_event_loop()
        self.aconn = self.loop.run_until_complete(asyncpg.connect(common.dsn(DB)))
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        self.q = Queries(AsyncpgDriver(self.aconn))
        self.conn = psycopg.connect(common.dsn(DB), autocommit=True)
        self.expected = 0

    def reset(self) -> None:
        self.conn.execute("TRUNCATE pgqueuer, pgqueuer_log")

    def enqueue_bulk(self, n: int) -> None:
        self.expected = n

        async def go() -> None:
            for s in range(0, n, CHUNK):
                r = range(s, min(n, s + CHUNK))
                await self.q.enqueue(["noop"] * len(r), [str(i).encode() for i in r], [0] * len(r))

        self.loop.run_until_complete(go())

    def enqueue_one(self, i: int) -> None:
        self.loop.run_until_complete(self.q.enqueue("noop", str(i).encode()))

    def start_workers(
        self, nprocs: int, env: dict[str, Any], log: pathlib.Path
    ) -> list[subprocess.Popen]:
        return [common.spawn([sys.executable, __file__, "worker"], env, log) for _ in range(nprocs)]

    def done_count(self) -> int | None:
        # Finished jobs are deleted from the queue table (and logged in pgqueuer_log).
        left = self.conn.execute("select count(*) from pgqueuer").fetchone()[0]
        return self.expected - left

    def post_check(self, n: int) -> dict[str, Any]:
        rows = self.conn.execute(
            "select status::text, count(*) from pgqueuer_log group by 1"
        ).fetchall()
        out: dict[str, Any] = {f"log_{s}": c for s, c in rows}
        out["left_in_queue"] = self.conn.execute("select count(*) from pgqueuer").fetchone()[0]
        return out

    def teardown(self) -> None:
        self.loop.run_until_complete(self.aconn.close())
        self.conn.close()


async def worker() -> None:
    pgq = await create_pgqueuer()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, pgq.qm.shutdown.set)
    await pgq.run(batch_size=int(BATCH))


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        asyncio.run(worker())
    else:
        common.run_peer(P())
