"""Races between a claim and the writes that follow it, forced with a real second connection.

Each test makes the interleaving happen for sure: it runs the other side's real
statement (a claim, a rescue, a late finish) at the exact point where the race
window was, on its own connection, then checks that nothing ran twice or was lost.
"""

from __future__ import annotations

import asyncio
import threading

from django.db import connection

import djap
from djap_django.models import JobDBModel
from djap_django.queue import WorkerInfo, open_queue
from tests.testapp.jobs import RecordExecution


def claim_from_another_connection(results: list) -> None:
    """A worker elsewhere claims whatever is ready, on its own connection."""

    async def claim() -> None:
        queue = open_queue()
        await queue.connect()
        try:
            worker_id = await queue.worker_register(WorkerInfo(host="elsewhere", pid=1))
            results.extend(await queue.jobs_claim(worker_id, 10, None, []))
        finally:
            await queue.close()

    asyncio.run(claim())


def test_cancel_with_a_claim_landing_inside_it_cancels_or_reports_the_truth():
    row = djap.create_new(RecordExecution.create({"key": 1}))
    claimed: list = []
    landed = threading.Event()

    def claim_after_first_update(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("UPDATE") and not landed.is_set():
            landed.set()
            # The claim runs in another thread: on SQLite it waits for cancel's write lock
            # (so it cannot land inside), on PostgreSQL it commits at once.
            claimer = threading.Thread(target=claim_from_another_connection, args=(claimed,))
            claimer.start()
            claimer.join(timeout=10 if connection.vendor == "postgresql" else 0.5)
            result_holder.append(claimer)
        return result

    result_holder: list[threading.Thread] = []
    with connection.execute_wrapper(claim_after_first_update):
        cancelled = djap.cancel(row.pk)
    for claimer in result_holder:
        claimer.join(timeout=30)
    assert landed.is_set()
    status = JobDBModel.objects.get(pk=row.pk).status
    # False means "it had already finished": never true of a job that now runs.
    assert cancelled is True, f"cancel() said the job had finished; it is {status}"
    assert status == "cancelled" and not claimed
