"""`djap supervise`: start worker processes, watch them, replace the ones that fail.

Each worker is a fresh interpreter (`python -m djap work ...`, fork + exec by
subprocess): no Django state, database connection or event loop crosses into it.
Twice a second the supervisor reaps exits, samples every child with psutil, reads
the worker table (heartbeats) and applies the pure policy of `djap.health`:

- a child that exited is restarted, after a backoff while it keeps crashing;
- a child whose heartbeat is stale (hung loop, SIGSTOP) is SIGKILLed and replaced;
- a child over --max-memory is asked to drain (SIGTERM) and a replacement starts now.

Whenever a child dies without a clean stop, the supervisor puts its jobs back at
once with `jobs_rescue_worker` instead of waiting for the heartbeat to go stale.
SIGTERM / Ctrl-C is forwarded as SIGTERM (drain within --grace); a second one is
forwarded as SIGINT (stop now; workers still put their jobs back).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from asgiref.sync import sync_to_async

from .groups import GroupSpec
from .health import Action, Limits, ProcessProbe, Sample, backoff_delay, decide, next_crash_streak
from .status import (
    Event,
    ProcessView,
    Snapshot,
    SnapshotReader,
    ThroughputMeter,
    WorkerView,
)

logger = logging.getLogger("djap.supervisor")

#: Seconds between ticks: reap, sample, read the worker table, redraw.
TICK_S = 0.5
#: The supervisor also rescues jobs of stale workers on any host this often (seconds).
RESCUE_STALE_EVERY_S = 5.0
#: After the grace period, workers get this long (seconds) to put jobs back before SIGKILL.
STOP_MARGIN_S = 10.0
#: After a second Ctrl-C, workers get this long (seconds) before SIGKILL.
IMMEDIATE_STOP_S = 5.0
#: Without a live view, a summary line is printed this often (seconds).
SUMMARY_EVERY_S = 10.0
#: Events kept for the view.
EVENTS_KEPT = 50


@dataclass
class SuperviseOptions:
    groups: list[GroupSpec]
    concurrency: int | None = None
    grace: float | None = None
    burst: bool = False
    max_memory: int | None = None
    node_name: str | None = None
    dashboard: bool = True
    settings: str | None = None
    pythonpath: str | None = None
    log_level: str = "INFO"
    #: Where workers' output goes while the live view owns the terminal.
    log_file: str | None = None
    alias: str | None = None
    #: Serve Prometheus metrics on this port (djap.metrics); None = off.
    metrics_port: int | None = None


@dataclass(eq=False)
class Child:
    """One OS process of a slot."""

    slot: Slot
    popen: subprocess.Popen
    started: float
    probe: ProcessProbe
    worker_id: int | None = None
    row: WorkerView | None = None
    draining: bool = False
    #: Monotonic time after which a draining child is SIGKILLed.
    kill_at: float | None = None
    #: The newest worker row id seen before this child started: its own row is newer.
    min_row_id: int = 0
    rss: int = 0
    cpu: float = 0.0

    @property
    def pid(self) -> int:
        return self.popen.pid


def _reap(child: Child) -> int | None:
    """The exit code of a child just SIGKILLed; None if the kernel is slow to let it go
    (a process in uninterruptible sleep must not freeze the supervisor)."""
    try:
        return child.popen.wait(timeout=10)
    except subprocess.TimeoutExpired:
        return None


@dataclass(eq=False)
class Slot:
    """A place for one process of a group; it outlives the processes that fill it."""

    group: GroupSpec
    index: int
    child: Child | None = None
    restarts: int = 0
    streak: int = 0
    #: Monotonic time at which to start the next process; None = not scheduled.
    start_at: float | None = 0.0
    #: Burst mode: the process exited 0 because nothing was left for it.
    finished: bool = False
    started_once: bool = False
    #: The last worker row seen for this slot: its counters stay on screen after an exit.
    last_row: WorkerView | None = None

    @property
    def name(self) -> str:
        return f"{self.group.name}/{self.index}"


class Supervisor:
    def __init__(
        self, options: SuperviseOptions, on_restart: Callable[[str, str], None] | None = None
    ) -> None:
        from djap_django import conf

        self.options = options
        self.alias = options.alias or conf.database_alias()
        self.node = options.node_name or socket.gethostname()
        self.pid = os.getpid()
        self.limits = Limits(hung_after=conf.get("STALE_AFTER"), max_memory=options.max_memory)
        self.grace = options.grace if options.grace is not None else conf.get("GRACE")
        self.stale_after = conf.get("STALE_AFTER")
        self.max_crashes = conf.get("MAX_CRASHES")
        self.slots = [Slot(g, i) for g in options.groups for i in range(g.procs)]
        self.retiring: list[Child] = []
        self.events: list[Event] = []
        self.stopping = False
        self.stop_deadline: float | None = None
        self.started = time.monotonic()
        self.meter = ThroughputMeter(self.started)
        self.reader = SnapshotReader(self.alias, self.stale_after)
        self._wake = asyncio.Event()
        self._signals = 0
        self._last_rescue = time.monotonic()
        #: Since when the worker table has been readable without a break (monotonic).
        self._db_ok_since: float | None = time.monotonic()
        #: The newest worker row id seen so far (any host).
        self._max_row_id = 0
        #: While the worker table cannot be read: since when (for one warning, not one a tick).
        self._db_down_since: float | None = None
        self._db_reminded_at = 0.0
        self._log: IO[bytes] | None = None
        self.snapshot: Snapshot | None = None
        #: Called with (group, reason) each time a process is replaced: crashed, hung, memory.
        self.on_restart = on_restart

    # -- events --------------------------------------------------------------------

    def event(self, text: str, level: int = logging.WARNING) -> None:
        """Something done to a process and why: shown in the view, logged as one line."""
        self.events.append(Event(dt.datetime.now(dt.UTC), text))
        del self.events[:-EVENTS_KEPT]
        logger.log(level, "%s", text)

    # -- processes -----------------------------------------------------------------

    def command(self, slot: Slot) -> list[str]:
        """The worker command line for a slot: a fresh interpreter, never a fork."""
        g, o = slot.group, self.options
        cmd = [sys.executable, "-m", "djap", "work", "--group", g.name]
        cmd += ["--supervisor-pid", str(self.pid), "--node-name", self.node]
        cmd += ["--log-level", o.log_level, "--grace", f"{self.grace:g}"]
        if g.include is not None:
            cmd += ["--include", ",".join(g.include)]
        if g.exclude:
            cmd += ["--exclude", ",".join(g.exclude)]
        if o.concurrency:
            cmd += ["--concurrency", str(o.concurrency)]
        if o.burst:
            cmd.append("--burst")
        if o.settings:
            cmd += ["--settings", o.settings]
        if o.pythonpath:
            cmd += ["--pythonpath", o.pythonpath]
        return cmd

    def _spawn(self, slot: Slot, now: float) -> None:
        env = dict(os.environ)
        if slot.group.gpu:
            # Each GPU process sees exactly one device, numbered from 0.
            env["CUDA_VISIBLE_DEVICES"] = str(slot.index)
        out = self._log if self._log is not None else None
        popen = subprocess.Popen(
            self.command(slot),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            close_fds=True,
        )
        slot.child = Child(slot, popen, now, ProcessProbe(popen.pid), min_row_id=self._max_row_id)
        slot.start_at = None
        logger.info("%s: started pid %s", slot.name, popen.pid)

    def _children(self) -> list[Child]:
        return [s.child for s in self.slots if s.child is not None] + list(self.retiring)

    def _send(self, child: Child, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.popen.send_signal(sig)

    async def _rescue(self, child: Child) -> int:
        """Put back the jobs a dead child held; returns how many went back (or failed)."""
        from djap_django.models import WorkerDBModel

        def lookup() -> int | None:
            return (
                WorkerDBModel.objects.using(self.alias)
                .filter(host=self.node, pid=child.pid, supervisor_pid=self.pid)
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
                # Jobs failed as poison by SQL alone: fail the pipelines they belong to.
                from djap_django.pipelines import afail_pipelines_of_failed_jobs

                await afail_pipelines_of_failed_jobs()
        except Exception as exc:  # the database may be down; stale rescue is the backup
            logger.warning("could not put back the jobs of pid %s yet: %s", child.pid, exc)
            await self._db_down(exc)
            return 0
        return report.requeued + report.failed

    async def _on_exit(
        self, child: Child, code: int | None, reason: str, now: float, kind: str = "crashed"
    ) -> None:
        slot = child.slot
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(timeout=5)
        put_back = 0 if code == 0 else await self._rescue(child)
        jobs = f"; put back {put_back} jobs" if put_back else ""
        if child in self.retiring:
            self.retiring.remove(child)
            self.event(f"{slot.name} pid {child.pid} (recycled) {reason}{jobs}", logging.INFO)
            return
        slot.child = None
        slot.last_row = child.row or slot.last_row
        if self.stopping:
            level = logging.INFO if code == 0 else logging.WARNING
            self.event(f"{slot.name} pid {child.pid} {reason}{jobs}", level)
            return
        if code == 0 and self.options.burst:
            slot.finished = True
            slot.started_once = False  # a later burst re-run is not a restart
            self.event(f"{slot.name} pid {child.pid} finished: nothing left to run", logging.INFO)
            return
        slot.streak = next_crash_streak(slot.streak, now - child.started, crash=True)
        delay = backoff_delay(slot.streak)
        slot.start_at = now + delay
        self.event(f"{slot.name} pid {child.pid} {reason}{jobs}; restart in {delay:g}s")
        self._count_restart(slot.group.name, kind)

    async def _check(self, child: Child, rows: dict[int, WorkerView] | None, now: float) -> None:
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
                if child.row.state in ("stopped", "dead") and child.kill_at is None:
                    # It said goodbye and is exiting; if it lingers, it is killed.
                    child.kill_at = now + STOP_MARGIN_S
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
            await self._on_exit(child, child.popen.poll(), decision.reason, now)
        elif decision.action is Action.KILL:
            self._send(child, signal.SIGKILL)
            await self._on_exit(child, _reap(child), decision.reason, now, kind="hung")
        elif decision.action is Action.RECYCLE and not self.stopping:
            self._recycle(child, decision.reason, now)
        elif child.kill_at is not None and now >= child.kill_at:
            self._send(child, signal.SIGKILL)
            await self._on_exit(child, _reap(child), "did not stop in time", now)

    def _heartbeat_age(self, child: Child, now: float) -> float | None:
        """The child's heartbeat age, or "fresh" when its heartbeat says nothing.

        After an outage every row looks stale until the workers reconnect and beat
        again; judging them then would kill every healthy worker at once. A worker that
        wrote its last row ("stopped") is exiting; `kill_at` bounds how long it may take.
        """
        if self._db_ok_since is None or now - self._db_ok_since < self.limits.hung_after:
            return 0.0
        if child.row is not None and child.row.state in ("stopped", "dead"):
            return 0.0
        return child.row.heartbeat_age if child.row else None

    def _recycle(self, child: Child, reason: str, now: float) -> None:
        """Ask a bloated child to drain, and fill its slot with a fresh process at once."""
        slot = child.slot
        child.draining = True
        child.kill_at = now + self.grace + STOP_MARGIN_S
        self._send(child, signal.SIGTERM)
        slot.child = None
        self.retiring.append(child)
        slot.start_at = now
        self.event(f"{slot.name} pid {child.pid} recycled ({reason})")
        self._count_restart(slot.group.name, "memory")

    def _count_restart(self, group: str, reason: str) -> None:
        if self.on_restart is not None:
            try:
                self.on_restart(group, reason)
            except Exception as exc:  # metrics must never take the supervisor down
                logger.warning("restart callback failed: %s", exc)

    def _start_due(self, now: float) -> None:
        for slot in self.slots:
            if slot.child is None and slot.start_at is not None and now >= slot.start_at:
                if slot.started_once:
                    slot.restarts += 1
                slot.started_once = True
                self._spawn(slot, now)

    # -- stopping ------------------------------------------------------------------

    def on_signal(self, sig: int) -> None:
        """First SIGTERM/SIGINT: drain within the grace. A second one: stop now."""
        self._signals += 1
        now = time.monotonic()
        children = self._children()
        if self._signals == 1:
            self.stopping = True
            self.stop_deadline = now + self.grace + STOP_MARGIN_S
            for child in children:
                child.draining = True
                self._send(child, signal.SIGTERM)
            self.event(
                f"{signal.Signals(sig).name}: stopping {len(children)} processes "
                f"(running jobs get {self.grace:g}s; Ctrl-C again to stop now)",
                logging.INFO,
            )
        else:
            self.stop_deadline = min(self.stop_deadline or now, now + IMMEDIATE_STOP_S)
            for child in children:
                self._send(child, signal.SIGINT)
            self.event("stopping now: running jobs are cancelled and put back", logging.INFO)
        self._wake.set()

    async def _kill_leftovers(self, reason: str) -> None:
        for child in self._children():
            if child.popen.poll() is None:
                self._send(child, signal.SIGKILL)
            await self._on_exit(child, _reap(child), reason, time.monotonic())

    # -- reading the database ------------------------------------------------------

    def _read_snapshot(self, now: float, force_counts: bool = False) -> Snapshot:
        from django.db import DatabaseError, connections

        try:
            return self.reader.read(now, force_counts)
        except DatabaseError:
            # Django keeps a broken connection until told; the next tick opens a new one.
            connections[self.alias].close()
            raise

    def _note_db_error(self, exc: BaseException, now: float) -> None:
        """One warning when the database goes away, a reminder every 30 s while it stays away."""
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if self._db_down_since is None:
            self._db_down_since = self._db_reminded_at = now
            logger.warning("cannot read the worker table (%s); judging only exits meanwhile", first)
        elif now - self._db_reminded_at >= 30.0:
            self._db_reminded_at = now
            logger.warning(
                "worker table still unreadable after %.0f s (%s)", now - self._db_down_since, first
            )

    async def _db_down(self, exc: BaseException) -> None:
        """A queue call failed: hold judgements on heartbeats, and reopen broken connections."""
        self._db_ok_since = None
        if self.queue.is_transient(exc):
            with contextlib.suppress(Exception):
                await self.queue.reconnect()

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

    async def _rescue_stale(self, now: float) -> None:
        """Any supervisor puts back jobs of stale workers on any host (a vanished host)."""
        if now - self._last_rescue < RESCUE_STALE_EVERY_S:
            return
        # Right after an outage every heartbeat looks stale: wait until workers have had
        # STALE_AFTER seconds to beat again, or running jobs would be put back.
        if self._db_ok_since is None or now - self._db_ok_since < self.stale_after:
            return
        self._last_rescue = now
        from djap_django import conf

        try:
            report = await self.queue.jobs_rescue_stale(self.stale_after, self.max_crashes)
            if report.failed:
                # Jobs failed as poison by SQL alone: fail the pipelines they belong to.
                from djap_django.pipelines import afail_pipelines_of_failed_jobs

                await afail_pipelines_of_failed_jobs()
            await self.queue.workers_prune(conf.get("PRUNE_WORKERS_AFTER"))
        except Exception as exc:
            logger.warning("stale-worker rescue failed: %s", exc)
            await self._db_down(exc)
            return
        if report.requeued or report.failed:
            self.event(
                f"{report.dead_workers} stale workers (another host?): put back "
                f"{report.requeued} jobs, failed {report.failed} as poison"
            )

    # -- the view ------------------------------------------------------------------

    def _process_views(self, now: float) -> tuple[ProcessView, ...]:
        views = []
        for slot in self.slots:
            views.append(self._view(slot.name, slot, slot.child, now))
        for child in self.retiring:
            views.append(self._view(f"{child.slot.name}~", child.slot, child, now))
        return tuple(views)

    def _view(self, name: str, slot: Slot, child: Child | None, now: float) -> ProcessView:
        if child is None:
            if slot.finished:
                state = "finished"
            elif self.stopping:
                state = "stopped"
            else:
                state = "backoff"
            last = slot.last_row
            return ProcessView(
                name,
                slot.group.name,
                None,
                state,
                restarts=slot.restarts,
                done=last.jobs_done if last else 0,
                failed=last.jobs_failed if last else 0,
            )
        row = child.row
        if child.draining:
            state = "draining"
        elif row is None:
            state = "starting"
        else:
            state = row.state
        return ProcessView(
            name=name,
            group=slot.group.name,
            pid=child.pid,
            state=state,
            uptime=now - child.started,
            restarts=slot.restarts,
            cpu_percent=child.cpu,
            rss=child.rss,
            in_flight=row.in_flight if row else 0,
            done=row.jobs_done if row else 0,
            failed=row.jobs_failed if row else 0,
            jobs_per_s=self.meter.worker_rate(row.id) if row else 0.0,
        )

    def _publish(self, snap: Snapshot, now: float) -> Snapshot:
        self.meter.update(now, {w.id: w.jobs_done + w.jobs_failed for w in snap.workers})
        title = f"djap supervise · {self.node}"
        if self.options.burst:
            title += " · burst"
        if self.stopping:
            title += " · stopping"
        self.snapshot = dataclasses.replace(
            snap,
            processes=self._process_views(now),
            throughput=self.meter.snapshot(now),
            events=tuple(self.events[-10:]),
            title=title,
        )
        return self.snapshot

    # -- the loop ------------------------------------------------------------------

    def _done(self) -> bool:
        if self.stopping:
            return not self._children()
        return False

    async def _burst_finished(self) -> bool:
        """Burst: every slot finished; restart groups that still have runnable jobs."""
        if not self.options.burst or self.retiring:
            return False
        if not all(s.finished for s in self.slots):
            return False
        again = False
        for group in {id(s.group): s.group for s in self.slots}.values():
            try:
                runnable = await self.queue.jobs_runnable_exists(group.include, group.exclude)
            except Exception as exc:
                logger.warning("cannot tell whether jobs are left: %s", exc)
                await self._db_down(exc)
                return False
            if runnable:
                for slot in self.slots:
                    if slot.group is group:
                        slot.finished, slot.start_at = False, time.monotonic()
                        again = True
        return not again

    async def tick(self) -> Snapshot | None:
        now = time.monotonic()
        snap: Snapshot | None
        try:
            snap = await sync_to_async(self._read_snapshot)(now)
        except Exception as exc:
            self._note_db_error(exc, now)
            snap = None
            self._db_ok_since = None
        if snap is not None and self._db_ok_since is None:
            self._db_ok_since = now
        if snap is not None and self._db_down_since is not None:
            logger.warning("worker table readable again after %.1f s", now - self._db_down_since)
            self._db_down_since = None
        rows = self._my_rows(snap) if snap is not None else None
        for child in self._children():
            await self._check(child, rows, now)
        if not self.stopping:
            self._start_due(now)
        elif self.stop_deadline is not None and now >= self.stop_deadline:
            await self._kill_leftovers("did not stop in time (SIGKILL)")
        await self._rescue_stale(now)
        return self._publish(snap, now) if snap is not None else self.snapshot

    async def run(self, on_tick=None) -> int:
        """Run until stopped (or, in burst mode, until nothing is left); returns the exit code."""
        from djap_django.queue import open_queue

        if self.options.log_file:
            self._log = open(self.options.log_file, "ab")  # noqa: SIM115 - closed below
        self.queue = open_queue(self.alias)
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
            if self._children():
                await self._kill_leftovers("killed: the supervisor is exiting")
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.queue.close()
            if self._log is not None:
                self._log.close()
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


def default_log_file() -> str:
    return os.path.join(tempfile.gettempdir(), f"djap-supervise-{os.getpid()}.log")


def _log_to_file(path: str, level: str) -> None:
    """While the live view owns the terminal, djap's log lines go to the workers' log file."""
    log = logging.getLogger("djap")
    handler = logging.FileHandler(path)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s")
    )
    log.handlers = [handler]
    log.propagate = False
    log.setLevel(level.upper())


def supervise_command(options: SuperviseOptions) -> int:
    """`djap supervise`: the live view on a terminal, log lines otherwise."""
    from rich.console import Console

    from djap_django.runner import configure_logging

    from .dashboard import LiveView, LogView
    from .status import preflight

    preflight(options.alias)
    console = Console()
    live = options.dashboard and console.is_terminal
    if live:
        options.log_file = options.log_file or default_log_file()
        _log_to_file(options.log_file, options.log_level)
        console.print(f"[dim]worker and supervisor logs: {options.log_file}[/dim]")
    else:
        configure_logging(options.log_level)
    metrics = None
    if options.metrics_port is not None:
        from .metrics import start_metrics_server

        metrics = start_metrics_server(
            options.metrics_port,
            snapshot_fn=lambda: supervisor.snapshot,
            alias=options.alias,
        )
    supervisor = Supervisor(options, metrics.record_restart if metrics is not None else None)
    try:
        if not live:
            view = LogView(lambda line: logger.info("%s", line), SUMMARY_EVERY_S, time.monotonic)
            return asyncio.run(supervisor.run(on_tick=view))
        with LiveView(console) as view:
            code = asyncio.run(supervisor.run(on_tick=view))
        console.print(f"[dim]logs: {options.log_file}[/dim]")
        return code
    finally:
        if metrics is not None:
            metrics.stop()
