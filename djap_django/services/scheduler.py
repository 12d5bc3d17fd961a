"""The worker's scheduler of periodic jobs: enqueue what is due, sleep until the next tick.

Who enqueues a tick is decided in the database (djap_django.periodic.run_once); this
loop only decides when to look again: at the next tick, or after PERIODIC_INTERVAL,
whichever comes first.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import DatabaseError, close_old_connections

from .. import conf, periodic
from ..queue import Queue
from ..resilience import DbGuard
from .base import Service

#: Sleep at least this long (seconds) between two passes, even when a tick is due sooner.
MIN_SLEEP_S = 0.05


class PeriodicScheduler(Service):
    name = "periodic"

    def __init__(self, queue: Queue, guard: DbGuard, alias: str | None = None) -> None:
        super().__init__(queue, guard)
        self.alias = alias
        self._wait = conf.get("PERIODIC_INTERVAL")
        #: Ticks this process enqueued (tests and logs).
        self.enqueued = 0

    def enabled(self) -> bool:
        return bool(periodic.periodic_classes())

    def first_delay_s(self) -> float:
        return 0.0

    def interval_s(self) -> float:
        return self._wait

    async def run_once(self) -> periodic.TickReport:
        """One check of every schedule; returns what it enqueued and when the next tick is."""
        interval = conf.get("PERIODIC_INTERVAL")
        self._wait = interval  # after an error: look again after the interval
        try:
            report = await sync_to_async(periodic.run_once)(self.alias)
        except DatabaseError:
            # An outage: the tick stays due in its row for whoever is up. Django keeps a
            # broken connection until someone closes it.
            await sync_to_async(close_old_connections)()
            raise
        self.enqueued += len(report.enqueued)
        if report.next_in is not None:
            self._wait = max(MIN_SLEEP_S, min(interval, report.next_in))
        return report
