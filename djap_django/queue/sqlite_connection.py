"""SQLite plumbing: one stdlib connection on one thread, WAL mode, BEGIN IMMEDIATE.

SQLite has one writer at a time. BEGIN IMMEDIATE takes the write lock when the
transaction starts, so two workers never both read the same ready rows and then
race to update them; the loser waits (busy timeout) instead of failing mid-way.
All statements run on one stdlib sqlite3 connection owned by one thread, so the
event loop never blocks on the file. The statements themselves live in sqlite.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .. import conf

T = TypeVar("T")

# A statement waits DJAP SQLITE_BUSY_TIMEOUT seconds for another process's write lock;
# past it, "database is locked" is transient: the worker backs off and retries
# (resilience.py).


def database_path(django_connection: Any) -> str:
    return str(django_connection.settings_dict["NAME"])


class SQLiteConnection:
    """The queue's connection to the database file, and how it rides out lock contention."""

    def __init__(self, django_connection: Any) -> None:
        self.path = database_path(django_connection)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="djap-sqlite")
        self._db_or_none: sqlite3.Connection | None = None
        self._poll_s = 0.0

    @property
    def _db(self) -> sqlite3.Connection:
        """The open connection the statements use (once connect() has run)."""
        if self._db_or_none is None:
            raise RuntimeError("the queue is not connected: call connect() first")
        return self._db_or_none

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _open(self) -> None:
        db = sqlite3.connect(
            self.path, timeout=conf.get("SQLITE_BUSY_TIMEOUT"), isolation_level=None
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        self._db_or_none = db

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one BEGIN IMMEDIATE transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
            db.execute("COMMIT")
        except BaseException:
            # Also when COMMIT itself failed (busy): never leave a transaction open.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result

    async def connect(self) -> None:
        await self._call(self._open)

    # -- outages -------------------------------------------------------------------

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        """Lock contention past the busy timeout, or a file that is briefly unreachable."""
        if not isinstance(exc, sqlite3.OperationalError):
            return False
        text = str(exc)
        return any(s in text for s in ("locked", "busy", "disk I/O", "unable to open"))

    async def reconnect(self) -> None:
        """Reopen the file only if the connection is gone; a lock needs no new connection."""
        if self._db_or_none is None:
            await self._call(self._open)

    async def close(self) -> None:
        if self._db_or_none is not None:
            await self._call(self._db_or_none.close)
            self._db_or_none = None
        self._executor.shutdown(wait=False)

    # -- waking up -----------------------------------------------------------------

    def listen(self, on_cancel: Callable[[int], None] | None = None) -> None:
        """SQLite cannot notify: cancels are found by polling the status of running jobs."""

    async def wait_for_jobs(self, timeout: float) -> None:
        """SQLite cannot notify: sleep a short interval that grows while idle."""
        low, high = conf.get("SQLITE_POLL_MIN"), conf.get("SQLITE_POLL_MAX")
        self._poll_s = min(high, max(low, self._poll_s * 2))
        await asyncio.sleep(min(self._poll_s, timeout))
