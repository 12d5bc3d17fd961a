"""The database as a job queue: one contract (base.py), one module per dialect."""

from __future__ import annotations

from django.db import connections

from .. import conf
from .base import ClaimedJob, Outcome, Queue, RescueReport, StageReport, WorkerInfo
from .in_transaction import InTransaction

__all__ = [
    "ClaimedJob",
    "InTransaction",
    "Outcome",
    "Queue",
    "RescueReport",
    "StageReport",
    "WorkerInfo",
    "in_transaction",
    "open_queue",
]


def open_queue(alias: str | None = None) -> Queue:
    """The queue implementation for the database behind `alias` (not yet connected)."""
    alias = alias or conf.database_alias()
    connection = connections[alias]
    if connection.vendor == "postgresql":
        from .postgres import PostgresQueue

        return PostgresQueue(connection)
    if connection.vendor == "sqlite":
        from .sqlite import SQLiteQueue

        return SQLiteQueue(connection)
    raise NotImplementedError(
        f"djap runs on PostgreSQL or SQLite; database {alias!r} is {connection.vendor}"
    )


def in_transaction(alias: str | None = None) -> InTransaction:
    """The statements that join the caller's transaction on `alias` (see in_transaction.py)."""
    return InTransaction(alias or conf.database_alias())
