"""Riding out a database outage: back off, reconnect, retry; log the outage and its end once.

Every queue call a worker makes goes through one DbGuard. A call that fails with an
error the queue calls transient (PostgreSQL restarting, a dropped connection, SQLite's
"database is locked") is retried with capped exponential backoff and jitter after the
queue reopens its broken connections. Any other error is a bug or a configuration
mistake and is raised at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, close_old_connections

logger = logging.getLogger("djap.worker")

T = TypeVar("T")

#: Backoff between retries of a failing call: from FIRST to at most MAX seconds. The cap
#: stays well under the stale-heartbeat threshold so a worker is back before it looks dead.
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 2.0
#: While the database stays down, repeat the warning this often (seconds).
REMIND_EVERY_S = 30.0


def django_is_transient(exc: BaseException) -> bool:
    """Django's view of a lost connection (pipeline steps finish through the ORM)."""
    return isinstance(exc, (OperationalError, InterfaceError))


class DbGuard:
    """Retries a worker's database calls through outages and remembers when the last one was."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue
        self.down_since: float | None = None
        self.last_error_at: float | None = None
        self._reminded_at = 0.0
        self._reconnecting = asyncio.Lock()

    def healthy_for(self) -> float:
        """Seconds since the last failed call (infinite if none failed)."""
        if self.last_error_at is None:
            return float("inf")
        return time.monotonic() - self.last_error_at

    def note_error(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        self.last_error_at = now
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if self.down_since is None:
            self.down_since = self._reminded_at = now
            logger.warning(
                "database unavailable (%s: %s: %s); backing off and reconnecting",
                what,
                type(exc).__name__,
                first_line,
            )
        elif now - self._reminded_at >= REMIND_EVERY_S:
            self._reminded_at = now
            logger.warning("database still unavailable after %.0f s", now - self.down_since)

    def note_ok(self) -> None:
        if self.down_since is not None:
            logger.warning(
                "database reachable again after %.1f s; reconnected",
                time.monotonic() - self.down_since,
            )
            self.down_since = None

    async def reconnect(self) -> None:
        """Reopen the queue's broken connections; an error here just means 'not yet'."""
        async with self._reconnecting:
            try:
                await self.queue.reconnect()
            except Exception as exc:
                if not self.queue.is_transient(exc):
                    raise

    async def call(
        self,
        what: str,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        stop: asyncio.Event | None = None,
        give_up_at: float | None = None,
    ) -> T:
        """`await fn(*args)`, retried through transient errors.

        Raises the last error once `stop` is set or `give_up_at` (monotonic) has passed.
        """
        return await self._retry(what, fn, args, self.queue.is_transient, stop, give_up_at)

    async def call_django(
        self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, stop: asyncio.Event | None
    ) -> T:
        """Like `call`, for a coroutine that works through Django's ORM connection."""
        return await self._retry(what, fn, args, django_is_transient, stop, None, django=True)

    async def _retry(
        self,
        what: str,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        is_transient: Callable[[BaseException], bool],
        stop: asyncio.Event | None,
        give_up_at: float | None,
        django: bool = False,
    ) -> T:
        delay = BACKOFF_FIRST_S
        while True:
            try:
                result = await fn(*args)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.note_error(what, exc)
                if (stop is not None and stop.is_set()) or (
                    give_up_at is not None and time.monotonic() >= give_up_at
                ):
                    raise
                # Jitter: workers that lost the database together should not return together.
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, BACKOFF_MAX_S)
                if django:
                    # Django keeps a broken connection until it is closed; the next query
                    # then opens a fresh one. Same thread as the ORM work (thread_sensitive).
                    await sync_to_async(close_old_connections)()
                else:
                    await self.reconnect()
                continue
            self.note_ok()
            return result
