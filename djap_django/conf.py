"""The DJAP settings dict: defaults, and one accessor that merges the user's values."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from . import validation

#: Every key the DJAP settings dict accepts, with its default.
DEFAULTS: dict[str, Any] = {
    # The database alias that holds the queue tables.
    "DATABASE": "default",
    # asyncio tasks in flight per worker process.
    "CONCURRENCY": 100,
    # Database lanes per worker process: threads, each with its own ORM connection, that
    # run sync job bodies and the ORM calls of async ones (docs/workers.md). procs x
    # (lanes + 5) is what a host's workers open at most.
    "DB_LANES": 8,
    # Attempts a job gets before it is failed (class option `max_attempts` overrides).
    "MAX_ATTEMPTS": 1,
    # Seconds a job may run before it is cancelled (class option `timeout`); None = no limit.
    "TIMEOUT": None,
    # Retry backoff: base * 2**(attempt-1) seconds, capped, with +-25% jitter.
    "RETRY_BACKOFF_BASE": 1.0,
    "RETRY_BACKOFF_MAX": 300.0,
    # Seconds between a worker's heartbeats.
    "HEARTBEAT_INTERVAL": 2.0,
    # A worker whose last heartbeat is older than this (seconds) is dead; its jobs go back.
    "STALE_AFTER": 30.0,
    # A job whose worker died while running it this many times is failed as poison.
    "MAX_CRASHES": 3,
    # DATABASE goes through a transaction-mode pooler (PgBouncer): djap's own connections
    # then keep no session state (no SET, no prepared statements, no LISTEN through it).
    "TRANSACTION_POOLER": False,
    # An alias with a direct (session) connection to the same PostgreSQL database, for
    # LISTEN/NOTIFY; None = LISTEN on DATABASE, or poll when TRANSACTION_POOLER is on.
    "LISTEN_DATABASE": None,
    # Seconds between polls when no notification arrives (PostgreSQL's fallback).
    "POLL_INTERVAL": 1.0,
    # SQLite has no notifications: idle workers poll between these bounds (seconds).
    "SQLITE_POLL_MIN": 0.005,
    "SQLITE_POLL_MAX": 0.1,
    # Seconds a SQLite write waits for another process's lock before it backs off and retries.
    # Less than STALE_AFTER - HEARTBEAT_INTERVAL (a system check says so): a heartbeat that
    # waits this long must not make its worker look dead.
    "SQLITE_BUSY_TIMEOUT": 20.0,
    # Completions are written in batches of up to this many, at least this often (seconds).
    "COMPLETION_BATCH": 500,
    "COMPLETION_FLUSH_INTERVAL": 0.005,
    # Seconds running jobs get to finish after SIGTERM before they are put back.
    "GRACE": 30.0,
    # --burst waits for retries that fall due within this many seconds before it exits.
    "BURST_RETRY_WAIT": 60.0,
    # Stopped or dead worker rows are deleted after this many seconds.
    "PRUNE_WORKERS_AFTER": 3600.0,
    # Seconds between a worker's checks that its running jobs were not cancelled (SQLite's
    # only signal; on PostgreSQL a NOTIFY arrives at once and this is the fallback).
    "CANCEL_POLL_INTERVAL": 0.5,
    # Each worker moves scheduled jobs that fell due onto the claim path at least this
    # often (seconds); it also wakes at the next known due time.
    "STAGE_INTERVAL": 0.5,
    # ...this many rows per statement.
    "STAGE_BATCH": 5000,
    # Workers delete finished jobs older than this many seconds; None = never (djap prune).
    "PRUNE_OLDER_THAN": None,
    # ...in these statuses...
    "PRUNE_STATUSES": ("done", "failed", "cancelled"),
    # ...every this many seconds.
    "PRUNE_INTERVAL": 600.0,
    # Tests: enqueued jobs run at once in the caller's process after commit (flow-control.md).
    "INLINE": False,
    # Periodic jobs: each worker checks the schedules at least this often (seconds).
    "PERIODIC_INTERVAL": 1.0,
}


#: The DJAP dict last found valid (by identity): checked once, not on every read.
_checked: object = object()


def _check(user: Any) -> None:
    """Refuse a bad DJAP dict wherever it is first read (a shell or a view runs no checks)."""
    global _checked
    from django.core.exceptions import ImproperlyConfigured

    found = validation.problems(user, DEFAULTS, settings.DATABASES)
    if found:
        raise ImproperlyConfigured("; ".join(map(str, found)))
    _checked = user


def get(key: str) -> Any:
    """Return the DJAP setting `key`, the user's value or the default."""
    user = getattr(settings, "DJAP", None)
    if user is not _checked:
        _check(user)
    user = user or {}
    if key in user:
        return user[key]
    return DEFAULTS[key]


def database_alias() -> str:
    return get("DATABASE")
