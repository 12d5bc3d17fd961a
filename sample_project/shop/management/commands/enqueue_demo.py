"""`manage.py enqueue_demo`: a mix of the shop's jobs, in bulk, in one transaction."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

import djap
from shop.jobs import (
    BuildReport,
    ChargeCard,
    GpuJob,
    ImportLegacyOrder,
    Money,
    ResizeImage,
    SendWelcomeEmail,
)


class Command(BaseCommand):
    help = "Enqueue a mix of sample jobs."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--images", type=int, default=2000)

    def handle(self, *args: Any, images: int, **options: Any) -> None:
        jobs = [ResizeImage.create(ResizeImage.Inputs(image_id=i)) for i in range(images)]
        jobs += [SendWelcomeEmail.create() for _ in range(200)]
        jobs += [ChargeCard.create(Money(1999, "EUR")) for _ in range(100)]
        jobs += [BuildReport.create(BuildReport.Inputs(rows=10_000)) for _ in range(20)]
        jobs += [ImportLegacyOrder.create(ImportLegacyOrder.Inputs(order_id=i)) for i in range(50)]
        jobs += [GpuJob.create(GpuJob.Inputs(batch=i), priority=5) for i in range(20)]
        djap.bulk_create_new(jobs)
        self.stdout.write(f"enqueued {len(jobs)} jobs")
