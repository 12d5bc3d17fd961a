"""One bad outcome costs one job, never the worker: NUL bytes, refused writes, shutdown.

PostgreSQL refuses NUL in text and \\u0000 in jsonb; a project's trigger or constraint
may refuse a write too. Each test runs a real worker against the real database and
checks that every other job of the run is written all the same.
"""

from __future__ import annotations

import asyncio
import logging

import djap
from djap_django.models import JobDBModel
from djap_django.worker import Worker, WorkerOptions
from tests.conftest import wait_until
from tests.faults import REFUSAL, allow_again, refuse_finishing
from tests.testapp.jobs import (
    NotJsonOutputs,
    NulError,
    NulOutputs,
    RecordExecution,
    SurrogateError,
)


def run_jobs(n: int, timeout: float = 30) -> None:
    asyncio.run(djap.run_num_jobs(max_num_workers=n, timeout=timeout, num_jobs=n))


def statuses() -> dict[int, str]:
    return dict(JobDBModel.objects.values_list("id", "status"))


def test_nul_in_outputs_or_error_fails_that_job_and_every_other_is_written():
    nul_out = djap.create_new(NulOutputs)
    nul_err = djap.create_new(NulError)
    plain = djap.bulk_create_new([RecordExecution.create({"key": i}) for i in range(10)])
    run_jobs(12)
    found = statuses()
    assert [found[r.pk] for r in plain] == ["done"] * 10
    out = JobDBModel.objects.get(pk=nul_out.pk)
    assert out.status == "failed" and "NUL" in out.error and "\x00" not in out.error
    assert out.outputs is None
    err = JobDBModel.objects.get(pk=nul_err.pk)
    # The traceback is kept, the NUL shown escaped.
    assert err.status == "failed" and "bad byte \\x00 in upload" in err.error
    assert "bad byte \\x00 in upload" in err.errors[-1]["error"]


def test_outputs_json_cannot_hold_fail_that_job_instead_of_leaving_it_in_progress():
    bad = djap.bulk_create_new([NotJsonOutputs.create() for _ in range(2)])
    plain = djap.bulk_create_new([RecordExecution.create({"key": i}) for i in range(5)])
    run_jobs(7)
    found = statuses()
    assert [found[r.pk] for r in plain] == ["done"] * 5
    for row in JobDBModel.objects.filter(pk__in=[r.pk for r in bad]):
        assert row.status == "failed", row.status
        assert "outputs are not JSON" in row.error and row.outputs is None


def test_an_error_with_a_lone_surrogate_is_stored_escaped():
    row = djap.create_new(SurrogateError)
    plain = djap.create_new(RecordExecution.create({"key": 1}))
    run_jobs(2)
    row.refresh_from_db()
    assert JobDBModel.objects.get(pk=plain.pk).status == "done"
    assert row.status == "failed" and "cannot open b'\\xff': \\udcff" in row.error


def test_an_outcome_the_database_keeps_refusing_is_failed_alone_with_the_reason():
    rows = djap.bulk_create_new([RecordExecution.create({"key": i}) for i in range(20)])
    bad = rows[7].pk
    with refuse_finishing([bad]):
        run_jobs(20)
    found = statuses()
    assert [s for i, s in found.items() if i != bad] == ["done"] * 19
    row = JobDBModel.objects.get(pk=bad)
    assert row.status == "failed", row.status
    assert "could not store" in row.error and REFUSAL in row.error


def test_an_outcome_in_the_backoff_sleep_at_shutdown_is_still_written(caplog):
    row = djap.create_new(RecordExecution.create({"key": 1}))

    async def scenario() -> None:
        worker = Worker(WorkerOptions(concurrency=1, grace=5))
        task = asyncio.ensure_future(worker.run())
        deadline = asyncio.get_running_loop().time() + 30
        # The database refuses the finish: the completer backs off and tries again.
        while "could not write" not in caplog.text:
            assert asyncio.get_running_loop().time() < deadline, "the finish was never tried"
            await asyncio.sleep(0.01)
        worker.request_stop()
        await asyncio.sleep(0)
        # The refusal ends while the worker stops: what waits in the backoff is written.
        await asyncio.to_thread(allow_again)
        await asyncio.wait_for(task, 60)

    caplog.set_level(logging.WARNING, logger="djap.worker")
    with refuse_finishing([row.pk], statuses=("done", "failed")):
        asyncio.run(scenario())
    wait_until(lambda: JobDBModel.objects.get(pk=row.pk).status != "in_progress", timeout=5)
    assert JobDBModel.objects.get(pk=row.pk).status in ("done", "failed")


def test_a_pipeline_step_whose_outcome_is_refused_fails_with_the_reason_and_ends_its_pipeline():
    from djap_django.models import PipelineDBModel
    from tests.testapp.pipelines import ChainOfThree

    pipeline = ChainOfThree.trigger({"text": "abc"})
    first = JobDBModel.objects.get(pipeline=pipeline, pipeline_step=0)
    with refuse_finishing([first.pk]):
        run_jobs(1)
    first.refresh_from_db()
    assert first.status == "failed" and REFUSAL in first.error
    assert PipelineDBModel.objects.get(pk=pipeline.pk).status == "failed"
