"""The periodic prune a worker runs when DJAP PRUNE_OLDER_THAN is set.

The batched DELETE itself is maintenance.prune_jobs, shared with `djap prune`.
"""

from __future__ import annotations

import logging
import random

from .. import conf
from ..maintenance import prune_jobs
from ..queue import Queue
from ..resilience import DbGuard
from .base import Service

logger = logging.getLogger("djap.worker")

#: The first pass comes at a random point of the first interval, between these fractions
#: of it, so that workers started together do not all prune at once.
FIRST_PASS_SPREAD = (0.1, 1.0)


class Pruner(Service):
    name = "prune"
    # A prune that fails for a reason other than an outage would fail again: stop.
    stop_on_error = True

    def __init__(self, queue: Queue, guard: DbGuard) -> None:
        super().__init__(queue, guard)
        #: Rows deleted so far (tests wait on it).
        self.pruned = 0

    def enabled(self) -> bool:
        return conf.get("PRUNE_OLDER_THAN") is not None

    def interval_s(self) -> float:
        return conf.get("PRUNE_INTERVAL")

    def first_delay_s(self) -> float:
        return self.interval_s() * random.uniform(*FIRST_PASS_SPREAD)

    async def run_once(self) -> int:
        """Delete finished jobs past PRUNE_OLDER_THAN; returns how many."""
        older_than = conf.get("PRUNE_OLDER_THAN")
        if older_than is None:
            return 0
        deleted = await prune_jobs(self.queue, older_than, conf.get("PRUNE_STATUSES"))
        self.pruned += deleted
        if deleted:
            logger.info("pruned %d finished jobs older than %g s", deleted, older_than)
        return deleted
