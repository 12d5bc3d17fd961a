"""Run one worker as this whole process: logging, signals, exit code.

Shared by `djap work` and `manage.py consume_jobs_async` so both behave the same.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time

from .lanes import THREAD_PREFIX, ExitingExecutor
from .logs import JobContextFilter, JobFormatter
from .worker import Worker, WorkerOptions, WorkerStats


def configure_logging(level: str = "INFO") -> None:
    """Print djap's log records to stderr unless the project configured a handler."""
    logger = logging.getLogger("djap")
    logger.setLevel(level.upper())
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            JobFormatter("%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s")
        )
        # Records about a job, from any djap.* logger, carry its id and name.
        handler.addFilter(JobContextFilter())
        logger.addHandler(handler)


async def _main(options: WorkerOptions) -> WorkerStats:
    # A job that used the loop's default executor and got stuck must not hold the exit.
    asyncio.get_running_loop().set_default_executor(ExitingExecutor())
    worker = Worker(options)
    worker.install_signal_handlers()
    return await worker.run()


def run_worker_process(options: WorkerOptions, log_level: str = "INFO") -> int:
    """Run a worker until it stops; returns the process exit code (0 on a clean stop)."""
    configure_logging(log_level)
    asyncio.run(_main(options))
    _exit_if_threads_hang()
    return 0


def _exit_if_threads_hang(wait_s: float = 2.0) -> None:
    """Exit now if a sync job's thread outlived its attempt (timeout, cancel, SIGTERM).

    Python joins every pool thread at exit, so one stuck `def run` would keep the
    process alive forever; its job is already failed or put back, so leave it behind.
    """
    deadline = time.monotonic() + wait_s
    stuck = [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]
    for thread in stuck:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in stuck if t.is_alive()]
    if stuck:
        logging.getLogger("djap.worker").warning(
            "%d sync job threads are still running; exiting without them", len(stuck)
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
