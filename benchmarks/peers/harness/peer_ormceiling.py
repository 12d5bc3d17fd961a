"""The ORM job's body with no queue at all: N bodies on CEILING_THREADS threads per process.

The ceiling the queues' ORM figures are read against, as `djap bench --job orm` measures
it: the same Python body (djbench/orm.py), the same server, no claiming or bookkeeping.
Each process takes every nprocs-th index and runs them on its thread pool, one Django
connection per thread (CONN_MAX_AGE=None). Runs in the djap venv (it only needs Django).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from typing import Any

import common

THREADS = int(os.environ.get("CEILING_THREADS", "20"))
os.environ.update(
    BENCH_DJ_APP="none",
    BENCH_DJ_DB="pg",
    BENCH_DJ_DBNAME="ceiling",
    DJANGO_SETTINGS_MODULE="djbench.settings",
)

import django  # noqa: E402

#: A finished ceiling process waits to be stopped, as a worker with nothing left does (s).
IDLE_S = 0.2


class P(common.Peer):
    name = f"orm-body-{THREADS}-threads"
    version = f"Django {version('Django')}, psycopg {version('psycopg')}"
    bulk_api = "none: no queue"
    settings = f"{THREADS} threads per process, each with its own persistent connection"
    has_queue = False
    jobs = ("orm",)

    def setup(self) -> None:
        common.recreate_db("ceiling")
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

    def reset(self) -> None:
        from djbench.models import BenchRow

        BenchRow.objects.all().delete()

    def enqueue_bulk(self, n: int) -> None:
        self.n = n

    def start_workers(
        self, nprocs: int, env: dict[str, Any], log: pathlib.Path
    ) -> list[subprocess.Popen]:
        return [
            common.spawn(
                [sys.executable, __file__, "worker", str(k), str(nprocs), str(self.n)], env, log
            )  # fmt: skip
            for k in range(nprocs)
        ]

    def done_count(self) -> int | None:
        from djbench.models import BenchRow

        return BenchRow.objects.count()


def worker(k: int, nprocs: int, n: int) -> None:
    django.setup()
    from djbench.orm import orm_body

    def one(i: int) -> None:
        common.mark(i)
        orm_body(i)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(k, n, nprocs)))
    while True:
        time.sleep(IDLE_S)


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker(*(int(a) for a in sys.argv[2:5]))
    else:
        common.run_peer(P())
