"""Pruning finished jobs in short batches: for `djap prune`, and each worker's Pruner.

Each batch is one short DELETE of at most BATCH_SIZE rows, with a pause between
batches, so claims and completions on the same table never wait long behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

#: Rows per DELETE.
BATCH_SIZE = 1000
#: Pipelines per DELETE (each goes with all its jobs, so far fewer than BATCH_SIZE).
PIPELINE_BATCH_SIZE = 50
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
    """Delete jobs in `statuses` that finished over `older_than_s` ago; returns how many.

    A pipeline's jobs never go one by one: a pipeline that can still run or be resumed
    keeps every row, and one that ended (its status in `statuses`, nothing of it
    waiting or running) goes as a whole, its row with all its jobs.
    """
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
            break
        await asyncio.sleep(BATCH_PAUSE_S)
    limit = max(1, min(PIPELINE_BATCH_SIZE, batch_size))
    while True:
        pipelines, deleted = await queue.pipelines_prune(older_than_s, list(statuses), limit)
        total += deleted
        if on_batch is not None and deleted:
            on_batch(deleted)
        if pipelines < limit:
            return total
        await asyncio.sleep(BATCH_PAUSE_S)
