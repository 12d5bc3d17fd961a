"""`manage.py enqueue_demo`: a mix of the shop's jobs, in bulk, in one transaction."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

import djap
from shop.jobs import (
    BuildReport,
    ChargeCard,
    GpuJob,
    ImportLegacyOrder,
    ListAlbumPhotos,
    Money,
    ResizeImage,
    SendWelcomeEmail,
)
from shop.pipelines import PublishAlbumPipeline


class Command(BaseCommand):
    help = "Enqueue a mix of sample jobs."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--images", type=int, default=2000)
        parser.add_argument("--albums", type=int, default=5)

    def handle(self, *args: Any, images: int, albums: int, **options: Any) -> None:
        jobs = [ResizeImage.create(ResizeImage.Inputs(image_id=i)) for i in range(images)]
        jobs += [SendWelcomeEmail.create() for _ in range(200)]
        jobs += [ChargeCard.create(Money(1999, "EUR")) for _ in range(100)]
        jobs += [BuildReport.create(BuildReport.Inputs(rows=10_000)) for _ in range(20)]
        jobs += [ImportLegacyOrder.create(ImportLegacyOrder.Inputs(order_id=i)) for i in range(50)]
        jobs += [GpuJob.create(GpuJob.Inputs(batch=i), priority=5) for i in range(20)]
        with transaction.atomic():
            djap.bulk_create_new(jobs)
            for album in range(1, albums + 1):
                PublishAlbumPipeline.trigger(ListAlbumPhotos.Inputs(album_id=album))
        self.stdout.write(f"enqueued {len(jobs)} jobs and {albums} album pipelines")
