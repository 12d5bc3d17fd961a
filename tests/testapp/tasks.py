"""Django tasks the test suite runs on djap workers (discovered like jobs.py)."""

from __future__ import annotations

import asyncio
import logging

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the backport
    from django_tasks import task


@task
def add(a: int, b: int) -> int:
    return a + b


@task(priority=5)
async def async_shout(text: str) -> str:
    await asyncio.sleep(0)
    return text.upper()


class TaskBoom(ValueError):
    """A task's own exception class: its path must come back in the result's errors."""


@task
def explode(message: str) -> None:
    raise TaskBoom(message)


@task(queue_name="emails")
def send_email(to: str) -> dict:
    return {"sent_to": to}


@task(takes_context=True)
def whoami(context, tag: str) -> dict:
    return {"id": context.task_result.id, "tag": tag, "attempt": context.attempt}


@task
def log_line(text: str) -> None:
    # A sync task logging under djap.*: its record must name the job it runs in.
    logging.getLogger("djap.tests.tasks").info("task says %s", text)


@task(backend="retrying", queue_name="retries", takes_context=True)
def flaky(context, fail_times: int) -> str:
    # Fails on its first `fail_times` attempts; the backend's OPTIONS allow 3.
    if context.attempt <= fail_times:
        raise RuntimeError(f"not yet (attempt {context.attempt})")
    return "finally"


@task(backend="hanging", queue_name="hanging")
def hang(seconds: float) -> None:
    # A sync task stuck in its thread (time.sleep cannot be interrupted).
    import time

    time.sleep(seconds)
