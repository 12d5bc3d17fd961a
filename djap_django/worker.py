"""One worker process: an asyncio pool that claims jobs, runs them and reports back.

The claim loop never claims more jobs than it has free slots, in one statement;
runs each job as an asyncio task; and hands outcomes to a batching Completer (a
pipeline step finishes with its successors instead). Everything periodic is a
background service of its own (services/): the heartbeat that tells other
workers and supervisors this one is alive, the rescue of dead workers' jobs, the
cancel watch, the prune. Reading order: `run`, `_claim_loop`, `_run_one`,
`_finish_pipeline_step`, `_shutdown`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async

from . import conf, registry
from .budget import worker_budget
from .completer import REFUSED_TRIES, Completer, refused_outcome
from .execution import execute
from .lanes import BookkeepingExecutor, LanePool, thread_sensitive_on
from .queue import ClaimedJob, Outcome, WorkerInfo, open_queue
from .queue.base import SNOOZED
from .resilience import DbGuard
from .services import (
    CancelWatch,
    Heartbeat,
    PeriodicScheduler,
    Pruner,
    Rescuer,
    Service,
    Stager,
)
from .services.heartbeat import Pulse

logger = logging.getLogger("djap.worker")

#: At exit, wait this long (seconds) at most for the bookkeeping thread to close its connection.
BOOKKEEPING_CLOSE_WAIT_S = 5.0
#: At shutdown, wait this long (seconds) at least for an unavailable database; longer if
#: the grace period is longer.
SHUTDOWN_DB_WAIT_MIN_S = 5.0


@dataclass
class WorkerOptions:
    concurrency: int | None = None
    #: Database lanes: threads (and ORM connections) for job bodies; None = DJAP DB_LANES.
    lanes: int | None = None
    include: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    burst: bool = False
    num_jobs: int | None = None
    #: Stop claiming after this many seconds; exit once running jobs finish.
    timeout: float | None = None
    grace: float | None = None
    group: str = "default"
    host: str | None = None
    alias: str | None = None
    supervisor_pid: int | None = None


@dataclass
class WorkerStats:
    claimed: int = 0
    done: int = 0
    failed: int = 0
    released: int = 0
    cancelled: int = 0


class Worker:
    def __init__(self, options: WorkerOptions | None = None) -> None:
        self.options = options or WorkerOptions()
        self.concurrency = self.options.concurrency or conf.get("CONCURRENCY")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        lanes = self.options.lanes or conf.get("DB_LANES")
        if lanes < 1:
            raise ValueError("lanes must be at least 1")
        #: What this process opens (queue + bookkeeping + lanes), stored on its worker row.
        self.budget = worker_budget(
            self.options.alias or conf.database_alias(), lanes, self.concurrency
        )
        self.stats = WorkerStats()
        #: This worker's row id, once registered (0 before: row ids start at 1).
        self.worker_id = 0
        self.state = "running"
        #: Running attempts by (job id, claim token): after a rescue this worker may claim
        #: a job again while its earlier attempt still runs; both hold a slot till they end.
        self._running: dict[tuple[int, int], asyncio.Task] = {}
        self._stop = asyncio.Event()
        self._slot_free = asyncio.Event()
        self.lanes: LanePool | None = None
        #: The worker's own ORM work runs here, never on a thread a job may be blocking.
        self._bookkeeping: BookkeepingExecutor | None = None
        #: Jobs whose task was cancelled (shutdown): they go back to the queue.
        self._interrupted: list[tuple[int, int]] = []
        #: Claims stopped because they were cancelled (or taken from us): nothing to report.
        self._cancelled: set[tuple[int, int]] = set()
        #: Outcomes handed to the completer but not yet written (see _sweep_lost_claims).
        self._unflushed: set[tuple[int, int]] = set()
        #: Attempts past their body, writing their outcome: their row may already say
        #: done or failed, which the cancel watch must not take for "no longer ours".
        self._finishing: set[tuple[int, int]] = set()
        #: A claim failed in an outage: it may have committed without us seeing the rows.
        self._claim_uncertain = False
        self._shutdown_deadline: float | None = None
        #: The background services (see _make_services) and the tasks that run them.
        self.services: list[Service] = []
        self._service_tasks: list[asyncio.Task] = []

    # -- control -------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop claiming; running jobs get the grace period to finish."""
        if not self._stop.is_set():
            logger.info("worker %s: stopping; %d jobs running", os.getpid(), len(self._running))
        self.state = "draining"
        self._stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        if self._stop.is_set() and sig == signal.SIGINT:
            # A second Ctrl-C: stop at once; the finally block still puts the jobs back.
            logger.warning("second interrupt: cancelling %d running jobs", len(self._running))
            for task in self._running.values():
                task.cancel()
            return
        self.request_stop()

    # -- starting: register, then the completer and the background services ----------

    async def run(self) -> WorkerStats:
        """Run until stopped, out of work (burst), out of jobs (num_jobs) or time."""
        self.lanes = LanePool(self.budget.lanes)
        self._bookkeeping = BookkeepingExecutor()
        try:
            # Thread-sensitive calls of the worker itself (pipeline finishes, burst checks,
            # Django reconnects) go to the bookkeeping thread; each job enters its own lane.
            with thread_sensitive_on(self._bookkeeping):
                return await self._run()
        finally:
            await self.lanes.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.wrap_future(self._bookkeeping.submit(_close_thread_connections)),
                    BOOKKEEPING_CLOSE_WAIT_S,
                )
            self._bookkeeping.shutdown(wait=False)

    async def _run(self) -> WorkerStats:
        opts = self.options
        for name in registry.unknown_names((opts.include or []) + opts.exclude):
            logger.warning(
                "no registered job is named %r (in --include/--exclude); registered: %s",
                name,
                ", ".join(registry.names()) or "none",
            )
        self.queue = open_queue(opts.alias)
        self.db = DbGuard(self.queue)
        await self.queue.connect()
        info = WorkerInfo(
            host=opts.host or socket.gethostname(),
            pid=os.getpid(),
            group=opts.group,
            include=opts.include,
            exclude=opts.exclude,
            concurrency=self.concurrency,
            supervisor_pid=opts.supervisor_pid,
            connections=self.budget.total,
        )
        # Connecting fails fast (a wrong DATABASES entry should say so at once); once
        # connected, a busy database (SQLite's lock) is waited out like any other write.
        self._info = info
        self.worker_id = await self.db.call("register", self.queue.worker_register, info)
        self.completer = Completer(
            self._write_outcomes,
            batch_size=conf.get("COMPLETION_BATCH"),
            interval_s=conf.get("COMPLETION_FLUSH_INTERVAL"),
            is_transient=self.queue.is_transient,
        )
        self.completer.start()
        self.queue.listen(on_cancel=self._cancel_running)
        self.services = self._make_services()
        self._service_tasks = [
            asyncio.create_task(service.run_forever(), name=f"djap-{service.name}")
            for service in self.services
        ]
        logger.info(
            "worker %s started: id=%s concurrency=%s include=%s exclude=%s; %s",
            os.getpid(),
            self.worker_id,
            self.concurrency,
            opts.include,
            opts.exclude,
            self.budget.describe(),
        )
        try:
            await self._claim_loop()
            await self._drain()
        finally:
            await self._shutdown()
        return self.stats

    def _make_services(self) -> list[Service]:
        """The background services, started once the worker is registered.

        Each is a small loop with a `run_once` (services/). A new periodic duty of the
        worker, such as the scheduler of periodic jobs, is one more entry here; the
        shutdown stops every entry.
        """
        self.heartbeat = Heartbeat(
            self.queue,
            self.db,
            worker_id=self.worker_id,
            pulse=self._pulse,
            supervisor_pid=self.options.supervisor_pid,
            on_orphaned=self.request_stop,
            info=self._info,
        )
        self.stager = Stager(self.queue, self.db)
        return [
            self.heartbeat,
            self.stager,
            Rescuer(self.queue, self.db),
            CancelWatch(
                self.queue,
                self.db,
                worker_id=self.worker_id,
                running=lambda: [k for k in self._running if k not in self._finishing],
                stop_claim=self._cancel_claim,
            ),
            Pruner(self.queue, self.db),
            PeriodicScheduler(self.queue, self.db, self.options.alias),
        ]

    def _pulse(self, state: str | None = None) -> Pulse:
        return Pulse(
            done=self.stats.done,
            failed=self.stats.failed,
            in_flight=len(self._running),
            state=state or self.state,
        )

    # -- the claim loop ------------------------------------------------------------

    async def _claim_loop(self) -> None:
        opts = self.options
        deadline = None if opts.timeout is None else time.monotonic() + opts.timeout
        while not self._stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return
            free = self.concurrency - len(self._running)
            if opts.num_jobs is not None:
                free = min(free, opts.num_jobs - self.stats.claimed)
                if free <= 0 and not self._running:
                    return
            if free <= 0:
                await self._wait_for(self._slot_free.wait(), deadline)
                self._slot_free.clear()
                continue
            if self._claim_uncertain:
                await self._sweep_lost_claims()
            try:
                jobs = await self.db.call(
                    "claim",
                    self._claim,
                    free,
                    stop=self._stop,
                )
            except Exception as exc:
                if self._stop.is_set() and self.queue.is_transient(exc):
                    return  # stopping during an outage: nothing more to claim
                raise
            for claimed in jobs:
                self._start(claimed)
            if len(jobs) == free:
                continue
            if not jobs and opts.burst and not self._running:
                if await self._burst_wait_for_retry(deadline):
                    continue
                return
            if self._running and opts.burst:
                # Burst mode ends when nothing runs and nothing is claimable; a running
                # job may still enqueue more, so wait for a slot rather than for a poll.
                await self._wait_for(self._slot_free.wait(), deadline, poll=True)
                self._slot_free.clear()
                continue
            await self._wait_for(None, deadline, poll=True)

    async def _burst_wait_for_retry(self, deadline: float | None) -> bool:
        """Burst found nothing runnable: wait for a retry due soon, else say what is left.

        A job that failed and will be retried in a moment belongs to this run; one
        scheduled for later (run_after) does not, and is left for the next run.
        """
        await self.completer.settled()  # a retry's new run_after must be in the row first
        await self._stage_now()
        opts = self.options
        if await self.db.call(
            "check", self.queue.jobs_runnable_exists, opts.include, opts.exclude, stop=self._stop
        ):
            return True  # jobs fell due meanwhile (staged here or by another stager)
        due_in, scheduled = await sync_to_async(pending_later)(
            self.options.alias, self.options.include, self.options.exclude
        )
        if due_in is not None and due_in <= conf.get("BURST_RETRY_WAIT"):
            logger.info("burst: waiting %.1f s for a retry that falls due", due_in)
            wake = time.monotonic() + due_in
            deadline = wake if deadline is None else min(deadline, wake)
            await self._wait_for(None, deadline, poll=True)
            if not self._stop.is_set():
                await self._stage_now()
            return not self._stop.is_set()
        if scheduled:
            logger.info(
                "burst: nothing runnable now; %d jobs wait for a later run_after, left for "
                "the next run",
                scheduled,
            )
        return False

    async def _stage_now(self) -> int:
        """Stage due jobs at once (burst decides from the rows next)."""
        return await self.db.call("stage", self.stager.run_once, stop=self._stop)

    async def _wait_for(
        self, awaitable: Awaitable[object] | None, deadline: float | None, poll: bool = False
    ) -> None:
        """Wait for `awaitable`, a new job (poll), a stop request or the deadline."""
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._stop.wait())]
        if awaitable is not None:
            waits.append(asyncio.ensure_future(awaitable))
        timeout = conf.get("POLL_INTERVAL")
        if deadline is not None:
            timeout = max(0.0, min(timeout, deadline - time.monotonic()))
        if poll:
            waits.append(asyncio.ensure_future(self.queue.wait_for_jobs(timeout)))
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()

    async def _claim(self, limit: int) -> list[ClaimedJob]:
        opts = self.options
        try:
            return await self.queue.jobs_claim(self.worker_id, limit, opts.include, opts.exclude)
        except Exception as exc:
            if self.queue.is_transient(exc):
                self._claim_uncertain = True
            raise

    async def _sweep_lost_claims(self) -> None:
        """Put back rows a failed claim committed but never returned to us.

        If the connection drops after the claim's UPDATE commits, the rows are ours in the
        database while we never heard of them; as our heartbeat goes on, no rescue would
        ever free them. Anything we hold there that we neither run nor are reporting on
        goes back to `new`.
        """
        held = await self.db.call("find lost claims", self.queue.jobs_held, self.worker_id)
        lost = [
            key for key in held.items() if key not in self._running and key not in self._unflushed
        ]
        if lost:
            await self.db.call("release", self.queue.jobs_release, self.worker_id, lost)
            logger.warning("put back %d jobs claimed during the outage", len(lost))
        self._claim_uncertain = False

    # -- running one job -----------------------------------------------------------

    def _start(self, claimed: ClaimedJob) -> None:
        self.stats.claimed += 1
        task = asyncio.create_task(self._run_one(claimed))
        self._running[claimed.id, claimed.claim] = task

    async def _run_one(self, claimed: ClaimedJob) -> None:
        key = (claimed.id, claimed.claim)
        try:
            assert self.lanes is not None  # made by run() before any job starts
            outcome = await execute(claimed, self.lanes)
            outcome.claim = claimed.claim
            self._finishing.add(key)
            if outcome.status == SNOOZED:
                # Not a finish: the row goes back as it was, pipeline or not.
                await self.db.call("snooze", self.queue.jobs_snooze, self.worker_id, outcome)
            elif claimed.pipeline_id is not None:
                # Counted as written: a done step whose results do not fit the next is failed.
                written = await self._finish_pipeline_step(claimed, outcome)
                if written is not None:
                    self._count(claimed, written)
                    if written.status == "new" and written.run_after is not None:
                        self.stager.note_due(written.run_after)
            else:
                self._count(claimed, outcome)
                self._unflushed.add(key)
                await self.completer.add(outcome)
        except asyncio.CancelledError:
            if key in self._cancelled:
                # Cancelled by request: the row already says so; nothing to write back.
                self._cancelled.discard(key)
                self.stats.cancelled += 1
                logger.info("job %s %s cancelled", claimed.id, claimed.name)
                return
            self._interrupted.append(key)
            raise
        finally:
            self._running.pop(key, None)
            self._finishing.discard(key)
            self._slot_free.set()

    def _count(self, claimed: ClaimedJob, outcome: Outcome) -> None:
        if outcome.status == "failed":
            self.stats.failed += 1
            logger.warning(
                "job %s %s failed: %s",
                claimed.id,
                claimed.name,
                outcome.error.strip().splitlines()[-1] if outcome.error else "",
                extra={"job_id": claimed.id, "job_name": claimed.name},
            )
        elif outcome.status == "done":
            self.stats.done += 1

    # -- finishing: a pipeline step at once, everything else through the completer ----

    async def _finish_pipeline_step(self, claimed: ClaimedJob, outcome: Outcome) -> Outcome | None:
        # Pipeline steps finish in one Django transaction with their successors, so a
        # crash between "this step done" and "next step ready" cannot happen.
        from .pipelines import finish_step

        finish = sync_to_async(finish_step, thread_sensitive=True)
        tries, rewritten = 0, False
        while True:
            try:
                return await self.db.call_django(
                    "finish pipeline step", finish, self.worker_id, claimed, outcome, stop=None
                )
            except Exception as exc:
                # The database refused the step's outcome (outages are retried inside):
                # try again a few times (a refusal may pass), then once as a failure that
                # names the refusal, as the completer does for plain jobs.
                tries += 1
                if tries < REFUSED_TRIES:
                    await asyncio.sleep(0.1 * 2**tries)
                    continue
                if rewritten:
                    # Even the failure is refused: put the row back (the claim sweep
                    # releases it) rather than leave it in_progress under a live worker.
                    logger.error("job %s: the database refuses its outcome: %s", claimed.id, exc)
                    self._claim_uncertain = True
                    return None
                outcome, rewritten = refused_outcome(outcome, exc), True
                logger.error("job %s: %s", claimed.id, outcome.error.splitlines()[0])

    async def _write_outcomes(self, outcomes: list[Outcome]) -> None:
        # Through an outage the outcomes wait here (the completer applies backpressure);
        # a finish is guarded by worker and status, so writing one twice is harmless.
        await self.db.call(
            "finish",
            self.queue.jobs_finish,
            self.worker_id,
            outcomes,
            give_up_at=self._shutdown_deadline,
        )
        for outcome in outcomes:
            self._unflushed.discard((outcome.job_id, outcome.claim))
            if outcome.status == "new" and outcome.run_after is not None:
                self.stager.note_due(outcome.run_after)  # a retry: stage it on time

    # -- cancellation ----------------------------------------------------------------

    def _cancel_running(self, job_id: int) -> None:
        """Stop every attempt of a job whose row was cancelled (a NOTIFY names the id)."""
        for key in [k for k in self._running if k[0] == job_id]:
            self._cancel_claim(key)

    def _cancel_claim(self, key: tuple[int, int]) -> None:
        """Stop one running attempt: its claim was cancelled or taken from us."""
        task = self._running.get(key)
        if task is not None and not task.done() and key not in self._cancelled:
            self._cancelled.add(key)
            task.cancel()

    # -- shutdown --------------------------------------------------------------------

    async def _drain(self) -> None:
        """Give running jobs the grace period, then cancel what is left."""
        if not self._running:
            return
        grace = self.options.grace if self.options.grace is not None else conf.get("GRACE")
        done, pending = await asyncio.wait(list(self._running.values()), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _shutdown(self) -> None:
        # If the database is down now, wait for it a while, not forever: whatever is not
        # written by then comes back through the stale-heartbeat rescue (at-least-once).
        grace = self.options.grace if self.options.grace is not None else conf.get("GRACE")
        db_wait = max(SHUTDOWN_DB_WAIT_MIN_S, grace)
        self._shutdown_deadline = time.monotonic() + db_wait
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        for task in self._service_tasks:
            task.cancel()
        await asyncio.gather(*self._service_tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self.completer.close(), db_wait)
            if self._interrupted:
                self.stats.released += await self.db.call(
                    "release",
                    self.queue.jobs_release,
                    self.worker_id,
                    self._interrupted,
                    give_up_at=self._shutdown_deadline,
                )
                logger.info("put back %d unfinished jobs", self.stats.released)
            await self.db.call(
                "stop",
                self.heartbeat.beat,
                self._pulse("stopped"),
                give_up_at=self._shutdown_deadline,
            )
        except Exception as exc:
            if not (isinstance(exc, TimeoutError) or self.queue.is_transient(exc)):
                raise
            logger.error(
                "database unavailable at shutdown; %d jobs stay claimed until the "
                "stale-heartbeat rescue puts them back",
                len(self._unflushed) + len(self._interrupted),
            )
        await self.queue.close()
        logger.info(
            "worker %s stopped: %d done, %d failed", os.getpid(), self.stats.done, self.stats.failed
        )


def _close_thread_connections() -> None:
    from django.db import connections

    connections.close_all()


async def run_num_jobs(
    max_num_workers: int,
    timeout: float,
    num_jobs: int,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
) -> WorkerStats:
    """Run a worker in this process until `num_jobs` jobs finished or `timeout` passed."""
    worker = Worker(
        WorkerOptions(
            concurrency=max_num_workers,
            include=include,
            exclude=list(exclude or []),
            num_jobs=num_jobs,
            timeout=timeout,
            grace=0,
        )
    )
    return await worker.run()


def pending_later(
    alias: str | None, include: list[str] | None, exclude: list[str]
) -> tuple[float | None, int]:
    """(seconds until the next retry falls due or None, jobs scheduled for later)."""
    from django.db.models import Count, Min, Q
    from django.utils import timezone

    from .models import JobDBModel

    now = timezone.now()
    later = JobDBModel.objects.using(alias or conf.database_alias()).filter(
        status=JobDBModel.Status.NEW, run_after__gt=now
    )
    if include is not None:
        later = later.filter(name__in=include)
    if exclude:
        later = later.exclude(name__in=exclude)
    found = later.aggregate(
        scheduled=Count("id"), next_retry=Min("run_after", filter=Q(attempts__gt=0))
    )
    next_retry = found["next_retry"]
    due_in = None if next_retry is None else max(0.0, (next_retry - now).total_seconds())
    return due_in, found["scheduled"]
