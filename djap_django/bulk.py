"""Bulk enqueue without the ORM's per-object cost: one raw INSERT per chunk of jobs.

`Model.objects.bulk_create` spends most of its time per object and per field
(model instances, pre_save, get_db_prep_save on every column). A queue enqueues
thousands of rows that differ in a handful of columns, so here the varying
columns go in as arrays (PostgreSQL: `INSERT ... SELECT FROM unnest(...)`) or
through `executemany` (SQLite, one C loop), with the inputs already serialised
to JSON text by the validation step. The statements run on Django's own
connection, so they join the caller's transaction. Every other column takes its
model default, read from the model itself once per database, so a column another
change adds is filled the way the ORM would fill it.

On PostgreSQL the chunks go out in pipeline mode: the server inserts one chunk
while Python validates the next, so a large batch costs about the larger of the
two instead of their sum.

A chunk with unique keys in it takes its own INSERT, with ON CONFLICT DO NOTHING
against the partial unique index djap_job_unique: the database decides which
enqueuer wins, and the losers read the live row they ran into. Chunks without keys
keep the plain statement, so unique jobs cost nothing to those who do not use them.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connections, transaction
from django.db.models import signals
from django.db.models.base import ModelState
from django.utils import timezone

from .exceptions import EnqueueError
from .models import ENDED_STATUSES, JobDBModel
from .queue.base import NEW_JOBS_CHANNEL as NOTIFY_CHANNEL

#: Jobs per INSERT. Small enough that the first chunk reaches the server early (the
#: rest are validated while it inserts), large enough that a statement's own cost
#: (parse, plan, round trip) stays small beside its rows.
CHUNK = 1_000


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
    unique_key: str | None = None


#: The varying columns, in NewRow order (inputs twice there: text to write, data to return).
_VARYING = ("name", "inputs", "priority", "max_attempts", "timeout", "run_after")
_PG_TYPES = ("text", "text", "integer", "integer", "double precision", "timestamptz")
#: The conflict target of a keyed INSERT: the columns and predicate of djap_job_unique.
_ENDED = ", ".join(f"'{s}'" for s in ENDED_STATUSES)
_ON_CONFLICT = (
    f"ON CONFLICT (name, unique_key) WHERE unique_key IS NOT NULL AND NOT (status IN ({_ENDED}))"
    " DO NOTHING"
)
#: A key that ended between our INSERT and our read of its live row is inserted again,
#: at most this many times (each retry means another job with that key just finished).
_KEYED_RETRIES = 5


@dataclass(frozen=True)
class _Insert:
    """What an INSERT of new jobs needs, worked out once per database alias."""

    #: Concrete columns the INSERT sets to their model default (the ORM would too).
    fields: tuple[Any, ...]
    #: Their values prepared for the database, with created_at's slot left as None.
    prepped: tuple[Any, ...]
    created_at: int
    sql: str
    #: PostgreSQL: the same INSERT carrying its NOTIFY.
    sql_notify: str
    #: PostgreSQL: one row as plain VALUES, with its NOTIFY (create_new's latency).
    sql_one: str = ""
    #: A chunk with unique keys: the key is a varying column and conflicts are skipped.
    #: PostgreSQL: unnest with its NOTIFY (sql_unique_notify) or without; SQLite: one row.
    sql_unique: str = ""
    sql_unique_notify: str = ""
    #: The position of unique_key among `fields` (left out of the keyed statements).
    unique_key: int = -1


_inserts: dict[tuple[str, str], _Insert] = {}


def _constant_fields() -> tuple[Any, ...]:
    fields = []
    for field in JobDBModel._meta.concrete_fields:
        if field.primary_key or field.attname in _VARYING or field.has_db_default():
            continue  # set per row, or filled by the database
        fields.append(field)
    return tuple(fields)


def _db_constants() -> dict[str, Any]:
    """attname -> value of the columns whose database default is a constant."""
    from django.db.models import Expression, Value

    constants = {}
    for f in JobDBModel._meta.concrete_fields:
        if f.has_db_default():
            value = f.db_default
            if isinstance(value, Value):
                constants[f.attname] = value.value
            elif not isinstance(value, Expression):
                constants[f.attname] = value
    return constants


def _defaults(fields: Iterable[Any], now: dt.datetime) -> list[Any]:
    """Python values of the constant columns for one row (fresh, for mutable defaults)."""
    values: list[Any] = []
    for field in fields:
        if field.attname == "created_at":
            values.append(now)
        elif field.attname == "status":
            values.append(JobDBModel.Status.NEW.value)
        else:
            values.append(field.get_default())
    return values


def _insert_for(connection: Any) -> _Insert:
    key = (connection.alias, connection.vendor)
    found = _inserts.get(key)
    if found is None:
        found = _inserts[key] = _build_insert(connection)
    return found


def _build_insert(connection: Any) -> _Insert:
    fields = _constant_fields()
    created_at = next(i for i, f in enumerate(fields) if f.attname == "created_at")
    unique_key = next(i for i, f in enumerate(fields) if f.attname == "unique_key")
    prepped = [
        None if i == created_at else f.get_db_prep_save(v, connection)
        for i, (f, v) in enumerate(zip(fields, _defaults(fields, timezone.now()), strict=True))
    ]
    table = connection.ops.quote_name(JobDBModel._meta.db_table)
    quote = connection.ops.quote_name
    const_cols = ", ".join(quote(f.column) for f in fields)
    # The keyed statements set unique_key per row instead of as a constant.
    keyed_fields = [f for f in fields if f.attname != "unique_key"]
    keyed_cols = ", ".join(quote(f.column) for f in keyed_fields)
    if connection.vendor == "postgresql":
        const_vals = ", ".join(f"CAST(%s AS {f.db_type(connection)})" for f in fields)
        keyed_vals = ", ".join(f"CAST(%s AS {f.db_type(connection)})" for f in keyed_fields)
        arrays = ", ".join(f"%s::{t}[]" for t in _PG_TYPES)
        # A job due later is `scheduled` (off the claim path), by the database's clock.
        sql = (
            f"INSERT INTO {table} "
            f"(name, inputs, priority, max_attempts, timeout, run_after, scheduled, "
            f"{const_cols}) "
            f"SELECT u.name, u.inputs::jsonb, u.priority, u.max_attempts, u.timeout, "
            f"u.run_after, COALESCE(u.run_after > now(), false), {const_vals} "
            f"FROM unnest({arrays}) "
            "AS u(name, inputs, priority, max_attempts, timeout, run_after) RETURNING id"
        )
        unique = (
            f"INSERT INTO {table} "
            f"(name, inputs, priority, max_attempts, timeout, run_after, scheduled, "
            f"unique_key, {keyed_cols}) "
            f"SELECT u.name, u.inputs::jsonb, u.priority, u.max_attempts, u.timeout, "
            f"u.run_after, COALESCE(u.run_after > now(), false), u.unique_key, {keyed_vals} "
            f"FROM unnest({arrays}, %s::text[]) "
            "AS u(name, inputs, priority, max_attempts, timeout, run_after, unique_key) "
            f"{_ON_CONFLICT} RETURNING id, name, unique_key"
        )
        # NOTIFY inside the INSERT saves a round trip; PostgreSQL sends it on commit.
        notify = "WITH ins AS ({}) SELECT ins.* FROM ins, (SELECT pg_notify(%s, '')) n"
        # Planning the unnest form costs a single row about 0.4 ms more than VALUES.
        one = (
            f"INSERT INTO {table} "
            f"(name, inputs, priority, max_attempts, timeout, run_after, scheduled, "
            f"{const_cols}) VALUES (%s, %s::jsonb, %s, %s, %s, %s, "
            f"COALESCE(%s::timestamptz > now(), false), {const_vals}) RETURNING id"
        )
        return _Insert(
            fields,
            tuple(prepped),
            created_at,
            sql,
            notify.format(sql),
            notify.format(one),
            unique,
            notify.format(unique),
            unique_key,
        )
    marks = ", ".join(["%s"] * (len(_VARYING) + 1 + len(fields)))
    sql = f"INSERT INTO {table} ({', '.join(_VARYING)}, scheduled, {const_cols}) VALUES ({marks})"
    unique = (
        f"INSERT INTO {table} ({', '.join(_VARYING)}, scheduled, unique_key, {keyed_cols}) "
        f"VALUES ({marks}) {_ON_CONFLICT} RETURNING id"
    )
    return _Insert(fields, tuple(prepped), created_at, sql, sql, "", unique, unique, unique_key)


def enqueue(batches: Iterable[list[NewRow]], alias: str, _depth: int = 0) -> list[JobDBModel]:
    """Insert the rows of `batches` as new jobs and wake idle workers; all or none are written.

    `batches` may validate lazily: on PostgreSQL each batch is sent before the next is
    asked for. A single batch is one statement, which carries its own NOTIFY and,
    outside a transaction, commits by itself. Inside the caller's transaction the
    rows join it, and the notification goes out when it commits. A row whose unique
    key is taken by a live job is not written: that job's row stands in its place.
    """
    connection = connections[alias]
    insert = _insert_for(connection)
    now = timezone.now()
    batches = iter(batches)
    first = next(batches, [])
    second = next(batches, None)
    if second is None:
        if not first:
            return []
        if connection.vendor == "postgresql":  # one statement: atomic by itself
            ids = _insert_postgres(connection, insert, [first], now)
            return _rows(first, ids, insert, now, alias, _depth)
    with transaction.atomic(using=alias):
        rest = itertools.chain([first], [] if second is None else [second], batches)
        if connection.vendor == "postgresql":
            rows: list[NewRow] = []
            ids = _insert_postgres(connection, insert, _collect(rest, rows), now)
        else:
            rows = [row for batch in rest for row in batch]
            ids = _insert_sqlite(connection, insert, rows, now)
        return _rows(rows, ids, insert, now, alias, _depth)


def _rows(
    rows: list[NewRow],
    ids: list[int | None],
    insert: _Insert,
    now: dt.datetime,
    alias: str,
    depth: int,
) -> list[JobDBModel]:
    """The rows written, with the live row of each key that was taken in its place."""
    if None not in ids:
        return _instances(rows, ids, insert, now, alias)  # type: ignore[arg-type]
    written = [i for i, pk in enumerate(ids) if pk is not None]
    out: list[JobDBModel | None] = [None] * len(rows)
    written_ids = [pk for pk in ids if pk is not None]
    made = _instances([rows[i] for i in written], written_ids, insert, now, alias)
    for i, obj in zip(written, made, strict=True):
        out[i] = obj
    taken = [i for i, pk in enumerate(ids) if pk is None]
    live = _live_rows(alias, [rows[i] for i in taken])
    ended = []
    for i in taken:
        out[i] = live.get((rows[i].name, rows[i].unique_key))
        if out[i] is None:
            ended.append(i)
    if ended:
        # The job holding the key ended between our INSERT and our read: try again.
        if depth >= _KEYED_RETRIES:
            row = rows[ended[0]]
            raise EnqueueError(
                f"{row.name}: unique_key {row.unique_key!r} kept conflicting with a job that "
                "is not visible to this transaction (REPEATABLE READ or SERIALIZABLE?)"
            )
        again = enqueue([[rows[i] for i in ended]], alias, depth + 1)
        for i, obj in zip(ended, again, strict=True):
            out[i] = obj
    return out  # type: ignore[return-value]


def _live_rows(alias: str, rows: list[NewRow]) -> dict[tuple[str, str | None], JobDBModel]:
    """The jobs that have not ended, by (name, unique_key), for the keys of `rows`."""
    keys: dict[str, set[str]] = {}
    for row in rows:
        keys.setdefault(row.name, set()).add(row.unique_key)  # type: ignore[arg-type]
    found = {}
    live = JobDBModel.objects.using(alias).exclude(status__in=ENDED_STATUSES)
    for name, names_keys in keys.items():
        wanted = sorted(names_keys)
        for lo in range(0, len(wanted), CHUNK):
            for obj in live.filter(name=name, unique_key__in=wanted[lo : lo + CHUNK]):
                found[(obj.name, obj.unique_key)] = obj
    return found


def _collect(batches: Iterable[list[NewRow]], into: list[NewRow]) -> Iterator[list[NewRow]]:
    for batch in batches:
        into += batch
        yield batch


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


def _consts(insert: _Insert, now: dt.datetime) -> list[Any]:
    consts = list(insert.prepped)
    consts[insert.created_at] = now
    return consts


def _keyed(batch: list[NewRow]) -> bool:
    return any(r.unique_key is not None for r in batch)


def _pg_params(insert: _Insert, chunk: list[NewRow], now: dt.datetime) -> list[Any]:
    consts = _consts(insert, now)
    columns: list[list[Any]] = [
        [r.name for r in chunk],
        [r.inputs_json for r in chunk],
        [r.priority for r in chunk],
        [r.max_attempts for r in chunk],
        [r.timeout for r in chunk],
        [r.run_after for r in chunk],
    ]
    if _keyed(chunk):
        del consts[insert.unique_key]
        columns.append([r.unique_key for r in chunk])
    # The constants come first in the statement text, then the arrays.
    return [*consts, *map(_pg_array, columns)]


def _pg_statement(insert: _Insert, batch: list[NewRow], notify: bool) -> str:
    if _keyed(batch):
        return insert.sql_unique_notify if notify else insert.sql_unique
    return insert.sql_notify if notify else insert.sql


def _pair(batch: list[NewRow], returned: list[tuple]) -> list[int | None]:
    """The id of each row of `batch`, None where its unique key was taken.

    The rows written got their ids from the sequence in the batch's order, so walking
    both in order pairs them: a row that was skipped has a key that the next row
    returned cannot carry (that key is taken for every later row of the batch too).
    """
    returned = sorted(returned)
    if len(returned[0] if returned else ()) == 1:  # a plain INSERT: every row written
        return [r[0] for r in returned]
    ids: list[int | None] = []
    at = 0
    for row in batch:
        if at < len(returned) and returned[at][1:] == (row.name, row.unique_key):
            ids.append(returned[at][0])
            at += 1
        else:
            ids.append(None)
    return ids


def _insert_postgres(
    connection: Any, insert: _Insert, batches: Iterable[list[NewRow]], now: dt.datetime
) -> list[int | None]:
    """Send one INSERT per batch, pipelined when there are several; their ids in order."""
    batches = iter(batches)
    first = next(batches)
    second = next(batches, None)
    if second is None:  # one statement: no pipeline to set up
        if len(first) == 1 and first[0].unique_key is None:
            (row,) = first
            varying = [row.name, row.inputs_json, row.priority, row.max_attempts, row.timeout]
            after = row.run_after
            sql, params = insert.sql_one, [*varying, after, after, *_consts(insert, now)]
        else:
            sql, params = _pg_statement(insert, first, True), _pg_params(insert, first, now)
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, NOTIFY_CHANNEL])
            return _pair(first, cursor.fetchall())
    connection.ensure_connection()
    cursors = []
    sent = []
    try:
        with connection.wrap_database_errors, connection.connection.pipeline():
            for batch in itertools.chain([first, second], batches):
                cursor = connection.cursor()
                cursors.append(cursor)
                sent.append(batch)
                if len(cursors) > 1:
                    cursor.execute(
                        _pg_statement(insert, batch, False), _pg_params(insert, batch, now)
                    )
                else:
                    params = [*_pg_params(insert, batch, now), NOTIFY_CHANNEL]
                    cursor.execute(_pg_statement(insert, batch, True), params)
        # Ids come from the sequence in insertion order (unnest's order), whatever
        # order RETURNING lists them in: sorted, they line up with the batch.
        return [
            i
            for batch, cursor in zip(sent, cursors, strict=True)
            for i in _pair(batch, cursor.fetchall())
        ]
    finally:
        for cursor in cursors:
            cursor.close()


def _insert_sqlite(
    connection: Any, insert: _Insert, rows: list[NewRow], now: dt.datetime
) -> list[int | None]:
    run_after = JobDBModel._meta.get_field("run_after")
    consts = list(insert.prepped)
    consts[insert.created_at] = insert.fields[insert.created_at].get_db_prep_save(now, connection)
    keyed = _keyed(rows)
    if keyed:
        del consts[insert.unique_key]
    params = [
        (
            r.name,
            r.inputs_json,
            r.priority,
            r.max_attempts,
            r.timeout,
            None if r.run_after is None else run_after.get_db_prep_save(r.run_after, connection),
            r.run_after is not None and r.run_after > now,
            *((r.unique_key,) if keyed else ()),
            *consts,
        )
        for r in rows
    ]
    with connection.cursor() as cursor:
        if keyed:
            # One statement per row: executemany cannot say which rows ON CONFLICT skipped.
            ids: list[int | None] = []
            for p in params:
                cursor.execute(insert.sql_unique, p)
                found = cursor.fetchone()
                ids.append(None if found is None else found[0])
            return ids
        cursor.executemany(insert.sql, params)
        # SQLite has one writer, and this transaction holds the write lock: the rows got
        # consecutive rowids ending at the last one inserted.
        cursor.execute("SELECT last_insert_rowid()")
        last = cursor.fetchone()[0]
    return list(range(last - len(rows) + 1, last + 1))


def _instances(
    rows: list[NewRow], ids: list[int], insert: _Insert, now: dt.datetime, alias: str
) -> list[JobDBModel]:
    """JobDBModel objects for the inserted rows, built the way `from_db` builds them."""
    if len(ids) != len(rows):
        raise RuntimeError(f"inserted {len(rows)} jobs but got {len(ids)} ids back")
    fields = insert.fields
    attnames = [f.attname for f in JobDBModel._meta.concrete_fields]
    base = dict.fromkeys(attnames)
    base.update(zip((f.attname for f in fields), _defaults(fields, now), strict=True))
    # Columns the database fills (a constant db_default) hold that constant in the row.
    base.update(_db_constants())
    # Callable defaults (errors=list) must not be shared between rows.
    fresh = [(f.attname, f.get_default) for f in fields if f.has_default() and callable(f.default)]
    pk_name = JobDBModel._meta.pk.attname
    # Model.__init__ costs as much as the INSERT per row; without pre_init/post_init
    # receivers it does no more than fill __dict__ and _state, so do just that.
    if signals.pre_init.has_listeners(JobDBModel) or signals.post_init.has_listeners(JobDBModel):
        return _instances_with_signals(rows, ids, base, fresh, alias, now)
    new, state_cls = object.__new__, ModelState
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
        values["scheduled"] = row.run_after is not None and row.run_after > now
        values["unique_key"] = row.unique_key
        for name, default in fresh:
            values[name] = default()
        state = state_cls()
        state.adding = False
        state.db = alias
        values["_state"] = state
        obj = new(JobDBModel)
        obj.__dict__ = values
        out.append(obj)
    return out


def _instances_with_signals(
    rows: list[NewRow], ids: list[int], base: dict, fresh: list, alias: str, now: dt.datetime
) -> list[JobDBModel]:
    """The same objects through Model.__init__, so pre_init/post_init receivers run."""
    out = []
    for row, pk in zip(rows, ids, strict=True):
        values = dict(base, name=row.name, inputs=row.inputs, priority=row.priority)
        values[JobDBModel._meta.pk.attname] = pk
        values.update(max_attempts=row.max_attempts, timeout=row.timeout, run_after=row.run_after)
        values["scheduled"] = row.run_after is not None and row.run_after > now
        values["unique_key"] = row.unique_key
        values.update((name, default()) for name, default in fresh)
        obj = JobDBModel(**values)
        obj._state.adding = False
        obj._state.db = alias
        out.append(obj)
    return out
