"""Bulk enqueue without the ORM's per-object cost: one raw INSERT per dialect.

`Model.objects.bulk_create` spends most of its time per object and per field
(model instances, pre_save, get_db_prep_save on every column). A queue enqueues
thousands of rows that differ in a handful of columns, so here the varying
columns go in as arrays (PostgreSQL: `INSERT ... SELECT FROM unnest(...)`, one
statement per chunk) or through `executemany` (SQLite, one C loop), with the
inputs already serialised to JSON text by the validation step. The statement
runs on Django's own connection, so it joins the caller's transaction. Every
other column takes its model default, read from the model itself, so a column
another change adds is filled the way the ORM would fill it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import connections, transaction
from django.db.models import signals
from django.db.models.base import ModelState
from django.utils import timezone

from .models import JobDBModel

#: Rows per INSERT on PostgreSQL (arrays, so no parameter limit applies).
PG_CHUNK = 10_000
#: The channel idle workers LISTEN on (djap_django.queue.postgres.CHANNEL; not imported
#: from there because that module needs psycopg, which SQLite projects may not have).
NOTIFY_CHANNEL = "djap_new_jobs"


@dataclass(slots=True)
class NewRow:
    """The columns of one new job that vary from job to job; inputs as JSON text."""

    name: str
    inputs_json: str | None
    inputs: Any
    priority: int
    max_attempts: int
    timeout: float | None
    run_after: dt.datetime | None


#: The varying columns, in NewRow order (inputs twice there: text to write, data to return).
_VARYING = ("name", "inputs", "priority", "max_attempts", "timeout", "run_after")
_PG_TYPES = ("text", "text", "integer", "integer", "double precision", "timestamptz")


def _constant_fields() -> list[Any]:
    """Every other concrete column the INSERT must set (the ORM would set them too)."""
    fields = []
    for field in JobDBModel._meta.concrete_fields:
        if field.primary_key or field.attname in _VARYING:
            continue
        if field.has_db_default():
            continue  # the database fills it
        fields.append(field)
    return fields


def _defaults(fields: list[Any], now: dt.datetime) -> list[Any]:
    """Python values of the constant columns for one row (fresh, for mutable defaults)."""
    values = []
    for field in fields:
        if field.attname == "created_at":
            values.append(now)
        elif field.attname == "status":
            values.append(JobDBModel.Status.NEW.value)
        else:
            values.append(field.get_default())
    return values


def enqueue(rows: list[NewRow], alias: str) -> list[JobDBModel]:
    """Insert `rows` as new jobs and wake idle workers; all or none are written.

    On PostgreSQL a batch that fits one statement is one round trip: the INSERT carries
    its own NOTIFY, and outside a transaction it commits by itself. Inside the caller's
    transaction it joins it, and the notification goes out when that commits.
    """
    connection = connections[alias]
    if connection.vendor == "postgresql" and len(rows) <= PG_CHUNK:
        return insert_rows(rows, alias, notify=True)
    with transaction.atomic(using=alias):
        out = insert_rows(rows, alias, notify=True)
    return out


def insert_rows(rows: list[NewRow], alias: str, notify: bool = False) -> list[JobDBModel]:
    """Insert `rows` as new jobs in the current transaction; returns them with their pks."""
    if not rows:
        return []
    connection = connections[alias]
    fields = _constant_fields()
    now = timezone.now()
    consts = _defaults(fields, now)
    prepped = [f.get_db_prep_save(v, connection) for f, v in zip(fields, consts, strict=True)]
    if connection.vendor == "postgresql":
        ids = _insert_postgres(connection, rows, fields, prepped, notify)
    elif connection.vendor == "sqlite":
        ids = _insert_sqlite(connection, rows, fields, prepped)
    else:  # pragma: no cover - open_queue refuses other databases anyway
        raise NotImplementedError(connection.vendor)
    return _instances(rows, ids, fields, now, alias)


def _pg_array(values: list) -> str:
    """A column as one PostgreSQL array literal, for a `%s::type[]` cast.

    psycopg adapts a list element by element in Python, which costs more than the
    INSERT itself for thousands of rows; one string is quoted once. Elements are
    double-quoted with backslash escapes, NULL stays bare.
    """
    parts = []
    for v in values:
        if v is None:
            parts.append("NULL")
        elif isinstance(v, str):
            parts.append('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"')
        elif isinstance(v, dt.datetime):
            parts.append('"' + v.isoformat() + '"')
        elif isinstance(v, bool):
            parts.append(str(int(v)))
        else:  # int, float
            parts.append(repr(v))
    return "{" + ",".join(parts) + "}"


def _insert_postgres(
    connection: Any, rows: list[NewRow], fields: list[Any], prepped: list, notify: bool
) -> list:
    const_cols = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    const_vals = ", ".join(f"CAST(%s AS {f.db_type(connection)})" for f in fields)
    arrays = ", ".join(f"%s::{t}[]" for t in _PG_TYPES)
    sql = (
        f"INSERT INTO {JobDBModel._meta.db_table} "
        f"(name, inputs, priority, max_attempts, timeout, run_after, {const_cols}) "
        f"SELECT u.name, u.inputs::jsonb, u.priority, u.max_attempts, u.timeout, u.run_after, "
        f"{const_vals} FROM unnest({arrays}) "
        "AS u(name, inputs, priority, max_attempts, timeout, run_after) RETURNING id"
    )
    # NOTIFY inside the (first) INSERT saves a round trip; PostgreSQL sends it on commit.
    with_notify = f"WITH ins AS ({sql}) SELECT ins.id FROM ins, (SELECT pg_notify(%s, '')) AS n"
    ids: list[int] = []
    with connection.cursor() as cursor:
        for lo in range(0, len(rows), PG_CHUNK):
            chunk = rows[lo : lo + PG_CHUNK]
            columns = [
                [r.name for r in chunk],
                [r.inputs_json for r in chunk],
                [r.priority for r in chunk],
                [r.max_attempts for r in chunk],
                [r.timeout for r in chunk],
                [r.run_after for r in chunk],
            ]
            # The constants come first in the statement text, then the arrays.
            params = [*prepped, *map(_pg_array, columns)]
            if notify and lo == 0:
                cursor.execute(with_notify, [*params, NOTIFY_CHANNEL])
            else:
                cursor.execute(sql, params)
            # Ids come from the sequence in insertion order (unnest's order), whatever
            # order RETURNING lists them in: sorted, they line up with `chunk`.
            ids += sorted(r[0] for r in cursor.fetchall())
    return ids


def _insert_sqlite(connection: Any, rows: list[NewRow], fields: list[Any], prepped: list) -> list:
    run_after = JobDBModel._meta.get_field("run_after")
    cols = ", ".join(connection.ops.quote_name(c) for c in [*_VARYING, *(f.column for f in fields)])
    marks = ", ".join(["%s"] * (len(_VARYING) + len(fields)))
    sql = f"INSERT INTO {JobDBModel._meta.db_table} ({cols}) VALUES ({marks})"
    params = [
        (
            r.name,
            r.inputs_json,
            r.priority,
            r.max_attempts,
            r.timeout,
            None if r.run_after is None else run_after.get_db_prep_save(r.run_after, connection),
            *prepped,
        )
        for r in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
        # SQLite has one writer, and this transaction holds the write lock: the rows got
        # consecutive rowids ending at the last one inserted.
        cursor.execute("SELECT last_insert_rowid()")
        last = cursor.fetchone()[0]
    return list(range(last - len(rows) + 1, last + 1))


def _instances(
    rows: list[NewRow], ids: list[int], fields: list[Any], now: dt.datetime, alias: str
) -> list[JobDBModel]:
    """JobDBModel objects for the inserted rows, built the way `from_db` builds them."""
    if len(ids) != len(rows):
        raise RuntimeError(f"inserted {len(rows)} jobs but got {len(ids)} ids back")
    attnames = [f.attname for f in JobDBModel._meta.concrete_fields]
    position = {name: i for i, name in enumerate(attnames)}
    template: list[Any] = [None] * len(attnames)
    mutable = []
    for field, value in zip(fields, _defaults(fields, now), strict=True):
        template[position[field.attname]] = value
        if field.has_default() and callable(field.default):
            mutable.append((position[field.attname], field))
    pk_name = JobDBModel._meta.pk.attname
    # Model.__init__ costs as much as the INSERT per row; without pre_init/post_init
    # receivers it does no more than fill __dict__ and _state, so do just that.
    fast = not (
        signals.pre_init.has_listeners(JobDBModel) or signals.post_init.has_listeners(JobDBModel)
    )
    base = dict(zip(attnames, template, strict=True))
    mutable_names = [(attnames[at], field) for at, field in mutable]
    new = object.__new__
    out = []
    for row, pk in zip(rows, ids, strict=True):
        values = base.copy()
        values[pk_name] = pk
        values["name"] = row.name
        values["inputs"] = row.inputs
        values["priority"] = row.priority
        values["max_attempts"] = row.max_attempts
        values["timeout"] = row.timeout
        values["run_after"] = row.run_after
        for name, field in mutable_names:
            values[name] = field.get_default()
        if fast:
            obj = new(JobDBModel)
            state = ModelState()
            state.adding = False
            state.db = alias
            values["_state"] = state
            obj.__dict__ = values
        else:
            obj = JobDBModel(*(values[name] for name in attnames))
            obj._state.adding = False
            obj._state.db = alias
        out.append(obj)
    return out
