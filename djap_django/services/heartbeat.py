"""The heartbeat: a worker's row says every few seconds that it is alive, and how it does.

Any other worker or supervisor, on any host, treats a worker whose heartbeat is
older than STALE_AFTER as dead and rescues its jobs (rescuer.py). The same pass
notices a supervisor that went away, and stops the worker (a worker never
outlives the supervisor that started it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from .. import conf
from ..queue import Queue, WorkerInfo
from ..queue.base import RESTORED, REVIVED
from ..resilience import DbGuard
from .base import Service

logger = logging.getLogger("djap.worker")


@dataclass(frozen=True, slots=True)
class Pulse:
    """What a heartbeat writes to the worker's row besides the time."""

    done: int
    failed: int
    in_flight: int
    state: str


class Heartbeat(Service):
    name = "heartbeat"
    # A heartbeat that fails in an outage is also the worker's way back: reconnect.
    reconnect_on_outage = True

    def __init__(
        self,
        queue: Queue,
        guard: DbGuard,
        *,
        worker_id: int,
        pulse: Callable[[], Pulse],
        supervisor_pid: int | None = None,
        on_orphaned: Callable[[], None] | None = None,
        info: WorkerInfo | None = None,
    ) -> None:
        super().__init__(queue, guard)
        self.worker_id = worker_id
        #: Who this worker is: lets a beat write the row again if it is gone.
        self.info = info
        self.pulse = pulse
        self.supervisor_pid = supervisor_pid
        self.on_orphaned = on_orphaned
        self._orphaned = False

    def interval_s(self) -> float:
        return conf.get("HEARTBEAT_INTERVAL")

    async def run_once(self) -> Pulse:
        self._check_supervisor()
        pulse = self.pulse()
        await self.beat(pulse)
        self.guard.note_ok()
        return pulse

    async def beat(self, pulse: Pulse) -> str:
        """Write one heartbeat (also the last one, `stopped`, at shutdown); what it found.

        A row marked dead (a rescuer judged this worker silent too long) is taken back,
        and a row that is gone (deleted by hand) is written again, both under the same id:
        the jobs this worker still holds stay its own. Jobs a rescuer took meanwhile are
        no longer ours; the cancel watch stops them here (their claim token changed).
        """
        found = await self.queue.worker_heartbeat(
            self.worker_id,
            done=pulse.done,
            failed=pulse.failed,
            in_flight=0 if pulse.state == "stopped" else pulse.in_flight,
            state=pulse.state,
            info=self.info,
        )
        if found == REVIVED:
            logger.warning(
                "worker %s: its row was marked dead (a heartbeat came late?); taking it "
                "back; jobs rescued from it meanwhile are stopped here",
                self.worker_id,
            )
        elif found == RESTORED:
            logger.warning(
                "worker %s: its row was gone (deleted by hand?); wrote it again", self.worker_id
            )
        return found

    def _check_supervisor(self) -> None:
        sup = self.supervisor_pid
        if sup is None or self._orphaned or os.getppid() == sup:
            return
        self._orphaned = True
        logger.warning("supervisor %s is gone; stopping", sup)
        if self.on_orphaned is not None:
            self.on_orphaned()
