"""The jobs `djap bench` runs. Imported only by the bench and its workers.

They live here, not in the user's project, so the bench works on any project;
importing this module registers them, which is why no `jobs.py` imports it.
Each run appends one line "<i> <unix time at start>" to the file named by
DJAP_BENCH_MARKS: the bench reads it back to prove that every job ran exactly
once, independently of the queue's own bookkeeping.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from .jobs import BaseJob

#: Environment variable naming the marker file the bench jobs append to.
MARKS_ENV = "DJAP_BENCH_MARKS"

_fd: int | None = None


def mark(i: int) -> None:
    """Record that job `i` started, in one O_APPEND write (atomic for a short line)."""
    global _fd
    if _fd is None:
        _fd = os.open(os.environ[MARKS_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, b"%d %.6f\n" % (i, time.time()))


class DjapBenchNoop(BaseJob):
    """Does nothing but mark that it ran: measures the queue, not the job."""

    @dataclass
    class Inputs:
        i: int

    async def run(self) -> None:
        mark(self.inputs.i)


class DjapBenchSleep(BaseJob):
    """Marks, then sleeps: shows how many jobs one process keeps in flight."""

    @dataclass
    class Inputs:
        i: int
        seconds: float = 1.0

    async def run(self) -> None:
        mark(self.inputs.i)
        await asyncio.sleep(self.inputs.seconds)


#: The bench's job names: its workers run only these, and its cleanup deletes only these.
NAMES = [DjapBenchNoop.__name__, DjapBenchSleep.__name__]
