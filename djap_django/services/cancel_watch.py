"""The cancel watch: stops running attempts whose claim is no longer this worker's.

A claim is ours while its row is `in_progress` under this worker with the same claim
token. A cancelled job's row says `cancelled`; a job rescued from us while we looked
dead says `new`, or is claimed again since (by another worker, or by this one under a
newer token). On PostgreSQL a NOTIFY reaches the worker at once (queue.listen) and this
poll is the fallback; on SQLite it is the only signal.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import conf
from ..queue import Queue
from ..resilience import DbGuard
from .base import Service

#: A running attempt: (job id, claim token).
Claim = tuple[int, int]


class CancelWatch(Service):
    name = "cancel check"

    def __init__(
        self,
        queue: Queue,
        guard: DbGuard,
        *,
        worker_id: int,
        running: Callable[[], list[Claim]],
        stop_claim: Callable[[Claim], None],
    ) -> None:
        super().__init__(queue, guard)
        self.worker_id = worker_id
        self.running = running
        self.stop_claim = stop_claim

    def interval_s(self) -> float:
        return conf.get("CANCEL_POLL_INTERVAL")

    async def run_once(self) -> list[Claim]:
        """Stop the running attempts that are no longer ours; returns their claims."""
        claims = self.running()
        if not claims:
            return []
        # Read after the snapshot: every claim in it committed before this query ran.
        held = await self.queue.jobs_held(self.worker_id)
        stopped = [(job_id, claim) for job_id, claim in claims if held.get(job_id) != claim]
        for key in stopped:
            self.stop_claim(key)
        return stopped
