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


class GpuJob(RecordExecution):
    """Stands for GPU work: records each run and the device it was given, as its base does."""


class FlakyJob(BaseJob):
    """Fails its first `fail_times` attempts, then succeeds (retries and error history)."""

    max_attempts = 5

    @dataclass
    class Inputs:
        fail_times: int

    @dataclass
    class Outputs:
        attempt: int

    async def run(self):
        if self.attempt <= self.inputs.fail_times:
            raise RuntimeError(f"flaky failure on attempt {self.attempt}")
        self.outputs = self.Outputs(attempt=self.attempt)


class HangingJob(BaseJob):
    """Never returns by itself: only its timeout (or a cancel) ends it."""

    timeout = 0.5

    async def run(self):
        await asyncio.sleep(3600)


class HangingSyncJob(BaseJob):
    """A thread that outlives its timeout: the attempt fails, the thread runs on."""

    timeout = 0.5

    @dataclass
    class Inputs:
        seconds: float

    def run(self):
        time.sleep(self.inputs.seconds)


class SyncRecordExecution(BaseJob):
    """RecordExecution in a thread."""

    @dataclass
    class Inputs:
        key: int

    def run(self):
        from tests.testapp.models import Execution

        Execution.objects.create(key=self.inputs.key, pid=os.getpid(), env="sync")


class RetryOnce(BaseJob):
    """Asks for a retry an hour from now on its first attempt."""

    @dataclass
    class Inputs:
        key: int

    async def run(self):
        from djap import Retry

        if self.attempt == 1:
            raise Retry(after=3600, reason="not yet")


# -- pipelines (tests/testapp/pipelines.py) ---------------------------------------------

#: Execution.key of a SumAll run: counting these rows proves the join ran once.
SUM_ALL_KEY = 900_001


class CountChars(BaseJob):
    """First step: hands the next step its inputs through next_job_inputs.

    A dict, not DoubleIt.Inputs: pipelines put different jobs after it.
    """

    @dataclass
    class Inputs:
        text: str

    async def run(self):
        self.next_job_inputs = {"n": len(self.inputs.text)}


class DoubleIt(BaseJob):
    """Middle step: its outputs fit AddOne.Inputs, so they become AddOne's inputs."""

    @dataclass
    class Inputs:
        n: int

    @dataclass
    class Outputs:
        n: int

    async def run(self):
        self.outputs = self.Outputs(n=self.inputs.n * 2)


class AddOne(BaseJob):
    @dataclass
    class Inputs:
        n: int

    @dataclass
    class Outputs:
        n: int

    async def run(self):
        self.outputs = self.Outputs(n=self.inputs.n + 1)


class FailWhenTold(BaseJob):
    """Fails while `failing` is set (tests flip it to prove a retry resumes the pipeline)."""

    failing = True

    @dataclass
    class Inputs:
        n: int

    @dataclass
    class Outputs:
        n: int

    async def run(self):
        if type(self).failing:
            raise RuntimeError("FailWhenTold was told to fail")
        self.outputs = self.Outputs(n=self.inputs.n)


class SplitRange(BaseJob):
    """Fans out: one branch per number below `count` (plain dicts fit any `x` step)."""

    @dataclass
    class Inputs:
        count: int

    async def run(self):
        self.next_job_inputs = [{"x": i} for i in range(self.inputs.count)]


class Duplicate(BaseJob):
    """A fan-out inside a branch: each branch splits in two."""

    @dataclass
    class Inputs:
        x: int

    async def run(self):
        self.next_job_inputs = [SquareIt.Inputs(x=self.inputs.x)] * 2


class SquareIt(BaseJob):
    @dataclass
    class Inputs:
        x: int

    @dataclass
    class Outputs:
        y: int

    async def run(self):
        self.outputs = self.Outputs(y=self.inputs.x * self.inputs.x)


class SumAll(BaseJob):
    """The join: gets every branch's outputs as a list; records each run."""

    @dataclass
    class Inputs:
        values: list

    @dataclass
    class Outputs:
        total: int
        count: int

    async def run(self):
        from tests.testapp.models import Execution

        await sync_to_async(Execution.objects.create)(
            key=SUM_ALL_KEY, pid=os.getpid(), env=str(len(self.inputs.values))
        )
        self.outputs = self.Outputs(
            total=sum(v["y"] for v in self.inputs.values), count=len(self.inputs.values)
        )


class HangFirstAttempt(BaseJob):
    """Hangs on its first attempt (the test kills its worker), passes `n` on after."""

    @dataclass
    class Inputs:
        n: int

    @dataclass
    class Outputs:
        n: int

    async def run(self):
        from tests.testapp.models import Execution

        await sync_to_async(Execution.objects.create)(
            key=self.inputs.n, pid=os.getpid(), env=f"attempt {self.attempt}"
        )
        if self.attempt == 1:
            await asyncio.sleep(3600)
        self.outputs = self.Outputs(n=self.inputs.n)


class Report(BaseJob):
    """After a join: SumAll's outputs fit these Inputs, so they are passed on as they are."""

    @dataclass
    class Inputs:
        total: int
        count: int

    @dataclass
    class Outputs:
        line: str

    async def run(self):
        self.outputs = self.Outputs(line=f"{self.inputs.count} values, total {self.inputs.total}")


class SleepThenRecord(BaseJob):
    """Sleeps, then records its execution: long enough to be caught mid-job by a signal."""

    @dataclass
    class Inputs:
        key: int
        seconds: float

    async def run(self):
        from tests.testapp.models import Execution

        await asyncio.sleep(self.inputs.seconds)
        await sync_to_async(Execution.objects.create)(
            key=self.inputs.key, pid=os.getpid(), env=os.environ.get("CUDA_VISIBLE_DEVICES", "")
        )


