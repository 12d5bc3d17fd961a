"""Pipelines: how a finished job readies its successors (filled in by the pipelines work)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from . import conf
from .models import JobDBModel
from .queue.base import ClaimedJob, Outcome


def finish_step(worker_id: int, claimed: ClaimedJob, outcome: Outcome) -> None:
    """Write a pipeline step's outcome (successors are readied in the same transaction)."""
    alias = conf.database_alias()
    with transaction.atomic(using=alias):
        JobDBModel.objects.using(alias).filter(
            pk=claimed.id, status=JobDBModel.Status.IN_PROGRESS, worker_id=worker_id
        ).update(
            status=outcome.status,
            outputs=None if outcome.outputs_json is None else _loads(outcome.outputs_json),
            error=outcome.error,
            run_after=outcome.run_after,
            worker_id=None,
            finished_at=None if outcome.status == "new" else timezone.now(),
        )


def _loads(text: str):
    import json

    return json.loads(text)
