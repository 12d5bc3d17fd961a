"""The restart policy wired to processes: sample a child, ask `djap.health.decide`, act.

`decide` is pure; this module turns its answer into signals, rescues, backoff and
events:

- a child that exited is restarted, after a backoff while it keeps crashing;
- a child whose heartbeat is stale (hung loop, SIGSTOP) is SIGKILLed and replaced;
- a child over --max-memory is asked to drain (SIGTERM) and a replacement starts now.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import time
from collections.abc import Callable

from ..health import Action, Limits, Sample, backoff_delay, decide, next_crash_streak
from ..status.snapshot import WorkerView
from .database import DatabaseWatch
from .events import EventLog
from .processes import Child, ProcessTable, reap, send
from .rescue import Rescuer

logger = logging.getLogger("djap.supervisor")

#: After the grace period, workers get this long (seconds) to put jobs back before SIGKILL.
STOP_MARGIN_S = 10.0
#: How long (seconds) an exited child gets to be reaped before its jobs are put back.
EXIT_WAIT_S = 5.0


class Restarts:
    def __init__(
        self,
        table: ProcessTable,
        *,
        limits: Limits,
        grace: float,
        burst: bool,
        rescuer: Rescuer,
        db: DatabaseWatch,
        events: EventLog,
        on_restart: Callable[[str, str], None] | None = None,
    ) -> None:
        self.table, self.limits, self.grace, self.burst = table, limits, grace, burst
        self.rescuer, self.db, self.events = rescuer, db, events
        #: Called with (group, reason) each time a process is replaced: crashed, hung, memory.
        self.on_restart = on_restart

    async def check(
        self, child: Child, rows: dict[int, WorkerView] | None, now: float, stopping: bool
    ) -> None:
        """Sample one child (with its worker row, when the table was readable) and act."""
        code = child.popen.poll()
        zombie = False
        if code is None:
            zombie, child.rss, child.cpu = child.probe.measure()
        if rows is not None:
            row = rows.get(child.pid)
            # A row older than the child belongs to an earlier process with the same pid.
            child.row = row if row is not None and row.id > child.min_row_id else None
            if child.row is not None:
                child.worker_id = child.row.id
                if child.row.state in ("stopped", "dead"):
                    if child.kill_at is None:
                        # It said goodbye and is exiting; if it lingers, it is killed.
                        child.kill_at = now + STOP_MARGIN_S
                        child.kill_for_farewell = True
                        if child.row.state == "dead":
                            # Not its own goodbye: a rescuer judged it silent. Say so.
                            self.events(
                                f"{child.slot.name} pid {child.pid}: its row says dead; "
                                f"killed unless it exits or beats again within "
                                f"{STOP_MARGIN_S:g}s",
                                logging.INFO,
                            )
                elif child.kill_for_farewell:
                    # The row said dead by mistake (a rescuer judged the worker silent),
                    # and the worker, alive, took it back: it is not exiting after all.
                    child.kill_at, child.kill_for_farewell = None, False
                    self.events(
                        f"{child.slot.name} pid {child.pid} is running again; not killed",
                        logging.INFO,
                    )
        if code is None and not zombie and rows is None:
            return  # the worker table could not be read: judge only exits this tick
        sample = Sample(
            pid=child.pid,
            exit_code=code,
            zombie=zombie,
            rss=child.rss,
            cpu_percent=child.cpu,
            uptime=now - child.started,
            heartbeat_age=self._heartbeat_age(child, now),
            draining=child.draining,
        )
        decision = decide(sample, self.limits)
        if decision.action is Action.RESTART:
            await self.on_exit(child, child.popen.poll(), decision.reason, now, stopping)
        elif decision.action is Action.KILL:
            send(child, signal.SIGKILL)
            await self.on_exit(child, reap(child), decision.reason, now, stopping, kind="hung")
        elif decision.action is Action.RECYCLE and not stopping:
            self.recycle(child, decision.reason, now)
        elif child.kill_at is not None and now >= child.kill_at:
            send(child, signal.SIGKILL)
            await self.on_exit(child, reap(child), "did not stop in time", now, stopping)

    def _heartbeat_age(self, child: Child, now: float) -> float | None:
        """The child's heartbeat age, or "fresh" when its heartbeat says nothing.

        After an outage every row looks stale until the workers reconnect and beat
        again; judging them then would kill every healthy worker at once. A worker that
        wrote its last row ("stopped") is exiting; `kill_at` bounds how long it may take.
        """
        if not self.db.steady_for(now, self.limits.hung_after):
            return 0.0
        if child.row is not None and child.row.state in ("stopped", "dead"):
            return 0.0
        return child.row.heartbeat_age if child.row else None

    async def on_exit(
        self,
        child: Child,
        code: int | None,
        reason: str,
        now: float,
        stopping: bool,
        kind: str = "crashed",
    ) -> None:
        """A child is gone: put its jobs back, and schedule its slot's next process."""
        slot = child.slot
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(timeout=EXIT_WAIT_S)
        put_back = 0 if code == 0 else await self.rescuer.child(child)
        jobs = f"; put back {put_back} jobs" if put_back else ""
        if child in self.table.retiring:
            self.table.retiring.remove(child)
            self.events(f"{slot.name} pid {child.pid} (recycled) {reason}{jobs}", logging.INFO)
            return
        slot.child = None
        slot.last_row = child.row or slot.last_row
        if stopping:
            level = logging.INFO if code == 0 else logging.WARNING
            self.events(f"{slot.name} pid {child.pid} {reason}{jobs}", level)
            return
        if code == 0 and self.burst:
            slot.finished = True
            slot.started_once = False  # a later burst re-run is not a restart
            self.events(f"{slot.name} pid {child.pid} finished: nothing left to run", logging.INFO)
            return
        slot.streak = next_crash_streak(slot.streak, now - child.started, crash=True)
        delay = backoff_delay(slot.streak)
        slot.start_at = now + delay
        self.events(f"{slot.name} pid {child.pid} {reason}{jobs}; restart in {delay:g}s")
        self._count_restart(slot.group.name, kind)

    def recycle(self, child: Child, reason: str, now: float) -> None:
        """Ask a bloated child to drain, and fill its slot with a fresh process at once."""
        slot = child.slot
        child.draining = True
        child.kill_at = now + self.grace + STOP_MARGIN_S
        send(child, signal.SIGTERM)
        self.table.retire(child, now)
        self.events(f"{slot.name} pid {child.pid} recycled ({reason})")
        self._count_restart(slot.group.name, "memory")

    async def kill_leftovers(self, reason: str, stopping: bool) -> None:
        """SIGKILL every child still running, and put back what each held."""
        for child in self.table.children():
            if child.popen.poll() is None:
                send(child, signal.SIGKILL)
            await self.on_exit(child, reap(child), reason, time.monotonic(), stopping)

    def _count_restart(self, group: str, reason: str) -> None:
        if self.on_restart is not None:
            try:
                self.on_restart(group, reason)
            except Exception as exc:  # metrics must never take the supervisor down
                logger.warning("restart callback failed: %s", exc)
