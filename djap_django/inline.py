"""Inline mode: enqueued jobs run right away in the caller's process, for tests.

With `DJAP["INLINE"] = True`, inside `with djap.inline():`, or with the pytest fixture
`djap_inline`, every enqueue (create_new, bulk_create_new, Pipeline.trigger and the
async twins) still writes its rows, and once the caller's transaction commits
(`transaction.on_commit`) the jobs run here, one after the other, and then the steps
their pipelines readied. They run through the worker's own `execute`, so inputs are
checked and outputs, failures, tracebacks and retries end up on the rows exactly as a
worker would write them; only the backoff before a retry is not waited for.

This module is only the switch, imported by every enqueue; the runner is
inline_runner.py, which sits above the enqueue API (it finishes pipeline steps) and
hands itself to `set_runner` when the app is ready (apps.py), so that enqueueing
never imports it back.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

from django.db import transaction

from . import conf

_forced: contextvars.ContextVar[bool | None] = contextvars.ContextVar("djap_inline", default=None)
#: inline_runner.run, set when the app is ready.
_runner: Callable[[list[int], str], None] | None = None


def set_runner(runner: Callable[[list[int], str], None]) -> None:
    global _runner
    _runner = runner


def enabled() -> bool:
    """Whether enqueues run inline now: the context manager's value, else the setting."""
    forced = _forced.get()
    return conf.get("INLINE") if forced is None else forced


@contextlib.contextmanager
def inline(enabled: bool = True) -> Iterator[None]:
    """Run jobs enqueued in this block in this process once their transaction commits."""
    token = _forced.set(enabled)
    try:
        yield
    finally:
        _forced.reset(token)


def after_enqueue(job_ids: list[int], alias: str) -> None:
    """Called by every enqueue with the ids it wrote: run them after commit if inline."""
    if job_ids and enabled():
        if _runner is None:
            raise RuntimeError("inline mode needs djap_django in INSTALLED_APPS (apps.ready)")
        runner = _runner
        transaction.on_commit(lambda: runner(job_ids, alias), using=alias)
