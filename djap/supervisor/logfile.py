"""Where logs go while the live view owns the terminal: one file for workers and supervisor."""

from __future__ import annotations

import logging
import os
import tempfile


def default_log_file() -> str:
    return os.path.join(tempfile.gettempdir(), f"djap-supervise-{os.getpid()}.log")


def log_to_file(path: str, level: str) -> None:
    """Send djap's log lines to `path` (the workers' output goes there too)."""
    log = logging.getLogger("djap")
    handler = logging.FileHandler(path)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s")
    )
    log.handlers = [handler]
    log.propagate = False
    log.setLevel(level.upper())
