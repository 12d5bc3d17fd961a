"""Run one claimed job and turn whatever happened into an Outcome.

Nothing here raises for a job's own failure: an unknown name, inputs that no
longer fit, an exception, a timeout or bad outputs all become a `failed` (or a
retry) Outcome whose error names the thing to fix. Only cancellation passes.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import inspect
import random
import traceback
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError, close_old_connections

from . import codec, conf, registry
from .exceptions import DjapError, Retry
from .logs import bind_job
from .queue.base import ClaimedJob, Outcome


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with +-25% jitter, so retries of a burst spread out."""
    base, cap = conf.get("RETRY_BACKOFF_BASE"), conf.get("RETRY_BACKOFF_MAX")
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay * random.uniform(0.75, 1.25)


def _failed(claimed: ClaimedJob, error: str, retry_after: float | None = None) -> Outcome:
    """A failed attempt: retried while attempts remain, else failed for good."""
    if claimed.attempts < claimed.max_attempts:
        delay = backoff_seconds(claimed.attempts) if retry_after is None else retry_after
        run_after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        header = f"attempt {claimed.attempts} of {claimed.max_attempts} failed; retrying\n"
        return Outcome(claimed.id, "new", error=header + error, run_after=run_after)
    header = f"attempt {claimed.attempts} of {claimed.max_attempts} failed\n"
    return Outcome(claimed.id, "failed", error=header + error)


class SyncPool(Executor):
    """The threads that run sync jobs; a thread stuck past its job's deadline is given up.

    Python cannot stop a thread. When a sync attempt times out (or is cancelled), the
    attempt ends but its thread runs on; `abandon` moves later jobs to a fresh pool so
    the stuck thread never takes a slot that another job is waiting for.
    """

    def __init__(self, max_workers: int) -> None:
        self._max_workers = max_workers
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="djap-job")
        #: Sync attempts whose thread ran on after the attempt ended.
        self.abandoned = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        return self._pool.submit(fn, *args, **kwargs)

    def abandon(self) -> None:
        self.abandoned += 1
        old, self._pool = (
            self._pool,
            ThreadPoolExecutor(self._max_workers, thread_name_prefix="djap-job"),
        )
        # Threads of the old pool finish what they run (or queue) and then exit.
        old.shutdown(wait=False)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def _run_sync(job: Any) -> None:
    try:
        job.run()
    finally:
        # As after a request: drop connections the job opened in this thread if stale.
        close_old_connections()


def build_job(claimed: ClaimedJob) -> Any:
    """The job instance for a row; raises DjapError naming the job or field."""
    job_cls = registry.get(claimed.name)
    if job_cls is None:
        raise DjapError(
            f"No registered job is named {claimed.name!r}. Was the class renamed or removed "
            f"from its jobs.py? Registered jobs: {', '.join(registry.names()) or 'none'}"
        )
    if job_cls.Inputs is None:
        if claimed.inputs is not None:
            raise DjapError(
                f"{claimed.name}: the row has inputs but {claimed.name} declares no Inputs"
            )
        inputs = None
    else:
        inputs = codec.decode(claimed.name, job_cls.Inputs, claimed.inputs)
    job = job_cls(inputs)
    job.id = claimed.id
    job.attempt = claimed.attempts
    return job


def _encode_outputs(job: Any) -> str | None:
    outputs_cls = type(job).Outputs
    if job.outputs is None:
        return None
    name = type(job).__name__
    if outputs_cls is None:
        if not isinstance(job.outputs, dict):
            raise DjapError(f"{name}: outputs must be a dict when the job declares no Outputs")
        return codec.dumps(job.outputs)
    _, text = codec.encode(name, outputs_cls, job.outputs, what="outputs")
    return text


async def execute(claimed: ClaimedJob, sync_executor: Executor | None = None) -> Outcome:
    """Run one attempt of `claimed`; the Outcome says how it ended."""
    # Every log record from here on in this job's task names it (djap_django.logs).
    bind_job(claimed.id, claimed.name)
    try:
        job = build_job(claimed)
    except DjapError as exc:
        # A row we cannot even build will not fit on a retry either: fail it now.
        return Outcome(claimed.id, "failed", error=str(exc))

    timeout = claimed.timeout
    is_async = inspect.iscoroutinefunction(job.run)
    try:
        async with asyncio.timeout(timeout) as deadline:
            if is_async:
                await job.run()
            else:
                # A thread cannot be interrupted: at the deadline we stop waiting and fail
                # the attempt, while the thread runs on to its end in the background.
                # The job's context goes along, so log records from the thread name it.
                loop = asyncio.get_running_loop()
                context = contextvars.copy_context()
                await loop.run_in_executor(sync_executor, context.run, _run_sync, job)
    except Retry as exc:
        return _failed(claimed, f"Retry requested: {exc}", retry_after=exc.after)
    except TimeoutError:
        if deadline.expired():
            if not is_async and isinstance(sync_executor, SyncPool):
                sync_executor.abandon()
            limit = f"{claimed.name} timed out after {timeout:g} s (timeout)"
            if not is_async:
                limit += "; its thread cannot be stopped and runs on in the background"
            return _failed(claimed, limit)
        return _failed(claimed, traceback.format_exc())
    except asyncio.CancelledError:
        if not is_async and isinstance(sync_executor, SyncPool):
            sync_executor.abandon()
        raise
    except DatabaseError:
        # The job's own queries failed (an outage?): Django keeps a broken connection
        # until someone closes it, so close it now or every later job fails the same way.
        await sync_to_async(close_old_connections)()
        return _failed(claimed, traceback.format_exc())
    except Exception:
        return _failed(claimed, traceback.format_exc())

    try:
        outputs_json = _encode_outputs(job)
    except DjapError as exc:
        return Outcome(claimed.id, "failed", error=str(exc))
    outcome = Outcome(claimed.id, "done", outputs_json=outputs_json)
    if claimed.pipeline_id is not None:
        outcome.next_inputs = job.next_job_inputs
        outcome.has_next_inputs = job.next_job_inputs is not None
    return outcome
