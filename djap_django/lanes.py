"""Database lanes: a bounded set of threads, each with its own Django connections.

Django's ORM is sync and its connections belong to a thread. Left alone, a worker
runs every async ORM call of every job through asgiref's one thread-sensitive thread
(100 jobs in flight make one query at a time), and sync jobs on as many threads as
jobs in flight (one connection each, or a new one per job). Lanes bound both:

- a sync job body runs on a lane's thread, start to end;
- an async job body gets a lane the first time it calls into sync code that is
  thread-sensitive (the async ORM: `acreate`, `async for`, `sync_to_async`), and keeps
  it until it ends, as Django's ASGI handler gives each request its own thread-sensitive
  context; a job that never touches the ORM never takes a lane.

So a job's transaction stays on one thread and one connection, concurrent jobs make
concurrent queries, and a process never holds more ORM connections than it has lanes.
A lane keeps its connection between jobs (see `tidy_connections`). A lane whose thread
is stuck past its job (a timeout, a cancel) is given up and replaced: Python cannot stop
a thread, and the stuck one must not hold up the jobs that wait for a lane.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from asgiref.sync import SyncToAsync, ThreadSensitiveContext
from django.db import connections

logger = logging.getLogger("djap.worker")

#: Every thread djap starts for job bodies and its own ORM work has a name with this
#: prefix, so that the process can tell, at exit, which threads it may leave behind.
THREAD_PREFIX = "djap-"


def tidy_connections() -> None:
    """After a job, on its lane's thread: keep the connections that are good to keep.

    Django's request rules (close_old_connections): a connection whose autocommit was
    left changed, or that saw an error and no longer answers, is closed; so is one older
    than a positive CONN_MAX_AGE. CONN_MAX_AGE = 0, Django's default, means "close at the
    end of each request": a lane is not a request but a long-lived, bounded thread, so it
    keeps its connection between jobs. With Django's connection pool
    (OPTIONS "pool"), closing hands the connection back to the pool, so it is closed.
    """
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        if getattr(conn, "pool", None) is not None:
            conn.close()
            continue
        if conn.settings_dict.get("CONN_MAX_AGE") == 0:
            conn.close_at = None
        conn.close_if_unusable_or_obsolete()


def close_connections() -> None:
    """Close this thread's connections (a lane that ends, or one given up)."""
    for conn in connections.all(initialized_only=True):
        with contextlib.suppress(Exception):
            conn.close()


class Lane:
    """One thread of the pool; its Django connections live in that thread."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"{THREAD_PREFIX}lane-{index}")
        #: Set once the lane is given up: its thread closes its connections when done.
        self.abandoned = False
        #: Calls submitted to the thread that have not finished.
        self.in_flight = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        with self._lock:
            self.in_flight += 1
        return self.executor.submit(self._call, fn, args, kwargs)

    def _call(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self.in_flight -= 1
            if self.abandoned:
                # Nobody will run a job here again: give the connection back now.
                close_connections()

    @property
    def busy(self) -> bool:
        return self.in_flight > 0


class LanePool:
    """`size` lanes shared by the jobs of one worker process (on its event loop)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a worker needs at least one database lane")
        self.size = size
        self._next_index = size
        self._lanes = [Lane(i) for i in range(size)]
        #: Idle lanes, most recently used last: a warm connection is reused first.
        self._idle: list[Lane] = list(reversed(self._lanes))
        self._waiters: collections.deque[asyncio.Future[Lane]] = collections.deque()
        #: Lanes given up because their thread ran on past its job.
        self.abandoned = 0
        self._closed = False

    @property
    def idle(self) -> int:
        return len(self._idle)

    def try_acquire(self) -> Lane | None:
        if self._idle and not self._waiters:
            return self._idle.pop()
        return None

    async def acquire(self) -> Lane:
        lane = self.try_acquire()
        if lane is not None:
            return lane
        waiter: asyncio.Future[Lane] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Handed a lane just as we were cancelled: pass it on.
                self.release(waiter.result())
            raise

    def wait_for_lane(self, callback: Callable[[Lane], None]) -> asyncio.Future[Lane]:
        """Call `callback(lane)` (on the loop) once a lane is free; cancel the future to stop."""
        waiter: asyncio.Future[Lane] = asyncio.get_running_loop().create_future()
        waiter.add_done_callback(lambda f: None if f.cancelled() else callback(f.result()))
        self._waiters.append(waiter)
        return waiter

    def release(self, lane: Lane) -> None:
        """Give `lane` back: to the next job waiting, else to the idle list."""
        if lane.busy:
            self.abandon(lane)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(lane)
                return
        self._idle.append(lane)

    def abandon(self, lane: Lane) -> None:
        """Its thread runs on past its job: put a fresh lane in its place."""
        if lane.abandoned:
            return
        lane.abandoned = True
        self.abandoned += 1
        lane.executor.shutdown(wait=False)
        logger.warning(
            "database lane %d is stuck in a job that ended (timeout or cancel); a new lane "
            "takes its place and the stuck thread closes its connection when it returns",
            lane.index,
        )
        if self._closed:
            return
        fresh = Lane(self._next_index)
        self._next_index += 1
        self._lanes = [fresh if x is lane else x for x in self._lanes]
        self.release(fresh)

    async def close(self) -> None:
        """Close the idle lanes' connections (on their threads) and let the threads go."""
        self._closed = True
        loop = asyncio.get_running_loop()
        idle, self._idle = self._idle, []
        for lane in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.wrap_future(lane.submit(close_connections), loop=loop), 5.0
                )
        for lane in self._lanes:
            lane.abandoned = lane.abandoned or lane.busy
            lane.executor.shutdown(wait=False, cancel_futures=True)


