"""Run one claimed job and turn whatever happened into an Outcome.

Nothing here raises for a job's own failure: an unknown name, inputs that no
longer fit, an exception, a timeout or bad outputs all become a `failed` (or a
retry) Outcome whose error names the thing to fix. Only cancellation passes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import random
import traceback
from typing import Any

from asgiref.sync import sync_to_async

from . import codec, conf, registry
from .exceptions import DjapError, Retry, Snooze
from .lanes import JobLaneExecutor, LanePool, run_on_lane, thread_sensitive_on, tidy_connections
from .logs import bind_job
from .queue.base import SNOOZED, ClaimedJob, Outcome

#: Passed as `lanes` by inline mode (inline_runner.py): the job runs in the thread of the
#: enclosing async_to_sync call (the test's own), on its connection and transaction.
INLINE_SYNC: Any = object()


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


def _run_sync(job: Any) -> None:
    try:
        job.run()
    finally:
        # As after a request, on the lane's thread: keep the connection if it is good.
        tidy_connections()


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
        text = codec.dumps(job.outputs)
    else:
        _, text = codec.encode(name, outputs_cls, job.outputs, what="outputs")
    if codec.has_nul(text):
        raise DjapError(
            f"{name}: outputs hold a NUL character (\\u0000), which PostgreSQL cannot store "
            "in JSON; remove it, e.g. text.replace('\\x00', '')"
        )
    return text


async def execute(claimed: ClaimedJob, lanes: LanePool) -> Outcome:
    """Run one attempt of `claimed` on `lanes`; the Outcome says how it ended."""
    # Every log record from here on in this job's task names it (djap_django.logs).
    bind_job(claimed.id, claimed.name)
    try:
        job = build_job(claimed)
    except DjapError as exc:
        # A row we cannot even build will not fit on a retry either: fail it now.
        return Outcome(claimed.id, "failed", error=str(exc))
    except Exception:
        # An Inputs class whose own __init__ or __post_init__ raised: the same, with how.
        return Outcome(claimed.id, "failed", error=traceback.format_exc())

    timeout = claimed.timeout
    is_async = inspect.iscoroutinefunction(job.run)
    inline = lanes is INLINE_SYNC
    # A sync body waits for a lane before its clock starts: waiting is not running.
    lane = None if is_async or inline else await lanes.acquire()
    job_lane = JobLaneExecutor(lanes) if is_async and not inline else None
    try:
        async with asyncio.timeout(timeout) as deadline:
            if inline:
                # Inline mode: sync_to_async goes back to the caller's thread.
                if is_async:
                    await job.run()
                else:
                    await sync_to_async(job.run, thread_sensitive=True)()
            elif job_lane is not None:
                # The job's ORM calls (and its sync_to_async calls) go to its own lane.
                with thread_sensitive_on(job_lane):
                    await job.run()
            else:
                assert lane is not None
                # A thread cannot be interrupted: at the deadline we stop waiting and fail
                # the attempt, while the thread runs on to its end in the background.
                # The job's context goes along, so log records from the thread name it.
                await run_on_lane(lane, _run_sync, job)
    except Retry as exc:
        return _failed(claimed, f"Retry requested: {exc}", retry_after=exc.after)
    except Snooze as exc:
        run_after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=exc.after)
        return Outcome(claimed.id, SNOOZED, run_after=run_after)
    except TimeoutError:
        if deadline.expired():
            limit = f"{claimed.name} timed out after {timeout:g} s (timeout)"
            if not is_async:
                limit += "; its thread cannot be stopped and runs on in the background"
            return _failed(claimed, limit)
        return _failed(claimed, traceback.format_exc())
    except Exception:
        # A failed query leaves its connection marked; the lane's tidy-up after the job
        # closes it if it no longer answers (an outage), so the next job reconnects.
        return _failed(claimed, traceback.format_exc())
    finally:
        # A lane whose thread still runs (timeout, cancel) is given up, not reused.
        if job_lane is not None and not job_lane.finish_unused():
            await asyncio.shield(job_lane.finish())
        if lane is not None:
            lanes.release(lane)

    try:
        outputs_json = _encode_outputs(job)
    except DjapError as exc:
        return Outcome(claimed.id, "failed", error=str(exc))
    except (TypeError, ValueError) as exc:
        # json's own refusals (a set, a datetime, NaN): without this the attempt would
        # end with no outcome and stay in_progress under this worker's live heartbeat.
        return Outcome(
            claimed.id,
            "failed",
            error=f"{claimed.name}: outputs are not JSON ({exc}); set only str, int, float, "
            "bool, None, and lists and dicts of those",
        )
    outcome = Outcome(claimed.id, "done", outputs_json=outputs_json)
    if claimed.pipeline_id is not None:
        outcome.next_inputs = job.next_job_inputs
        outcome.has_next_inputs = job.next_job_inputs is not None
    return outcome
