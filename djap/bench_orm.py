"""What `djap bench --job orm` adds to a run: the bench table, the ceilings, connections.

The ORM jobs insert into and query `djap_bench_row`, made for the run and dropped
after it. Before the drain, the same body runs with no queue (bench_ceiling.py) in
fresh processes, so the drain's rate is quoted beside what the body itself allows on
this machine and database at this moment. While the drain runs, a sampler counts the
server's connections to this database other than the bench's own: what the workers hold.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

from .errors import CliError
from .percentiles import percentile

#: Seconds a ceiling process may take beyond its measuring time before it is given up.
CEILING_SLACK_S = 120.0


@contextlib.contextmanager
def bench_table(alias: str) -> Iterator[None]:
    """`djap_bench_row` for the run: made fresh, dropped afterwards (also on errors)."""
    from django.db import connections

    from djap_django.benchjobs import DjapBenchRow

    connection = connections[alias]
    table = DjapBenchRow._meta.db_table
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {connection.ops.quote_name(table)}")
    with connection.schema_editor() as editor:
        editor.create_model(DjapBenchRow)
    try:
        yield
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(DjapBenchRow)


def empty_bench_table(alias: str) -> None:
    from djap_django.benchjobs import DjapBenchRow

    DjapBenchRow.objects.using(alias).all().delete()


def _ceiling(kind: str, opts: Any, env: dict[str, str]) -> Any:
    """The ceiling's JSON object, or None when it cannot run here (no pgbench)."""
    cmd = [sys.executable, "-m", "djap.bench_ceiling", kind]
    cmd += ["--threads", str(opts.ceiling_threads), "--seconds", str(opts.ceiling_s)]
    cmd += ["--query-s", str(opts.query_s)]
    if opts.pythonpath:
        cmd += ["--pythonpath", opts.pythonpath]
    out = subprocess.run(
        cmd,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=opts.ceiling_s + CEILING_SLACK_S,
    )
    if out.returncode != 0:
        tail = " | ".join(out.stderr.strip().splitlines()[-3:]) or "no output"
        raise CliError(f"bench ceiling {kind!r} failed (exit {out.returncode}): {tail}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_ceilings(opts: Any, vendor: str, env: dict[str, str]) -> dict[str, Any]:
    """The body with no queue (the kind the run drains), and the raw statements on PG."""
    body = "async-tasks" if opts.job == "orm" else "sync-threads"
    alone = _ceiling(body, opts, env)
    result: dict[str, Any] = {
        "threads": opts.ceiling_threads,
        "body": body,
        "body_per_s": alone["per_s"],
        "body_cpu_us": alone["cpu_us_per_body"],
    }
    if vendor == "postgresql":
        result["psycopg_per_s"] = _ceiling("psycopg", opts, env)["per_s"]
        pgbench = _ceiling("pgbench", opts, env)
        result["pgbench_tps"] = None if pgbench is None else pgbench.get("per_s")
    return result


class ConnectionSampler:
    """Samples, on its own connection, how many other sessions are open on this database.

    The bench's own Django connection is left out, so during a drain the count is what
    the worker processes hold (nothing else should be connected to a bench database).
    """

    def __init__(self, alias: str, every_s: float) -> None:
        import psycopg
        from django.db import connections

        from djap_django.queue.postgres import connection_params

        connection = connections[alias]
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            self._own = [cur.fetchone()[0]]
        self._conn = psycopg.connect(**connection_params(connection), autocommit=True)
        self._every_s = every_s
        self._stop = threading.Event()
        self.samples: list[int] = []
        self._thread = threading.Thread(target=self._run, name="djap-bench-conns", daemon=True)

    def _count(self) -> int:
        row = self._conn.execute(
            """SELECT count(*) FROM pg_stat_activity
               WHERE datname = current_database() AND backend_type = 'client backend'
                 AND pid <> pg_backend_pid() AND pid <> ALL(%s)""",
            (self._own,),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            with contextlib.suppress(Exception):
                self.samples.append(self._count())

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._conn.close()

    def figures(self) -> dict[str, Any]:
        return {"max": max(self.samples, default=None), "p50": percentile(self.samples, 50)}
