"""djap (this checkout) on the same workload, through its public API only.

`bulk_create_new` per 5,000 to enqueue, `create_new` for the latency probes, `djap work
--concurrency N` as the worker. DJAP_DB=pg|sqlite; DJAP_CONC (default 200 for the no-op,
100 for the ORM job); DJAP_SYNC=1 runs the ORM job as a plain `def run` (on a thread);
DJAP_LABEL names the peer (djap-base for the --baseline revision).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from importlib.metadata import version
from typing import Any

import common

DBKIND = os.environ.get("DJAP_DB", "pg")
SYNC = os.environ.get("DJAP_SYNC", "0") == "1"
CONC = os.environ.get("DJAP_CONC", "200" if common.JOB == "noop" else "100")
os.environ.update(
    BENCH_DJ_APP="djap",
    BENCH_DJ_DB=DBKIND,
    BENCH_DJ_DBNAME="djap",
    BENCH_DJ_SQLITE=str(common.WORK / "djap.sqlite3"),
    DJANGO_SETTINGS_MODULE="djbench.settings",
)

import django  # noqa: E402

#: Jobs per bulk_create_new call.
CHUNK = 5000


class P(common.Peer):
    name = f"{os.environ.get('DJAP_LABEL', 'djap')}-{DBKIND}" + ("-sync" if SYNC else "")
    version = (
        f"djap {version('djap')} ({os.environ.get('DJAP_COMMIT', '?')}), Django {version('Django')}"
    )
    bulk_api = f"bulk_create_new([...]) per {CHUNK}"
    settings = f"djap work --concurrency {CONC}" + (
        ", the ORM job as `def run`" if SYNC else ", `async def run`"
    )
    jobs = ("noop", "orm") if DBKIND == "pg" else ("noop",)

    def setup(self) -> None:
        if DBKIND == "pg":
            common.recreate_db("djap")
        else:
            common.sqlite_path("djap")
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        import djap
        from djap_django.models import JobDBModel

        from djbench import jobs

        self.djap, self.M = djap, JobDBModel
        if common.JOB == "noop":
            self.job = jobs.Mark
        else:
            self.job = jobs.OrmMarkSync if SYNC else jobs.OrmMark

    def reset(self) -> None:
        self.M.objects.all().delete()
        if common.JOB == "orm":
            from djbench.models import BenchRow

            BenchRow.objects.all().delete()

    def enqueue_bulk(self, n: int) -> None:
        job = self.job
        for s in range(0, n, CHUNK):
            self.djap.bulk_create_new(
                [job.create(job.Inputs(i=i)) for i in range(s, min(n, s + CHUNK))]
            )

    def enqueue_one(self, i: int) -> None:
        self.djap.create_new(self.job.create(self.job.Inputs(i=i)))

    def start_workers(
        self, nprocs: int, env: dict[str, Any], log: pathlib.Path
    ) -> list[subprocess.Popen]:
        exe = str(pathlib.Path(sys.executable).parent / "djap")
        env = dict(env, PYTHONPATH=str(common.HERE))
        cmd = [exe, "work", "--concurrency", CONC, "--log-level", "WARNING"]
        return [common.spawn(cmd, env, log) for _ in range(nprocs)]

    def done_count(self) -> int | None:
        return self.M.objects.filter(status="done").count()

    def post_check(self, n: int) -> dict[str, Any]:
        from django.db.models import Count

        rows = self.M.objects.values("status").annotate(n=Count("id"))
        return {r["status"]: r["n"] for r in rows}


if __name__ == "__main__":
    common.run_peer(P())
