"""chancy (asyncio, PostgreSQL through psycopg 3).

The worker is `python peer_chancy.py worker`: chancy.Worker inside `async with Chancy(...)`,
its documented way to run one. Queue "bench": AsyncExecutor, concurrency CHANCY_CONC
(default 50), polling_interval CHANCY_POLL (default 5, its default), eager_polling
CHANCY_EAGER (default 1: without it a backlog drains at about concurrency / 5 s).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import subprocess
import sys
from importlib.metadata import version
from typing import Any

import psycopg

import common

DB = "chancy"
CONC = int(os.environ.get("CHANCY_CONC", "50"))
POLL = int(os.environ.get("CHANCY_POLL", "5"))
EAGER = os.environ.get("CHANCY_EAGER", "1") == "1"
#: Jobs per push_many batch.
CHUNK = 1000


def make_app() -> Any:
    from chancy import Chancy

    log = logging.getLogger("chancy-bench")
    log.setLevel(logging.WARNING)  # its per-job INFO lines ("Pulled ...") off
    log.addHandler(logging.StreamHandler())
    return Chancy(common.dsn(DB), log=log)


def queue() -> Any:
    from chancy import Chancy, Queue

    return Queue(
        "bench",
        concurrency=CONC,
        executor=Chancy.Executor.Async,
        polling_interval=POLL,
        eager_polling=EAGER,
    )


class P(common.Peer):
    name = "chancy"
    version = f"chancy {version('chancy')}"
    bulk_api = f"chancy.push_many(jobs, batch_size={CHUNK}) (one INSERT per job)"
    settings = (
        f"AsyncExecutor, queue concurrency={CONC}, polling_interval={POLL}, "
        f"eager_polling={EAGER}, notifications on (default), default plugins"
    )

    def setup(self) -> None:
        common.recreate_db(DB)
        from chancy import Job

        import chancy_jobs

        self.job = Job.from_func(chancy_jobs.noop, queue="bench")
        self.loop = asyncio.new_event_loop()
        self.app = make_app()

        async def init() -> None:
            await self.app.__aenter__()
            await self.app.migrate()
            await self.app.declare(queue(), upsert=True)

        self.loop.run_until_complete(init())
        self.conn = psycopg.connect(common.dsn(DB), autocommit=True)

    def reset(self) -> None:
        self.conn.execute("TRUNCATE chancy_jobs")

    def enqueue_bulk(self, n: int) -> None:
        async def go() -> None:
            jobs = [self.job.with_kwargs(i=i) for i in range(n)]
            async for _ in self.app.push_many(jobs, batch_size=CHUNK):
                pass

        self.loop.run_until_complete(go())

    def enqueue_one(self, i: int) -> None:
        self.loop.run_until_complete(self.app.push(self.job.with_kwargs(i=i)))

    def start_workers(
        self, nprocs: int, env: dict[str, Any], log: pathlib.Path
    ) -> list[subprocess.Popen]:
        return [common.spawn([sys.executable, __file__, "worker"], env, log) for _ in range(nprocs)]

    def done_count(self) -> int | None:
        return self.conn.execute(
            "select count(*) from chancy_jobs where state='succeeded'"
        ).fetchone()[0]

    def post_check(self, n: int) -> dict[str, Any]:
        return dict(
            self.conn.execute("select state::text, count(*) from chancy_jobs group by 1").fetchall()
        )

    def teardown(self) -> None:
        self.loop.run_until_complete(self.app.__aexit__(None, None, None))
        self.conn.close()


async def worker() -> None:
    from chancy import Worker

    async with make_app() as app, Worker(app) as w:
        await w.wait_for_shutdown()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        asyncio.run(worker())
    else:
        common.run_peer(P())
