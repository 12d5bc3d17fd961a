"""What every peer shares: the workload, its verification, the phases and their clocks.

Stdlib only: this module is imported in every peer's virtualenv, by the orchestrating
process (peer_*.py) and by the worker processes it starts.

Workload: N jobs whose body appends one line "<job index> <unix time at job start>" to a
marker file (one O_APPEND write, a few microseconds); with BENCH_JOB=orm the body then
also makes one insert and one query of BENCH_QUERY_S seconds through the Django ORM
(djbench/orm.py). The marker file tells when every job ran, cheaply, and proves that each
ran exactly once, whatever the peer's own bookkeeping says (which is checked as well).

Configuration comes from the environment, set by run.py:
  BENCH_PG_URL    the PostgreSQL server (no database part); each peer gets a database
  BENCH_REDIS_URL Redis for Celery          BENCH_DB_PREFIX  prefix of those databases
  BENCH_WORK      marker and SQLite files   BENCH_RESULTS    results.jsonl to append to
  N, RUNS, PHASES, LAT_JOBS, LAT_GAP_S, DRAIN_TIMEOUT_S, BENCH_SETTLE_S, BENCH_JOB
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
N = int(os.environ.get("N", "20000"))
RUNS = int(os.environ.get("RUNS", "3"))
JOB = os.environ.get("BENCH_JOB", "noop")
#: The ORM job's query takes this long on the server (seconds): pg_sleep inside it.
QUERY_S = float(os.environ.get("BENCH_QUERY_S", "0.005"))
LAT_JOBS = int(os.environ.get("LAT_JOBS", "50"))
#: Seconds between the latency phase's single enqueues.
LAT_GAP_S = float(os.environ.get("LAT_GAP_S", "0.02"))
DRAIN_TIMEOUT_S = float(os.environ.get("DRAIN_TIMEOUT_S", "300"))
#: After a drain, how long to wait for late duplicates; before the latency probes, how long
#: an idle worker waits (seconds; the smoke mode shortens it).
SETTLE_S = float(os.environ.get("BENCH_SETTLE_S", "1.0"))
#: How often the drain's clock looks at the marker file, and at the peer's own count (s).
MARK_POLL_S = 0.02
DONE_POLL_S = 0.05
WORK = pathlib.Path(os.environ.get("BENCH_WORK", "/tmp/djap-peers-work"))
RESULTS = pathlib.Path(os.environ.get("BENCH_RESULTS", str(WORK / "results.jsonl")))
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
DB_PREFIX = os.environ.get("BENCH_DB_PREFIX", "bench_")
WARMUP_ID = 999_999_999


def db_name(name: str) -> str:
    return f"{DB_PREFIX}{name}"


def dsn(name: str) -> str:
    """The URL of one peer's database on the benchmark's server."""
    return f"{PG_URL}/{db_name(name)}"


def recreate_db(name: str) -> None:
    """Drop and create a peer's database (needs psycopg in the venv)."""
    import psycopg

    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name(name)}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db_name(name)}"')


def drop_db(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name(name)}" WITH (FORCE)')


def sqlite_path(name: str) -> pathlib.Path:
    """A fresh SQLite file for one peer, in the work folder."""
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"{name}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        pathlib.Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------- the job's marker
_fds: dict[str, int] = {}


def mark(i: int) -> None:
    """Called first thing in every benchmark job: record the job's index and start time."""
    path = os.environ["BENCH_MARKS"]
    fd = _fds.get(path)
    if fd is None:
        fd = _fds[path] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, b"%d %.6f\n" % (int(i), time.time()))


