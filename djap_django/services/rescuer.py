"""The rescuer: puts back (or fails as poison) the jobs of workers that died.

A worker is dead when its heartbeat is older than STALE_AFTER, or its row says
stopped/dead while jobs still name it. Every live worker runs this pass now and
then, so jobs come back even when no supervisor is running; the statement
guards make two rescuers at once harmless. It also deletes long-stopped worker
rows (PRUNE_WORKERS_AFTER).
"""

from __future__ import annotations

import logging

from .. import conf
from ..queue import RescueReport
from .base import Service

logger = logging.getLogger("djap.worker")

#: A rescue pass comes every this many heartbeat intervals.
RESCUE_EVERY_BEATS = 5


class Rescuer(Service):
    name = "rescue"
    reconnect_on_outage = True

    def interval_s(self) -> float:
        return conf.get("HEARTBEAT_INTERVAL") * RESCUE_EVERY_BEATS

    async def run_once(self) -> RescueReport | None:
        """Rescue the jobs of dead workers; None if the pass was skipped (see below)."""
        # Right after an outage every worker's heartbeat looks stale: rescue only once
        # the others have had STALE_AFTER seconds to beat again, or jobs that are still
        # running would be put back and run twice.
        if self.guard.healthy_for() <= conf.get("STALE_AFTER"):
            return None
        report = await self.queue.jobs_rescue_stale(
            conf.get("STALE_AFTER"), conf.get("MAX_CRASHES")
        )
        if report.requeued or report.failed:
            logger.warning(
                "rescued jobs of %d dead workers: %d put back, %d failed as poison",
                report.dead_workers,
                report.requeued,
                report.failed,
            )
        if report.failed:
            # The rescue failed a job by SQL alone: fail the pipeline it belongs to.
            from ..pipelines import afail_pipelines_of_failed_jobs

            await afail_pipelines_of_failed_jobs()
        await self.queue.workers_prune(conf.get("PRUNE_WORKERS_AFTER"))
        return report
