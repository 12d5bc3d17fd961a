"""Batch job outcomes into few writes: flush at N outcomes or every few milliseconds.

A finished job stays `in_progress` in the database until its batch is flushed;
that is safe because the worker still holds it, and a crash before the flush
only means the job runs again (delivery is at-least-once). When the database
falls behind, `add` waits: backpressure instead of an unbounded buffer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .queue.base import Outcome

logger = logging.getLogger("djap.worker")

FinishFn = Callable[[list[Outcome]], Awaitable[None]]


class Completer:
    def __init__(self, finish: FinishFn, *, batch_size: int, interval_s: float) -> None:
        self._finish = finish
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._buffer: list[Outcome] = []
        self._has_items = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task | None = None
        self.flushed = 0
        self._writing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="djap-completer")

    async def add(self, outcome: Outcome) -> None:
        self._buffer.append(outcome)
        self._has_items.set()
        if len(self._buffer) >= 4 * self._batch_size:
            self._room.clear()
            await self._room.wait()

    async def settled(self) -> None:
        """Wait until every outcome added so far is written (burst looks at the rows next)."""
        while self._buffer or self._writing:
            await asyncio.sleep(self._interval_s or 0.001)

    async def _flush_once(self) -> None:
        batch, self._buffer = self._buffer, []
        self._has_items.clear()
        self._writing = True
        try:
            await self._write(batch)
        finally:
            self._writing = False
        self.flushed += len(batch)
        self._room.set()

    async def _write(self, batch: list[Outcome]) -> None:
        delay = 0.1
        while True:
            try:
                await self._finish(batch)
                break
            except asyncio.CancelledError:
                self._buffer[:0] = batch
                raise
            except Exception as exc:
                # The outcomes stay ours until written: retry with backoff, never drop.
                logger.warning("could not write %d outcomes (%s); retrying", len(batch), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _run(self) -> None:
        while True:
            await self._has_items.wait()
            if len(self._buffer) < self._batch_size:
                await asyncio.sleep(self._interval_s)
            while self._buffer:
                await self._flush_once()

    async def close(self) -> None:
        """Write everything still buffered, then stop."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        while self._buffer:
            await self._flush_once()
