"""The cancel watch: stops running jobs whose row says they are no longer ours to run.

A cancelled job's row says `cancelled`; a job rescued from us while we looked
dead says `new` (or `failed`). On PostgreSQL a NOTIFY reaches the worker at once
(queue.listen) and this poll is the fallback; on SQLite it is the only signal.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import conf
from ..queue import Queue
from ..resilience import DbGuard
from .base import Service

#: A running job whose row is in one of these statuses (or gone) is stopped.
NOT_OURS = ("cancelled", "new", "not_ready")


class CancelWatch(Service):
    name = "cancel check"

    def __init__(
        self,
        queue: Queue,
        guard: DbGuard,
        *,
        running: Callable[[], list[int]],
        stop_job: Callable[[int], None],
    ) -> None:
        super().__init__(queue, guard)
        self.running = running
        self.stop_job = stop_job

    def interval_s(self) -> float:
        return conf.get("CANCEL_POLL_INTERVAL")

    async def run_once(self) -> list[int]:
        """Stop the running jobs that were cancelled or taken from us; returns their ids."""
        ids = self.running()
        if not ids:
            return []
        statuses = await self.queue.jobs_status(ids)
        stopped = [i for i in ids if statuses.get(i, "cancelled") in NOT_OURS]
        for job_id in stopped:
            self.stop_job(job_id)
        return stopped
