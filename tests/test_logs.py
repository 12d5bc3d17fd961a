"""Logging: records about a job carry its id and name, under djap.* loggers."""

from __future__ import annotations

import asyncio
import logging

import pytest

import djap
from djap_django.logs import JobContextFilter, JobFormatter
from tests.testapp import tasks
from tests.testapp.jobs import FailingJob


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(JobContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records():
    handler = ListHandler()
    logger = logging.getLogger("djap")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_worker_and_job_records_name_the_job(records):
    failing = djap.create_new(FailingJob)
    result = tasks.log_line.enqueue("hello")
    asyncio.run(djap.run_num_jobs(max_num_workers=2, timeout=30, num_jobs=2))

    [failed] = [r for r in records if r.getMessage().startswith(f"job {failing.pk} ")]
    assert (failed.job_id, failed.job_name) == (failing.pk, "FailingJob")
    # Logged by the task's own code, in a thread: the job is still known.
    [said] = [r for r in records if r.getMessage() == "task says hello"]
    assert (said.job_id, said.job_name) == (int(result.id), "task:default")
    # Records not about a job say so with None, and are not dropped.
    started = [r for r in records if "started" in r.getMessage()]
    assert started and all(r.job_id is None for r in started)


def test_formatter_tags_the_message_line_only():
    formatter = JobFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("djap.worker", logging.WARNING, __file__, 1, "boom", (), None)
    record.job_id, record.job_name = 7, "Resize"
    assert formatter.format(record) == "WARNING boom [job 7 Resize]"
    plain = logging.LogRecord("djap.worker", logging.INFO, __file__, 1, "idle", (), None)
    assert formatter.format(plain) == "INFO idle"
