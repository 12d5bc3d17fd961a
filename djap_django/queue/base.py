"""The queue contract: what a worker and a supervisor ask of the database.

One class per dialect implements it: its plumbing (connections, outages,
notifications: the `Connection` half) in <dialect>_connection.py, its statements
(the `Statements` half) in <dialect>.py. The same test suite runs against both.
Every statement is one short transaction, named for what it does to which rows,
so a reader finds each statement in one place.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A row this worker now holds (status in_progress, attempts already bumped)."""

    id: int
    name: str
    inputs: Any
    attempts: int
    max_attempts: int
    timeout: float | None
    pipeline_id: int | None
    #: This claim's token (the row's `claims` after the claim): every write of the claim
    #: names it, so nothing of an earlier claim of the same row can land on this one.
    claim: int = 0


#: Outcome.status of an attempt that raised Snooze: written by `jobs_snooze`, never stored.
SNOOZED = "snoozed"


@dataclass(slots=True)
class Outcome:
    """How an attempt ended: `done`, `failed`, `new` (a retry) or SNOOZED (see jobs_snooze).

    A cancelled job has no outcome: its row already says `cancelled` and the worker
    writes nothing back.
    """

    job_id: int
    status: str
    outputs_json: str | None = None
    error: str = ""
    run_after: dt.datetime | None = None
    #: Set for pipeline steps: the inputs of the next step(s), as JSON-ready data.
    next_inputs: Any = None
    has_next_inputs: bool = False
    #: The claim this outcome belongs to (ClaimedJob.claim); a finish of any other is a no-op.
    claim: int = 0

    def __post_init__(self) -> None:
        if not self.error:
            return
        # PostgreSQL refuses NUL in text: show it escaped rather than lose the error.
        if "\x00" in self.error:
            self.error = self.error.replace("\x00", "\\x00")
        # Neither database driver can send a lone surrogate (a file name's bad byte
        # decoded with surrogateescape): show it escaped too.
        try:
            self.error.encode("utf-8")
        except UnicodeEncodeError:
            self.error = self.error.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(slots=True)
class WorkerInfo:
    host: str
    pid: int
    group: str = "default"
    include: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    concurrency: int = 0
    supervisor_pid: int | None = None
    #: Database connections the process opens at most (djap_django.budget).
    connections: int = 0


@dataclass(frozen=True, slots=True)
class RescueReport:
    """What a rescue did: jobs put back to new, and jobs failed as poison."""

    requeued: int = 0
    failed: int = 0
    dead_workers: int = 0


@dataclass(frozen=True, slots=True)
class StageReport:
    """What a stage did: jobs moved onto the claim path, and when the next falls due."""

    staged: int = 0
    #: Seconds until the earliest job still scheduled falls due; None when there is none.
    next_due_s: float | None = None


#: PostgreSQL NOTIFY channels. Enqueues notify NEW_JOBS_CHANNEL so idle workers claim at
#: once; a cancel notifies CANCEL_CHANNEL with the job id so its worker stops it.
NEW_JOBS_CHANNEL = "djap_new_jobs"
CANCEL_CHANNEL = "djap_cancel"


class Connection(Protocol):
    """The plumbing under the statements: connections, outages, and being woken up."""

    async def connect(self) -> None: ...
    async def close(self) -> None: ...

    # Outages: which errors mean "retry after reconnecting", and the reconnect itself.
    @staticmethod
    def is_transient(exc: BaseException) -> bool: ...
    async def reconnect(self) -> None: ...

    def listen(self, on_cancel: Callable[[int], None] | None = None) -> None:
        """Start listening for new jobs, and for cancels of running ones (`on_cancel(id)`)."""

    async def wait_for_jobs(self, timeout: float) -> None: ...


class Statements(Protocol):
    """One method per statement, named noun-first; each is one short transaction."""

    async def worker_register(self, info: WorkerInfo) -> int: ...
    async def worker_heartbeat(
        self,
        worker_id: int,
        *,
        done: int,
        failed: int,
        in_flight: int,
        state: str,
        info: WorkerInfo | None = None,
    ) -> str: ...
    async def workers_prune(self, older_than_s: float) -> int: ...

    async def jobs_claim(
        self, worker_id: int, limit: int, include: list[str] | None, exclude: list[str]
    ) -> list[ClaimedJob]: ...
    async def jobs_finish(self, worker_id: int, outcomes: list[Outcome]) -> None: ...
    async def jobs_release(self, worker_id: int, claims: list[tuple[int, int]]) -> int: ...
    async def jobs_snooze(self, worker_id: int, outcome: Outcome) -> bool: ...
    async def jobs_rescue_stale(self, stale_after_s: float, max_crashes: int) -> RescueReport: ...
    async def jobs_rescue_worker(self, worker_id: int, max_crashes: int) -> RescueReport: ...
    async def jobs_stage(self, limit: int) -> StageReport: ...
    async def jobs_runnable_exists(self, include: list[str] | None, exclude: list[str]) -> bool: ...
    async def jobs_status(self, job_ids: list[int]) -> dict[int, str]: ...
    async def jobs_held(self, worker_id: int) -> dict[int, int]: ...
    async def jobs_prune(self, older_than_s: float, statuses: list[str], limit: int) -> int: ...
    async def pipelines_prune(
        self, older_than_s: float, statuses: list[str], limit: int
    ) -> tuple[int, int]: ...


class Queue(Connection, Statements, Protocol):
    """The database as a queue: what a worker and a supervisor hold."""


#: The error of a waiting pipeline step stopped because its pipeline failed or was
#: cancelled; resuming the pipeline (retry_job) brings exactly these rows back.
HALTED = "halted: its pipeline failed or was cancelled; retrying the failed job resumes it"
#: What a heartbeat found: its row as it left it; its row marked dead (by a rescuer that
#: judged it silent too long), now taken back; its row gone, now written again; its row
#: gone and not written again (no WorkerInfo given).
BEAT, REVIVED, RESTORED, MISSING = "beat", "revived", "restored", "missing"
#: The host of a placeholder row a rescue writes for jobs whose worker row is gone.
ORPHAN_HOST = "(row was missing)"

#: The error a rescued job carries when its worker died too often while running it.
POISON_ERROR = "worker died while running this job {crashes} times in a row (DJAP MAX_CRASHES)"
