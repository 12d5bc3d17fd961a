"""The benchmark's jobs for the Django peers (each venv has only its own package).

djap autodiscovers this module; django-tasks and django-q2 import it by path.
"""

from __future__ import annotations

from dataclasses import dataclass

import common

try:
    from django_tasks import task
except ImportError:  # only the django-tasks venv has it
    task = None


def q2_noop(i: int) -> None:
    common.mark(i)


def q2_orm(i: int) -> None:
    from djbench.orm import orm_body

    common.mark(i)
    orm_body(i)


if task is not None:

    @task()
    def noop(i: int) -> None:
        common.mark(i)

    @task()
    def orm(i: int) -> None:
        from djbench.orm import orm_body

        common.mark(i)
        orm_body(i)


try:
    from djap import BaseJob
except ImportError:  # only the djap venv has djap
    BaseJob = None

if BaseJob is not None:

    class Mark(BaseJob):
        """The no-op: record that it ran, nothing else."""

        @dataclass
        class Inputs:
            i: int

        async def run(self) -> None:
            common.mark(self.inputs.i)

    class OrmMark(BaseJob):
        """The ORM job through the async ORM (`async def run`)."""

        @dataclass
        class Inputs:
            i: int

        async def run(self) -> None:
            from djbench.orm import aorm_body

            common.mark(self.inputs.i)
            await aorm_body(self.inputs.i)

    class OrmMarkSync(BaseJob):
        """The ORM job as a plain `def run` (runs on a thread)."""

        @dataclass
        class Inputs:
            i: int

        def run(self) -> None:
            from djbench.orm import orm_body

            common.mark(self.inputs.i)
            orm_body(self.inputs.i)
