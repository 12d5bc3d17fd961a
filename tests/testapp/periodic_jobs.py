"""Periodic jobs of the periodic tests, registered only where a test asks for them.

A periodic class registered in every test's worker would enqueue rows into tests that
count rows; so tests/testapp/jobs.py imports this module only when DJAP_TEST_PERIODIC
is set (the periodic tests set it for their workers); imported anywhere else, the
classes are taken out of the registry again, and the periodic tests register the ones
they want in their own process for the length of one test.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

from djap import BaseJob
from djap_django import registry


class TickEveryTwo(BaseJob):
    every = 2
    # The kill test SIGKILLs a worker that may hold a tick's job until it is rescued; a
    # tick while that job looks running would be skipped, which is not what it counts.
    periodic_overlap = True

    async def run(self):
        pass


class HourlyReport(BaseJob):
    every = dt.timedelta(hours=1)

    @dataclass
    class Inputs:
        kind: str = "summary"

    async def run(self):
        pass


class NightlyCleanup(BaseJob):
    cron = "0 3 * * *"
    cron_tz = "Europe/Paris"
    periodic_overlap = True

    @dataclass
    class Inputs:
        days: int

    periodic_inputs = Inputs(days=30)

    async def run(self):
        pass


ALL = (TickEveryTwo, HourlyReport, NightlyCleanup)

if not os.environ.get("DJAP_TEST_PERIODIC"):
    # Imported by a test module: defining them registered them; the tests register the
    # ones they want for one test at a time.
    for _cls in ALL:
        registry._jobs.pop(_cls.__name__, None)
