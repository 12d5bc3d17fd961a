"""The cron parser and the next time it matches: pure, no database."""

from __future__ import annotations

import datetime as dt

import pytest

from djap_django import cron

UTC = dt.UTC


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


NEXT = [
    ("0 3 * * *", at(2026, 1, 1, 2, 59), at(2026, 1, 1, 3, 0)),
    ("0 3 * * *", at(2026, 1, 1, 3, 0), at(2026, 1, 2, 3, 0)),  # strictly after
    ("*/15 * * * *", at(2026, 1, 1, 10, 16), at(2026, 1, 1, 10, 30)),
    ("5-10/5 * * * *", at(2026, 1, 1, 10, 6), at(2026, 1, 1, 10, 10)),
    ("0 0 * * mon", at(2026, 12, 1), at(2026, 12, 7)),  # 2026-12-01 is a Tuesday
    ("0 0 * * 7", at(2026, 12, 1), at(2026, 12, 6)),  # 7 is Sunday, like 0
    ("0 0 1 jan *", at(2026, 6, 1), at(2027, 1, 1)),
    ("0 12 29 2 *", at(2026, 3, 1), at(2028, 2, 29, 12)),  # the next leap day
    # Both day fields restricted: either matches (the 13th, or any Friday).
    ("0 0 13 * fri", at(2026, 12, 1), at(2026, 12, 4)),
    ("@hourly", at(2026, 1, 1, 10, 30), at(2026, 1, 1, 11)),
    ("@daily", at(2026, 1, 1, 10, 30), at(2026, 1, 2)),
    ("30 9 * * 1-5", at(2026, 12, 4, 10), at(2026, 12, 7, 9, 30)),
]


def test_next_after():
    # One test for the table: every test here pays for a fresh test database.
    for expression, after, expected in NEXT:
        assert cron.parse(expression).next_after(after, UTC) == expected, expression


def test_a_time_zone_and_its_daylight_saving_jumps():
    paris = cron.zone("Europe/Paris")
    daily3 = cron.parse("0 3 * * *")
    # Winter: 03:00 in Paris is 02:00 UTC; summer: 01:00 UTC.
    assert daily3.next_after(at(2026, 1, 10), paris) == at(2026, 1, 10, 2)
    assert daily3.next_after(at(2026, 7, 10), paris) == at(2026, 7, 10, 1)
    # 2026-03-29: 02:00 -> 03:00 in Paris. 02:30 does not exist that night: it runs at
    # 01:30 UTC (03:30 local), and 03:00 local (01:00 UTC) comes first.
    night = cron.parse("0,30 2,3 * * *")
    runs, t = [], at(2026, 3, 28, 23)
    for _ in range(3):
        t = night.next_after(t, paris)
        runs.append(t)
    assert runs == [at(2026, 3, 29, 1, 0), at(2026, 3, 29, 1, 30), at(2026, 3, 30, 0, 0)]
    # 2026-10-25: 03:00 -> 02:00. 02:30 happens twice; it runs once.
    half_past_two = cron.parse("30 2 * * *")
    first = half_past_two.next_after(at(2026, 10, 24, 12), paris)
    assert first == at(2026, 10, 25, 0, 30)
    assert half_past_two.next_after(first, paris) == at(2026, 10, 26, 1, 30)


BAD = [
    ("* * *", "has 3 fields; a cron expression has five"),
    ("60 * * * *", "minute '60' is outside 0-59"),
    ("* 24 * * *", "hour '24' is outside 0-23"),
    ("* * 0 * *", "day of month '0' is outside 1-31"),
    ("* * * 13 *", "month '13' is outside 1-12"),
    ("* * * * 8", "day of week '8' is outside 0-7"),
    ("*/0 * * * *", "step '0' must be a whole number"),
    ("10-5 * * * *", "runs backwards"),
    ("x * * * *", "minute 'x' is not a number"),
    ("0 0 30 2 *", "never matches"),
]


def test_bad_expressions_say_which_field():
    for expression, message in BAD:
        with pytest.raises(cron.CronError, match=message):
            cron.parse(expression)


def test_unknown_time_zone():
    with pytest.raises(cron.CronError, match="unknown time zone 'Mars/Olympus'"):
        cron.zone("Mars/Olympus")