class MarkCounter:
    """Counts the complete lines of a marker file, reading only what is new."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path, self.offset, self.n = path, 0, 0

    def count(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return 0
        last = data.rfind(b"\n")
        if last >= 0:
            self.n += data.count(b"\n", 0, last + 1)
            self.offset += last + 1
        return self.n


def read_marks(path: pathlib.Path) -> list[tuple[int, float]]:
    out = []
    try:
        with open(path, "rb") as f:
            for line in f:
                index, at = line.split()
                out.append((int(index), float(at)))
    except FileNotFoundError:
        pass
    return out


def verify(marks: list[tuple[int, float]], expected: Iterable[int]) -> dict[str, Any]:
    """Did every expected job run, and each exactly once?"""
    want = set(expected)
    seen: dict[int, int] = {}
    for i, _ in marks:
        seen[i] = seen.get(i, 0) + 1
    duplicates = sum(c - 1 for c in seen.values() if c > 1)
    missing = len(want - seen.keys())
    unexpected = len(seen.keys() - want)
    return {
        "executions": len(marks),
        "unique": len(seen),
        "missing": missing,
        "duplicates": duplicates,
        "unexpected": unexpected,
        "exactly_once": duplicates == 0 and missing == 0 and unexpected == 0,
    }


# ---------------------------------------------------------------- processes
#: Workers started and not yet stopped: stopped also when this process is told to stop.
_live: list[subprocess.Popen] = []


def spawn(cmd: list[str], env_extra: dict[str, Any], log: pathlib.Path) -> subprocess.Popen:
    """A worker in a process group of its own, so that stop() reaches its pool children."""
    env = os.environ.copy()
    env.update({k: str(v) for k, v in env_extra.items()})
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=HERE,
            start_new_session=True,
        )
    _live.append(proc)
    return proc


def stop(procs: list[subprocess.Popen], grace: float = 8.0) -> None:
    """SIGTERM the process groups we started, then SIGKILL what is left of them."""
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.time() + grace
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.1, deadline - time.time()))
    for p in procs:
        # Leftovers of our own group (pool children), then the leader.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)
        if p in _live:
            _live.remove(p)


def tail(path: pathlib.Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = max(0, min(len(xs) - 1, int(round(p / 100 * len(xs) + 0.5)) - 1))
    return xs[k]


# ---------------------------------------------------------------- one peer
class Peer:
    """One queue under test. Subclassed per peer; its methods run in the orchestrator."""

    name = "?"
    version = "?"
    settings = ""
    bulk_api = ""
    supports_2procs = True
    #: A peer with no queue (the ORM ceiling) has no enqueue phase.
    has_queue = True
    #: The job kinds this peer can run.
    jobs: tuple[str, ...] = ("noop",)

    def setup(self) -> None: ...

    def reset(self) -> None: ...

    def enqueue_bulk(self, n: int) -> None:
        raise NotImplementedError

    def enqueue_bulk_alt(self, n: int) -> str | None:
        """A second enqueue API, if the peer has one; returns its label."""
        return None

    def start_workers(
        self, nprocs: int, env: dict[str, Any], log: pathlib.Path
    ) -> list[subprocess.Popen]:
        raise NotImplementedError

    def done_count(self) -> int | None:
        """The peer's own count of completed jobs, or None if it keeps none."""
        return None

    def enqueue_one(self, i: int) -> None:
        raise NotImplementedError

    def post_check(self, n: int) -> dict[str, Any]:
        """What the peer's own tables say after a phase."""
        return {}

    def teardown(self) -> None: ...


def _phase_files(peer: Peer, tag: str) -> tuple[pathlib.Path, pathlib.Path]:
    marks = WORK / f"{peer.name}.{tag}.marks"
    log = WORK / f"{peer.name}.{tag}.log"
    marks.unlink(missing_ok=True)
    log.unlink(missing_ok=True)
    return marks, log


def _drain(peer: Peer, nprocs: int, n: int, tag: str) -> dict[str, Any]:
    marks, log = _phase_files(peer, tag)
    counter = MarkCounter(marks)
    t0 = time.time()
    procs = peer.start_workers(nprocs, {"BENCH_MARKS": marks}, log)
    timed_out = False
    while counter.count() < n:
        if time.time() - t0 > DRAIN_TIMEOUT_S or any(p.poll() is not None for p in procs):
            timed_out = True
            break
        time.sleep(MARK_POLL_S)
    while not timed_out:
        done = peer.done_count()
        if done is None or done >= n:
            break
        if time.time() - t0 > DRAIN_TIMEOUT_S:
            timed_out = True
            break
        time.sleep(DONE_POLL_S)
    t1 = time.time()
    time.sleep(SETTLE_S)  # late duplicates would show up now
    stop(procs)
    found = read_marks(marks)
    checked = verify(found, range(n))
    first = min((t for _, t in found), default=t1)
    result = {
        "nprocs": nprocs,
        "n": n,
        "wall_s": round(t1 - t0, 3),
        "rate": None if timed_out else round(n / (t1 - t0), 1),
        "startup_s": round(first - t0, 3),
        "steady_rate": None if timed_out else round(n / max(1e-9, t1 - first), 1),
        "timed_out": timed_out,
        "verify": checked,
        "peer_done": peer.done_count(),
        "post": peer.post_check(n),
    }
    if timed_out or not checked["exactly_once"]:
        result["worker_log_tail"] = tail(log)
    _keep_log(log, tag, peer)
    marks.unlink(missing_ok=True)
    return result


