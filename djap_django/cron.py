"""A five-field cron expression and the next time it matches; no dependency.

    minute hour day-of-month month day-of-week
    0-59   0-23 1-31         1-12  0-7 (0 and 7 are Sunday)

Each field is `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, or a list of
those separated by commas; months and weekdays also take names (`jan`, `mon`).
`@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly` and `@yearly` (`@annually`)
are shorthands. As in Vixie cron, when both day fields are restricted a day matches
if either does ("the 1st, and every Monday").

Times are matched in the schedule's time zone: a time skipped by a daylight-saving
jump runs at the same wall-clock offset after it, and a repeated hour runs once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

_SHORTHANDS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
#: (name, lowest, highest, names) of the five fields, in order.
_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
#: A schedule with no match within this many days never matches (e.g. "0 0 30 2 *").
_SEARCH_DAYS = 366 * 5


class CronError(ValueError):
    """The expression is not a valid five-field cron string."""


def _value(text: str, names: tuple[str, ...], field: str) -> int:
    lowered = text.lower()
    if lowered in names:
        return names.index(lowered) + (1 if names is _MONTHS else 0)
    if not text.isdigit():
        raise CronError(f"{field} {text!r} is not a number")
    return int(text)


def _field(text: str, field: str, low: int, high: int, names: tuple[str, ...]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field} step {step_text!r} must be a whole number >= 1")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _value(a, names, field), _value(b, names, field)
        else:
            start = _value(base, names, field)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high):
            raise CronError(f"{field} {part!r} is outside {low}-{high}")
        if start > end:
            raise CronError(f"{field} range {part!r} runs backwards")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed expression: the allowed values of each field."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Monday ... 6 = Sunday, as datetime.weekday()
    #: Whether each day field was restricted (not `*`): decides the OR of the two.
    days_restricted: bool
    weekdays_restricted: bool

    def _day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        in_days, in_weekdays = day.day in self.days, day.weekday() in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def next_after(self, after: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
        """The first matching time strictly after `after` (aware), as an aware UTC time."""
        local = after.astimezone(tz)
        day = local.date()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                # Through UTC: a wall time inside a DST gap moves on by the jump, one inside
                # a repeated hour means its first occurrence. The gap can put one candidate
                # after the next one in wall order, hence the min rather than the first.
                later = [
                    when
                    for hour in self.hours
                    for minute in self.minutes
                    if (
                        when := dt.datetime(
                            day.year, day.month, day.day, hour, minute, tzinfo=tz
                        ).astimezone(dt.UTC)
                    )
                    > after
                ]
                if later:
                    return min(later)
            day += dt.timedelta(days=1)
        raise CronError(f"{self.text!r} never matches a date")


def parse(text: str) -> Cron:
    """Parse a cron expression; raises CronError saying which field is wrong."""
    if not isinstance(text, str):
        raise CronError(f"a cron expression is a string, not {text!r}")
    expanded = _SHORTHANDS.get(text.strip().lower(), text)
    parts = expanded.split()
    if len(parts) != 5:
        raise CronError(
            f"{text!r} has {len(parts)} fields; a cron expression has five: "
            "minute hour day-of-month month day-of-week (e.g. '0 3 * * *')"
        )
    sets = [_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
    minutes, hours, days, months, weekdays = sets
    cron = Cron(
        text=text,
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=days,
        months=months,
        # cron counts 0 (and 7) as Sunday; datetime.weekday() counts 0 as Monday.
        weekdays=frozenset((d - 1) % 7 for d in weekdays),
        days_restricted=parts[2] != "*",
        weekdays_restricted=parts[4] != "*",
    )
    cron.next_after(dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.UTC)  # "0 0 30 2 *" fails here
    return cron


def zone(name: str) -> ZoneInfo:
    """A time zone by IANA name; raises CronError for an unknown one."""
    try:
        return ZoneInfo(name)
    # ZoneInfoNotFoundError is a KeyError; a malformed key is a ValueError.
    except (KeyError, ValueError, OSError, TypeError) as exc:
        raise CronError(
            f"unknown time zone {name!r} (an IANA name such as 'Europe/Paris')"
        ) from exc
