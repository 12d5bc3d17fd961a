"""Jobs of the flow-control tests (unique, inline, snooze, periodic, limits)."""

from __future__ import annotations

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
