"""PostgreSQL plumbing: the queue's psycopg connections, outages, LISTEN/NOTIFY.

The hot path talks to PostgreSQL through psycopg's own async connections, not
Django's async ORM: Django runs every ORM query of a process through one
thread, which would serialise claims and completions. Here claims, completions
and notifications each have a connection, so they overlap. The statements that
run on these connections live in postgres.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import psycopg

from .base import CANCEL_CHANNEL, NEW_JOBS_CHANNEL

#: Seconds the listener waits before reopening a dropped LISTEN connection.
LISTEN_RETRY_S = 1.0

# Django's wrapper options that are not libpq/psycopg connection arguments.
_DJANGO_ONLY_PARAMS = (
    "cursor_factory",
    "context",
    "prepare_threshold",
    "server_side_binding",
    "pool",
    "assume_role",
    "isolation_level",
)

# A queue table's statistics are always stale: rows go new -> in_progress -> done far
# faster than autovacuum analyzes them, and dead index entries pile up between vacuums.
# On stale statistics the planner believes few rows are `new` and claims with a bitmap
# scan of every new row plus a sort, so each claim costs O(queue length). Walking the
# partial index djap_job_due in order and stopping at LIMIT is right for a queue
# whatever the statistics say, so these connections rule out the other plans.
#
# enable_sort = off does not forbid a sort the query cannot do without (a claim by name
# merges its names' rows with one): it adds 10^10 to the plan's cost, which would then
# pass jit_above_cost and spend ~0.4 s compiling every such claim. No statement here is
# long enough for JIT to pay off, so it is off on these connections.
_PLANNER_SETTINGS = "SET enable_bitmapscan = off; SET enable_sort = off; SET jit = off"

# The claim and heartbeat connections (claims, rescues, heartbeats) commit without
# waiting for the WAL flush. Delivery stays at-least-once: if the server crashes before
# the flush, a claim is undone and the job is claimed again, as if rescued from a dead
# worker. Nothing is lost either: the job's own commits, and the completer's (on its own,
# synchronous connection), flush the WAL up to and including the claim. This takes a
# disk flush off every pickup.
_CLAIM_SETTINGS = "SET synchronous_commit = off"


def connection_params(django_connection: Any) -> dict[str, Any]:
    """psycopg.connect() keyword arguments for the database Django is configured with."""
    params = dict(django_connection.get_connection_params())
    for key in _DJANGO_ONLY_PARAMS:
        params.pop(key, None)
    return params


async def first_column(cur: psycopg.AsyncCursor[Any]) -> Any:
    """The first column of the one row a statement returns (INSERT ... RETURNING id)."""
    row = await cur.fetchone()
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row[0]


class PostgresConnections:
    """Four autocommit connections: claims (and other short statements), finishes,
    heartbeats, LISTEN."""

    def __init__(self, django_connection: Any) -> None:
        from django.db import connections

        from .. import conf

        self.params = connection_params(django_connection)
        #: Behind a transaction-mode pooler a session is not ours: nothing may outlive a
        #: statement (see docs/operations.md, PgBouncer).
        self.pooled = bool(conf.get("TRANSACTION_POOLER"))
        if self.pooled:
            self.params["prepare_threshold"] = None
        listen_alias = conf.get("LISTEN_DATABASE")
        #: Where LISTEN runs; None: nowhere, the worker polls (POLL_INTERVAL).
        self.listen_params: dict[str, Any] | None = (
            connection_params(connections[listen_alias])
            if listen_alias
            else None
            if self.pooled
            else self.params
        )
        self._connections: dict[str, psycopg.AsyncConnection[Any] | None] = dict.fromkeys(
            ("_conn", "_finish_conn", "_beat_conn"), None
        )
        self._listen_conn: psycopg.AsyncConnection[Any] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        #: Called with a job id when a cancel notification arrives (given to `listen`).
        self._on_cancel: Callable[[int], None] | None = None

    # The statements use `self._conn` (claims and other short statements) and
    # `self._finish_conn` (the completer's batches): open once connect() has run.
    @property
    def _conn(self) -> psycopg.AsyncConnection[Any]:
        return self._opened("_conn")

    @property
    def _finish_conn(self) -> psycopg.AsyncConnection[Any]:
        return self._opened("_finish_conn")

    # Heartbeats only: a statement that waits on row locks (a release, a prune, a rescue)
    # on another connection must never hold up the beat that keeps this worker alive.
    @property
    def _beat_conn(self) -> psycopg.AsyncConnection[Any]:
        return self._opened("_beat_conn")

    def _opened(self, attr: str) -> psycopg.AsyncConnection[Any]:
        conn = self._connections[attr]
        if conn is None:
            raise RuntimeError("the queue is not connected: call connect() first")
        return conn

    async def _open(self, claims: bool = False) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(**self.params, autocommit=True)
        if self.pooled:
            # A SET would change whichever server connection the pooler lent, for its
            # next client too: claims go without the planner hints and synchronous_commit.
            return conn
        await conn.execute(_PLANNER_SETTINGS)
        if claims:
            await conn.execute(_CLAIM_SETTINGS)
        return conn

    async def connect(self) -> None:
        self._connections["_conn"] = await self._open(claims=True)
        self._connections["_finish_conn"] = await self._open()
        self._connections["_beat_conn"] = await self._open(claims=True)

    # -- outages -------------------------------------------------------------------

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        """A lost or refused connection (server restart, network): retry after reconnect."""
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))

    async def reconnect(self) -> None:
        """Reopen whichever connection the server dropped; healthy ones are kept."""
        for attr, conn in self._connections.items():
            if conn is None or conn.closed:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
                self._connections[attr] = await self._open(claims=attr != "_finish_conn")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        for conn in (*self._connections.values(), self._listen_conn):
            if conn is not None and not conn.closed:
                await conn.close()
        self._connections = dict.fromkeys(self._connections, None)
        self._listen_conn = None

    # -- waking up -----------------------------------------------------------------

    async def _listen(self) -> None:
        while True:
            try:
                if self._listen_conn is None or self._listen_conn.closed:
                    assert self.listen_params is not None  # listen() starts only with them
                    self._listen_conn = await psycopg.AsyncConnection.connect(
                        **self.listen_params, autocommit=True
                    )
                    await self._listen_conn.execute(f"LISTEN {NEW_JOBS_CHANNEL}")
                    await self._listen_conn.execute(f"LISTEN {CANCEL_CHANNEL}")
                    # Jobs may have arrived while we were not listening.
                    self._wakeup.set()
                listen_conn = self._listen_conn
                async for note in listen_conn.notifies():
                    if note.channel == CANCEL_CHANNEL:
                        if self._on_cancel is not None and note.payload.isdigit():
                            self._on_cancel(int(note.payload))
                        continue
                    self._wakeup.set()
            except asyncio.CancelledError:
                raise
            except psycopg.Error:
                # The poll in wait_for_jobs covers us while we reconnect.
                await asyncio.sleep(LISTEN_RETRY_S)
                self._listen_conn = None

    def listen(self, on_cancel: Callable[[int], None] | None = None) -> None:
        """Start listening now, so cancel notifications arrive even while no one waits."""
        if on_cancel is not None:
            self._on_cancel = on_cancel
        if self._listener is None and self.listen_params is not None:
            self._listener = asyncio.create_task(self._listen(), name="djap-listen")

    async def wait_for_jobs(self, timeout: float) -> None:
        """Return when a NOTIFY arrives, or after `timeout` seconds (the poll fallback)."""
        if self._listener is None and self.listen_params is not None:
            self._listener = asyncio.create_task(self._listen(), name="djap-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        self._wakeup.clear()
