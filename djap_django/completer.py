"""Batch job outcomes into few writes: flush at N outcomes or every few milliseconds.

A finished job stays `in_progress` in the database until its batch is flushed;
that is safe because the worker still holds it, and a crash before the flush
only means the job runs again (delivery is at-least-once). When the database
falls behind, `add` waits: backpressure instead of an unbounded buffer.

Two kinds of failed write, two answers. An outage (the queue calls the error
transient) is waited out: the batch is retried whole, with backoff. A refusal
(bad data, a constraint or trigger of the project's) is about one outcome, so
the batch is split in halves until that outcome is found; it is tried a few
more times (a refusal may pass), then written as `failed` with the database's
reason. One bad outcome never holds up the others, and none is ever dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from .queue.base import Outcome

logger = logging.getLogger("djap.worker")

FinishFn = Callable[[list[Outcome]], Awaitable[None]]

#: Backoff between retries of a batch the database could not take: from FIRST to MAX s.
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0
#: A single refused outcome is tried this many times as it is before it is failed.
REFUSED_TRIES = 3


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def refused_outcome(outcome: Outcome, exc: BaseException) -> Outcome:
    """`outcome` as a failure that says why the database would not store it."""
    reason = (
        f"djap could not store this job's outcome ({outcome.status}): the database refused "
        f"it: {_first_line(exc)}"
    )
    return dataclasses.replace(
        outcome,
        status="failed",
        outputs_json=None,
        run_after=None,
        error=reason + ("\n" + outcome.error if outcome.error else ""),
    )


@dataclasses.dataclass(slots=True)
class _Refused:
    """An outcome the database refused, waiting for its next try."""

    outcome: Outcome
    due: float  # monotonic seconds
    tries: int = 1
    #: Already rewritten as a failure that names the refusal: tried on, never rewritten again.
    rewritten: bool = False


class Completer:
    def __init__(
        self,
        finish: FinishFn,
        *,
        batch_size: int,
        interval_s: float,
        is_transient: Callable[[BaseException], bool] = lambda exc: False,
    ) -> None:
        self._finish = finish
        self._is_transient = is_transient
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._buffer: list[Outcome] = []
        self._has_items = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task | None = None
        self.flushed = 0
        self._writing = False
        self._refused: list[_Refused] = []
        #: Outcomes written as failed because the database refused them.
        self.rewritten = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="djap-completer")

    async def add(self, outcome: Outcome) -> None:
        self._buffer.append(outcome)
        self._has_items.set()
        if len(self._buffer) >= 4 * self._batch_size:
            self._room.clear()
            await self._room.wait()

    async def settled(self) -> None:
        """Wait until every outcome added so far is written (burst looks at the rows next)."""
        while self._buffer or self._writing or self._refused:
            await asyncio.sleep(self._interval_s or 0.001)

    async def _flush_once(self, *, all_refused: bool = False) -> None:
        now = time.monotonic()
        due = [r for r in self._refused if all_refused or r.due <= now]
        self._refused = [r for r in self._refused if not (all_refused or r.due <= now)]
        batch, self._buffer = self._buffer, []
        self._has_items.clear()
        self._writing = True
        written = len(batch)
        try:
            if batch:
                await self._write(batch)
                batch = []
            while due:
                await self._write_refused(due[0])
                due.pop(0)
        except BaseException:
            # Cancelled in a backoff (shutdown): the outcomes stay ours; close() writes them.
            # Some of the batch may be written already: a second finish of a row is a no-op.
            self._buffer[:0] = batch
            self._refused += due
            raise
        finally:
            self._writing = False
        self.flushed += written
        self._room.set()

    async def _write(self, batch: list[Outcome]) -> None:
        """Write `batch`; on a refusal, split it and write each half on its own."""
        delay = RETRY_FIRST_S
        while True:
            try:
                await self._finish(batch)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._is_transient(exc):
                    await self._split(batch, exc)
                    return
                # An outage: the outcomes stay ours until written; retry, never drop.
                logger.warning("could not write %d outcomes (%s); retrying", len(batch), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _split(self, batch: list[Outcome], exc: BaseException) -> None:
        if len(batch) == 1:
            logger.warning(
                "could not write the outcome of job %s (%s); trying it alone again",
                batch[0].job_id,
                _first_line(exc),
            )
            self._refused.append(_Refused(batch[0], time.monotonic() + RETRY_FIRST_S))
            self._has_items.set()
            return
        half = len(batch) // 2
        await self._write(batch[:half])
        await self._write(batch[half:])

    async def _write_refused(self, entry: _Refused) -> None:
        """One more try of a refused outcome; past REFUSED_TRIES, write it as failed."""
        try:
            await self._finish([entry.outcome])
            self.flushed += 1
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._is_transient(exc):
                entry.tries += 1
            if entry.tries > REFUSED_TRIES and not entry.rewritten:
                entry.outcome = refused_outcome(entry.outcome, exc)
                entry.rewritten = True
                self.rewritten += 1
                logger.error("job %s: %s", entry.outcome.job_id, entry.outcome.error)
        # A failure the database refuses too is tried on, ever more slowly, while the
        # others go on; if the worker stops first, the row is rescued like any other.
        entry.due = time.monotonic() + min(RETRY_FIRST_S * 2**entry.tries, RETRY_MAX_S)
        if entry.rewritten and entry.tries == REFUSED_TRIES + 1:
            entry.due = 0.0  # the rewritten failure's first try: at once
        self._refused.append(entry)

    async def _run(self) -> None:
        while True:
            if not self._buffer and self._refused:
                # Only refused outcomes wait: wake for new ones or when the next try is due.
                wait = max(0.0, min(r.due for r in self._refused) - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._has_items.wait(), wait)
            else:
                await self._has_items.wait()
            if len(self._buffer) < self._batch_size:
                await asyncio.sleep(self._interval_s)
            await self._flush_once()
            while self._buffer:
                await self._flush_once()

    async def close(self) -> None:
        """Write everything still buffered (refused outcomes included), then stop."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        while self._buffer or self._refused:
            await self._flush_once(all_refused=True)
            if self._refused:
                await asyncio.sleep(RETRY_FIRST_S)
