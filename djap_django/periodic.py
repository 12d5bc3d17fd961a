"""Periodic jobs: `every = 30` or `cron = "0 3 * * *"` on a BaseJob.

This module holds the schedules and the checks of the class options; the worker's
PeriodicScheduler (services/scheduler.py) enqueues the ticks. The database decides
who enqueues a tick: each periodic class has a row in djap_periodic with its next due
time, and a worker that finds it due moves it on with a conditional UPDATE (`WHERE
next_run_at = <the due time it read>`) and enqueues the job in the same transaction.
Two workers that race for one tick both run that UPDATE; one of them changes a row,
the other none, so the tick is enqueued once. A worker killed mid-tick rolls both
back, and the next worker to look finds the tick still due. After downtime the next
time is worked out from now, so missed ticks are not replayed: one run, then the
schedule.

A tick whose previous run has not ended is skipped (the job is enqueued with a
unique key that the live run still holds), unless the class sets
`periodic_overlap = True`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

from . import cron, registry
from .exceptions import EnqueueError, JobDefinitionError

logger = logging.getLogger("djap.periodic")

#: The unique_key a periodic job is enqueued with, so a tick skips while its previous
#: run waits or runs.
PERIODIC_KEY = "djap:periodic"


class Schedule(Protocol):
    def describe(self) -> str: ...
    def next_after(self, after: dt.datetime) -> dt.datetime: ...


@dataclass(frozen=True)
class Every:
    """Every `seconds`, on a grid counted from the Unix epoch, so every host agrees on it."""

    seconds: float

    def describe(self) -> str:
        return f"every {self.seconds:g}s"

    def next_after(self, after: dt.datetime) -> dt.datetime:
        ticks = math.floor(after.timestamp() / self.seconds) + 1
        return dt.datetime.fromtimestamp(ticks * self.seconds, dt.UTC)


@dataclass(frozen=True)
class CronSchedule:
    expression: cron.Cron
    tz_name: str

    def describe(self) -> str:
        return f"cron {self.expression.text} {self.tz_name}"

    def next_after(self, after: dt.datetime) -> dt.datetime:
        return self.expression.next_after(after, cron.zone(self.tz_name))


def _where(cls: Any, attribute: str) -> str:
    return f"{cls.__module__}.{cls.__qualname__}.{attribute}"


def _every_seconds(cls: Any) -> float:
    every = cls.every
    if isinstance(every, dt.timedelta):
        every = every.total_seconds()
    if isinstance(every, bool) or not isinstance(every, int | float) or not every > 0:
        raise JobDefinitionError(
            f"{_where(cls, 'every')} must be seconds > 0 or a timedelta, not {cls.every!r}"
        )
    return float(every)


def _schedule(cls: Any) -> Schedule | None:
    if cls.every is not None and cls.cron is not None:
        raise JobDefinitionError(
            f"{_where(cls, 'every')} and .cron are both set; a periodic job has one schedule"
        )
    if cls.every is not None:
        return Every(_every_seconds(cls))
    if cls.cron is None:
        return None
    try:
        expression = cron.parse(cls.cron)
    except cron.CronError as exc:
        raise JobDefinitionError(f"{_where(cls, 'cron')}: {exc}") from None
    try:
        cron.zone(cls.cron_tz)
    except cron.CronError as exc:
        raise JobDefinitionError(f"{_where(cls, 'cron_tz')}: {exc}") from None
    return CronSchedule(expression, cls.cron_tz)


def _required_fields(inputs_cls: Any) -> list[str]:
    if not dataclasses.is_dataclass(inputs_cls):
        return []
    missing = dataclasses.MISSING
    return [
        f.name
        for f in dataclasses.fields(inputs_cls)
        if f.init and f.default is missing and f.default_factory is missing
    ]


def _check_inputs(cls: Any) -> None:
    """A tick has no caller to give inputs: they come from periodic_inputs or defaults."""
    from . import codec

    if cls.periodic_inputs is not None:
        if cls.Inputs is None:
            raise JobDefinitionError(
                f"{_where(cls, 'periodic_inputs')} is set, but {cls.__name__} declares no Inputs"
            )
        try:
            codec.encode(cls.__name__, cls.Inputs, cls.periodic_inputs)
        except EnqueueError as exc:
            raise JobDefinitionError(f"{_where(cls, 'periodic_inputs')}: {exc}") from None
        return
    if cls.Inputs is None:
        return
    required = _required_fields(cls.Inputs)
    if required or not dataclasses.is_dataclass(cls.Inputs):
        fields = f" ({', '.join(required)})" if required else ""
        raise JobDefinitionError(
            f"{_where(cls, 'every' if cls.every is not None else 'cron')}: {cls.__name__} is "
            f"periodic but its Inputs has required fields{fields}; give them defaults or set "
            "`periodic_inputs`"
        )


def check_class(cls: Any) -> None:
    """Raise JobDefinitionError, naming the attribute, for a wrong periodic option."""
    schedule = _schedule(cls)
    if schedule is None:
        if cls.periodic_inputs is not None:
            raise JobDefinitionError(
                f"{_where(cls, 'periodic_inputs')} is set, but {cls.__name__} has no `every` "
                "or `cron`"
            )
        return
    _check_inputs(cls)


def schedule_of(cls: Any) -> Schedule | None:
    """The schedule of a (checked) job class, or None if it is not periodic."""
    return _schedule(cls)


def periodic_classes() -> dict[str, tuple[Any, Schedule]]:
    found = {}
    for name in registry.names():
        cls = registry.get(name)
        schedule = schedule_of(cls) if cls is not None else None
        if schedule is not None:
            found[name] = (cls, schedule)
    return found
