"""The connection budget: how many database connections a worker process opens at most.

A worker opens its queue connections (PostgreSQL: claims, heartbeats, completions,
LISTEN; SQLite: one), one bookkeeping connection for its own ORM work (pipeline
finishes), and one per database lane that runs a job (lanes open theirs on first use
and keep them). A lane given up while its thread is stuck keeps its connection until
the thread returns: that is the only way past the budget, and the log says so.

With Django's connection pool (OPTIONS "pool"), the ORM's connections come from a pool
of at most `max_size` per process, so that is the ORM part of the budget, and lanes
beyond it would only wait for the pool: a worker uses no more lanes than that.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connections

#: The PostgreSQL queue's own connections: claims, heartbeats, completions, LISTEN.
PG_QUEUE_CONNECTIONS = 4
#: SQLite's queue runs on one connection in its own thread.
SQLITE_QUEUE_CONNECTIONS = 1
#: The worker's bookkeeping thread (pipeline finishes, burst checks) has one ORM connection.
BOOKKEEPING_CONNECTIONS = 1
#: psycopg_pool's default pool size, which Django's `"pool": True` gets.
PSYCOPG_POOL_DEFAULT_SIZE = 4


@dataclass(frozen=True, slots=True)
class Budget:
    """What one worker process opens at most, and the lanes it runs."""

    queue: int
    bookkeeping: int
    lanes: int
    #: With Django's pool: its max_size, which bounds bookkeeping + lanes together.
    pool_size: int | None = None

    @property
    def total(self) -> int:
        orm = self.bookkeeping + self.lanes
        if self.pool_size is not None:
            orm = min(orm, self.pool_size)
        return self.queue + orm

    def describe(self) -> str:
        text = (
            f"{self.total} database connections at most ({self.queue} queue + "
            f"{self.bookkeeping} bookkeeping + {self.lanes} lanes"
        )
        if self.pool_size is not None:
            text += f", the ORM's from Django's pool of {self.pool_size}"
        return text + ")"


def pool_size(alias: str) -> int | None:
    """The max_size of Django's connection pool for `alias`, or None without one."""
    options = connections[alias].settings_dict.get("OPTIONS") or {}
    pool = options.get("pool")
    if not pool:
        return None
    if pool is True:
        return PSYCOPG_POOL_DEFAULT_SIZE
    size = pool.get("max_size") or pool.get("min_size") or PSYCOPG_POOL_DEFAULT_SIZE
    return int(size)


def worker_budget(alias: str, lanes: int, concurrency: int) -> Budget:
    """The budget of one worker with `lanes` lanes and `concurrency` jobs in flight."""
    from . import conf

    vendor = connections[alias].vendor
    queue = PG_QUEUE_CONNECTIONS if vendor == "postgresql" else SQLITE_QUEUE_CONNECTIONS
    if (
        vendor == "postgresql"
        and conf.get("TRANSACTION_POOLER")
        and not conf.get("LISTEN_DATABASE")
    ):
        queue -= 1  # no LISTEN connection: the worker polls
    used = min(lanes, concurrency)
    size = pool_size(alias) if vendor == "postgresql" else None
    if size is not None:
        # The bookkeeping thread takes one of the pool's connections when it needs one.
        used = max(1, min(used, size - BOOKKEEPING_CONNECTIONS))
    return Budget(queue=queue, bookkeeping=BOOKKEEPING_CONNECTIONS, lanes=used, pool_size=size)


@dataclass(frozen=True, slots=True)
class ServerRoom:
    """What a PostgreSQL server allows: connections for ordinary roles, and those in use."""

    max_connections: int
    reserved: int
    in_use: int

    @property
    def allowed(self) -> int:
        return self.max_connections - self.reserved


def server_room(alias: str) -> ServerRoom | None:
    """Ask the server behind `alias` (None on SQLite, or when it cannot be asked)."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return None
    try:
        with connection.cursor() as cur:
            cur.execute(
                """SELECT current_setting('max_connections')::int,
                          current_setting('superuser_reserved_connections')::int
                          + COALESCE(current_setting('reserved_connections', true), '0')::int,
                          (SELECT count(*) FROM pg_stat_activity
                           WHERE backend_type = 'client backend')"""
            )
            max_connections, reserved, in_use = cur.fetchone()
    except Exception:
        return None
    return ServerRoom(max_connections, reserved, in_use)


def over_budget_warning(
    planned: int, room: ServerRoom | None, what: str, how: str = ""
) -> str | None:
    """A warning when `planned` new connections do not fit beside those in use."""
    if room is None or planned + room.in_use <= room.allowed:
        return None
    how = f" ({how})" if how else ""
    return (
        f"{what} may open {planned} database connections{how}, and {room.in_use} are in use, "
        f"but the server allows {room.allowed} (max_connections {room.max_connections} "
        f"minus {room.reserved} reserved): lower --procs or --lanes (DJAP DB_LANES), raise "
        "max_connections, or put PgBouncer in front (docs/operations.md)"
    )
