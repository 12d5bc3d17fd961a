"""What every background service shares: a pass every interval, and riding out outages.

A service does its work in `run_once`, which tests can call directly and whose
return value says what it did. `run_forever` is the loop the worker starts as a
task: wait, run once, wait again. A transient database error is noted on the
worker's DbGuard (which logs the outage once) and the next pass tries again; any
other error is logged and, for a service that says so, ends the loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from ..queue import Queue
from ..resilience import DbGuard

logger = logging.getLogger("djap.worker")


class Service:
    """One background loop of a worker. Subclasses set `name` and define the rest."""

    #: Names the service in logs and in its asyncio task (`djap-<name>`).
    name: ClassVar[str]
    #: After a transient error, reopen the queue's broken connections before the next pass.
    reconnect_on_outage: ClassVar[bool] = False
    #: An unexpected (not transient) error ends the loop instead of being logged and skipped.
    stop_on_error: ClassVar[bool] = False

    def __init__(self, queue: Queue, guard: DbGuard) -> None:
        self.queue = queue
        self.guard = guard
        #: Passes that ran to the end (tests wait on it rather than sleeping).
        self.passes = 0

    def enabled(self) -> bool:
        """False if the settings turn this service off: its loop returns at once."""
        return True

    def interval_s(self) -> float:
        """Seconds between two passes (read before each wait, from the settings)."""
        raise NotImplementedError

    def first_delay_s(self) -> float:
        """Seconds before the first pass."""
        return self.interval_s()

    async def run_once(self) -> Any:
        """Do one pass of the work; what it returns says what it did."""
        raise NotImplementedError

    async def run_forever(self) -> None:
        if not self.enabled():
            return
        await asyncio.sleep(self.first_delay_s())
        while True:
            try:
                await self.run_once()
                self.passes += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.queue.is_transient(exc):
                    self.guard.note_error(self.name, exc)
                    if self.reconnect_on_outage:
                        await self.guard.reconnect()
                elif self.stop_on_error:
                    logger.exception("%s failed; it stops until the worker restarts", self.name)
                    return
                else:
                    logger.warning("%s failed: %s", self.name, exc)
            await asyncio.sleep(self.interval_s())
