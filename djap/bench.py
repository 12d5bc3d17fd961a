"""`djap bench`: enqueue N bench jobs, drain them with P real worker processes, report.

The bench measures what a user would: bulk enqueue through `bulk_create_new`,
drain by `djap work`-style processes started fresh (their start-up is in the
wall time, and excluded from the steady rate), and pickup latency into an idle
worker through `create_new`. Every job appends "<i> <start time>" to a marker
file, so "every job ran exactly once" is checked against that file and against
the rows, not taken from the workers' word. The bench's jobs and worker rows
are deleted afterwards; the workers run only the bench's job names, so other
jobs in the queue are left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CliError
from .percentiles import percentile

#: Worker group name of the bench's processes (shown by `djap status` while it runs).
BENCH_GROUP = "djap-bench"
#: Jobs per bulk_create_new call while enqueueing.
ENQUEUE_CHUNK = 5000
#: Seconds between polls of the marker file while draining.
POLL_S = 0.02
#: The jobs `--job` names: the bench job class of each.
JOB_KINDS = ("noop", "sleep", "orm", "orm-sync")
#: Seconds between samples of the server's connection count while draining.
CONNECTION_SAMPLE_S = 0.05
#: The job name of --backlog-other rows: never registered, so never run by anyone.
OTHER_NAME = "DjapBenchOther"
#: --backlog-scheduled rows fall due this far ahead (seconds): after any bench run.
SCHEDULED_AHEAD_S = 86_400
#: Backlog rows per INSERT statement.
BACKLOG_CHUNK = 100_000


@dataclass
class BenchOptions:
    jobs: int = 10_000
    procs: int = 1
    concurrency: int = 100
    job: str = "noop"
    #: How long each `sleep` job sleeps.
    sleep_s: float = 1.0
    #: Database lanes per worker process (None: the DJAP setting).
    lanes: int | None = None
    #: How long the ORM jobs' query takes on the server (seconds).
    query_s: float = 0.005
    #: The ORM ceilings: this many threads (and connections), for this many seconds.
    ceiling_threads: int = 20
    ceiling_s: float = 5.0
    #: Single enqueues into idle workers for the latency figures (0: skip).
    latency_jobs: int = 50
    latency_gap_s: float = 0.02
    #: Give up the drain after this many seconds.
    timeout_s: float = 600.0
    settings: str | None = None
    pythonpath: str | None = None
    #: Rows of the bench's own job scheduled for tomorrow, written before the run.
    backlog_scheduled: int = 0
    #: Waiting rows of a job name the bench's workers do not take, written before the run.
    backlog_other: int = 0
    #: How the workers keep off the other rows: `include` the bench's names (as a
    #: `--gpu-procs` process does) or `exclude` the other name.
    filter: str = "include"
    #: Enqueue the drain's jobs to fall due this many seconds after the enqueue began,
    #: all within one second, and report how late each started (None: due at once).
    due_in_s: float | None = None
    #: With filter `exclude`: every name the workers leave alone (set by run_bench).
    exclude_names: list[str] = field(default_factory=list)


def read_marks(path: Path) -> list[tuple[int, float]]:
    """The marker file as (job index, start time) pairs; a torn last line is skipped."""
    marks = []
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                i, t = line.split()
                marks.append((int(i), float(t)))
    return marks


def verify(marks: list[tuple[int, float]], expected: int) -> dict[str, int]:
    """Executions seen in the marker file against the indexes 0..expected-1."""
    seen: dict[int, int] = {}
    for i, _ in marks:
        seen[i] = seen.get(i, 0) + 1
    return {
        "executions": len(marks),
        "unique": len(seen),
        "duplicates": sum(c - 1 for c in seen.values()),
        "missing": sum(1 for i in range(expected) if i not in seen),
        "unexpected": sum(1 for i in seen if not 0 <= i < expected),
    }


def max_in_flight(starts: list[float], seconds: float) -> int:
    """Most jobs started within any `seconds` window: for sleep jobs, how many ran at once."""
    ordered = sorted(starts)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] < t - seconds:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


class _MarkCounter:
    """Counts complete lines of the marker file, reading only what is new."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.count = path, 0, 0

    def poll(self) -> int:
        with contextlib.suppress(FileNotFoundError), open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
            last = data.rfind(b"\n")
            if last >= 0:
                self.count += data.count(b"\n", 0, last + 1)
                self.offset += last + 1
        return self.count