class JobLaneExecutor(Executor):
    """What one async job's thread-sensitive calls run on: a lane, taken on first use.

    asgiref submits each `sync_to_async` call here from the event loop. The first call
    takes a free lane, or waits (without blocking the loop) until one is released; every
    later call of the job goes to the same lane.
    """

    def __init__(self, pool: LanePool) -> None:
        self.pool = pool
        self.lane: Lane | None = None
        self._pending: list[tuple[Future, Callable[..., Any], tuple, dict]] = []
        self._waiter: asyncio.Future[Lane] | None = None
        self._finished = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self.lane is not None:
            return self.lane.submit(fn, *args, **kwargs)
        if not self._pending:
            lane = self.pool.try_acquire()
            if lane is not None:
                self.lane = lane
                return lane.submit(fn, *args, **kwargs)
        outer: Future = Future()
        self._pending.append((outer, fn, args, kwargs))
        if self._waiter is None:
            self._waiter = self.pool.wait_for_lane(self._bind)
        return outer

    def _bind(self, lane: Lane) -> None:
        self._waiter = None
        if self._finished:
            self.pool.release(lane)  # the job ended while its lane was on the way
            return
        self.lane = lane
        pending, self._pending = self._pending, []
        for outer, fn, args, kwargs in pending:
            if not outer.set_running_or_notify_cancel():
                continue  # cancelled while it waited for a lane
            inner = lane.submit(fn, *args, **kwargs)
            inner.add_done_callback(functools.partial(_copy_outcome, target=outer))

    def finish_unused(self) -> bool:
        """The job ended without touching the ORM: True, and nothing else to do."""
        if self.lane is not None or self._pending or self._waiter is not None:
            return False
        self._finished = True
        return True

    async def finish(self) -> None:
        """The job ended: tidy the lane's connections and give it back (or give it up)."""
        self._finished = True
        if self._waiter is not None:
            self._waiter.cancel()
            self._waiter = None
        for outer, *_ in self._pending:
            outer.cancel()
        self._pending = []
        lane, self.lane = self.lane, None
        if lane is None:
            return
        if not lane.busy:
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(lane.submit(tidy_connections))
        self.pool.release(lane)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """The pool owns the lanes' threads; nothing to shut down per job."""


def _copy_outcome(source: Future, target: Future) -> None:
    if source.cancelled():
        target.cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())


class thread_sensitive_on:  # noqa: N801 - used like a function: `with thread_sensitive_on(x):`
    """Send every thread-sensitive call of this block (and its tasks) to `executor`.

    What `ThreadSensitiveContext(executor=...)` does (asgiref >= 3.11), in its two
    long-standing pieces: the context variable asgiref reads and the executor registered
    for that context. Entered once per job, so it must be cheap: asgiref's own context
    manager costs several times a no-op job's whole run. As asgiref does, an enclosing
    `async_to_sync` still wins (its thread is then the one waiting for this code).
    """

    __slots__ = ("_executor", "_context", "_token")

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    def __enter__(self) -> None:
        self._context = ThreadSensitiveContext()
        self._token = SyncToAsync.thread_sensitive_context.set(self._context)
        SyncToAsync.context_to_thread_executor[self._context] = self._executor

    def __exit__(self, *exc: object) -> None:
        SyncToAsync.context_to_thread_executor.pop(self._context, None)
        SyncToAsync.thread_sensitive_context.reset(self._token)


async def run_on_lane(lane: Lane, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` on `lane`'s thread with this task's context (log records name the job)."""
    context = contextvars.copy_context()
    return await asyncio.wrap_future(lane.submit(context.run, fn, *args))


class BookkeepingExecutor(ThreadPoolExecutor):
    """The worker's own ORM work (pipeline finishes, burst checks): never behind a job."""

    def __init__(self) -> None:
        super().__init__(1, thread_name_prefix=f"{THREAD_PREFIX}bookkeeping")


class ExitingExecutor(ThreadPoolExecutor):
    """The event loop's default executor: its shutdown never waits for a stuck thread.

    asyncio.run waits for the default executor's threads before it returns; a job that
    used it (`loop.run_in_executor(None, ...)`, `sync_to_async(thread_sensitive=False)`)
    and timed out would hold the process's exit past its grace period.
    """

    def __init__(self) -> None:
        super().__init__(thread_name_prefix=f"{THREAD_PREFIX}default")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=False, cancel_futures=True)
