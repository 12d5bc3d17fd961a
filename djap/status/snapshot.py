"""The snapshot: plain frozen values that `djap status`, the live view and metrics read.

Nothing here touches the database or the clock. `djap.status.queries` fills a
`Snapshot`; the supervisor adds what only it knows (CPU, RSS, restarts, throughput,
events) with `dataclasses.replace`; `djap.dashboard.render` draws it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

#: Job statuses that are still to run or running: cheap to count on every refresh.
ACTIVE_STATUSES = ("not_ready", "new", "in_progress")
#: Every status, in the order tables show them.
ALL_STATUSES = ("not_ready", "new", "in_progress", "done", "failed", "cancelled")


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
    #: Database connections the process opens at most (queue + bookkeeping + lanes).
    connections: int = 0
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
    #: (name, status) pairs of `queue` whose count is an estimate (past the count cap).
    estimated: tuple[tuple[str, str], ...] = ()
    #: The estimates are lower bounds (SQLite keeps no statistics to estimate from).
    estimates_are_lower_bounds: bool = False

    def totals(self) -> dict[str, int]:
        """{status: count} over every job name."""
        out: dict[str, int] = {}
        for counts in self.queue.values():
            for status, n in counts.items():
                out[status] = out.get(status, 0) + n
        return out


def stranded_names(runnable: Iterable[str], workers: Iterable[WorkerView]) -> tuple[str, ...]:
    """The runnable names that no live worker accepts (the reason for `status --check`)."""
    live = [w for w in workers if w.alive and w.state == "running"]
    return tuple(n for n in runnable if not any(w.takes(n) for w in live))


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