class _Workers:
    """The bench's worker processes: started fresh, sampled with psutil, stopped by pid."""

    def __init__(self, opts: BenchOptions, env: dict[str, str], logdir: Path) -> None:
        import psutil

        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        for n in range(opts.procs):
            log = logdir / f"worker-{n}.log"
            cmd = [sys.executable, "-m", "djap.bench", "--concurrency", str(opts.concurrency)]
            if opts.lanes is not None:
                cmd += ["--lanes", str(opts.lanes)]
            for name in opts.exclude_names:
                cmd += ["--exclude", name]
            if opts.pythonpath:
                cmd += ["--pythonpath", opts.pythonpath]
            with open(log, "wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        cmd,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
            self.logs.append(log)
        self.ps = [psutil.Process(p.pid) for p in self.procs]
        self.rss_peak = 0

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def check_alive(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                raise CliError(
                    f"bench worker {proc.pid} exited with code {proc.returncode}: "
                    + (" | ".join(tail) or "no output")
                )

    def cpu_s(self) -> float:
        total = 0.0
        for p in self.ps:
            with contextlib.suppress(Exception):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def rss(self) -> int:
        """The largest RSS of one worker now (bytes); also tracks the peak."""
        now = 0
        for p in self.ps:
            with contextlib.suppress(Exception):
                now = max(now, p.memory_info().rss)
        self.rss_peak = max(self.rss_peak, now)
        return now

    def stop(self, grace_s: float = 30.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not enabled,
    )
    with progress:
        yield progress


def _pending_count(alias: str, names: list[str]) -> int:
    from djap_django.models import JobDBModel

    return (
        JobDBModel.objects.using(alias)
        .filter(_own_rows(), name__in=names, status__in=["new", "in_progress"])
        .count()
    )


def _status_counts(alias: str, names: list[str]) -> dict[str, int]:
    from django.db.models import Count

    from djap_django.models import JobDBModel

    rows = (
        JobDBModel.objects.using(alias)
        .filter(_own_rows(), name__in=names)
        .values("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {r["status"]: r["n"] for r in rows}


def _cleanup(alias: str, names: list[str], pids: list[int]) -> None:
    from djap_django.models import JobDBModel, WorkerDBModel

    _delete_backlog(alias)
    JobDBModel.objects.using(alias).filter(name__in=names).delete()
    if pids:
        WorkerDBModel.objects.using(alias).filter(
            group=BENCH_GROUP, pid__in=pids, host=socket.gethostname()
        ).delete()


# Backlog rows: the bench's own job scheduled for tomorrow (it must never run in the
# bench), and waiting rows of a name no worker takes. Written in big INSERT ... SELECT
# statements, so that a million rows take seconds, not minutes of bulk_create_new; the
# scheduled ones as enqueue writes them (`scheduled`: off the claim path).
_BACKLOG_COLUMNS = (
    "name, status, inputs, error, errors, attempts, max_attempts, crashes, priority, "
    "run_after, scheduled, created_at, waiting_for"
)
_BACKLOG_PG = f"""
INSERT INTO djap_job ({_BACKLOG_COLUMNS})
SELECT %(name)s, 'new', jsonb_build_object('i', -1 - g), '', '[]'::jsonb, 0, 1, 0, 0,
       now() + make_interval(secs => %(ahead)s), %(ahead)s > 0, now(), 0
FROM generate_series(%(lo)s, %(hi)s - 1) AS g
"""
_BACKLOG_SQLITE = f"""
WITH RECURSIVE g(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM g WHERE i + 1 < ?)
INSERT INTO djap_job ({_BACKLOG_COLUMNS})
SELECT ?, 'new', json_object('i', -1 - i), '', '[]', 0, 1, 0, 0, ?, ?, ?, 0 FROM g
"""


def write_backlog(alias: str, scheduled: int, other: int) -> float:
    """Write the backlog rows (see _BACKLOG_PG); returns the seconds it took."""
    import datetime as dt

    from django.db import connections, transaction

    from djap_django.benchjobs import DjapBenchNoop

    connection = connections[alias]
    started = time.perf_counter()
    batches = [
        (DjapBenchNoop.__name__, SCHEDULED_AHEAD_S, scheduled),
        # Waiting rows: due already (NULL would do too, but then they would look like the
        # bench's own jobs to the cleanup and the counts, which key on run_after NULL).
        (OTHER_NAME, -SCHEDULED_AHEAD_S, other),
    ]
    for name, ahead, count in batches:
        for lo in range(0, count, BACKLOG_CHUNK):
            hi = min(count, lo + BACKLOG_CHUNK)
            with transaction.atomic(using=alias), connection.cursor() as cursor:
                if connection.vendor == "postgresql":
                    cursor.execute(
                        _BACKLOG_PG,
                        {"name": name, "ahead": ahead, "lo": lo, "hi": hi},
                    )
                else:
                    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
                    cursor.execute(
                        _BACKLOG_SQLITE,
                        [lo, hi, name, str(now + dt.timedelta(seconds=ahead)), ahead > 0, str(now)],
                    )
    if scheduled or other:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # A table that has been sitting there: statistics and visibility map current.
                cursor.execute("VACUUM ANALYZE djap_job")
    return time.perf_counter() - started


def _delete_backlog(alias: str) -> None:
    from djap_django.benchjobs import NAMES
    from djap_django.models import JobDBModel

    JobDBModel.objects.using(alias).filter(name=OTHER_NAME).delete()
    JobDBModel.objects.using(alias).filter(name__in=NAMES).exclude(_own_rows()).delete()


def _own_rows() -> Any:
    """The bench's own jobs, not its backlog: due now, or (--due-in) within the hour."""
    import datetime as dt

    from django.db.models import Q
    from django.utils import timezone

    soon = timezone.now() + dt.timedelta(seconds=SCHEDULED_AHEAD_S / 2)
    return Q(run_after__isnull=True) | Q(run_after__lt=soon)


def _due_time(due_at: float, i: int, n: int) -> Any:
    """When job `i` of `n` falls due under --due-in: spread over the second from `due_at`."""
    import datetime as dt

    return dt.datetime.fromtimestamp(due_at + i / n, dt.UTC)


def _enqueue(opts: BenchOptions, progress: Any, due_at: float | None = None) -> float:
    """Bulk-enqueue the drain's jobs; returns the seconds it took."""
    from djap_django.benchjobs import DjapBenchNoop, DjapBenchOrm, DjapBenchOrmSync, DjapBenchSleep
    from djap_django.jobs import bulk_create_new

    orm_cls = {"orm": DjapBenchOrm, "orm-sync": DjapBenchOrmSync}.get(opts.job)

    task = progress.add_task("enqueue", total=opts.jobs, rate="")
    started = time.perf_counter()
    for lo in range(0, opts.jobs, ENQUEUE_CHUNK):
        hi = min(opts.jobs, lo + ENQUEUE_CHUNK)
        if opts.job == "sleep":
            batch = [
                DjapBenchSleep.create(DjapBenchSleep.Inputs(i=i, seconds=opts.sleep_s))
                for i in range(lo, hi)
            ]
        elif orm_cls is not None:
            batch = [
                orm_cls.create(orm_cls.Inputs(i=i, query_s=opts.query_s)) for i in range(lo, hi)
            ]
        elif due_at is not None:
            # --due-in: all of them fall due within one second, spread evenly over it.
            batch = [
                DjapBenchNoop.create(
                    DjapBenchNoop.Inputs(i=i), run_after=_due_time(due_at, i, opts.jobs)
                )
                for i in range(lo, hi)
            ]
        else:
            batch = [DjapBenchNoop.create(DjapBenchNoop.Inputs(i=i)) for i in range(lo, hi)]
        bulk_create_new(batch)
        elapsed = time.perf_counter() - started
        progress.update(task, completed=hi, rate=f"{hi / elapsed:,.0f} jobs/s")
    return time.perf_counter() - started


def _wait_for(
    workers: _Workers,
    counter: _MarkCounter,
    target: int,
    deadline: float,
    on_poll: Any = None,
) -> None:
    """Poll the marker file until `target` executions are seen (or fail at the deadline)."""
    while counter.poll() < target:
        workers.check_alive()
        if time.monotonic() > deadline:
            raise CliError(
                f"bench timed out: {counter.count} of {target} jobs ran; "
                "raise --timeout or check the worker logs"
            )
        if on_poll is not None:
            on_poll(counter.count)
        time.sleep(POLL_S)


def _wait_rows_finished(alias: str, names: list[str], workers: _Workers, deadline: float) -> None:
    """Wait until no bench row is new or in progress: completions are written."""
    while _pending_count(alias, names):
        workers.check_alive()
        if time.monotonic() > deadline:
            raise CliError("bench timed out waiting for completions to be written")
        time.sleep(POLL_S)


def run_bench(opts: BenchOptions, show_progress: bool = True) -> dict[str, Any]:
    """Run the benchmark against the configured database; returns the figures."""
    from django.db import connections

    from djap_django import benchjobs, conf

    if opts.job not in JOB_KINDS:
        raise CliError(f"--job must be one of {', '.join(JOB_KINDS)}, not {opts.job!r}")
    if opts.filter not in ("include", "exclude"):
        raise CliError(f"--filter must be include or exclude, not {opts.filter!r}")
    alias = conf.database_alias()
    names = benchjobs.NAMES
    vendor = connections[alias].vendor
    latency_jobs = max(0, opts.latency_jobs)
    expected = opts.jobs + latency_jobs

    _refuse_if_running(alias)
    if opts.filter == "exclude":
        opts.exclude_names = _names_to_exclude(alias, names)
    from django.conf import settings

    if settings.DEBUG:
        # Django keeps every query of a DEBUG process in memory and formats it: enqueue
        # figures come out lower than in production. Said, not refused.
        print("djap bench: settings.DEBUG is True; enqueue figures will be low", file=sys.stderr)
    # SIGTERM (a timeout, Ctrl-C in a script) still stops the workers and cleans up.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return _run(opts, alias, names, vendor, latency_jobs, expected, show_progress)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _names_to_exclude(alias: str, names: list[str]) -> list[str]:
    """With --filter exclude: the other name, and every name of the user's own jobs.

    The bench must leave the user's jobs alone; an exclude-only worker would take them.
    """
    from djap_django import registry
    from djap_django.models import JobDBModel

    waiting = JobDBModel.objects.using(alias).exclude(name__in=names).values_list("name")
    others = {OTHER_NAME, *registry.names(), *(n for (n,) in waiting.distinct())}
    return sorted(others - set(names))


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _refuse_if_running(alias: str) -> None:
    """Two benches on one database would run each other's jobs: refuse the second."""
    import datetime as dt

    from django.utils import timezone

    from djap_django import conf
    from djap_django.models import WorkerDBModel

    fresh = timezone.now() - dt.timedelta(seconds=conf.get("STALE_AFTER"))
    running = list(
        WorkerDBModel.objects.using(alias)
        .filter(group=BENCH_GROUP, state__in=["running", "draining"], last_heartbeat__gte=fresh)
        .values_list("host", "pid")
    )
    if running:
        where = ", ".join(f"{host}:{pid}" for host, pid in running)
        raise CliError(
            f"another djap bench is running on this database (workers {where}); "
            "wait for it to finish or stop those processes"
        )


def _run(
    opts: BenchOptions,
    alias: str,
    names: list[str],
    vendor: str,
    latency_jobs: int,
    expected: int,
    show_progress: bool,
) -> dict[str, Any]:
    from djap_django import benchjobs
    from djap_django.models import WorkerDBModel

    from . import bench_orm

    orm = opts.job in ("orm", "orm-sync")
    with tempfile.TemporaryDirectory(prefix="djap-bench-") as tmp, contextlib.ExitStack() as stack:
        marks = Path(tmp) / "marks"
        env = dict(os.environ, **{benchjobs.MARKS_ENV: str(marks), "PYTHONUNBUFFERED": "1"})
        workers: _Workers | None = None
        ceilings: dict[str, Any] | None = None
        connections: dict[str, Any] | None = None
        try:
            _cleanup(alias, names, [])  # rows left by a bench that was killed
            if orm:
                stack.enter_context(bench_orm.bench_table(alias))
                ceilings = bench_orm.run_ceilings(opts, vendor, env)
                bench_orm.empty_bench_table(alias)
            backlog_s = write_backlog(alias, opts.backlog_scheduled, opts.backlog_other)
            with _progress(show_progress) as progress:
                due_at = None if opts.due_in_s is None else time.time() + opts.due_in_s
                enqueue_s = _enqueue(opts, progress, due_at)

                counter = _MarkCounter(marks)
                drain = progress.add_task("drain", total=opts.jobs, rate="")
                t0 = time.time()
                workers = _Workers(opts, env, Path(tmp))
                deadline = time.monotonic() + opts.timeout_s
                samples: dict[str, float] = {}

                def on_poll(done: int) -> None:
                    if done and "cpu0" not in samples:
                        # Start-up (imports, Django setup) is not the queue's cost per job.
                        samples["cpu0"], samples["done0"] = workers.cpu_s(), done
                    rss = workers.rss()
                    if done >= opts.jobs // 10 and "rss_warm" not in samples:
                        samples["rss_warm"] = rss
                    elapsed = time.time() - t0
                    progress.update(drain, completed=done, rate=f"{done / elapsed:,.0f} jobs/s")

                with contextlib.ExitStack() as sampling:
                    sampler = None
                    if orm and vendor == "postgresql":
                        sampler = sampling.enter_context(
                            bench_orm.ConnectionSampler(alias, CONNECTION_SAMPLE_S)
                        )
                    _wait_for(workers, counter, opts.jobs, deadline, on_poll)
                    _wait_rows_finished(alias, names, workers, deadline)
                if sampler is not None:
                    connections = sampler.figures()
                t1 = time.time()
                cpu1 = workers.cpu_s()
                rss_end = workers.rss()
                progress.update(drain, completed=opts.jobs)

                latencies = _latency_phase(
                    opts, alias, names, workers, counter, progress, deadline, latency_jobs
                )
            cpu_jobs = opts.jobs - samples.get("done0", 0)
            worker_pids = workers.pids
            workers.stop()
            workers_done = sum(
                WorkerDBModel.objects.using(alias)
                .filter(group=BENCH_GROUP, pid__in=worker_pids)
                .values_list("jobs_done", flat=True)
            )
            statuses = _status_counts(alias, names)
        finally:
            if workers is not None:
                workers.stop()
            _cleanup(alias, names, workers.pids if workers else [])

        all_marks = read_marks(marks)

    drain_marks = [t for i, t in all_marks if i < opts.jobs]
    first = min(drain_marks, default=t1)
    checks = verify(all_marks, expected)
    result: dict[str, Any] = {
        "database": vendor,
        "job": opts.job,
        "jobs": opts.jobs,
        "procs": opts.procs,
        "concurrency": opts.concurrency,
        "lanes": opts.lanes,
        "backlog": {
            "scheduled": opts.backlog_scheduled,
            "other": opts.backlog_other,
            "filter": opts.filter,
            "write_s": round(backlog_s, 2),
        },
        "enqueue_jobs_per_s": round(opts.jobs / enqueue_s, 1),
        "drain_jobs_per_s": round(opts.jobs / (t1 - t0), 1),
        "drain_steady_jobs_per_s": round(opts.jobs / max(1e-9, t1 - first), 1),
        "drain_wall_s": round(t1 - t0, 3),
        "startup_s": round(first - t0, 3),
        "latency_ms": {
            "p50": _round(percentile(latencies, 50)),
            "p95": _round(percentile(latencies, 95)),
            "p99": _round(percentile(latencies, 99)),
            "max": _round(max(latencies, default=None)),
            "n": len(latencies),
        },
        "cpu_us_per_job": round((cpu1 - samples.get("cpu0", 0.0)) / max(1, cpu_jobs) * 1e6, 1),
        "worker_rss_mb": {
            "warm": _mb(samples.get("rss_warm", rss_end)),
            "end": _mb(rss_end),
            "peak": _mb(workers.rss_peak),
        },
        **checks,
        "rows": statuses,
        "workers_jobs_done": workers_done,
    }
    if opts.job == "sleep":
        result["max_in_flight"] = max_in_flight(drain_marks, opts.sleep_s)
    if ceilings is not None:
        result["query_ms"] = round(opts.query_s * 1000, 3)
        result["ceiling"] = ceilings
        result["drain_vs_body_ceiling"] = round(
            result["drain_steady_jobs_per_s"] / max(1e-9, ceilings["body_per_s"]), 3
        )
        result["worker_connections"] = connections
    if due_at is not None:
        # How late each job started after its run_after (negative: early, a bug).
        late = [
            (t - _due_time(due_at, i, opts.jobs).timestamp()) * 1000
            for i, t in all_marks
            if i < opts.jobs
        ]
        result["due_in_s"] = opts.due_in_s
        result["due_late_ms"] = {
            "p50": _round(percentile(late, 50)),
            "p95": _round(percentile(late, 95)),
            "max": _round(max(late, default=None)),
            "min": _round(min(late, default=None)),
            "n": len(late),
        }
    result["all_ran_once"] = (
        checks["executions"] == expected
        and checks["unique"] == expected
        and checks["duplicates"] == 0
        and checks["missing"] == 0
        and checks["unexpected"] == 0
        and statuses == {"done": expected}
        and workers_done == expected
    )
    return result


def _latency_phase(
    opts: BenchOptions,
    alias: str,
    names: list[str],
    workers: _Workers,
    counter: _MarkCounter,
    progress: Any,
    deadline: float,
    latency_jobs: int,
) -> list[float]:
    """Single enqueues into idle workers, `latency_gap_s` apart: start time minus enqueue time."""
    from djap_django.benchjobs import DjapBenchNoop
    from djap_django.jobs import create_new

    if not latency_jobs:
        return []
    task = progress.add_task("latency", total=latency_jobs, rate="")
    time.sleep(0.5)  # let the workers go idle (waiting on LISTEN or polling)
    enqueued: dict[int, float] = {}
    for k in range(latency_jobs):
        i = opts.jobs + k
        enqueued[i] = time.time()
        create_new(DjapBenchNoop.create(DjapBenchNoop.Inputs(i=i)))
        progress.update(task, completed=k + 1)
        time.sleep(opts.latency_gap_s)
    deadline = max(deadline, time.monotonic() + 60)
    _wait_for(workers, counter, opts.jobs + latency_jobs, deadline)
    _wait_rows_finished(alias, names, workers, deadline)
    started = {i: t for i, t in read_marks(counter.path) if i in enqueued}
    return [(started[i] - enqueued[i]) * 1000 for i in enqueued if i in started]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _mb(value: float) -> float:
    return round(value / 2**20, 1)


def render(result: dict[str, Any]) -> Any:
    """The figures as a rich table."""
    from rich.table import Table

    lat = result["latency_ms"]
    rss = result["worker_rss_mb"]
    title = (
        f"djap bench: {result['jobs']:,} {result['job']} jobs on {result['database']}, "
        f"{result['procs']} process(es) x concurrency {result['concurrency']}"
    )
    backlog = result["backlog"]
    if backlog["scheduled"] or backlog["other"]:
        title += (
            f", beside {backlog['scheduled']:,} scheduled and {backlog['other']:,} "
            f"waiting rows of another name ({backlog['filter']})"
        )
    table = Table(title=title, show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("enqueue (bulk_create_new)", f"{result['enqueue_jobs_per_s']:,.0f} jobs/s"),
        ("drain, wall (incl. start-up)", f"{result['drain_jobs_per_s']:,.0f} jobs/s"),
        ("drain, steady (first job on)", f"{result['drain_steady_jobs_per_s']:,.0f} jobs/s"),
        ("drain wall time", f"{result['drain_wall_s']:.2f} s"),
        ("worker start-up", f"{result['startup_s']:.2f} s"),
        (
            f"pickup latency p50/p95/p99 (n={lat['n']})",
            "-" if lat["p50"] is None else f"{lat['p50']} / {lat['p95']} / {lat['p99']} ms",
        ),
        ("worker CPU per job", f"{result['cpu_us_per_job']:,.0f} us"),
        ("worker RSS warm/end/peak", f"{rss['warm']} / {rss['end']} / {rss['peak']} MB"),
    ]
    if "max_in_flight" in result:
        rows.append(("sleeping jobs in flight (max)", f"{result['max_in_flight']:,}"))
    if "ceiling" in result:
        rows += _ceiling_rows(result)
    if "due_late_ms" in result:
        late = result["due_late_ms"]
        rows.append(
            (
                "start after run_after p50/p95/max",
                f"{late['p50']} / {late['p95']} / {late['max']} ms",
            )
        )
    rows += [
        (
            "executions / unique / duplicates / missing",
            f"{result['executions']} / {result['unique']} / {result['duplicates']} / "
            f"{result['missing']}",
        ),
        ("every job ran exactly once", "yes" if result["all_ran_once"] else "NO"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _ceiling_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    ceiling = result["ceiling"]
    n = ceiling["threads"]
    rows = [
        (f"the body alone on {n} threads, no queue", f"{ceiling['body_per_s']:,.0f} bodies/s"),
        ("drain, steady / the body alone", f"{result['drain_vs_body_ceiling']:.2f}x"),
        ("CPU per body alone, no queue", f"{ceiling['body_cpu_us']:,.0f} us"),
    ]
    if "psycopg_per_s" in ceiling:
        rows.append((f"the 2 statements, psycopg x {n}", f"{ceiling['psycopg_per_s']:,.0f} /s"))
        if ceiling.get("pgbench_tps") is not None:
            rows.append((f"the 2 statements, pgbench -c {n}", f"{ceiling['pgbench_tps']:,.0f} tps"))
    conns = result.get("worker_connections")
    if conns and conns["max"] is not None:
        rows.append(("connections held by workers max/p50", f"{conns['max']} / {conns['p50']}"))
    return rows


def worker_main(argv: list[str] | None = None) -> None:
    """A bench worker process: `djap work` that also knows the bench's jobs, and only them."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m djap.bench")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--lanes", type=int)
    parser.add_argument("--pythonpath")
    parser.add_argument("--exclude", action="append", default=[])
    args = parser.parse_args(argv)

    from .django_setup import setup_django

    setup_django(None, args.pythonpath)
    from djap_django import benchjobs
    from djap_django.runner import run_worker_process
    from djap_django.worker import WorkerOptions

    options = WorkerOptions(
        concurrency=args.concurrency,
        lanes=args.lanes,
        # Only the bench's jobs: by name, or by leaving out the backlog's other name.
        include=None if args.exclude else list(benchjobs.NAMES),
        exclude=args.exclude,
        group=BENCH_GROUP,
        grace=5,
        # Exit when the bench is gone (killed): a stray bench worker would take the next
        # bench's jobs and write their marks where nobody reads them.
        supervisor_pid=os.getppid(),
    )
    sys.exit(run_worker_process(options, "WARNING"))


if __name__ == "__main__":
    worker_main()
