"""One snapshot of the queue and its workers: the query set `djap status` and the dashboard share.

A `Snapshot` is a plain frozen value. `take_snapshot` fills it from the database
(every host's workers, via the worker table); the supervisor adds what only it
knows (CPU, RSS, restarts, throughput, events) with `dataclasses.replace`; and
`djap.dashboard.render` draws it without touching anything else.
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

#: Job statuses that are still to run or running: cheap to count on every refresh.
ACTIVE_STATUSES = ("not_ready", "new", "in_progress")
#: Every status, in the order tables show them.
ALL_STATUSES = ("not_ready", "new", "in_progress", "done", "failed", "cancelled")
#: Worker rows that stopped or died within this many seconds are still shown.
RECENT_WORKERS_S = 300.0
#: How many recent failures a snapshot carries.
FAILURES_SHOWN = 5


@dataclass(frozen=True, slots=True)
class WorkerView:
    """One worker process as its row (and, for the supervisor's children, psutil) sees it."""

    id: int
    host: str
    pid: int
    group: str
    state: str
    alive: bool
    started_at: dt.datetime
    last_heartbeat: dt.datetime
    heartbeat_age: float
    jobs_done: int
    jobs_failed: int
    in_flight: int
    concurrency: int = 0
    include: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    supervisor_pid: int | None = None

    def takes(self, name: str) -> bool:
        """Whether this worker's include/exclude filters let it claim jobs named `name`."""
        return (self.include is None or name in self.include) and name not in self.exclude


@dataclass(frozen=True, slots=True)
class ProcessView:
    """One of the supervisor's own processes: what psutil and the supervisor know of it."""

    name: str
    group: str
    pid: int | None
    state: str
    uptime: float = 0.0
    restarts: int = 0
    cpu_percent: float = 0.0
    rss: int = 0
    in_flight: int = 0
    done: int = 0
    failed: int = 0
    jobs_per_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Failure:
    job_id: int
    name: str
    finished_at: dt.datetime | None
    error_line: str


@dataclass(frozen=True, slots=True)
class Event:
    """Something the supervisor did to a process, and why (a restart, a recycle)."""

    at: dt.datetime
    text: str


@dataclass(frozen=True, slots=True)
class Throughput:
    """Jobs finished per second: now, on average over the run, and a recent history."""

    now: float
    average: float
    total: int
    seconds: float
    history: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: dt.datetime
    #: {job name: {status: count}}
    queue: dict[str, dict[str, int]]
    workers: tuple[WorkerView, ...]
    failures: tuple[Failure, ...] = ()
    #: Job names with runnable jobs that no live worker would claim.
    stranded: tuple[str, ...] = ()
    #: Set by the supervisor: its own processes, their throughput and what it did to them.
    processes: tuple[ProcessView, ...] = ()
    throughput: Throughput | None = None
    events: tuple[Event, ...] = ()
    title: str = "djap"
    #: {status: count} of pipelines (running, done, failed, cancelled).
    pipelines: dict[str, int] = field(default_factory=dict)

    def totals(self) -> dict[str, int]:
        """{status: count} over every job name."""
        out: dict[str, int] = {}
        for counts in self.queue.values():
            for status, n in counts.items():
                out[status] = out.get(status, 0) + n
        return out


# -- queries ---------------------------------------------------------------------------


def db_now(alias: str) -> dt.datetime:
    """The database's clock: heartbeats on PostgreSQL are written with its now()."""
    from django.db import connections
    from django.utils import timezone

    connection = connections[alias]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT now()")
            return cursor.fetchone()[0]
    return timezone.now()


def query_queue(alias: str, statuses: tuple[str, ...] | None = None) -> dict[str, dict[str, int]]:
    """Counts per job name and status; `statuses` limits the scan (ACTIVE_STATUSES is cheap)."""
    from django.db.models import Count

    from djap_django.models import JobDBModel

    rows = JobDBModel.objects.using(alias)
    if statuses is not None:
        rows = rows.filter(status__in=statuses)
    out: dict[str, dict[str, int]] = {}
    for row in rows.values("name", "status").annotate(n=Count("id")).order_by():
        out.setdefault(row["name"], {})[row["status"]] = row["n"]
    return dict(sorted(out.items()))


def query_workers(alias: str, now: dt.datetime, stale_after: float) -> list[WorkerView]:
    """Live workers on every host, and those that ended recently."""
    from django.db.models import Q

    from djap_django.models import WorkerDBModel

    recent = now - dt.timedelta(seconds=RECENT_WORKERS_S)
    rows = (
        WorkerDBModel.objects.using(alias)
        .filter(Q(state__in=("running", "draining")) | Q(last_heartbeat__gte=recent))
        .order_by("host", "group", "id")
    )
    views = []
    for w in rows:
        age = max(0.0, (now - w.last_heartbeat).total_seconds())
        views.append(
            WorkerView(
                id=w.pk,
                host=w.host,
                pid=w.pid,
                group=w.group,
                state=w.state,
                alive=w.state in ("running", "draining") and age <= stale_after,
                started_at=w.started_at,
                last_heartbeat=w.last_heartbeat,
                heartbeat_age=age,
                jobs_done=w.jobs_done,
                jobs_failed=w.jobs_failed,
                in_flight=w.in_flight,
                concurrency=w.concurrency,
                include=w.include,
                exclude=list(w.exclude or []),
                supervisor_pid=w.supervisor_pid,
            )
        )
    return views


def query_pipelines(alias: str) -> dict[str, int]:
    """{status: count} of pipeline runs."""
    from django.db.models import Count

    from djap_django.models import PipelineDBModel

    rows = PipelineDBModel.objects.using(alias).values_list("status").annotate(n=Count("id"))
    return dict(rows.order_by())


def query_failures(alias: str, limit: int = FAILURES_SHOWN) -> list[Failure]:
    from djap_django.models import JobDBModel

    rows = (
        JobDBModel.objects.using(alias)
        # finished_at is set on every failed row; saying so lets the partial index
        # djap_job_finished serve this instead of a scan of the whole table.
        .filter(status="failed", finished_at__isnull=False)
        .order_by("-finished_at", "-id")
        .values("id", "name", "finished_at", "error")[:limit]
    )
    return [Failure(r["id"], r["name"], r["finished_at"], error_line(r["error"])) for r in rows]


def query_runnable_names(alias: str, now: dt.datetime) -> list[str]:
    """Names of jobs that are new and due: what some worker should be taking."""
    from django.db.models import Q

    from djap_django.models import JobDBModel

    return sorted(
        JobDBModel.objects.using(alias)
        .filter(status="new")
        .filter(Q(run_after__isnull=True) | Q(run_after__lte=now))
        .values_list("name", flat=True)
        .distinct()
        .order_by()
    )


def stranded_names(runnable: list[str], workers: list[WorkerView] | tuple[WorkerView, ...]):
    """The runnable names that no live worker accepts (the reason for `status --check`)."""
    live = [w for w in workers if w.alive and w.state == "running"]
    return tuple(n for n in runnable if not any(w.takes(n) for w in live))


def take_snapshot(alias: str | None = None) -> Snapshot:
    """Read everything a status table shows, counting every job now."""
    from djap_django import conf

    alias = alias or conf.database_alias()
    return SnapshotReader(alias, conf.get("STALE_AFTER")).read(0.0, force_counts=True)


def preflight(alias: str | None = None) -> None:
    """Fail with one line naming the fix when the queue tables cannot be read."""
    from .django_setup import check_database

    check_database(alias)


class SnapshotReader:
    """Takes snapshot after snapshot (the live view), keeping the counting cheap.

    The worker rows are read every time: they are few, and the supervisor judges
    heartbeats from them. Counting jobs costs in proportion to the backlog (half a
    second for 500,000 waiting rows on SQLite), so counts are refreshed only as often
    as keeps them under 1/`budget` of the time, and counts of finished jobs, which
    scan the whole table, at most every `full_every_s` seconds. In between, the last
    counts are shown.
    """

    def __init__(
        self,
        alias: str,
        stale_after: float,
        *,
        budget: float = 20.0,
        min_interval_s: float = 0.5,
        full_every_s: float = 5.0,
    ) -> None:
        self.alias, self.stale_after, self.budget = alias, stale_after, budget
        self.min_interval_s, self.full_every_s = min_interval_s, full_every_s
        self._next_active = self._next_full = 0.0
        self._finished: dict[str, dict[str, int]] = {}
        self._active: dict[str, dict[str, int]] = {}
        self._failures: tuple[Failure, ...] = ()
        self._runnable: list[str] = []
        self._pipelines: dict[str, int] = {}

    def read(self, now: float, force_counts: bool = False) -> Snapshot:
        """A snapshot at monotonic time `now`; `force_counts` recounts everything."""
        import time

        taken_at = db_now(self.alias)
        workers = query_workers(self.alias, taken_at, self.stale_after)
        if force_counts or now >= self._next_full:
            started = time.perf_counter()
            counts = query_queue(self.alias)
            self._pipelines = query_pipelines(self.alias)
            self._finished = {
                name: {s: n for s, n in c.items() if s not in ACTIVE_STATUSES}
                for name, c in counts.items()
            }
            self._active = {
                name: {s: n for s, n in c.items() if s in ACTIVE_STATUSES}
                for name, c in counts.items()
            }
            cost = time.perf_counter() - started
            self._next_full = now + max(self.full_every_s, cost * self.budget)
            self._refresh_small(now, taken_at, cost)
        elif now >= self._next_active:
            started = time.perf_counter()
            self._active = query_queue(self.alias, ACTIVE_STATUSES)
            self._refresh_small(now, taken_at, time.perf_counter() - started)
        queue: dict[str, dict[str, int]] = {}
        for name in sorted(set(self._active) | set(self._finished)):
            merged = {**self._finished.get(name, {}), **self._active.get(name, {})}
            if any(merged.values()):
                queue[name] = merged
        return Snapshot(
            taken_at=taken_at,
            queue=queue,
            workers=tuple(workers),
            failures=self._failures,
            stranded=stranded_names(self._runnable, workers),
            pipelines=self._pipelines,
        )

    def _refresh_small(self, now: float, taken_at: dt.datetime, cost: float) -> None:
        import time

        started = time.perf_counter()
        self._failures = tuple(query_failures(self.alias))
        self._runnable = query_runnable_names(self.alias, taken_at)
        cost += time.perf_counter() - started
        self._next_active = now + max(self.min_interval_s, cost * self.budget)


# -- presentation helpers ----------------------------------------------------------------


def error_line(error: str) -> str:
    """The one line of a stored error that says what went wrong (the exception, not the header)."""
    lines = [ln.strip() for ln in (error or "").splitlines() if ln.strip()]
    lines = [ln for ln in lines if not (ln.startswith("attempt ") and " failed" in ln)]
    if not lines:
        return ""
    if any(ln.startswith("Traceback (most recent call last)") for ln in lines):
        return lines[-1]
    return lines[0]


def to_json(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot as JSON-ready data; `queue` and `workers` are the documented keys."""

    def clean(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return value.isoformat()
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    data = asdict(snapshot)
    data["totals"] = snapshot.totals()
    if data["throughput"] is None:
        del data["throughput"]
    if not data["processes"]:
        del data["processes"]
    return clean(data)


class ThroughputMeter:
    """Jobs finished per second, from the workers' heartbeat counters.

    Counters only grow within one worker row, so the meter adds each row's increase
    since it was last seen; a replaced worker's new row starts from zero. Rates are
    taken over a window of a few seconds because counters move once per heartbeat.
    """

    #: Seconds the "now" rate is averaged over.
    WINDOW_S = 5.0
    #: Points kept for the sparkline (one per `HISTORY_STEP_S`).
    HISTORY = 60
    HISTORY_STEP_S = 1.0

    def __init__(self, started: float) -> None:
        self.started = started
        self.total = 0
        self._seen: dict[int, int] = {}
        self._primed = False
        self._per_worker: dict[int, list[tuple[float, int]]] = {}
        self._points: list[tuple[float, int]] = [(started, 0)]
        self._history: list[float] = []
        self._last_history_at = started

    def update(self, now: float, counters: dict[int, int]) -> None:
        """Feed {worker id: done + failed} as read at monotonic time `now`."""
        if not self._primed:
            # Rows that existed before we started (other hosts, earlier runs) are a
            # baseline, not throughput of this run.
            self._seen, self._primed = dict(counters), True
        for wid in set(self._per_worker) - set(counters):
            del self._per_worker[wid]
        for wid, count in counters.items():
            self.total += max(0, count - self._seen.get(wid, 0))
            self._seen[wid] = max(count, self._seen.get(wid, 0))
            points = self._per_worker.setdefault(wid, [])
            points.append((now, count))
            while len(points) > 2 and now - points[1][0] >= self.WINDOW_S:
                points.pop(0)
        self._points.append((now, self.total))
        while len(self._points) > 2 and now - self._points[1][0] >= self.WINDOW_S:
            self._points.pop(0)
        if now - self._last_history_at >= self.HISTORY_STEP_S:
            self._history.append(self.rate_now())
            self._history = self._history[-self.HISTORY :]
            self._last_history_at = now

    @staticmethod
    def _rate(points: list[tuple[float, int]]) -> float:
        if len(points) < 2:
            return 0.0
        (t0, n0), (t1, n1) = points[0], points[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def rate_now(self) -> float:
        return self._rate(self._points)

    def worker_rate(self, worker_id: int) -> float:
        return self._rate(self._per_worker.get(worker_id, []))

    def snapshot(self, now: float) -> Throughput:
        seconds = max(0.0, now - self.started)
        return Throughput(
            now=self.rate_now(),
            average=self.total / seconds if seconds > 0 else 0.0,
            total=self.total,
            seconds=seconds,
            history=tuple(self._history),
        )


def status_command(*, as_json: bool, watch: bool, check: bool, interval: float) -> int:
    """`djap status`: the snapshot once (tables or JSON), refreshed with --watch.

    With --check the exit code is 1 when runnable jobs wait that no live worker takes.
    """
    import json
    import time

    from rich.console import Console

    from .dashboard import render

    preflight()
    console = Console()
    if watch and not as_json:
        from rich.live import Live

        from djap_django import conf

        alias = conf.database_alias()
        reader = SnapshotReader(alias, conf.get("STALE_AFTER"), min_interval_s=interval)
        with Live(console=console, auto_refresh=False) as live:
            try:
                while True:
                    live.update(render(reader.read(time.monotonic())), refresh=True)
                    time.sleep(interval)
            except KeyboardInterrupt:
                return 0
    while True:
        snapshot = take_snapshot()
        if as_json:
            print(json.dumps(to_json(snapshot), indent=None if watch else 2), flush=True)
        elif not check:
            console.print(render(snapshot, fit_screen=False))
        if not watch:
            break
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return 0
    if check and snapshot.stranded:
        waiting = {n: snapshot.queue.get(n, {}).get("new", 0) for n in snapshot.stranded}
        print(
            "djap status: jobs wait that no live worker takes: "
            + ", ".join(f"{n} ({c} new)" for n, c in waiting.items()),
            file=sys.stderr,
        )
        return 1
    if check and not as_json:
        print("djap status: ok: every waiting job has a live worker that takes it")
    return 0
