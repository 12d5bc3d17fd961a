"""The sample shop's jobs: one of each kind djap runs.

djap finds this module at startup (like admin.py); each class name is a job name.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from dataclasses import dataclass

from djap import BaseJob, Retry


class SendWelcomeEmail(BaseJob):
    """No inputs, async: waits on "the network" without holding a thread."""

    async def run(self) -> None:
        await asyncio.sleep(0.05)


class ResizeImage(BaseJob):
    """The main job: typed inputs and outputs, both plain dataclasses stored as JSON."""

    @dataclass
    class Inputs:
        image_id: int
        width: int = 320

    @dataclass
    class Outputs:
        image_id: int
        width: int
        checksum: str

    async def run(self) -> None:
        await asyncio.sleep(random.uniform(0.01, 0.2))
        digest = hashlib.sha256(f"{self.inputs.image_id}:{self.inputs.width}".encode()).hexdigest()
        self.outputs = self.Outputs(self.inputs.image_id, self.inputs.width, digest[:12])


class Money:
    """Not a dataclass: any class with a zero-argument asdict() works as Inputs."""

    def __init__(self, amount_cents: int, currency: str) -> None:
        self.amount_cents, self.currency = amount_cents, currency

    def asdict(self) -> dict:
        return {"amount_cents": self.amount_cents, "currency": self.currency}


class ChargeCard(BaseJob):
    """Custom asdict() inputs; a flaky gateway: asks for a retry now and then."""

    Inputs = Money
    max_attempts = 3

    async def run(self) -> None:
        if random.random() < 0.1:
            raise Retry(after=0.5, reason="payment gateway busy")
        await asyncio.sleep(0.02)


class BuildReport(BaseJob):
    """A plain `def run`: CPU-bound or blocking code runs in a thread."""

    @dataclass
    class Inputs:
        rows: int

    @dataclass
    class Outputs:
        total: int

    def run(self) -> None:
        time.sleep(0.05)
        self.outputs = self.Outputs(total=sum(range(self.inputs.rows)))


class ImportLegacyOrder(BaseJob):
    """Fails on purpose for some inputs: the dashboard shows the error, nothing is lost."""

    @dataclass
    class Inputs:
        order_id: int

    async def run(self) -> None:
        if self.inputs.order_id % 7 == 0:
            raise ValueError(f"order {self.inputs.order_id} has no customer")
        await asyncio.sleep(0.01)


class GpuJob(BaseJob):
    """Runs only in the GPU process (`djap supervise --gpu-procs 1:GpuJob`)."""

    @dataclass
    class Inputs:
        batch: int

    @dataclass
    class Outputs:
        device: str

    async def run(self) -> None:
        await asyncio.sleep(0.1)
        self.outputs = self.Outputs(device=os.environ.get("CUDA_VISIBLE_DEVICES", "none"))


# -- the album pipeline (shop/pipelines.py): list -> resize each photo -> publish ------------


class ListAlbumPhotos(BaseJob):
    """The first step: fans out, one branch per photo of the album."""

    @dataclass
    class Inputs:
        album_id: int
        photos: int = 12

    async def run(self) -> None:
        first = self.inputs.album_id * 1000
        self.next_job_inputs = [
            ResizeImage.Inputs(image_id=first + i) for i in range(self.inputs.photos)
        ]


class PublishAlbum(BaseJob):
    """The join: runs once, after every photo was resized, with all their outputs."""

    @dataclass
    class Inputs:
        photos: list

    @dataclass
    class Outputs:
        published: int
        checksums: list

    async def run(self) -> None:
        checksums = [photo["checksum"] for photo in self.inputs.photos]
        self.outputs = self.Outputs(published=len(checksums), checksums=checksums)
