"""Pruning finished jobs: in short batches, from `djap prune` or periodically in each worker.

Each batch is one short DELETE of at most BATCH_SIZE rows, with a pause between
batches, so claims and completions on the same table never wait long behind it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from . import conf

logger = logging.getLogger("djap.worker")

#: Rows per DELETE.
BATCH_SIZE = 1000
#: Seconds between two batches: lets other writers take the lock (SQLite) in between.
BATCH_PAUSE_S = 0.005
#: The statuses a job can be pruned in: it has finished and nobody will run it again.
FINISHED = ("done", "failed", "cancelled")


async def prune_jobs(
    queue: Any,
    older_than_s: float,
    statuses: Sequence[str] = FINISHED,
    *,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Delete jobs in `statuses` that finished over `older_than_s` ago; returns how many."""
    bad = sorted(set(statuses) - set(FINISHED))
    if bad:
        raise ValueError(
            f"cannot prune jobs in status {', '.join(bad)}: only {', '.join(FINISHED)}"
        )
    total = 0
    while True:
        deleted = await queue.jobs_prune(older_than_s, list(statuses), batch_size)
        total += deleted
        if on_batch is not None:
            on_batch(deleted)
        if deleted < batch_size:
            return total
        await asyncio.sleep(BATCH_PAUSE_S)


class Pruner:
    """The periodic prune a worker runs when DJAP PRUNE_OLDER_THAN is set."""

    def __init__(self, queue: Any, guard: Any) -> None:
        self.queue = queue
        self.guard = guard
        #: Rows deleted so far (tests wait on it).
        self.pruned = 0

    async def run_once(self) -> int:
        older_than = conf.get("PRUNE_OLDER_THAN")
        if older_than is None:
            return 0
        deleted = await prune_jobs(self.queue, older_than, conf.get("PRUNE_STATUSES"))
        self.pruned += deleted
        if deleted:
            logger.info("pruned %d finished jobs older than %g s", deleted, older_than)
        return deleted

    async def run_forever(self) -> None:
        if conf.get("PRUNE_OLDER_THAN") is None:
            return
        interval = conf.get("PRUNE_INTERVAL")
        # The first pass comes at a random point of the first interval, so that workers
        # started together do not all prune at once.
        await asyncio.sleep(interval * random.uniform(0.1, 1.0))
        while True:
            try:
                await self.run_once()
            except Exception as exc:
                if not self.queue.is_transient(exc):
                    logger.exception("periodic prune failed; it stops until the worker restarts")
                    return
                self.guard.note_error("prune", exc)
            await asyncio.sleep(interval)
