"""The stager: moves scheduled jobs that fell due onto the claim path, in batches.

A job enqueued with a future `run_after`, or a retry backing off, is written with
`scheduled` set: it waits in djap_job_scheduled, off the indexes claims walk, so a
million jobs due tomorrow cost a claim nothing today. Every worker runs a Stager
(any number at once: each batch locks its rows with SKIP LOCKED on PostgreSQL, and
SQLite has one writer). It wakes at the next due time it knows of, or every
STAGE_INTERVAL for jobs scheduled since, moves what is due in batches of
STAGE_BATCH, and on PostgreSQL NOTIFYs the idle workers in the same statement.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

from .. import conf
from ..queue import Queue
from ..resilience import DbGuard
from .base import Service

logger = logging.getLogger("djap.worker")

#: Seconds between two batches of one pass: other writers get the lock (SQLite) between.
BATCH_PAUSE_S = 0.001
#: Seconds at least between two passes. Jobs falling due one after another (10,000
#: spread over a second) are then staged in passes of 20 ms worth each, at most that
#: late, instead of one pass per job.
MIN_GAP_S = 0.02


class Stager(Service):
    """Stage due jobs now and then; `note_due` wakes it early for a retry it wrote."""

    name = "stage"

    def __init__(self, queue: Queue, guard: DbGuard) -> None:
        super().__init__(queue, guard)
        #: Jobs moved so far (tests wait on it).
        self.staged = 0
        self._wake = asyncio.Event()
        #: time.monotonic() at which the earliest job this stager knows of falls due.
        self._next_due: float | None = None

    def note_due(self, run_after: dt.datetime) -> None:
        """A job this process wrote falls due at `run_after`: be awake then."""
        delay = (run_after - dt.datetime.now(dt.UTC)).total_seconds()
        due = time.monotonic() + max(0.0, delay)
        if self._next_due is None or due < self._next_due:
            self._next_due = due
            self._wake.set()

    async def run_once(self) -> int:
        """Stage every job due now, batch by batch; returns how many moved."""
        batch = conf.get("STAGE_BATCH")
        total = 0
        while True:
            report = await self.queue.jobs_stage(batch)
            total += report.staged
            if report.next_due_s is None:
                self._next_due = None
            else:
                self._next_due = time.monotonic() + report.next_due_s
            if report.staged < batch:
                break
            await asyncio.sleep(BATCH_PAUSE_S)
        self.staged += total
        return total

    def interval_s(self) -> float:
        return conf.get("STAGE_INTERVAL")

    def _sleep_s(self) -> float:
        """Seconds until the next pass: the next known due time, or STAGE_INTERVAL."""
        interval = self.interval_s()
        if self._next_due is None:
            return interval
        return max(0.0, min(interval, self._next_due - time.monotonic()))

    async def run_forever(self) -> None:
        """Service.run_forever, but the wait ends at the next due time or a note_due."""
        last_error = ""
        while True:
            try:
                await self.run_once()
                self.passes += 1
                last_error = ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.queue.is_transient(exc):
                    self.guard.note_error(self.name, exc)
                elif str(exc) != last_error:  # said once, not twice a second
                    last_error = str(exc)
                    logger.warning("%s failed: %s", self.name, exc)
            await asyncio.sleep(MIN_GAP_S)
            await self._sleep_until_due()

    async def _sleep_until_due(self) -> None:
        """Sleep to the next due time or STAGE_INTERVAL; a note_due may shorten it."""
        while (delay := self._sleep_s()) > 0:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                return
