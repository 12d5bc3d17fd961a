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


def executions(key: int) -> list[str]:
    from tests.testapp.models import Execution

    return list(Execution.objects.filter(key=key).order_by("id").values_list("env", flat=True))


def test_a_late_outcome_of_attempt_1_never_finishes_attempt_2_of_the_same_worker():
    """The worker looked dead, its job was rescued and it claimed the job again itself."""
    from django.conf import settings
    from django.test import override_settings

    from djap_django.worker import Worker, WorkerOptions
    from tests.conftest import wait_until
    from tests.testapp.jobs import RecordAndReport

    row = djap.create_new(RecordAndReport.create({"key": 1, "seconds": 1.0}))

    async def scenario() -> Worker:
        worker = Worker(WorkerOptions(concurrency=2, grace=30))
        task = asyncio.ensure_future(worker.run())

        async def until(condition, message: str) -> None:
            await asyncio.to_thread(wait_until, condition, 30, message)

        await until(lambda: "start of attempt 1" in executions(1), "attempt 1 runs")
        # Another worker decides this one is dead and puts its job back...
        rescuer = open_queue()
        await rescuer.connect()
        try:
            report = await rescuer.jobs_rescue_worker(worker.worker_id, max_crashes=3)
        finally:
            await rescuer.close()
        assert report.requeued == 1
        # ...and this very worker claims it again, while attempt 1 still runs.
        await until(lambda: "start of attempt 2" in executions(1), "attempt 2 runs")
        await until(lambda: "end of attempt 1" in executions(1), "attempt 1 ends")
        worker.request_stop()  # attempt 2 still runs: it gets the grace period
        await asyncio.wait_for(task, 60)
        return worker

    # The cancel check is slowed down so that only the claim guards are under test.
    with override_settings(DJAP={**settings.DJAP, "CANCEL_POLL_INTERVAL": 3600}):
        asyncio.run(scenario())
    row = JobDBModel.objects.get(pk=row.pk)
    assert "end of attempt 2" in executions(1), "attempt 2 was not waited for at shutdown"
    assert (row.status, row.attempts, row.outputs) == ("done", 2, {"attempt": 2})


async def test_every_write_of_a_claim_names_its_token():
    """Attempt 1's finish or release cannot touch attempt 2, even by the same worker."""
    from djap_django.queue import Outcome

    row = await djap.acreate_new(RecordExecution.create({"key": 1}))
    queue = open_queue()
    await queue.connect()
    try:
        me = await queue.worker_register(WorkerInfo(host="here", pid=1))
        (first,) = await queue.jobs_claim(me, 5, None, [])
        await queue.jobs_rescue_worker(me, max_crashes=3)
        (second,) = await queue.jobs_claim(me, 5, None, [])
        assert second.claim == first.claim + 1
        await queue.jobs_finish(me, [Outcome(row.pk, "failed", error="late", claim=first.claim)])
        assert await queue.jobs_release(me, [(row.pk, first.claim)]) == 0
        assert await queue.jobs_held(me) == {row.pk: second.claim}
        await queue.jobs_finish(me, [Outcome(row.pk, "done", claim=second.claim)])
    finally:
        await queue.close()
    row = await JobDBModel.objects.aget(pk=row.pk)
    assert (row.status, row.error, row.attempts) == ("done", "", 2)
