"""Process control: the slots a supervisor fills, the OS processes in them, and signals.

Each worker is a fresh interpreter (`python -m djap work ...`, fork + exec by
subprocess): no Django state, database connection or event loop crosses into it.
Nothing here decides anything; `djap.supervisor.restarts` does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from ..groups import GroupSpec
from ..health import ProcessProbe
from ..status.snapshot import WorkerView
from .options import SuperviseOptions

logger = logging.getLogger("djap.supervisor")

#: How long (seconds) to wait for the kernel to let a SIGKILLed child go.
REAP_TIMEOUT_S = 10.0


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
    #: kill_at was set because the row said stopped or dead (not a drain): a row that
    #: says running again (the worker took it back) clears it.
    kill_for_farewell: bool = False
    #: The newest worker row id seen before this child started: its own row is newer.
    min_row_id: int = 0
    rss: int = 0
    cpu: float = 0.0

    @property
    def pid(self) -> int:
        return self.popen.pid


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


def reap(child: Child) -> int | None:
    """The exit code of a child just SIGKILLed; None if the kernel is slow to let it go
    (a process in uninterruptible sleep must not freeze the supervisor)."""
    try:
        return child.popen.wait(timeout=REAP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None


def send(child: Child, sig: int) -> None:
    """Signal a child; one that is already gone is no error."""
    with contextlib.suppress(ProcessLookupError):
        child.popen.send_signal(sig)


def worker_command(
    slot: Slot, options: SuperviseOptions, supervisor_pid: int, node: str, grace: float
) -> list[str]:
    """The worker command line for a slot: a fresh interpreter, never a fork."""
    g, o = slot.group, options
    cmd = [sys.executable, "-m", "djap", "work", "--group", g.name]
    cmd += ["--supervisor-pid", str(supervisor_pid), "--node-name", node]
    cmd += ["--log-level", o.log_level, "--grace", f"{grace:g}"]
    if g.include is not None:
        cmd += ["--include", ",".join(g.include)]
    if g.exclude:
        cmd += ["--exclude", ",".join(g.exclude)]
    if o.concurrency:
        cmd += ["--concurrency", str(o.concurrency)]
    if o.lanes:
        cmd += ["--lanes", str(o.lanes)]
    if o.burst:
        cmd.append("--burst")
    if o.settings:
        cmd += ["--settings", o.settings]
    if o.pythonpath:
        cmd += ["--pythonpath", o.pythonpath]
    return cmd


class ProcessTable:
    """The slots, the children in them, and the recycled children still draining out."""

    def __init__(self, slots: list[Slot], command: Callable[[Slot], list[str]]) -> None:
        self.slots = slots
        self.command = command
        self.retiring: list[Child] = []
        #: Where children's output goes (the log file under the live view); None = inherit.
        self.output: IO[bytes] | None = None

    def children(self) -> list[Child]:
        return [s.child for s in self.slots if s.child is not None] + list(self.retiring)

    def spawn(self, slot: Slot, now: float, min_row_id: int) -> Child:
        """Start a process in `slot`; its worker row will be newer than `min_row_id`."""
        env = dict(os.environ)
        if slot.group.gpu:
            # Each GPU process sees exactly one device, numbered from 0.
            env["CUDA_VISIBLE_DEVICES"] = str(slot.index)
        out = self.output
        popen = subprocess.Popen(
            self.command(slot),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            close_fds=True,
        )
        slot.child = Child(slot, popen, now, ProcessProbe(popen.pid), min_row_id=min_row_id)
        slot.start_at = None
        logger.info("%s: started pid %s", slot.name, popen.pid)
        return slot.child

    def start_due(self, now: float, min_row_id: int) -> None:
        """Start a process in every empty slot whose start time has come."""
        for slot in self.slots:
            if slot.child is None and slot.start_at is not None and now >= slot.start_at:
                if slot.started_once:
                    slot.restarts += 1
                slot.started_once = True
                self.spawn(slot, now, min_row_id)

    def retire(self, child: Child, now: float) -> None:
        """Move a draining child out of its slot so a replacement can start there now."""
        slot = child.slot
        slot.child = None
        self.retiring.append(child)
        slot.start_at = now
