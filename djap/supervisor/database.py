"""Whether the worker table can be read, and since when.

After an outage every heartbeat looks stale until the workers reconnect and beat
again; the supervisor judges heartbeats (and rescues stale workers) only once the
table has been readable for long enough (`steady_for`).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

logger = logging.getLogger("djap.supervisor")

#: While the worker table stays unreadable, a reminder is logged this often (seconds).
REMIND_EVERY_S = 30.0


class DatabaseWatch:
    def __init__(self, now: float) -> None:
        #: Since when the worker table has been readable without a break (monotonic).
        self.ok_since: float | None = now
        #: While the worker table cannot be read: since when (for one warning, not one a tick).
        self.down_since: float | None = None
        self.reminded_at = 0.0

    def steady_for(self, now: float, seconds: float) -> bool:
        """Whether the table has been readable for at least `seconds` up to `now`."""
        return self.ok_since is not None and now - self.ok_since >= seconds

    def read_failed(self, exc: BaseException, now: float) -> None:
        """One warning when the database goes away, a reminder every 30 s while it stays away."""
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if self.down_since is None:
            self.down_since = self.reminded_at = now
            logger.warning("cannot read the worker table (%s); judging only exits meanwhile", first)
        elif now - self.reminded_at >= REMIND_EVERY_S:
            self.reminded_at = now
            logger.warning(
                "worker table still unreadable after %.0f s (%s)", now - self.down_since, first
            )
        self.ok_since = None

    def read_ok(self, now: float) -> None:
        if self.ok_since is None:
            self.ok_since = now
        if self.down_since is not None:
            logger.warning("worker table readable again after %.1f s", now - self.down_since)
            self.down_since = None

    async def call_failed(self, exc: BaseException, queue: Any) -> None:
        """A queue call failed: hold judgements on heartbeats, and reopen broken connections."""
        self.ok_since = None
        if queue.is_transient(exc):
            with contextlib.suppress(Exception):
                await queue.reconnect()
