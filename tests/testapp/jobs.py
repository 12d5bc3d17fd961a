"""Jobs the test suite runs; discovered like any app's jobs.py."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async

from djap import BaseJob


class JobWithSleep(BaseJob):
    async def run(self):
        await asyncio.sleep(0.01)


class JobWithInputsAndOutputs(BaseJob):
    @dataclass
    class Inputs:
        id: int

    @dataclass
    class Outputs:
        id: int

    async def run(self):
        self.outputs = self.Outputs(id=self.inputs.id * 2)


class Point:
    """Not a dataclass: any class with a zero-argument asdict() works."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def asdict(self) -> dict:
        return {"x": self.x, "y": self.y}


class JobWithCustomAsdict(BaseJob):
    Inputs = Point
    Outputs = Point

    async def run(self):
        self.outputs = Point(self.inputs.y, self.inputs.x)


class SyncJob(BaseJob):
    @dataclass
    class Inputs:
        n: int

    @dataclass
    class Outputs:
        thread: str

    def run(self):
        import threading

        time.sleep(0.01)
        self.outputs = self.Outputs(thread=threading.current_thread().name)


class FailingJob(BaseJob):
    async def run(self):
        raise RuntimeError("boom from FailingJob")


class RecordExecution(BaseJob):
    """Records each execution in a table (the exactly-once proof)."""

    @dataclass
    class Inputs:
        key: int

    async def run(self):
        from tests.testapp.models import Execution

        await sync_to_async(Execution.objects.create)(
            key=self.inputs.key, pid=os.getpid(), env=os.environ.get("CUDA_VISIBLE_DEVICES", "")
        )


class SleepFor(BaseJob):
    @dataclass
    class Inputs:
        seconds: float

    async def run(self):
        await asyncio.sleep(self.inputs.seconds)


class GpuJob(BaseJob):
    """Stands for GPU work: records which device it was given."""

    @dataclass
    class Inputs:
        key: int

    async def run(self):
        from tests.testapp.models import Execution

        await sync_to_async(Execution.objects.create)(
            key=self.inputs.key, pid=os.getpid(), env=os.environ.get("CUDA_VISIBLE_DEVICES", "")
        )
