"""`djap supervise`: the supervisor with the live view on a terminal, log lines otherwise."""

from __future__ import annotations

import asyncio
import logging
import time

from rich.console import Console

from ..dashboard.live import LiveView, LogView
from ..status.queries import preflight
from ..supervisor.budget import warn_if_over_connection_budget
from ..supervisor.core import Supervisor
from ..supervisor.logfile import default_log_file, log_to_file
from ..supervisor.options import SuperviseOptions

logger = logging.getLogger("djap.supervisor")

#: Without a live view, a summary line is printed this often (seconds).
SUMMARY_EVERY_S = 10.0


def supervise_command(options: SuperviseOptions) -> int:
    """`djap supervise`: the live view on a terminal, log lines otherwise."""
    from djap_django.runner import configure_logging

    preflight(options.alias)
    warn_if_over_connection_budget(options)
    console = Console()
    live = options.dashboard and console.is_terminal
    if live:
        options.log_file = options.log_file or default_log_file()
        log_to_file(options.log_file, options.log_level)
        console.print(f"[dim]worker and supervisor logs: {options.log_file}[/dim]")
    else:
        configure_logging(options.log_level)
    metrics = None
    if options.metrics_port is not None:
        from ..metrics import start_metrics_server

        metrics = start_metrics_server(
            options.metrics_port,
            snapshot_fn=lambda: supervisor.snapshot,
            alias=options.alias,
        )
    supervisor = Supervisor(options, metrics.record_restart if metrics is not None else None)
    try:
        if not live:
            view: LogView | LiveView = LogView(
                lambda line: logger.info("%s", line), SUMMARY_EVERY_S, time.monotonic
            )
            return asyncio.run(supervisor.run(on_tick=view))
        with LiveView(console) as view:
            code = asyncio.run(supervisor.run(on_tick=view))
        console.print(f"[dim]logs: {options.log_file}[/dim]")
        return code
    finally:
        if metrics is not None:
            metrics.stop()
