"""Putting jobs back: those of a child that just died, and those of stale workers anywhere.

A dead child's jobs go back at once, without waiting for its heartbeat to go stale.
Every few seconds any supervisor also rescues the jobs of workers whose heartbeat
went stale on any host (a vanished machine); heartbeat pruning is only the backup.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import sync_to_async

from .database import DatabaseWatch
from .events import EventLog
from .processes import Child

logger = logging.getLogger("djap.supervisor")

#: The supervisor rescues jobs of stale workers on any host this often (seconds).
RESCUE_STALE_EVERY_S = 5.0


async def _fail_pipelines_of_failed_jobs() -> None:
    """Jobs failed as poison by SQL alone: fail the pipelines they belong to."""
    from djap_django.pipelines import afail_pipelines_of_failed_jobs

    await afail_pipelines_of_failed_jobs()


class Rescuer:
    def __init__(
        self,
        queue: Any,
        *,
        alias: str,
        node: str,
        supervisor_pid: int,
        stale_after: float,
        max_crashes: int,
        db: DatabaseWatch,
        events: EventLog,
        now: float,
    ) -> None:
        self.queue, self.alias, self.node, self.supervisor_pid = queue, alias, node, supervisor_pid
        self.stale_after, self.max_crashes = stale_after, max_crashes
        self.db, self.events = db, events
        self._last_stale = now

    async def child(self, child: Child) -> int:
        """Put back the jobs a dead child held; returns how many went back (or failed)."""
        from djap_django.models import WorkerDBModel

        def lookup() -> int | None:
            return (
                WorkerDBModel.objects.using(self.alias)
                .filter(host=self.node, pid=child.pid, supervisor_pid=self.supervisor_pid)
                .order_by("-id")
                .values_list("id", flat=True)
                .first()
            )

        try:
            worker_id = await sync_to_async(lookup)()
            if worker_id is None:
                return 0  # it died before it registered: it held nothing
            report = await self.queue.jobs_rescue_worker(worker_id, self.max_crashes)
            if report.failed:
                await _fail_pipelines_of_failed_jobs()
        except Exception as exc:  # the database may be down; stale rescue is the backup
            logger.warning("could not put back the jobs of pid %s yet: %s", child.pid, exc)
            await self.db.call_failed(exc, self.queue)
            return 0
        return report.requeued + report.failed

    async def stale(self, now: float) -> None:
        """Any supervisor puts back jobs of stale workers on any host (a vanished host)."""
        if now - self._last_stale < RESCUE_STALE_EVERY_S:
            return
        # Right after an outage every heartbeat looks stale: wait until workers have had
        # STALE_AFTER seconds to beat again, or running jobs would be put back.
        if not self.db.steady_for(now, self.stale_after):
            return
        self._last_stale = now
        from djap_django import conf

        try:
            report = await self.queue.jobs_rescue_stale(self.stale_after, self.max_crashes)
            if report.failed:
                await _fail_pipelines_of_failed_jobs()
            await self.queue.workers_prune(conf.get("PRUNE_WORKERS_AFTER"))
        except Exception as exc:
            logger.warning("stale-worker rescue failed: %s", exc)
            await self.db.call_failed(exc, self.queue)
            return
        if report.requeued or report.failed:
            self.events(
                f"{report.dead_workers} stale workers (another host?): put back "
                f"{report.requeued} jobs, failed {report.failed} as poison"
            )
