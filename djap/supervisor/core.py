"""The supervisor's loop: tick, stop on signals, end a burst; the parts do the work.

Twice a second it reads the worker table (heartbeats), has `Restarts` judge every
child, starts the processes that are due, rescues stale workers' jobs and publishes
a snapshot for the view. SIGTERM / Ctrl-C is forwarded as SIGTERM (drain within
--grace); a second one is forwarded as SIGINT (stop now; workers still put their
jobs back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
import time
from collections.abc import Callable

from asgiref.sync import sync_to_async

from ..health import Limits
from ..status.reader import SnapshotReader
from ..status.snapshot import Snapshot, WorkerView
from ..status.throughput import ThroughputMeter
from .database import DatabaseWatch
from .events import EventLog
from .options import SuperviseOptions
from .processes import ProcessTable, Slot, send, worker_command
from .rescue import Rescuer
from .restarts import STOP_MARGIN_S, Restarts
from .views import publish, view_title

logger = logging.getLogger("djap.supervisor")

#: Seconds between ticks: reap, sample, read the worker table, redraw.
TICK_S = 0.5
#: After a second Ctrl-C, workers get this long (seconds) before SIGKILL.
IMMEDIATE_STOP_S = 5.0


class Supervisor:
    def __init__(
        self, options: SuperviseOptions, on_restart: Callable[[str, str], None] | None = None
    ) -> None:
        from djap_django import conf
        from djap_django.queue import open_queue

        self.options = options
        self.alias = options.alias or conf.database_alias()
        self.node = options.node_name or socket.gethostname()
        self.pid = os.getpid()
        self.grace = options.grace if options.grace is not None else conf.get("GRACE")
        self.stale_after = conf.get("STALE_AFTER")
        self.started = time.monotonic()
        self.stopping = False
        self.stop_deadline: float | None = None
        self._wake = asyncio.Event()
        self._signals = 0
        #: The newest worker row id seen so far (any host).
        self._max_row_id = 0
        self.snapshot: Snapshot | None = None

        self.queue = open_queue(self.alias)
        self.events = EventLog()
        self.db = DatabaseWatch(self.started)
        self.meter = ThroughputMeter(self.started)
        self.reader = SnapshotReader(self.alias, self.stale_after)
        self.table = ProcessTable(
            [Slot(g, i) for g in options.groups for i in range(g.procs)],
            lambda slot: worker_command(slot, options, self.pid, self.node, self.grace),
        )
        self.rescuer = Rescuer(
            self.queue,
            alias=self.alias,
            node=self.node,
            supervisor_pid=self.pid,
            stale_after=self.stale_after,
            max_crashes=conf.get("MAX_CRASHES"),
            db=self.db,
            events=self.events,
            now=self.started,
        )
        self.restarts = Restarts(
            self.table,
            limits=Limits(hung_after=self.stale_after, max_memory=options.max_memory),
            grace=self.grace,
            burst=options.burst,
            rescuer=self.rescuer,
            db=self.db,
            events=self.events,
            on_restart=on_restart,
        )

    # -- stopping ------------------------------------------------------------------

    def on_signal(self, sig: int) -> None:
        """First SIGTERM/SIGINT: drain within the grace. A second one: stop now."""
        self._signals += 1
        now = time.monotonic()
        children = self.table.children()
        if self._signals == 1:
            self.stopping = True
            self.stop_deadline = now + self.grace + STOP_MARGIN_S
            for child in children:
                child.draining = True
                send(child, signal.SIGTERM)
            self.events(
                f"{signal.Signals(sig).name}: stopping {len(children)} processes "
                f"(running jobs get {self.grace:g}s; Ctrl-C again to stop now)",
                logging.INFO,
            )
        else:
            self.stop_deadline = min(self.stop_deadline or now, now + IMMEDIATE_STOP_S)
            for child in children:
                send(child, signal.SIGINT)
            self.events("stopping now: running jobs are cancelled and put back", logging.INFO)
        self._wake.set()

    def _done(self) -> bool:
        return self.stopping and not self.table.children()

    async def _burst_finished(self) -> bool:
        """Burst: every slot finished; restart groups that still have runnable jobs."""
        slots = self.table.slots
        if not self.options.burst or self.table.retiring:
            return False
        if not all(s.finished for s in slots):
            return False
        again = False
        for group in {id(s.group): s.group for s in slots}.values():
            try:
                runnable = await self.queue.jobs_runnable_exists(group.include, group.exclude)
            except Exception as exc:
                logger.warning("cannot tell whether jobs are left: %s", exc)
                await self.db.call_failed(exc, self.queue)
                return False
            if runnable:
                for slot in slots:
                    if slot.group is group:
                        slot.finished, slot.start_at = False, time.monotonic()
                        again = True
        return not again

    # -- reading the database ------------------------------------------------------

    def _read_snapshot(self, now: float, force_counts: bool = False) -> Snapshot:
        from django.db import DatabaseError, connections

        try:
            return self.reader.read(now, force_counts)
        except DatabaseError:
            # Django keeps a broken connection until told; the next tick opens a new one.
            connections[self.alias].close()
            raise

    def _my_rows(self, snap: Snapshot) -> dict[int, WorkerView]:
        """This supervisor's worker rows, by pid (the newest row wins a reused pid)."""
        rows: dict[int, WorkerView] = {}
        for w in snap.workers:
            self._max_row_id = max(self._max_row_id, w.id)
            if (
                w.host == self.node
                and w.supervisor_pid == self.pid
                and (w.pid not in rows or rows[w.pid].id < w.id)
            ):
                rows[w.pid] = w
        return rows

    def _publish(self, snap: Snapshot, now: float) -> Snapshot:
        self.meter.update(now, {w.id: w.jobs_done + w.jobs_failed for w in snap.workers})
        self.snapshot = publish(
            snap,
            table=self.table,
            meter=self.meter,
            events=self.events.recent(),
            title=view_title(self.node, self.options.burst, self.stopping),
            now=now,
            stopping=self.stopping,
        )
        return self.snapshot

    # -- the loop ------------------------------------------------------------------

    async def tick(self) -> Snapshot | None:
        now = time.monotonic()
        snap: Snapshot | None
        try:
            snap = await sync_to_async(self._read_snapshot)(now)
        except Exception as exc:
            self.db.read_failed(exc, now)
            snap = None
        if snap is not None:
            self.db.read_ok(now)
        rows = self._my_rows(snap) if snap is not None else None
        for child in self.table.children():
            await self.restarts.check(child, rows, now, self.stopping)
        if not self.stopping:
            self.table.start_due(now, self._max_row_id)
        elif self.stop_deadline is not None and now >= self.stop_deadline:
            await self.restarts.kill_leftovers("did not stop in time (SIGKILL)", self.stopping)
        await self.rescuer.stale(now)
        return self._publish(snap, now) if snap is not None else self.snapshot

    async def run(self, on_tick: Callable[[Snapshot], None] | None = None) -> int:
        """Run until stopped (or, in burst mode, until nothing is left); returns the exit code."""
        if self.options.log_file:
            self.table.output = open(self.options.log_file, "ab")  # noqa: SIM115 - closed below
        await self.queue.connect()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.on_signal, sig)
        logger.info(
            "supervisor %s on %s: %s",
            self.pid,
            self.node,
            ", ".join(f"{g.procs}x {g.name}" for g in self.options.groups),
        )
        try:
            while True:
                snap = await self.tick()
                if on_tick is not None and snap is not None:
                    on_tick(snap)
                if self._done() or await self._burst_finished():
                    break
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), TICK_S)
            # The last frame shows final counts, not the ones cached up to seconds ago.
            with contextlib.suppress(Exception):
                snap = await sync_to_async(self._read_snapshot)(time.monotonic(), True)
                if on_tick is not None:
                    on_tick(self._publish(snap, time.monotonic()))
        finally:
            if self.table.children():
                await self.restarts.kill_leftovers(
                    "killed: the supervisor is exiting", self.stopping
                )
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.queue.close()
            if self.table.output is not None:
                self.table.output.close()
        me, kids = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        logger.info(
            "supervisor %s stopped; CPU seconds: supervisor %.2f, workers %.2f",
            self.pid,
            me.ru_utime + me.ru_stime,
            kids.ru_utime + kids.ru_stime,
        )
        return 0
