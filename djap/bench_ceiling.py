"""The ceilings `djap bench --job orm` measures beside the queue, in the same run.

- threads: the bench job's own Python body, with no queue at all, on N threads (the
  sync body) or as N asyncio tasks that each have their own thread-sensitive context,
  hence their own thread and connection (the async body). What the body costs in
  Python and in the database, with nothing of djap in the way.
- psycopg: the same two statements sent by N plain psycopg connections (and by
  pgbench when it is installed): what the database does without Django.

Each ceiling runs in a fresh interpreter, as a bench worker does, and prints one JSON
object: {"bodies": n, "seconds": s, "per_s": n / s}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

#: Bodies started before this many seconds are warm-up and not counted.
WARMUP_S = 0.5


def _timed_threads(n: int, seconds: float, body: Any) -> dict[str, Any]:
    """Run `body(k)` in a loop on `n` threads for `seconds`; count what ended in the window."""
    start = threading.Barrier(n + 1)
    counts = [0] * n
    window: dict[str, float] = {}

    def loop(t: int) -> None:
        start.wait()
        k = t
        while True:
            now = time.perf_counter()
            if now >= window["end"]:
                return
            body(k)
            k += n
            if now >= window["begin"]:
                counts[t] += 1

    threads = [threading.Thread(target=loop, args=(t,), daemon=True) for t in range(n)]
    for th in threads:
        th.start()
    window["begin"] = time.perf_counter() + WARMUP_S
    window["end"] = window["begin"] + seconds
    start.wait()
    cpu = _cpu_in_window(window["begin"])
    for th in threads:
        th.join()
    return _figures(sum(counts), seconds, time.process_time() - cpu)


def _cpu_in_window(begin: float) -> float:
    """This process's CPU time when the counted window begins (threads included)."""
    time.sleep(max(0.0, begin - time.perf_counter()))
    return time.process_time()


def _figures(bodies: int, seconds: float, cpu_s: float) -> dict[str, Any]:
    """Bodies per second, and this process's CPU per body (what limits a busy machine)."""
    return {
        "bodies": bodies,
        "seconds": seconds,
        "per_s": round(bodies / seconds, 1),
        "cpu_us_per_body": round(cpu_s / max(1, bodies) * 1e6, 1),
    }


def ceiling_sync_threads(n: int, seconds: float, query_s: float) -> dict[str, Any]:
    from djap_django.benchjobs import orm_body

    return _timed_threads(n, seconds, lambda k: orm_body(k, query_s))


def ceiling_async_tasks(n: int, seconds: float, query_s: float) -> dict[str, Any]:
    """The async body as `n` tasks, each in its own thread-sensitive context (own thread)."""
    from asgiref.sync import ThreadSensitiveContext

    from djap_django.benchjobs import aorm_body

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        begin = loop.time() + WARMUP_S
        end = begin + seconds
        counts = [0] * n
        cpu: list[float] = []

        async def clock() -> None:
            await asyncio.sleep(max(0.0, begin - loop.time()))
            cpu.append(time.process_time())

        async def one(t: int) -> None:
            async with ThreadSensitiveContext():
                k = t
                while (now := loop.time()) < end:
                    await aorm_body(k, query_s)
                    k += n
                    if now >= begin:
                        counts[t] += 1

        await asyncio.gather(clock(), *(one(t) for t in range(n)))
        return _figures(sum(counts), seconds, time.process_time() - cpu[0])

    return asyncio.run(main())


def _insert_and_query(cur: Any, k: int, query_s: float) -> None:
    cur.execute(
        "INSERT INTO djap_bench_row (i, note, created_at) VALUES (%s, %s, now()) RETURNING id",
        (k, f"bench {k}"),
    )
    pk = cur.fetchone()[0]
    cur.execute(
        "SELECT i, note, pg_sleep(%s)::text FROM djap_bench_row WHERE id = %s", (query_s, pk)
    )
    cur.fetchall()


def ceiling_psycopg(n: int, seconds: float, query_s: float) -> dict[str, Any]:
    """The two statements on `n` plain psycopg connections, one per thread, autocommit."""
    import psycopg
    from django.db import connections

    from djap_django import conf
    from djap_django.queue.postgres import connection_params

    params = connection_params(connections[conf.database_alias()])
    conns = [psycopg.connect(**params, autocommit=True) for _ in range(n)]
    cursors = [c.cursor() for c in conns]
    local = threading.local()
    pool = iter(range(n))
    lock = threading.Lock()

    def body(k: int) -> None:
        if not hasattr(local, "cur"):
            with lock:
                local.cur = cursors[next(pool)]
        _insert_and_query(local.cur, k, query_s)

    try:
        return _timed_threads(n, seconds, body)
    finally:
        for c in conns:
            c.close()


PGBENCH_SCRIPT = """\\set k random(1, 1000000)
INSERT INTO djap_bench_row (i, note, created_at) VALUES (:k, 'bench', now()) RETURNING id \\gset
SELECT i, note, pg_sleep({query_s})::text FROM djap_bench_row WHERE id = :id;
"""


def ceiling_pgbench(n: int, seconds: float, query_s: float) -> dict[str, Any] | None:
    """pgbench with `n` clients and the same two statements; None when pgbench is missing."""
    from django.db import connections

    from djap_django import conf

    exe = shutil.which("pgbench")
    if exe is None:
        return None
    s = connections[conf.database_alias()].settings_dict
    env = dict(os.environ)
    if s.get("PASSWORD"):
        env["PGPASSWORD"] = s["PASSWORD"]
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(PGBENCH_SCRIPT.format(query_s=query_s))
        script = f.name
    cmd = [exe, "-n", "-c", str(n), "-j", str(min(n, os.cpu_count() or 1))]
    cmd += ["-T", str(max(1, round(seconds))), "-f", script]
    for flag, key in (("-h", "HOST"), ("-p", "PORT"), ("-U", "USER")):
        if s.get(key):
            cmd += [flag, str(s[key])]
    cmd.append(s["NAME"])
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(script)
    found = re.search(r"tps = ([0-9.]+)", out.stdout)
    if out.returncode != 0 or not found:
        return {"error": (out.stderr.strip().splitlines() or ["pgbench failed"])[-1]}
    return {"per_s": round(float(found.group(1)), 1), "seconds": seconds}


CEILINGS = {
    "sync-threads": ceiling_sync_threads,
    "async-tasks": ceiling_async_tasks,
    "psycopg": ceiling_psycopg,
    "pgbench": ceiling_pgbench,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m djap.bench_ceiling")
    parser.add_argument("kind", choices=sorted(CEILINGS))
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--query-s", type=float, default=0.005)
    parser.add_argument("--pythonpath")
    args = parser.parse_args(argv)

    from .django_setup import setup_django

    setup_django(None, args.pythonpath)
    result = CEILINGS[args.kind](args.threads, args.seconds, args.query_s)
    print(json.dumps(result))
    sys.stdout.flush()
    # Threads stuck in a query must not keep the process alive.
    os._exit(0)


if __name__ == "__main__":
    main()
