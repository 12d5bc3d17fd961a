"""Jobs of the flow-control tests (unique, inline, snooze, periodic, limits)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from djap import BaseJob


class UniqueOrder(BaseJob):
    """A job that is unique per order: a second enqueue of the same order is a no-op."""

    unique_fields = ("order_id",)

    @dataclass
    class Inputs:
        order_id: int
        note: str = ""

    async def run(self):
        pass


class CountExecutions(BaseJob):
    """A sync job reading the database: which transaction does it see?"""

    @dataclass
    class Outputs:
        executions: int

    def run(self):
        from tests.testapp.models import Execution

        self.outputs = self.Outputs(executions=Execution.objects.count())


class SnoozeTwice(BaseJob):
    """Snoozes on its first two runs (counted in Execution rows), then passes."""

    @dataclass
    class Inputs:
        key: int

    @dataclass
    class Outputs:
        runs: int

    async def run(self):
        from asgiref.sync import sync_to_async

        from djap import Snooze
        from tests.testapp.models import Execution

        await sync_to_async(Execution.objects.create)(key=self.inputs.key, pid=os.getpid())
        runs = await Execution.objects.filter(key=self.inputs.key).acount()
        if runs <= 2:
            raise Snooze(after=0.05)
        self.outputs = self.Outputs(runs=runs)