def _keep_log(log: pathlib.Path, tag: str, peer: Peer) -> None:
    text = tail(log, 25)
    if text:
        with open(RESULTS.parent / "logs" / f"{peer.name}.workers.log", "a") as f:
            f.write(f"----- {JOB} {tag} (last 25 lines)\n{text}\n")
    log.unlink(missing_ok=True)


def _latency(peer: Peer, tag: str) -> dict[str, Any]:
    marks, log = _phase_files(peer, tag)
    counter = MarkCounter(marks)
    procs = peer.start_workers(1, {"BENCH_MARKS": marks}, log)
    # Wait until the worker is up and has run one warm-up job, then let it go idle.
    peer.enqueue_one(WARMUP_ID)
    t0 = time.time()
    while counter.count() < 1 and time.time() - t0 < 120:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(MARK_POLL_S)
    time.sleep(2 * SETTLE_S)
    enqueued_at = {}
    start = time.time()
    for i in range(LAT_JOBS):
        wait = start + i * LAT_GAP_S - time.time()
        if wait > 0:
            time.sleep(wait)
        enqueued_at[i] = time.time()
        peer.enqueue_one(i)
    last = time.time()
    while counter.count() < LAT_JOBS + 1 and time.time() - last < 60:
        time.sleep(MARK_POLL_S)
    time.sleep(SETTLE_S)
    stop(procs)
    found = read_marks(marks)
    checked = verify(found, [*range(LAT_JOBS), WARMUP_ID])
    started: dict[int, float] = {}
    for i, at in found:
        started.setdefault(i, at)
    lats = [(started[i] - enqueued_at[i]) * 1000 for i in range(LAT_JOBS) if i in started]
    _keep_log(log, tag, peer)
    marks.unlink(missing_ok=True)
    return {
        "p50_ms": round(pct(lats, 50), 1),
        "p95_ms": round(pct(lats, 95), 1),
        "max_ms": round(max(lats), 1) if lats else None,
        "verify": checked,
    }


def _timed(fn: Any, n: int) -> float:
    t0 = time.perf_counter()
    fn(n)
    return round(n / (time.perf_counter() - t0), 1)


def run_peer(peer: Peer) -> None:
    """Every phase, RUNS times; one JSON line per run to stdout and to BENCH_RESULTS."""
    if JOB not in peer.jobs:
        raise SystemExit(f"{peer.name}: no {JOB!r} job in this peer (it has {peer.jobs})")
    WORK.mkdir(parents=True, exist_ok=True)
    (RESULTS.parent / "logs").mkdir(parents=True, exist_ok=True)
    default_phases = "enqueue,drain1,drain2" + (",latency" if JOB == "noop" else "")
    phases = set(os.environ.get("PHASES", default_phases).split(","))
    # Told to stop (run.py interrupted): leave no worker behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    peer.setup()
    try:
        for run in range(RUNS):
            rec: dict[str, Any] = {
                "peer": peer.name,
                "job": JOB,
                "version": peer.version,
                "settings": peer.settings,
                "bulk_api": peer.bulk_api,
                "run": run,
                "n": N,
                "ts": time.strftime("%H:%M:%S", time.gmtime()),
                # How busy the machine was: the 1-minute load average at the run's start.
                "loadavg": round(os.getloadavg()[0], 1),
            }
            if JOB == "orm":
                rec["query_ms"] = QUERY_S * 1000
            peer.reset()
            if phases & {"enqueue", "drain1"}:
                rate = _timed(peer.enqueue_bulk, N)
                if peer.has_queue:
                    rec["enqueue_rate"] = rate
            if "drain1" in phases:
                rec["drain1"] = _drain(peer, 1, N, f"r{run}.d1")
            if peer.supports_2procs and "drain2" in phases:
                peer.reset()
                t0 = time.perf_counter()
                label = peer.enqueue_bulk_alt(N)
                if label:
                    rate = round(N / (time.perf_counter() - t0), 1)
                    rec["enqueue_alt"] = {"api": label, "rate": rate}
                else:
                    rate = _timed(peer.enqueue_bulk, N)
                    if peer.has_queue:
                        rec["enqueue_rate_2"] = rate
                rec["drain2"] = _drain(peer, 2, N, f"r{run}.d2")
            # A peer without a single-enqueue API (raw) has no latency phase.
            if "latency" in phases and type(peer).enqueue_one is not Peer.enqueue_one:
                peer.reset()
                rec["latency"] = _latency(peer, f"r{run}.lat")
            line = json.dumps(rec)
            print(line, flush=True)
            with open(RESULTS, "a") as f:
                f.write(line + "\n")
    finally:
        stop(list(_live))
        peer.teardown()