class HoldMemory(BaseJob):
    """Touches `mb` megabytes and holds them for a while: makes its process's RSS grow."""

    @dataclass
    class Inputs:
        mb: int
        seconds: float

    async def run(self):
        block = b"\x01" * (self.inputs.mb << 20)
        await asyncio.sleep(self.inputs.seconds)
        del block


class RecordThenHang(BaseJob):
    """Records each run; the first attempt then hangs (so its worker can be killed mid-job)."""

    @dataclass
    class Inputs:
        key: int

    async def run(self):
        from tests.testapp.models import Execution

        await sync_to_async(Execution.objects.create)(
            key=self.inputs.key, pid=os.getpid(), env=f"attempt {self.attempt}"
        )
        if self.attempt == 1:
            await asyncio.sleep(3600)


class SleepThenRecordWithRetries(BaseJob):
    """Works a while, then records its run: many are in flight when the database goes."""

    max_attempts = 10

    @dataclass
    class Inputs:
        key: int
        seconds: float

    async def run(self):
        from tests.testapp.models import Execution

        await asyncio.sleep(self.inputs.seconds)
        await sync_to_async(Execution.objects.create)(key=self.inputs.key, pid=os.getpid())


# -- database lanes (tests/test_lanes.py) ----------------------------------------------

#: In-process gates the lane tests open and close (a worker run in the test's process).
LANE_GATES: dict[str, object] = {}


def _where_am_i() -> dict:
    """This thread's name and the connection's server process (or SQLite object) id."""
    import threading

    from django.db import connection

    connection.ensure_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            backend = cur.fetchone()[0]
    else:
        backend = id(connection.connection)
    return {"thread": threading.current_thread().name, "backend": backend}


class LaneWhere(BaseJob):
    """Two ORM calls of an async job, a barrier between them: where did each run?"""

    @dataclass
    class Inputs:
        barrier: str = ""

    async def run(self):
        first = await sync_to_async(_where_am_i)()
        if self.inputs.barrier:
            # Every job of the test waits here in its ORM thread: only concurrent lanes pass.
            await sync_to_async(LANE_GATES[self.inputs.barrier].wait)()
        second = await sync_to_async(_where_am_i)()
        self.outputs = {"first": first, "second": second}


class SyncLaneWhere(BaseJob):
    """Where a sync job body runs, and on which connection."""

    def run(self):
        self.outputs = _where_am_i()


class StuckInOrm(BaseJob):
    """An async job whose thread-sensitive (ORM) call blocks until the test lets it go."""

    async def run(self):
        from django.db import connection

        def blocked() -> None:
            if connection.vendor == "postgresql":
                # A real ORM call stuck on a row lock the test holds.
                from django.db import transaction

                from tests.testapp.models import Execution

                with transaction.atomic():
                    list(Execution.objects.select_for_update().filter(key=-1))
            else:
                LANE_GATES["stuck"].wait(60)

        await sync_to_async(blocked)()


class NulOutputs(BaseJob):
    """Returns text with a NUL character, as text taken from a PDF often has."""

    async def run(self):
        self.outputs = {"text": "page one\x00page two"}


class NulError(BaseJob):
    """Raises an error whose message holds a NUL character."""

    async def run(self):
        raise ValueError("bad byte \x00 in upload")


class NotJsonOutputs(BaseJob):
    """Sets outputs that JSON cannot hold: a set (a TypeError) or NaN (a ValueError)."""

    async def run(self):
        self.outputs = {"tags": {"a", "b"}} if self.id % 2 else {"score": float("nan")}


class SurrogateError(BaseJob):
    """Raises an error whose message holds a lone surrogate, as a bad file name gives."""

    async def run(self):
        raise ValueError("cannot open b'\\xff': " + b"\xff".decode("utf-8", "surrogateescape"))


class RecordAndReport(BaseJob):
    """Records the start and end of each attempt; attempt N works N * `seconds`."""

    max_attempts = 5

    @dataclass
    class Inputs:
        key: int
        seconds: float = 0.0

    async def run(self):
        from tests.testapp.models import Execution

        record = sync_to_async(Execution.objects.create)
        await record(key=self.inputs.key, pid=os.getpid(), env=f"start of attempt {self.attempt}")
        await asyncio.sleep(self.inputs.seconds * self.attempt)
        await record(key=self.inputs.key, pid=os.getpid(), env=f"end of attempt {self.attempt}")
        self.outputs = {"attempt": self.attempt}


class ChaosRecord(BaseJob):
    """The soak's job (scripts/chaos): records the start and the end of every attempt.

    Each record says which attempt, in which process, at what time; from them the soak
    tells every second run apart and checks that each has a cause it injected.
    """

    max_attempts = 5

    @dataclass
    class Inputs:
        key: int
        seconds: float = 0.0

    async def run(self):
        from tests.testapp.models import Execution

        # Off the ORM's one shared thread: the records of many attempts overlap.
        record = sync_to_async(Execution.objects.create, thread_sensitive=False)
        await record(
            key=self.inputs.key, pid=os.getpid(), env=f"start {self.attempt} {time.time()}"
        )
        await asyncio.sleep(self.inputs.seconds)
        await record(key=self.inputs.key, pid=os.getpid(), env=f"end {self.attempt} {time.time()}")


# The flow-control tests' jobs live in their own module, registered with these.
from tests.testapp import flow_jobs  # noqa: E402, F401

if os.environ.get("DJAP_TEST_PERIODIC"):
    from tests.testapp import periodic_jobs  # noqa: F401
