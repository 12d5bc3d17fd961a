"""Run one worker as this whole process: logging, signals, exit code.

Shared by `djap work` and `manage.py consume_jobs_async` so both behave the same.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from .worker import Worker, WorkerOptions, WorkerStats


def configure_logging(level: str = "INFO") -> None:
    """Print djap's log records to stderr unless the project configured a handler."""
    logger = logging.getLogger("djap")
    logger.setLevel(level.upper())
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s")
        )
        logger.addHandler(handler)


async def _main(options: WorkerOptions) -> WorkerStats:
    worker = Worker(options)
    worker.install_signal_handlers()
    return await worker.run()


def run_worker_process(options: WorkerOptions, log_level: str = "INFO") -> int:
    """Run a worker until it stops; returns the process exit code (0 on a clean stop)."""
    configure_logging(log_level)
    asyncio.run(_main(options))
    return 0
